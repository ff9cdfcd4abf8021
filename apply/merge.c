/*
 * Merge mode of the store (multi-primary): last-writer-wins on (hlc, origin), tombstones, the
 * conflicts that last-writer-wins produces, and the purge of old tombstones. The rules and the
 * definition of a conflict are in tdm_apply.h ("The default store"); the tables are store.c's.
 *
 * A write meets at most one stored version of its key (the entry holds the greatest seen so
 * far, live or tombstone), so merging is one comparison: greater replaces, smaller is dropped,
 * equal is the same write again. That makes the final state of a key the greatest version of
 * all its records, whatever their order: the store (and so its digest) is a function of the
 * set of records applied.
 *
 * A tombstone is an ordinary entry with the deleted mark and no value, so it sits in the table
 * like any key: it costs a slot and a 16-byte + key block until tdm_store_purge_tombstones
 * drops it. It counts toward the table's load factor (tdm_store_full), not toward count,
 * data_bytes or the digest.
 *
 * Conflicts are rare by assumption: their recording (counters, per-origin table, the ring of
 * recent ones, the callback) is out of line and reads the clock at most once per lock hold
 * (the time is cached in the shard's merge state until tdm_store_unlock). All of it is written
 * by the shard's writer with the shard write-locked, and read by tdm_store_conflict_stats /
 * tdm_store_conflicts_recent under the read lock, so the ring needs no allocation and no
 * atomics of its own.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apply_pvt.h"

/* ---- Versions ---- */

/* Order of (hlc, origin) versions: < 0, 0, > 0. */
static inline int ver_cmp(uint64_t h1, uint16_t o1, uint64_t h2, uint16_t o2)
{
	if (h1 != h2)
		return h1 < h2 ? -1 : 1;
	return o1 == o2 ? 0 : o1 < o2 ? -1 : 1;
}

static inline uint32_t in_vlen(const struct tdm_store_in *in)
{
	return in->del ? 0 : in->vlen;
}

/* The stored version of e, for the callback. */
static struct tdm_store_version stored_version(const struct tdm_store_entry *e)
{
	return (struct tdm_store_version){ tdm_store_e_val(e), tdm_store_e_vlen(e), e->hlc,
					   tdm_store_e_origin(e), tdm_store_e_deleted(e) };
}

static struct tdm_store_version in_version(const struct tdm_store_in *in)
{
	const void *val = in->del || !in->val ? "" : in->val; /* never NULL for the callback */

	return (struct tdm_store_version){ val, in_vlen(in), in->hlc, in->origin, in->del };
}

/* ---- Conflicts (out of line: rare) ---- */

/* The counts of origin in m's table; NULL when the table is full of other origins. */
static struct tdm_store_origin_count *origin_count(struct tdm_store_merge *m, uint16_t origin)
{
	for (unsigned n = 0, i = origin % TDM_STORE_CONFLICT_ORIGINS;
	     n < TDM_STORE_CONFLICT_ORIGINS; n++, i = (i + 1) % TDM_STORE_CONFLICT_ORIGINS) {
		struct tdm_store_origin_count *c = &m->origins[i];

		if (!c->used) {
			c->used = true;
			c->origin = origin;
		}
		if (c->origin == origin)
			return c;
	}
	return NULL;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Count a conflict in m: the kind's counter and both origins'. */
static void count(struct tdm_store_merge *m, const struct tdm_store_conflict *c, bool in_window)
{
	struct tdm_store_origin_count *oc;

	if (c->kind == TDM_STORE_CONFLICT_STALE) {
		m->stale++;
		m->stale_in_window += in_window;
	} else {
		m->overwrites++;
	}
	if ((oc = origin_count(m, c->loser.origin)))
		oc->lost++;
	else
		m->other_lost++;
	if ((oc = origin_count(m, c->winner.origin)))
		oc->won++;
	else
		m->other_won++;
}

/* Keep a conflict in m's ring, over its oldest. */
static void ring_put(struct tdm_store_merge *m, const struct tdm_store_conflict *c,
		     bool in_window)
{
	struct tdm_store_conflict_rec *r = &m->ring[m->ring_head % TDM_STORE_CONFLICT_RING];
	const struct tdm_store_version *w = &c->winner, *l = &c->loser;

	if (!m->now) { /* never below the shard's previous conflict: the ring stays in order */
		uint64_t prev = m->ring_head ?
			m->ring[(m->ring_head - 1) % TDM_STORE_CONFLICT_RING].time_ns : 0;

		m->now = wall_ns();
		if (m->now < prev)
			m->now = prev;
	}
	r->time_ns = m->now;
	r->winner_hlc = w->hlc;
	r->loser_hlc = l->hlc;
	r->key_len = c->klen;
	r->winner_origin = w->origin;
	r->loser_origin = l->origin;
	r->kind = (uint8_t)c->kind;
	r->flags = (uint8_t)((c->kind == TDM_STORE_CONFLICT_OVERWRITE ?
			      TDM_STORE_CF_INCOMING_WON : 0) |
			     (w->deleted ? TDM_STORE_CF_WINNER_DELETED : 0) |
			     (l->deleted ? TDM_STORE_CF_LOSER_DELETED : 0) |
			     (in_window ? TDM_STORE_CF_IN_WINDOW : 0));
	memset(r->key, 0, sizeof(r->key));
	memcpy(r->key, c->key, c->klen < sizeof(r->key) ? c->klen : sizeof(r->key));
	m->ring_head++;
}

/* Count a conflict on sh, keep it in the ring, and hand it to the callback. */
static __attribute__((noinline, cold)) void
conflict(struct tdm_store *s, struct tdm_store_shard *sh, const struct tdm_store_conflict *c)
{
	/* The winner's hlc is never below the loser's: versions order on hlc first. */
	bool in_window = c->winner.origin != c->loser.origin &&
			 c->winner.hlc - c->loser.hlc <= s->window;

	count(sh->m, c, in_window);
	ring_put(sh->m, c, in_window);
	if (s->on_conflict)
		s->on_conflict(s->conflict_ctx, c);
}

/* in lost against the stored e (in is older): dropped. */
static void stale(struct tdm_store *s, struct tdm_store_shard *sh,
		  const struct tdm_store_in *in, const struct tdm_store_entry *e)
{
	struct tdm_store_conflict c = { TDM_STORE_CONFLICT_STALE, in->key, in->klen,
					(int)(sh - s->shards), stored_version(e),
					in_version(in) };

	conflict(s, sh, &c);
}

/* in replaces the stored e of another origin within the window. */
static void overwritten(struct tdm_store *s, struct tdm_store_shard *sh,
			const struct tdm_store_in *in, const struct tdm_store_entry *e)
{
	struct tdm_store_conflict c = { TDM_STORE_CONFLICT_OVERWRITE, in->key, in->klen,
					(int)(sh - s->shards), in_version(in),
					stored_version(e) };

	conflict(s, sh, &c);
}

/* ---- Writes (shard write-locked) ---- */

/* The counters of sh for a version entering (sign +1) or leaving (-1) the shard. */
static inline void account(struct tdm_store_shard *sh, uint64_t h, uint32_t klen,
			   const void *val, uint32_t vlen, bool deleted, int sign)
{
	if (deleted) {
		sh->tombs += (uint64_t)(int64_t)sign;
		return;
	}
	sh->digest += (uint64_t)(int64_t)sign * tdm_store_entry_hash(h, val, vlen);
	sh->count += (uint64_t)(int64_t)sign;
	sh->bytes += (uint64_t)(int64_t)sign * ((uint64_t)klen + vlen);
}

/* A new entry for in in the empty slot sl. */
static int insert(struct tdm_store_shard *sh, struct tdm_store_slot *sl, uint64_t h,
		  const struct tdm_store_in *in)
{
	uint32_t vlen = in_vlen(in);
	struct tdm_store_entry *e;

	if (TDM_APPLY_UNLIKELY(tdm_store_full(sh))) {
		if (tdm_store_grow(sh))
			return -ENOMEM;
		sl = tdm_store_find(sh, h, in->key, in->klen);
	}
	e = tdm_store_e_new(in->key, in->klen, vlen);
	if (!e)
		return -ENOMEM;
	tdm_store_e_set(e, in->klen, in->val, vlen, in->hlc, in->origin, in->del);
	sl->hash = h;
	sl->e = e;
	account(sh, h, in->klen, in->val, vlen, in->del, +1);
	return 0;
}

/* Replace the entry in sl by in (live or tombstone, either way), reusing its block when the
 * new size fits it well. On -ENOMEM nothing changed. */
static int replace(struct tdm_store_shard *sh, struct tdm_store_slot *sl,
		   const struct tdm_store_in *in)
{
	struct tdm_store_entry *e = sl->e;
	uint32_t klen = in->klen, old_vlen = tdm_store_e_vlen(e), vlen = in_vlen(in);

	account(sh, sl->hash, klen, tdm_store_e_val(e), old_vlen, tdm_store_e_deleted(e), -1);
	if (!tdm_store_block_fits(e, klen, old_vlen, vlen)) {
		struct tdm_store_entry *n = tdm_store_e_new(e->data, klen, vlen);

		if (!n) {
			account(sh, sl->hash, klen, tdm_store_e_val(e), old_vlen,
				tdm_store_e_deleted(e), +1);
			return -ENOMEM;
		}
		free(e);
		sl->e = e = n;
	}
	tdm_store_e_set(e, klen, in->val, vlen, in->hlc, in->origin, in->del);
	account(sh, sl->hash, klen, in->val, vlen, in->del, +1);
	return 0;
}

int tdm_store_merge_write(struct tdm_store *s, struct tdm_store_shard *sh, uint64_t h,
			  const struct tdm_store_in *in)
{
	struct tdm_store_slot *sl = tdm_store_find(sh, h, in->key, in->klen);
	const struct tdm_store_entry *e = sl->e;
	int c;

	if (!e)
		return insert(sh, sl, h, in);
	c = ver_cmp(in->hlc, in->origin, e->hlc, tdm_store_e_origin(e));
	if (TDM_APPLY_UNLIKELY(c <= 0)) {
		if (c < 0)
			stale(s, sh, in, e);
		return 0; /* c == 0: the same write again */
	}
	if (TDM_APPLY_UNLIKELY(tdm_store_e_origin(e) != in->origin &&
			       in->hlc - e->hlc <= s->window))
		overwritten(s, sh, in, e);
	return replace(sh, sl, in);
}

int tdm_store_load_version(struct tdm_store *s, const struct tdm_store_in *in)
{
	uint64_t h = tdm_apply_key_hash(in->key, in->klen);
	struct tdm_store_shard *sh = tdm_store_shard_of(s, h);
	struct tdm_store_slot *sl;
	int rc;

	tdm_store_lock(sh);
	sl = tdm_store_find(sh, h, in->key, in->klen);
	rc = sl->e ? replace(sh, sl, in) : insert(sh, sl, h, in);
	tdm_store_unlock(sh);
	return rc;
}

/* ---- Purge ---- */

/* Drop sh's tombstones older than before (write-locked). @return how many. */
static uint64_t purge_shard(struct tdm_store_shard *sh, uint64_t before)
{
	uint64_t n = 0;

	/* After a removal, slot j holds what tdm_store_remove_slot shifted back into it (or
	 * nothing): look at j again. Slots are only ever shifted towards j, from later in their
	 * cluster, so nothing not yet seen lands before j and nothing is looked at twice to no
	 * end: the loop ends after mask + 1 + (tombstones removed) steps. */
	for (uint64_t j = 0; j <= sh->mask && sh->tombs;) {
		struct tdm_store_entry *e = sh->slots[j].e;

		if (e && tdm_store_e_deleted(e) && e->hlc < before) {
			tdm_store_remove_slot(sh, &sh->slots[j]);
			free(e);
			sh->tombs--;
			n++;
			continue;
		}
		j++;
	}
	sh->m->purged += n;
	return n;
}

TDM_API uint64_t tdm_store_purge_tombstones(struct tdm_store *s, uint64_t hlc_before)
{
	uint64_t n = 0;

	if (!s->merge)
		return 0;
	for (int i = 0; i < s->nshards; i++) {
		struct tdm_store_shard *sh = &s->shards[i];

		tdm_store_lock(sh);
		n += purge_shard(sh, hlc_before);
		tdm_store_unlock(sh);
	}
	return n;
}

/* ---- Reading the conflicts ---- */

/* Add one origin's counts to out (by origin id; past its table, to other_*). */
static void add_origin(struct tdm_store_conflict_stats *out,
		       const struct tdm_store_origin_count *c)
{
	int i;

	for (i = 0; i < out->n_origins && out->origins[i].origin != c->origin; i++)
		;
	if (i == TDM_STORE_CONFLICT_ORIGINS) {
		out->other_lost += c->lost;
		out->other_won += c->won;
		return;
	}
	if (i == out->n_origins) {
		out->origins[i].origin = c->origin;
		out->n_origins++;
	}
	out->origins[i].lost += c->lost;
	out->origins[i].won += c->won;
}

TDM_API void tdm_store_conflict_stats(struct tdm_store *s, struct tdm_store_conflict_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!s->merge)
		return;
	for (int i = 0; i < s->nshards; i++) {
		struct tdm_store_shard *sh = &s->shards[i];
		const struct tdm_store_merge *m = sh->m;

		pthread_rwlock_rdlock(&sh->lock);
		out->stale += m->stale;
		out->stale_in_window += m->stale_in_window;
		out->overwrites += m->overwrites;
		out->purged += m->purged;
		out->other_lost += m->other_lost;
		out->other_won += m->other_won;
		for (int j = 0; j < TDM_STORE_CONFLICT_ORIGINS; j++)
			if (m->origins[j].used)
				add_origin(out, &m->origins[j]);
		pthread_rwlock_unlock(&sh->lock);
	}
}

/* A recent conflict with what orders it: time, then its shard's sequence number. */
struct recent {
	struct tdm_store_conflict_rec rec;
	uint64_t seq;
};

static int newest_first(const void *a, const void *b)
{
	const struct recent *x = a, *y = b;

	if (x->rec.time_ns != y->rec.time_ns)
		return x->rec.time_ns > y->rec.time_ns ? -1 : 1;
	return x->seq > y->seq ? -1 : x->seq < y->seq ? 1 : 0;
}

TDM_API int tdm_store_conflicts_recent(struct tdm_store *s, struct tdm_store_conflict_rec *out,
				       int cap)
{
	struct recent *all;
	size_t n = 0;

	if (!s->merge || cap <= 0)
		return 0;
	all = malloc(sizeof(*all) * TDM_STORE_CONFLICT_RING * (size_t)s->nshards);
	if (!all)
		return TDM_ERR(-ENOMEM, "no memory to copy out the recent conflicts");
	for (int i = 0; i < s->nshards; i++) {
		struct tdm_store_shard *sh = &s->shards[i];
		const struct tdm_store_merge *m = sh->m;
		uint64_t first;

		pthread_rwlock_rdlock(&sh->lock);
		first = m->ring_head > TDM_STORE_CONFLICT_RING ?
			m->ring_head - TDM_STORE_CONFLICT_RING : 0;
		for (uint64_t q = first; q < m->ring_head; q++, n++) {
			all[n].rec = m->ring[q % TDM_STORE_CONFLICT_RING];
			all[n].seq = q;
		}
		pthread_rwlock_unlock(&sh->lock);
	}
	qsort(all, n, sizeof(*all), newest_first);
	if (n > (size_t)cap)
		n = (size_t)cap;
	for (size_t i = 0; i < n; i++)
		out[i] = all[i].rec;
	free(all);
	return (int)n;
}
