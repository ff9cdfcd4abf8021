/*
 * tandem-load: the latency histogram (layout in load_hist.h).
 *
 * Bucket of a value v:
 *   v < 128            bucket v
 *   2^m <= v < 2^(m+1) bucket (m - 6) * 128 + (v >> (m - 7)) - 128     (m = 7 .. 36)
 * so each power of two from 2^7 up takes the 128 buckets after the previous one.
 */
#include "load_hist.h"

#include <string.h>

_Static_assert(TDM_LOAD_HIST_MAX_NS >> TDM_LOAD_HIST_TOP_BIT == 1, "TOP_BIT is MAX_NS's top bit");

void tdm_load_hist_reset(struct tdm_load_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned tdm_load_hist_bucket(uint64_t ns)
{
	if (ns > TDM_LOAD_HIST_MAX_NS)
		ns = TDM_LOAD_HIST_MAX_NS;
	if (ns < TDM_LOAD_HIST_SUB)
		return (unsigned)ns;
	unsigned m = 63u - (unsigned)__builtin_clzll(ns);
	unsigned sub = (unsigned)(ns >> (m - TDM_LOAD_HIST_SUB_BITS)) - TDM_LOAD_HIST_SUB;
	return (m - TDM_LOAD_HIST_SUB_BITS + 1) * TDM_LOAD_HIST_SUB + sub;
}

uint64_t tdm_load_hist_bucket_high(unsigned bucket)
{
	if (bucket < TDM_LOAD_HIST_SUB)
		return bucket;
	unsigned shift = bucket / TDM_LOAD_HIST_SUB - 1;
	uint64_t low = (uint64_t)(TDM_LOAD_HIST_SUB + bucket % TDM_LOAD_HIST_SUB) << shift;
	return low + (1ull << shift) - 1;
}

void tdm_load_hist_record(struct tdm_load_hist *h, uint64_t ns)
{
	if (ns > TDM_LOAD_HIST_MAX_NS) {
		ns = TDM_LOAD_HIST_MAX_NS;
		h->clamped++;
	}
	h->counts[tdm_load_hist_bucket(ns)]++;
	h->count++;
	h->sum += (double)ns;
	if (ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
}

void tdm_load_hist_merge(struct tdm_load_hist *dst, const struct tdm_load_hist *src)
{
	if (src->count == 0)
		return;
	for (unsigned i = 0; i < TDM_LOAD_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->count += src->count;
	dst->clamped += src->clamped;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t tdm_load_hist_percentile(const struct tdm_load_hist *h, double pct)
{
	if (h->count == 0)
		return 0;
	if (pct < 0)
		pct = 0;
	if (pct > 100)
		pct = 100;
	uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->count + 0.5);
	uint64_t seen = 0;

	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (unsigned i = 0; i < TDM_LOAD_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t high = tdm_load_hist_bucket_high(i);
			return high < h->max ? high : h->max;
		}
	}
	return h->max; /* not reached: the buckets hold count values */
}

double tdm_load_hist_mean(const struct tdm_load_hist *h)
{
	return h->count != 0 ? h->sum / (double)h->count : 0;
}
