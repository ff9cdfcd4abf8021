/*
 * The multi-primary oracle (see tmulti.h): every origin's log on disk merged last-writer-wins,
 * and the checks of every node and every copy of every origin against it.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tassert.h"
#include "tmulti.h"

uint32_t tmulti_value(int node, uint32_t seq, char *buf)
{
	return (uint32_t)snprintf(buf, TMULTI_VAL_CAP, "n%d-s%u", node + 1, seq);
}

void tmulti_wlog_add(struct tmulti_wlog *w, const struct tmulti_write *op)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 4096;
		w->v = realloc(w->v, w->cap * sizeof(*w->v));
		if (!w->v)
			abort();
	}
	w->v[w->n++] = *op;
}

/* ---- The oracle: every origin's log on disk, merged last-writer-wins ---- */

/** The greatest version of one key among every origin's records. */
struct ent {
	char key[TMULTI_KEY_CAP];
	uint8_t klen, used, del;
	uint8_t vlen;
	char val[TMULTI_VAL_CAP];
	uint16_t origin;
	uint16_t origins;  /**< bit per origin that wrote the key */
	uint64_t hlc;
};

struct table {
	struct ent *e;
	size_t cap, n;
};

static uint64_t key_hash(const void *key, uint32_t klen)
{
	const uint8_t *p = key;
	uint64_t h = 1469598103934665603ull;

	for (uint32_t i = 0; i < klen; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static struct ent *table_slot(struct table *t, const void *key, uint32_t klen)
{
	size_t i = (size_t)key_hash(key, klen) & (t->cap - 1);

	while (t->e[i].used && (t->e[i].klen != klen || memcmp(t->e[i].key, key, klen)))
		i = (i + 1) & (t->cap - 1);
	return &t->e[i];
}

/** A record's (position, length, checksum): to compare copies of an origin with the original. */
struct rsum {
	uint64_t pos;
	uint32_t len, crc;
	uint8_t type;
};

struct rsums {
	struct rsum *v;
	size_t n, cap;
	uint64_t end;  /**< where the log ends */
};

/* What one scan of an origin's own log found. */
struct own_scan {
	int node;
	const struct tmulti_wlog *w;
	size_t k;              /* next accepted write expected */
	uint64_t last_hlc;
	size_t foreign, unordered, mismatched;
	size_t lost;           /* unacknowledged writes the log does not hold (lost_from..) */
	char first_bad[240];
	struct table *t;
	struct rsums *sums;
};

static void note_bad(struct own_scan *s, size_t *counter, const struct tdm_log_rec *rec,
		     const char *what)
{
	if (!s->first_bad[0])
		snprintf(s->first_bad, sizeof(s->first_bad), "record at %" PRIu64 " (origin %u, hlc "
			 "%" PRIx64 ", key %.*s): %s", rec->hdr->position, rec->hdr->origin,
			 rec->hdr->hlc, (int)(rec->hdr->key_len < TMULTI_KEY_CAP ? rec->hdr->key_len : 0),
			 (const char *)rec->key, what);
	(*counter)++;
}

/* Is rec the write w->v[k]? */
static bool rec_is(const struct tdm_log_rec *rec, const struct tmulti_write *op, int node)
{
	char val[TMULTI_VAL_CAP];
	uint32_t vlen = op->del ? 0 : tmulti_value(node, op->seq, val);

	return rec->hdr->type == (op->del ? TDM_LOG_REC_DEL : TDM_LOG_REC_PUT) &&
	       rec->hdr->key_len == op->klen && !memcmp(rec->key, op->key, op->klen) &&
	       rec->hdr->value_len == vlen && (!vlen || !memcmp(rec->value, val, vlen));
}

static void merge(struct table *t, const struct tdm_log_rec *rec)
{
	const struct tdm_log_rec_hdr *h = rec->hdr;
	struct ent *e = table_slot(t, rec->key, h->key_len);

	if (!e->used) {
		memcpy(e->key, rec->key, h->key_len);
		e->klen = (uint8_t)h->key_len;
		e->used = 1;
		t->n++;
	} else if (h->hlc < e->hlc || (h->hlc == e->hlc && h->origin <= e->origin)) {
		e->origins |= (uint16_t)(1u << (h->origin & 15));
		return;
	}
	e->origins |= (uint16_t)(1u << (h->origin & 15));
	e->hlc = h->hlc;
	e->origin = h->origin;
	e->del = h->type == TDM_LOG_REC_DEL;
	e->vlen = (uint8_t)h->value_len;
	memcpy(e->val, rec->value, h->value_len);
}

static int own_rec(void *ctx, const struct tdm_log_rec *rec)
{
	struct own_scan *s = ctx;
	const struct tdm_log_rec_hdr *h = rec->hdr;
	struct rsums *r = s->sums;

	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 4096;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		if (!r->v)
			abort();
	}
	r->v[r->n++] = (struct rsum){ h->position, h->length, h->crc, h->type };
	if (h->type != TDM_LOG_REC_PUT && h->type != TDM_LOG_REC_DEL)
		return 0;
	if (h->origin != s->node + 1) {
		note_bad(s, &s->foreign, rec, "another origin's write in this node's own log");
		return 0;
	}
	if (h->hlc <= s->last_hlc)
		note_bad(s, &s->unordered, rec, "hlc not above the previous write's");
	s->last_hlc = h->hlc;
	if (s->k >= s->w->lost_from && s->k < s->w->lost_to &&
	    !rec_is(rec, &s->w->v[s->k], s->node)) {
		s->lost = s->w->lost_to - s->k;
		s->k = s->w->lost_to;
	}
	if (h->key_len >= TMULTI_KEY_CAP || h->value_len >= TMULTI_VAL_CAP || s->k >= s->w->n ||
	    !rec_is(rec, &s->w->v[s->k], s->node))
		note_bad(s, &s->mismatched, rec, s->k >= s->w->n ? "a write nobody issued" :
			 "not the write the node accepted next");
	else
		merge(s->t, rec);
	s->k++;
	return 0;
}

static void scan_own(struct tc_cluster *c, int i, const struct tmulti_wlog *w, uint64_t tail,
		     struct table *t, struct rsums *sums)
{
	struct own_scan s = { .node = i, .w = w, .t = t, .sums = sums };
	struct tdm_log_scan_report rep;
	char dir[400];
	int rc;

	snprintf(dir, sizeof(dir), "%s/log", c->data[i]);
	rc = tdm_log_scan(dir, c->o.cluster_id, 0, own_rec, &s, &rep);
	if (rc)
		fail_msg("node %d: scanning its log %s: %d: %s", i + 1, dir, rc, rep.error_text);
	sums->end = rep.end;
	if (s.foreign || s.unordered || s.mismatched)
		fail_msg("node %d's log: %zu foreign, %zu out of hlc order, %zu not as accepted; "
			 "first: %s", i + 1, s.foreign, s.unordered, s.mismatched, s.first_bad);
	if (s.k >= s.w->lost_from && s.k < s.w->lost_to) { /* the log ends inside the window */
		s.lost = s.w->lost_to - s.k;
		s.k = s.w->lost_to;
	}
	if (s.k != s.w->n)
		fail_msg("node %d accepted %zu writes, its log holds %zu", i + 1, s.w->n,
			 s.k - s.lost);
	if (s.w->lost_to > s.w->lost_from)
		print_message("node %d: %zu of its %zu writes unacknowledged at the kill are not in "
			      "its log\n", i + 1, s.lost, s.w->lost_to - s.w->lost_from);
	if (rep.start != 0)
		fail_msg("node %d's log starts at %" PRIu64 ": its oldest writes are gone (segments "
			 "too small for this test?)", i + 1, rep.start);
	if (rep.end < tail)
		fail_msg("node %d's log on disk ends at %" PRIu64 ", before its durable tail %" PRIu64,
			 i + 1, rep.end, tail);
}

/* ---- Copies of origins ---- */

struct copy_scan {
	const struct rsums *own;
	uint64_t upto;         /* the origin's tail at quiescence */
	size_t matched, bad;   /* records below upto identical to the origin's; others */
	uint64_t first_bad;
};

/* Each record of a copy below upto must be the origin's record at that position; past it (the
 * two logs were scanned at different times) either the origin's record or a NOOP tick. */
static int copy_rec(void *ctx, const struct tdm_log_rec *rec)
{
	struct copy_scan *s = ctx;
	const struct tdm_log_rec_hdr *h = rec->hdr;
	size_t lo = 0, hi = s->own->n;
	bool found, same;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (s->own->v[mid].pos < h->position)
			lo = mid + 1;
		else
			hi = mid;
	}
	found = lo < s->own->n && s->own->v[lo].pos == h->position;
	same = found && s->own->v[lo].len == h->length && s->own->v[lo].crc == h->crc;
	if (same && h->position < s->upto) {
		s->matched++;
	} else if (!same && (found || h->position < s->upto || h->type != TDM_LOG_REC_NOOP)) {
		if (!s->bad)
			s->first_bad = h->position;
		s->bad++;
	}
	return 0;
}

/* Node i's copy of node j's origin (DATA_DIR/origin-<id>) holds node j's records at their
 * positions up to upto, node j's tail at quiescence. */
static void check_copy(struct tc_cluster *c, int i, int j, const struct rsums *own,
		       uint64_t upto)
{
	struct copy_scan s = { .own = own, .upto = upto };
	struct tdm_log_scan_report rep;
	size_t want = 0;
	char dir[400];
	int rc;

	snprintf(dir, sizeof(dir), "%s/origin-%d", c->data[i], j + 1);
	rc = tdm_log_scan(dir, c->o.cluster_id, 0, copy_rec, &s, &rep);
	if (rc)
		fail_msg("node %d's copy of origin %d (%s): scan: %d: %s", i + 1, j + 1, dir, rc,
			 rep.error_text);
	for (size_t k = 0; k < own->n; k++)
		want += own->v[k].pos >= rep.start && own->v[k].pos < upto;
	if (s.bad || s.matched != want || rep.end < upto)
		fail_msg("node %d's copy of origin %d (%s) from %" PRIu64 " to %" PRIu64 ": %zu "
			 "records match, %zu differ (first at %" PRIu64 "); the origin's log has %zu "
			 "from there to its tail at quiescence, %" PRIu64 " (its log on disk ends at %"
			 PRIu64 ")", i + 1, j + 1, dir, rep.start, rep.end, s.matched, s.bad,
			 s.first_bad, want, upto, own->end);
}

/* ---- Checking the nodes against the oracle ---- */

#define MANY 4096 /* keys per get-many request */

/* Compare the values of t->e[from..to) (the used ones) on node i; count what differs. */
static size_t check_values_chunk(struct tc_cluster *c, int i, const struct table *t, size_t *at,
				 uint8_t *kbuf, uint8_t *out, uint32_t cap)
{
	const struct ent *which[MANY];
	uint32_t len = 0, out_len = 0, off = 0;
	size_t n = 0, bad = 0;
	int rc;

	for (; *at < t->cap && n < MANY; (*at)++) {
		const struct ent *e = &t->e[*at];
		uint16_t kl = e->klen;

		if (!e->used)
			continue;
		memcpy(kbuf + len, &kl, 2);
		memcpy(kbuf + len + 2, e->key, kl);
		len += 2u + kl;
		which[n++] = e;
	}
	if (!n)
		return 0;
	rc = tdm_ctl_get_many(c->data[i], kbuf, len, out, cap, &out_len);
	if (rc)
		fail_msg("node %d: get many: %d: %s", i + 1, rc, tdm_errmsg());
	for (size_t k = 0; k < n; k++) {
		const struct ent *e = which[k];
		int32_t code;
		uint32_t vlen;
		bool ok;

		if (off + 8 > out_len)
			fail_msg("node %d: get many answer cut short at key %zu of %zu", i + 1, k, n);
		memcpy(&code, out + off, 4);
		memcpy(&vlen, out + off + 4, 4);
		off += 8;
		if (vlen > out_len - off)
			fail_msg("node %d: get many: value of %u bytes past the answer's end", i + 1,
				 vlen);
		ok = e->del ? code == TDM_ERR_NOT_FOUND
			    : code == 0 && vlen == e->vlen && !memcmp(out + off, e->val, vlen);
		if (!ok && bad++ < 5)
			print_error("node %d: key %.*s: got %d \"%.*s\", want %s \"%.*s\" (hlc %"
				    PRIx64 " origin %u)\n", i + 1, e->klen, e->key, code,
				    code ? 0 : (int)(vlen < 64 ? vlen : 64), (const char *)out + off,
				    e->del ? "deleted" : "", e->vlen, e->val, e->hlc, e->origin);
		off += vlen; /* 0 unless found */
	}
	return bad;
}

static void check_values(struct tc_cluster *c, int i, const struct table *t)
{
	uint32_t cap = 1u << 20;
	uint8_t *kbuf = malloc((size_t)MANY * (TMULTI_KEY_CAP + 2)), *out = malloc(cap);
	size_t at = 0, bad = 0;

	assert_non_null(kbuf);
	assert_non_null(out);
	while (at < t->cap)
		bad += check_values_chunk(c, i, t, &at, kbuf, out, cap);
	free(kbuf);
	free(out);
	if (bad)
		fail_msg("node %d: %zu of %zu keys differ from the greatest (hlc, origin) write", i + 1,
			 bad, t->n);
}


/* Digest and count of the expected live contents, from a plain store. */
static void expected_digest(const struct table *t, uint64_t *digest, uint64_t *count)
{
	struct tdm_store *s;

	assert_ok(tdm_store_create(1, &s));
	for (size_t k = 0; k < t->cap; k++) {
		const struct ent *e = &t->e[k];

		if (e->used && !e->del)
			assert_ok(tdm_store_put(s, e->key, e->klen, e->val, e->vlen, e->hlc,
						e->origin));
	}
	*digest = tdm_store_digest(s);
	*count = tdm_store_count(s);
	tdm_store_destroy(s);
}

static void summarize(const struct table *t, struct tmulti_outcome *o)
{
	for (size_t k = 0; k < t->cap; k++) {
		const struct ent *e = &t->e[k];

		if (!e->used)
			continue;
		o->keys++;
		o->live += !e->del;
		o->deleted += e->del;
		o->multi_origin += (e->origins & (e->origins - 1)) != 0;
	}
}

void tmulti_check_converged(struct tc_cluster *c, const struct tmulti_wlog *issued,
			    const char *label, struct tmulti_outcome *o)
{
	struct table t = { .cap = 1u << 18 };
	struct rsums sums[TMULTI_NODES];
	uint64_t want_digest, want_keys, tails[TC_MAX_NODES];

	memset(o, 0, sizeof(*o));
	memset(sums, 0, sizeof(sums));
	assert_ok(tc_wait_quiescent(c, tails));
	t.e = calloc(t.cap, sizeof(*t.e));
	assert_non_null(t.e);
	for (int i = 0; i < TMULTI_NODES; i++)
		scan_own(c, i, &issued[i], tails[i], &t, &sums[i]);
	expected_digest(&t, &want_digest, &want_keys);
	for (int i = 0; i < TMULTI_NODES; i++) {
		uint64_t d, applied, keys;

		assert_ok(tc_digest(c, i, &d, &applied, &keys));
		if (d != want_digest || keys != want_keys)
			fail_msg("node %d: digest %016" PRIx64 " with %" PRIu64 " keys, the oracle's "
				 "%016" PRIx64 " with %" PRIu64 " keys", i + 1, d, keys, want_digest,
				 want_keys);
	}
	for (int i = 0; i < TMULTI_NODES; i++)
		check_values(c, i, &t);
	for (int i = 0; i < TMULTI_NODES; i++)
		for (int j = 0; j < TMULTI_NODES; j++)
			if (j != i)
				check_copy(c, i, j, &sums[j], tails[j]);
	summarize(&t, o);
	for (int i = 0; i < TMULTI_NODES; i++) {
		assert_ok(tc_status(c, i, &o->st[i]));
		o->conflicts += o->st[i].conflicts_stale + o->st[i].conflicts_overwrites;
	}
	print_message("%s: %zu + %zu + %zu writes; %zu keys (%zu live, %zu deleted, %zu written by "
		      "several nodes); digest %016" PRIx64 " on every node; conflicts (stale + "
		      "overwrites) %" PRIu64 "/%" PRIu64 ", %" PRIu64 "/%" PRIu64 ", %" PRIu64 "/%"
		      PRIu64 "\n", label, issued[0].n, issued[1].n, issued[2].n, o->keys, o->live,
		      o->deleted, o->multi_origin, want_digest, o->st[0].conflicts_stale,
		      o->st[0].conflicts_overwrites, o->st[1].conflicts_stale,
		      o->st[1].conflicts_overwrites, o->st[2].conflicts_stale,
		      o->st[2].conflicts_overwrites);
	for (int i = 0; i < TMULTI_NODES; i++)
		free(sums[i].v);
	free(t.e);
}
