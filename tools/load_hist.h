/*
 * tandem-load: the latency histogram.
 *
 * HdrHistogram-like log-linear buckets over nanoseconds: values below 128 ns have a bucket each
 * (exact); above, every power of two [2^m, 2^(m+1)) is cut into 128 equal buckets, so a bucket
 * is at most 1/128 (0.8%) of the values in it wide. Values above TDM_LOAD_HIST_MAX_NS (100 s)
 * are recorded as 100 s and counted in `clamped`. Fixed memory (about 31 KiB), no allocation:
 * recording is one index computation and one increment, fit for the load loop.
 */
#ifndef TDM_LOAD_HIST_H
#define TDM_LOAD_HIST_H

#include <stdint.h>

#define TDM_LOAD_HIST_SUB_BITS 7
#define TDM_LOAD_HIST_SUB (1u << TDM_LOAD_HIST_SUB_BITS) /**< buckets per power of two */
#define TDM_LOAD_HIST_MAX_NS 100000000000ull             /**< 100 s: larger values clamp */
#define TDM_LOAD_HIST_TOP_BIT 36                         /**< highest bit of the largest value */
/** exact buckets below TDM_LOAD_HIST_SUB, then TDM_LOAD_HIST_SUB per power of two up to 2^37
 *  (the buckets above 100 s's stay empty: values clamp before them) */
#define TDM_LOAD_HIST_BUCKETS \
	(TDM_LOAD_HIST_SUB * (TDM_LOAD_HIST_TOP_BIT - TDM_LOAD_HIST_SUB_BITS + 2))

struct tdm_load_hist {
	uint64_t count;   /**< values recorded */
	uint64_t min;     /**< smallest value (UINT64_MAX when empty) */
	uint64_t max;     /**< largest value, after clamping (0 when empty) */
	uint64_t clamped; /**< values above TDM_LOAD_HIST_MAX_NS, recorded as that */
	double sum;       /**< of the values after clamping, for the mean */
	uint64_t counts[TDM_LOAD_HIST_BUCKETS];
};

/** Empty h (also how to initialise one). */
void tdm_load_hist_reset(struct tdm_load_hist *h);

/** Record one value in nanoseconds. */
void tdm_load_hist_record(struct tdm_load_hist *h, uint64_t ns);

/** Add every value of src to dst. */
void tdm_load_hist_merge(struct tdm_load_hist *dst, const struct tdm_load_hist *src);

/**
 * The value at percentile pct (0..100): the value of rank round(pct / 100 * count), at least
 * rank 1, reported as the highest value its bucket holds but never above max. It is never below
 * the true value of that rank and at most 1/128 of it above.
 * @return nanoseconds; 0 when h is empty.
 */
uint64_t tdm_load_hist_percentile(const struct tdm_load_hist *h, double pct);

/** Mean of the recorded values in nanoseconds; 0 when h is empty. */
double tdm_load_hist_mean(const struct tdm_load_hist *h);

/** Bucket of a value (clamped first), and the highest value a bucket holds: for tests. */
unsigned tdm_load_hist_bucket(uint64_t ns);
uint64_t tdm_load_hist_bucket_high(unsigned bucket);

#endif /* TDM_LOAD_HIST_H */
