/*
 * cmocka tests of apply/'s multi-primary pieces: the hybrid logical clock, the store's merge
 * mode (last-writer-wins on (hlc, origin), tombstones and their purge), conflict counting, the
 * conflict callback and the ring of recent conflicts, and merge-mode snapshots.
 *
 * The central check is against a model: for every key, the record with the greatest (hlc,
 * origin) wins, and a delete that wins leaves the key absent (a tombstone with that version).
 * Record sets come from fixed seeds; permutations from a seeded shuffle; every loop is bounded.
 *
 * Usage: test_merge [unit]. The log fixture (temp dir, shm name) comes from tlog_util.c; stores
 * and apply objects are freed by teardown, also after a failed assertion.
 */
#include "tlog.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tdm_apply.h"

#define MIB (1024u * 1024)
#define NSTORES 8

/* ---- Fixture ---- */

struct mfx {
	struct tlog_fx *lfx;
	struct tdm_store *stores[NSTORES];
	struct tdm_apply *apps[4];
};

static int mfx_setup(void **state)
{
	struct mfx *fx = calloc(1, sizeof(*fx));

	if (!fx || tlog_setup(state)) {
		free(fx);
		return -1;
	}
	fx->lfx = *state;
	*state = fx;
	return 0;
}

static int mfx_teardown(void **state)
{
	struct mfx *fx = *state;

	for (int i = 0; i < 4; i++)
		tdm_apply_destroy(fx->apps[i]);
	for (int i = 0; i < NSTORES; i++)
		tdm_store_destroy(fx->stores[i]);
	*state = fx->lfx;
	free(fx);
	return tlog_teardown(state);
}

/* A store in slot i (an older one there is destroyed first). */
static struct tdm_store *store_at(struct mfx *fx, int i, int shards, bool merge,
				  tdm_store_conflict_fn fn, void *ctx)
{
	struct tdm_store_config c;

	tdm_store_destroy(fx->stores[i]);
	fx->stores[i] = NULL;
	tdm_store_config_defaults(&c);
	c.shards = shards;
	c.merge = merge;
	c.conflict_window_ns = 1000;
	c.on_conflict = fn;
	c.conflict_ctx = ctx;
	assert_ok(tdm_store_create_cfg(&c, &fx->stores[i]));
	return fx->stores[i];
}

static uint64_t rnd(uint64_t *s)
{
	*s += 0x9E3779B97F4A7C15ull;
	return tlog_mix(*s);
}

/* ---- Record sets and the model ---- */

#define MAX_RECS 512
#define MAX_KEYS 64

struct mrec {
	uint8_t type;   /* TDM_LOG_REC_PUT or _DEL */
	uint32_t key;   /* key index */
	uint64_t hlc;
	uint16_t origin;
	uint32_t vlen;
	uint8_t val[24];
};

/* Key of index k: "key.<k>." then 0..20 bytes derived from k. @return its length. */
static uint32_t key_of(uint32_t k, uint8_t *buf)
{
	int n = snprintf((char *)buf, 16, "key.%u.", k);
	uint32_t extra = (uint32_t)(tlog_mix(k + 99) % 21);

	tlog_bytes(0x6B6579, k, buf + n, extra);
	return (uint32_t)n + extra;
}

/* n records from 3 origins over nkeys keys: each origin's hlcs rise by 1..4 from a common
 * start (so hlcs of different origins collide and origin breaks ties); ~30% deletes. */
static uint32_t make_set(uint64_t seed, uint32_t n, uint32_t nkeys, struct mrec *out)
{
	uint64_t s = seed, hlc[3] = { 1000, 1000, 1000 };

	for (uint32_t i = 0; i < n; i++) {
		struct mrec *r = &out[i];
		uint64_t x = rnd(&s);
		int o = (int)(x % 3);

		hlc[o] += 1 + (x >> 8) % 4;
		r->origin = (uint16_t)(o + 1);
		r->hlc = hlc[o];
		r->key = (uint32_t)((x >> 16) % nkeys);
		r->type = (x >> 32) % 100 < 30 ? TDM_LOG_REC_DEL : TDM_LOG_REC_PUT;
		r->vlen = r->type == TDM_LOG_REC_PUT ? (uint32_t)((x >> 40) % 25) : 0;
		tlog_bytes(seed, i, r->val, r->vlen);
	}
	return n;
}

static void shuffle(struct mrec *r, uint32_t n, uint64_t seed)
{
	uint64_t s = seed;

	for (uint32_t i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(rnd(&s) % (i + 1));
		struct mrec t = r[i];

		r[i] = r[j];
		r[j] = t;
	}
}

static bool greater(const struct mrec *a, const struct mrec *b)
{
	return a->hlc != b->hlc ? a->hlc > b->hlc : a->origin > b->origin;
}

/* The model: per key, the index of its greatest record (-1: none). */
static void model(const struct mrec *r, uint32_t n, int *best)
{
	for (uint32_t k = 0; k < MAX_KEYS; k++)
		best[k] = -1;
	for (uint32_t i = 0; i < n; i++)
		if (best[r[i].key] < 0 || greater(&r[i], &r[best[r[i].key]]))
			best[r[i].key] = (int)i;
}

static void apply_rec(struct tdm_store *s, const struct mrec *r)
{
	uint8_t key[40];
	uint32_t kl = key_of(r->key, key);

	if (r->type == TDM_LOG_REC_PUT)
		assert_ok(tdm_store_put(s, key, kl, r->val, r->vlen, r->hlc, r->origin));
	else
		assert_ok(tdm_store_del_at(s, key, kl, r->hlc, r->origin));
}

/* foreach_all callback: the entry is the model's winner of its key (tombstones included). */
struct all_ctx {
	const struct mrec *r;
	const int *best;
	uint32_t nkeys;
	uint64_t live, tombs;
};

static int check_version(void *ctx, const void *key, uint32_t klen,
			 const struct tdm_store_version *v)
{
	struct all_ctx *c = ctx;
	uint8_t kb[40];

	for (uint32_t k = 0; k < c->nkeys; k++) {
		const struct mrec *w;

		if (key_of(k, kb) != klen || memcmp(kb, key, klen))
			continue;
		if (c->best[k] < 0)
			return 1;
		w = &c->r[c->best[k]];
		if (v->hlc != w->hlc || v->origin != w->origin ||
		    v->deleted != (w->type == TDM_LOG_REC_DEL) || v->vlen != w->vlen ||
		    (v->vlen && memcmp(v->val, w->val, v->vlen)))
			return 2;
		if (v->deleted)
			c->tombs++;
		else
			c->live++;
		return 0;
	}
	return 3; /* a key the set does not have */
}

/* s holds exactly the model of r[0..n): live winners readable, deleted winners absent and
 * kept as tombstones, counters and digest as a plain store of the live winners. */
static void assert_model(struct mfx *fx, struct tdm_store *s, const struct mrec *r, uint32_t n,
			 uint32_t nkeys)
{
	int best[MAX_KEYS];
	struct tdm_store *ref = store_at(fx, NSTORES - 1, 1, false, NULL, NULL);
	struct all_ctx c = { r, best, nkeys, 0, 0 };
	uint64_t tombs = 0;
	uint8_t key[40], buf[64];

	model(r, n, best);
	for (uint32_t k = 0; k < nkeys; k++) {
		const struct mrec *w = best[k] < 0 ? NULL : &r[best[k]];
		uint32_t kl = key_of(k, key), vlen = 0;
		uint64_t hlc = 0;
		uint16_t origin = 0;
		int rc = tdm_store_get(s, key, kl, buf, sizeof(buf), &vlen, &hlc, &origin);

		if (!w || w->type == TDM_LOG_REC_DEL) {
			assert_rc(rc, TDM_ERR_NOT_FOUND);
			tombs += w != NULL;
			continue;
		}
		assert_ok(rc);
		assert_u64(vlen, w->vlen);
		assert_memory_equal(buf, w->val, vlen);
		assert_u64(hlc, w->hlc);
		assert_u64(origin, w->origin);
		assert_ok(tdm_store_put(ref, key, kl, w->val, w->vlen, w->hlc, w->origin));
	}
	assert_u64(tdm_store_count(s), tdm_store_count(ref));
	assert_u64(tdm_store_data_bytes(s), tdm_store_data_bytes(ref));
	assert_u64(tdm_store_digest(s), tdm_store_digest(ref));
	assert_u64(tdm_store_tombstones(s), tombs);
	assert_rc(tdm_store_foreach_all(s, check_version, &c), 0);
	assert_u64(c.live, tdm_store_count(ref));
	assert_u64(c.tombs, tombs);
}

/* ---- Hybrid logical clock ---- */

static void test_hlc_now(void **state)
{
	struct tdm_hlc c;
	uint64_t t, prev;

	tdm_hlc_init(&c, 0);
	t = tdm_hlc_now(&c, 1000000);
	assert_u64(t, 1000000 & ~255ull); /* the tick, logical 0 */
	assert_u64(tdm_hlc_wall(t), 999936);
	assert_u64(tdm_hlc_logical(t), 0);
	assert_u64(tdm_hlc_now(&c, 1000000), t + 1); /* same tick: the counter */
	assert_u64(tdm_hlc_logical(tdm_hlc_now(&c, 1000100)), 2);
	/* The wall clock steps back: still strictly increasing. */
	prev = tdm_hlc_now(&c, 5);
	assert_u64(prev, t + 3);
	/* A new tick resets the counter. */
	t = tdm_hlc_now(&c, 2000000);
	assert_u64(t, 2000000 & ~255ull);
	/* More stamps in one tick than the counter holds carry into the physical part and stay
	 * in order. */
	prev = t;
	for (int i = 0; i < 1000; i++) {
		uint64_t x = tdm_hlc_now(&c, 2000000);

		assert_true(x == prev + 1);
		prev = x;
	}
	assert_true(tdm_hlc_wall(prev) > tdm_hlc_wall(t));
	assert_u64(tdm_hlc_last(&c), prev);
	/* A restart from the log's greatest timestamp cannot reissue older ones. */
	tdm_hlc_init(&c, 5000000);
	assert_u64(tdm_hlc_now(&c, 1000), 5000001);
}

static void test_hlc_observe(void **state)
{
	struct tdm_hlc c;
	uint64_t wall = 10000000, last;

	tdm_hlc_init(&c, 0);
	tdm_hlc_now(&c, wall);
	/* A remote stamp within the offset moves the clock past it. */
	assert_ok(tdm_hlc_observe(&c, wall + 4000, wall, 5000));
	assert_u64(tdm_hlc_last(&c), wall + 4000);
	assert_u64(tdm_hlc_now(&c, wall), wall + 4001);
	/* Exactly at the bound is accepted; past it is refused and leaves the clock alone. */
	assert_ok(tdm_hlc_observe(&c, wall + 5000, wall, 5000));
	last = tdm_hlc_last(&c);
	assert_rc(tdm_hlc_observe(&c, wall + 5001, wall, 5000), TDM_ERR_CLOCK_AHEAD);
	assert_rc(tdm_hlc_observe(&c, UINT64_MAX, wall, 5000), TDM_ERR_CLOCK_AHEAD);
	assert_u64(tdm_hlc_last(&c), last);
	assert_u64(tdm_hlc_now(&c, wall), last + 1);
	/* A remote stamp behind changes nothing. */
	last = tdm_hlc_last(&c);
	assert_ok(tdm_hlc_observe(&c, 17, wall, 5000));
	assert_u64(tdm_hlc_last(&c), last);
	/* wall + offset past 2^64 saturates instead of wrapping to a small bound. */
	assert_ok(tdm_hlc_observe(&c, UINT64_MAX - 10, UINT64_MAX - 100, 1000));
	assert_u64(tdm_hlc_last(&c), UINT64_MAX - 10);
}

#define HLC_THREADS 4
#define HLC_STAMPS 50000

struct hlc_thread {
	struct tdm_hlc *c;
	int index;
	uint64_t *out;
	int ok;
};

static void *hlc_stamper(void *arg)
{
	struct hlc_thread *t = arg;
	uint64_t prev = 0;

	t->ok = 1;
	for (int i = 0; i < HLC_STAMPS; i++) {
		uint64_t wall = 1000000000ull + (uint64_t)i * 3; /* this thread's own slow clock */

		if (t->index == 0 && i % 100 == 50) { /* one thread also observes a peer ahead */
			uint64_t remote = tdm_hlc_last(t->c) + 700;

			if (tdm_hlc_observe(t->c, remote, wall, UINT64_MAX / 2))
				t->ok = 0;
			t->out[i] = tdm_hlc_now(t->c, wall);
			if (t->out[i] <= remote)
				t->ok = 0;
		} else {
			t->out[i] = tdm_hlc_now(t->c, wall);
		}
		if (t->out[i] <= prev)
			t->ok = 0;
		prev = t->out[i];
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Several threads stamping through one clock: each sees its stamps rise, no stamp repeats. */
static void test_hlc_threads(void **state)
{
	struct mfx *fx = *state;
	uint64_t *all = tlog_alloc(fx->lfx, sizeof(uint64_t) * HLC_THREADS * HLC_STAMPS);
	struct hlc_thread t[HLC_THREADS];
	pthread_t th[HLC_THREADS];
	struct tdm_hlc c;

	assert_non_null(all);
	tdm_hlc_init(&c, 0);
	for (int i = 0; i < HLC_THREADS; i++) {
		t[i] = (struct hlc_thread){ &c, i, all + (size_t)i * HLC_STAMPS, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, hlc_stamper, &t[i]), 0);
	}
	for (int i = 0; i < HLC_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(t[i].ok, 1);
	}
	qsort(all, HLC_THREADS * HLC_STAMPS, sizeof(uint64_t), cmp_u64);
	for (size_t i = 1; i < HLC_THREADS * HLC_STAMPS; i++)
		assert_true(all[i] > all[i - 1]);
	assert_u64(tdm_hlc_last(&c), all[HLC_THREADS * HLC_STAMPS - 1]);
}

/* ---- Merge mode: order independence ---- */

/* Every permutation of a record set with shared keys, puts and deletes from 3 origins gives
 * the model's store and digest, whatever the shard count. */
static void test_merge_permutations(void **state)
{
	struct mfx *fx = *state;
	static struct mrec set[MAX_RECS], perm[MAX_RECS];
	static const uint32_t sizes[][2] = { { 120, 16 }, { 400, 48 }, { 60, 3 } };

	for (int v = 0; v < 3; v++) {
		uint32_t n = make_set(0x5EED + (uint64_t)v, sizes[v][0], sizes[v][1], set);
		uint64_t digest = 0;

		for (int p = 0; p < 150; p++) {
			struct tdm_store *s = store_at(fx, 0, 1 + p % 4, true, NULL, NULL);

			memcpy(perm, set, sizeof(set[0]) * n);
			if (p)
				shuffle(perm, n, 0xC0FFEE ^ ((uint64_t)v << 32) ^ (uint64_t)p);
			for (uint32_t i = 0; i < n; i++)
				apply_rec(s, &perm[i]);
			if (!p)
				digest = tdm_store_digest(s);
			assert_u64(tdm_store_digest(s), digest);
			if (p % 10 == 0)
				assert_model(fx, s, set, n, sizes[v][1]);
		}
	}
}

/* The same through the apply pipeline: a shuffled set in a log, 1, 2 and 4 workers. */
static void test_merge_apply_sink(void **state)
{
	struct mfx *fx = *state;
	static struct mrec set[MAX_RECS];
	uint32_t n = make_set(77, 400, 40, set);
	struct tdm_log_config lc;
	struct tdm_log *log;
	uint8_t key[40];
	static const int workers[] = { 1, 2, 4 };

	tlog_config(fx->lfx, &lc, 1 * MIB, 1 * MIB);
	assert_ok(tlog_open(fx->lfx, &lc, &log));
	shuffle(set, n, 99);
	for (uint32_t i = 0; i < n; i++) {
		struct tdm_log_entry e = { .type = set[i].type, .origin = set[i].origin,
					   .hlc = set[i].hlc, .key = key,
					   .key_len = key_of(set[i].key, key),
					   .value = set[i].vlen ? set[i].val : NULL,
					   .value_len = set[i].vlen };

		assert_ok(tlog_append(log, &e, NULL, NULL));
	}
	for (int w = 0; w < 3; w++) {
		struct tdm_store *s = store_at(fx, 1 + w, workers[w], true, NULL, NULL);
		struct tdm_apply_config cfg;
		int idle = 0;

		tdm_apply_config_defaults(&cfg);
		cfg.log = log;
		cfg.workers = workers[w];
		cfg.batch = 7; /* many batches: the cached conflict time is reset between them */
		tdm_store_sink(s, &cfg.sink);
		assert_ok(tdm_apply_create(&cfg, &fx->apps[w]));
		while (tdm_apply_applied(fx->apps[w]) < tdm_log_tail(log) && idle < 3) {
			int work = tdm_apply_dispatch_do_work(fx->apps[w]);

			assert_true(work >= 0);
			for (int i = 0; i < workers[w]; i++) {
				int rc = tdm_apply_worker_do_work(fx->apps[w], i);

				assert_true(rc >= 0);
				work += rc;
			}
			idle = work ? 0 : idle + 1;
		}
		assert_u64(tdm_apply_applied(fx->apps[w]), tdm_log_tail(log));
		assert_model(fx, s, set, n, 40);
	}
}

/* ---- Merge mode: deletes, idempotence, purge ---- */

struct seen {
	int calls;
	struct tdm_store_conflict last;
	uint8_t key[64], wval[64], lval[64];
	pthread_t thread;
};

static void on_conflict(void *ctx, const struct tdm_store_conflict *c)
{
	struct seen *s = ctx;

	s->calls++;
	s->last = *c;
	s->thread = pthread_self();
	memcpy(s->key, c->key, c->klen < 64 ? c->klen : 64);
	memcpy(s->wval, c->winner.val, c->winner.vlen < 64 ? c->winner.vlen : 64);
	memcpy(s->lval, c->loser.val, c->loser.vlen < 64 ? c->loser.vlen : 64);
	s->last.key = s->key;
	s->last.winner.val = s->wval;
	s->last.loser.val = s->lval;
}

static void assert_absent(struct tdm_store *s, const char *key)
{
	uint32_t vlen;

	assert_rc(tdm_store_get(s, key, (uint32_t)strlen(key), NULL, 0, &vlen, NULL, NULL),
		  TDM_ERR_NOT_FOUND);
}

static void assert_value(struct tdm_store *s, const char *key, const char *val, uint64_t hlc,
			 uint16_t origin)
{
	uint8_t buf[64];
	uint32_t vlen = 0;
	uint64_t h = 0;
	uint16_t o = 0;

	assert_ok(tdm_store_get(s, key, (uint32_t)strlen(key), buf, sizeof(buf), &vlen, &h, &o));
	assert_u64(vlen, strlen(val));
	assert_memory_equal(buf, val, vlen);
	assert_u64(h, hlc);
	assert_u64(o, origin);
}

/* A delete and a put close in time, in both orders: the greater version wins either way. */
static void test_merge_delete_vs_put(void **state)
{
	struct mfx *fx = *state;

	for (int order = 0; order < 2; order++) {
		struct seen seen = { 0 };
		struct tdm_store *s = store_at(fx, 0, 2, true, on_conflict, &seen);
		struct tdm_store_conflict_stats st;

		/* The delete is newer: the key ends absent, as a tombstone. */
		if (order == 0) {
			assert_ok(tdm_store_put(s, "k", 1, "put", 3, 100, 2));
			assert_ok(tdm_store_del_at(s, "k", 1, 101, 1));
		} else {
			assert_ok(tdm_store_del_at(s, "k", 1, 101, 1));
			assert_ok(tdm_store_put(s, "k", 1, "put", 3, 100, 2));
		}
		assert_absent(s, "k");
		assert_u64(tdm_store_count(s), 0);
		assert_u64(tdm_store_tombstones(s), 1);
		assert_u64(tdm_store_digest(s), 0);
		assert_int_equal(seen.calls, 1);
		assert_true(seen.last.winner.deleted);
		assert_false(seen.last.loser.deleted);
		assert_u64(seen.last.winner.hlc, 101);
		assert_u64(seen.last.loser.hlc, 100);
		assert_int_equal(seen.last.kind, order == 0 ? TDM_STORE_CONFLICT_OVERWRITE
							    : TDM_STORE_CONFLICT_STALE);
		tdm_store_conflict_stats(s, &st);
		assert_u64(st.overwrites, order == 0);
		assert_u64(st.stale, order == 1);
		assert_u64(st.stale_in_window, order == 1);

		/* Same hlc: the origin decides (the put's origin 2 beats the delete's 1). */
		if (order == 0) {
			assert_ok(tdm_store_del_at(s, "t", 1, 500, 1));
			assert_ok(tdm_store_put(s, "t", 1, "tie", 3, 500, 2));
		} else {
			assert_ok(tdm_store_put(s, "t", 1, "tie", 3, 500, 2));
			assert_ok(tdm_store_del_at(s, "t", 1, 500, 1));
		}
		assert_value(s, "t", "tie", 500, 2);
		assert_u64(tdm_store_count(s), 1);
		assert_u64(tdm_store_tombstones(s), 1);
		assert_int_equal(seen.calls, 2);

		/* A delete of a key never seen leaves a tombstone that an older put cannot pass. */
		assert_ok(tdm_store_del_at(s, "never", 5, 900, 3));
		assert_ok(tdm_store_put(s, "never", 5, "old", 3, 10, 3));
		assert_absent(s, "never");
		assert_u64(tdm_store_tombstones(s), 2);
		/* A newer put brings a deleted key back. */
		assert_ok(tdm_store_put(s, "never", 5, "new", 3, 901, 3));
		assert_value(s, "never", "new", 901, 3);
		assert_u64(tdm_store_tombstones(s), 1);
	}
	/* The plain mode keeps its rules: the last applied wins, del needs no version. */
	struct tdm_store *p = store_at(fx, 1, 1, false, NULL, NULL);

	assert_ok(tdm_store_put(p, "k", 1, "new", 3, 200, 1));
	assert_ok(tdm_store_put(p, "k", 1, "old", 3, 100, 2));
	assert_value(p, "k", "old", 100, 2);
	assert_ok(tdm_store_del_at(p, "k", 1, 50, 1));
	assert_absent(p, "k");
	assert_u64(tdm_store_tombstones(p), 0);
	assert_u64(tdm_store_purge_tombstones(p, UINT64_MAX), 0);
	assert_rc(tdm_store_del(fx->stores[0], "k", 1), -EINVAL);
}

/* Applying records again (the whole set, or each twice in a row) changes nothing; equal
 * versions are not conflicts. */
static void test_merge_idempotent(void **state)
{
	struct mfx *fx = *state;
	static struct mrec set[MAX_RECS];
	uint32_t n = make_set(4242, 200, 20, set);
	int best[MAX_KEYS];
	struct seen seen = { 0 };
	struct tdm_store *s = store_at(fx, 0, 3, true, on_conflict, &seen);
	struct tdm_store *d = store_at(fx, 1, 2, true, NULL, NULL);
	struct tdm_store_conflict_stats st;
	uint64_t digest;
	int calls;

	for (uint32_t i = 0; i < n; i++)
		apply_rec(s, &set[i]);
	digest = tdm_store_digest(s);
	for (uint32_t i = 0; i < n; i++) {
		apply_rec(s, &set[n - 1 - i]);
		apply_rec(d, &set[i]);
		apply_rec(d, &set[i]);
	}
	assert_u64(tdm_store_digest(s), digest);
	assert_u64(tdm_store_digest(d), digest);
	assert_model(fx, s, set, n, 20);
	assert_model(fx, d, set, n, 20);
	/* The winners once more: no conflict (the losers again would count again: the store keeps
	 * no history of what lost). */
	model(set, n, best);
	calls = seen.calls;
	tdm_store_conflict_stats(s, &st);
	for (uint32_t k = 0; k < 20; k++)
		if (best[k] >= 0)
			apply_rec(s, &set[best[k]]);
	assert_int_equal(seen.calls, calls);
	assert_u64(tdm_store_digest(s), digest);
}

/* foreach_all: count the tombstones; each must be at hlc 23 or later. */
static int tomb_at_least_23(void *ctx, const void *key, uint32_t klen,
			    const struct tdm_store_version *v)
{
	if (!v->deleted)
		return 0;
	++*(uint64_t *)ctx;
	return v->hlc < 23;
}

/* Purge drops tombstones below the bound only; contents and digest do not move. */
static void test_merge_purge(void **state)
{
	struct mfx *fx = *state;
	struct tdm_store *s = store_at(fx, 0, 2, true, NULL, NULL);
	struct tdm_store_conflict_stats st;
	uint8_t key[40];
	uint64_t digest, early = 0, seen_tombs = 0;
	const uint32_t n = 20000;

	assert_ok(tdm_store_del_at(s, "a", 1, 100, 1));
	assert_ok(tdm_store_del_at(s, "b", 1, 200, 1));
	assert_ok(tdm_store_put(s, "c", 1, "live", 4, 50, 1));
	digest = tdm_store_digest(s);
	assert_u64(tdm_store_purge_tombstones(s, 100), 0); /* strictly below the bound */
	assert_u64(tdm_store_purge_tombstones(s, 101), 1);
	assert_u64(tdm_store_tombstones(s), 1);
	assert_u64(tdm_store_count(s), 1);
	assert_u64(tdm_store_digest(s), digest);
	/* The purged key has no memory of its delete: an older put brings it back (the engine's
	 * bound makes sure none comes); the kept tombstone still wins. */
	assert_ok(tdm_store_put(s, "a", 1, "resurrected", 11, 90, 2));
	assert_value(s, "a", "resurrected", 90, 2);
	assert_ok(tdm_store_put(s, "b", 1, "old", 3, 150, 2));
	assert_absent(s, "b");

	/* Many tombstones among many live keys (tables that doubled, long clusters): a purge
	 * removes exactly the tombstones and every live key stays readable. */
	s = store_at(fx, 1, 3, true, NULL, NULL);
	for (uint32_t i = 0; i < n; i++)
		assert_ok(tdm_store_put(s, key, key_of(i, key), "v", 1, 10, 1));
	for (uint32_t i = 0; i < n; i += 2) {
		assert_ok(tdm_store_del_at(s, key, key_of(i, key), 20 + i % 7, 1));
		early += 20 + i % 7 < 23;
	}
	digest = tdm_store_digest(s);
	assert_u64(tdm_store_tombstones(s), n / 2);
	assert_u64(tdm_store_purge_tombstones(s, 23), early); /* hlc 20, 21, 22 */
	assert_u64(tdm_store_tombstones(s), n / 2 - early);
	assert_rc(tdm_store_foreach_all(s, tomb_at_least_23, &seen_tombs), 0);
	assert_u64(seen_tombs, n / 2 - early);
	for (uint32_t i = 1; i < n; i += 2) {
		uint32_t vlen;

		assert_ok(tdm_store_get(s, key, key_of(i, key), NULL, 0, &vlen, NULL, NULL));
	}
	assert_u64(tdm_store_purge_tombstones(s, UINT64_MAX), n / 2 - early);
	assert_u64(tdm_store_tombstones(s), 0);
	assert_u64(tdm_store_count(s), n / 2);
	assert_u64(tdm_store_digest(s), digest);
	for (uint32_t i = 1; i < n; i += 2) {
		uint32_t vlen;

		assert_ok(tdm_store_get(s, key, key_of(i, key), NULL, 0, &vlen, NULL, NULL));
	}
	tdm_store_conflict_stats(s, &st);
	assert_u64(st.purged, n / 2);
}

/* ---- Conflicts ---- */

static const char long_key[] = "a-key-longer-than-the-ring-keeps-0123456789";

/* Counting, the callback's view of both versions, per-origin counts, the ring's records. */
static void test_merge_conflicts(void **state)
{
	struct mfx *fx = *state;
	struct seen seen = { 0 };
	struct tdm_store *s = store_at(fx, 0, 2, true, on_conflict, &seen); /* window 1000 */
	uint32_t kl = (uint32_t)strlen(long_key);
	struct tdm_store_conflict_stats st;
	struct tdm_store_conflict_rec rec[8];

	assert_ok(tdm_store_put(s, long_key, kl, "a", 1, 1000, 1));
	/* Another origin 500 later replaces it: an OVERWRITE, the stored "a" lost. */
	assert_ok(tdm_store_put(s, long_key, kl, "bb", 2, 1500, 2));
	assert_int_equal(seen.calls, 1);
	assert_int_equal(seen.last.kind, TDM_STORE_CONFLICT_OVERWRITE);
	assert_u64(seen.last.klen, kl);
	assert_memory_equal(seen.key, long_key, kl);
	assert_u64(seen.last.winner.vlen, 2);
	assert_memory_equal(seen.wval, "bb", 2);
	assert_u64(seen.last.winner.hlc, 1500);
	assert_u64(seen.last.winner.origin, 2);
	assert_u64(seen.last.loser.vlen, 1);
	assert_memory_equal(seen.lval, "a", 1);
	assert_u64(seen.last.loser.hlc, 1000);
	assert_u64(seen.last.loser.origin, 1);
	assert_true(pthread_equal(seen.thread, pthread_self()));
	/* An older one of a third origin arrives: STALE, in the window. */
	assert_ok(tdm_store_put(s, long_key, kl, "ccc", 3, 1200, 3));
	assert_int_equal(seen.calls, 2);
	assert_int_equal(seen.last.kind, TDM_STORE_CONFLICT_STALE);
	assert_memory_equal(seen.wval, "bb", 2);
	assert_memory_equal(seen.lval, "ccc", 3);
	/* Not conflicts: a much later write of another origin, a later one of the same origin,
	 * the same write again. */
	assert_ok(tdm_store_put(s, long_key, kl, "d", 1, 5000, 1));
	assert_ok(tdm_store_put(s, long_key, kl, "e", 1, 5100, 1));
	assert_ok(tdm_store_put(s, long_key, kl, "e", 1, 5100, 1));
	assert_ok(tdm_store_del_at(s, long_key, kl, 5100, 1)); /* same version: same write */
	assert_int_equal(seen.calls, 2);
	assert_value(s, long_key, "e", 5100, 1);
	/* A stale write of the same origin, and one far older: STALE, out of the window. */
	assert_ok(tdm_store_put(s, long_key, kl, "x", 1, 5050, 1));
	assert_ok(tdm_store_put(s, long_key, kl, "y", 1, 10, 2));
	assert_int_equal(seen.calls, 4);
	/* A delete of another origin within the window: an OVERWRITE won by a delete; then a put
	 * older than that delete: STALE lost to a delete. */
	assert_ok(tdm_store_del_at(s, long_key, kl, 5600, 2));
	assert_int_equal(seen.last.kind, TDM_STORE_CONFLICT_OVERWRITE);
	assert_true(seen.last.winner.deleted);
	assert_u64(seen.last.winner.vlen, 0);
	assert_ok(tdm_store_put(s, long_key, kl, "z", 1, 5599, 3));
	assert_int_equal(seen.calls, 6);
	assert_int_equal(seen.last.kind, TDM_STORE_CONFLICT_STALE);
	assert_true(seen.last.winner.deleted);
	assert_false(seen.last.loser.deleted);

	tdm_store_conflict_stats(s, &st);
	assert_u64(st.overwrites, 2);
	assert_u64(st.stale, 4);
	assert_u64(st.stale_in_window, 2); /* 1200 vs 1500, and 5599 vs 5600 */
	assert_int_equal(st.n_origins, 3);
	for (int i = 0; i < st.n_origins; i++) {
		const struct tdm_store_conflict_origin *o = &st.origins[i];
		/* lost: 1: "a", "x", "e" (to the delete); 2: "y"; 3: "ccc", "z". won: 1: "e"
		 * twice (over "x" and "y"); 2: "bb" twice, the delete twice. */
		static const uint64_t lost[4] = { 0, 3, 1, 2 }, won[4] = { 0, 2, 4, 0 };

		assert_true(o->origin >= 1 && o->origin <= 3);
		assert_u64(o->lost, lost[o->origin]);
		assert_u64(o->won, won[o->origin]);
	}
	assert_u64(st.other_lost + st.other_won, 0);

	/* The ring, newest first. */
	assert_int_equal(tdm_store_conflicts_recent(s, rec, 8), 6);
	assert_int_equal(rec[0].kind, TDM_STORE_CONFLICT_STALE);
	assert_u64(rec[0].loser_hlc, 5599);
	assert_u64(rec[0].winner_hlc, 5600);
	assert_u64(rec[0].loser_origin, 3);
	assert_u64(rec[0].winner_origin, 2);
	assert_int_equal(rec[0].flags, TDM_STORE_CF_WINNER_DELETED | TDM_STORE_CF_IN_WINDOW);
	assert_int_equal(rec[1].kind, TDM_STORE_CONFLICT_OVERWRITE);
	assert_int_equal(rec[1].flags, TDM_STORE_CF_INCOMING_WON | TDM_STORE_CF_WINNER_DELETED |
					       TDM_STORE_CF_IN_WINDOW);
	assert_u64(rec[2].loser_hlc, 10);
	assert_int_equal(rec[2].flags, 0); /* far older: not in the window */
	assert_u64(rec[3].loser_hlc, 5050);
	assert_int_equal(rec[3].flags, 0); /* same origin: not in the window */
	assert_u64(rec[4].loser_hlc, 1200);
	assert_int_equal(rec[4].flags, TDM_STORE_CF_IN_WINDOW);
	assert_u64(rec[5].loser_hlc, 1000);
	assert_int_equal(rec[5].flags, TDM_STORE_CF_INCOMING_WON | TDM_STORE_CF_IN_WINDOW);
	for (int i = 0; i < 6; i++) {
		assert_u64(rec[i].key_len, kl);
		assert_memory_equal(rec[i].key, long_key, TDM_STORE_CONFLICT_KEY);
		assert_true(rec[i].time_ns > 0);
		if (i)
			assert_true(rec[i].time_ns <= rec[i - 1].time_ns);
	}
	assert_int_equal(tdm_store_conflicts_recent(s, rec, 2), 2);
	assert_u64(rec[0].loser_hlc, 5599);
	assert_u64(rec[1].loser_hlc, 5100); /* "e", lost to the delete */
	assert_int_equal(tdm_store_conflicts_recent(s, rec, 0), 0);

	/* Plain mode counts nothing. */
	s = store_at(fx, 1, 1, false, on_conflict, &seen);
	assert_ok(tdm_store_put(s, "k", 1, "new", 3, 200, 1));
	assert_ok(tdm_store_put(s, "k", 1, "old", 3, 100, 2));
	tdm_store_conflict_stats(s, &st);
	assert_u64(st.stale + st.overwrites, 0);
	assert_int_equal(tdm_store_conflicts_recent(s, rec, 8), 0);
	assert_int_equal(seen.calls, 6);
}

/* STALE conflict number i on store s: key i % nkeys, loser hlc 1000 + i (all older than the
 * stored version at 1000000). */
static void make_stale(struct tdm_store *s, uint32_t i, uint32_t nkeys)
{
	uint8_t key[40];
	uint32_t kl = key_of(i % nkeys, key);

	assert_ok(tdm_store_put(s, key, kl, "win", 3, 1000000, 1));
	assert_ok(tdm_store_put(s, key, kl, "lose", 4, 1000 + i, 2));
}

/* The ring keeps the newest TDM_STORE_CONFLICT_RING per shard and wraps. */
static void test_merge_conflict_ring(void **state)
{
	struct mfx *fx = *state;
	struct tdm_store_conflict_rec rec[TDM_STORE_CONFLICT_RING * 4 + 1];
	struct tdm_store_conflict_stats st;
	const uint32_t total = TDM_STORE_CONFLICT_RING * 3 + 5;
	struct tdm_store *s = store_at(fx, 0, 1, true, NULL, NULL);
	int per_shard[4] = { 0, 0, 0, 0 }, kept = 0;
	uint8_t key[40];

	for (uint32_t i = 0; i < total; i++)
		make_stale(s, i, 7);
	tdm_store_conflict_stats(s, &st);
	assert_u64(st.stale, total);
	assert_u64(st.stale_in_window, 0);
	assert_int_equal(tdm_store_conflicts_recent(s, rec, TDM_STORE_CONFLICT_RING * 2),
			 TDM_STORE_CONFLICT_RING);
	for (uint32_t j = 0; j < TDM_STORE_CONFLICT_RING; j++) {
		uint32_t i = total - 1 - j;

		assert_u64(rec[j].loser_hlc, 1000 + i);
		assert_u64(rec[j].key_len, key_of(i % 7, key));
		assert_memory_equal(rec[j].key, key, rec[j].key_len);
		assert_int_equal(rec[j].key[rec[j].key_len], 0); /* the rest is zeroed */
	}
	assert_int_equal(tdm_store_conflicts_recent(s, rec, 3), 3);
	assert_u64(rec[2].loser_hlc, 1000 + total - 3);

	/* Four shards: the newest overall are among each shard's newest; times never rise. */
	s = store_at(fx, 1, 4, true, NULL, NULL);
	for (uint32_t i = 0; i < total; i++) {
		make_stale(s, i, 50);
		per_shard[tdm_apply_key_hash(key, key_of(i % 50, key)) % 4]++;
	}
	for (int i = 0; i < 4; i++) /* each shard keeps its newest RING */
		kept += per_shard[i] < TDM_STORE_CONFLICT_RING ? per_shard[i]
							       : TDM_STORE_CONFLICT_RING;
	assert_true(kept < (int)total); /* some shard wrapped */
	assert_int_equal(tdm_store_conflicts_recent(s, rec, TDM_STORE_CONFLICT_RING * 4 + 1),
			 kept);
	assert_int_equal(tdm_store_conflicts_recent(s, rec, 10), 10);
	for (int j = 1; j < 10; j++)
		assert_true(rec[j].time_ns <= rec[j - 1].time_ns);
}

/* Through apply with worker threads: the callback runs on the worker's thread, shard = worker. */
struct thread_seen {
	pthread_t test_thread;
	int calls, off_thread, bad_shard;
	int shards;
};

static void on_conflict_threads(void *ctx, const struct tdm_store_conflict *c)
{
	struct thread_seen *t = ctx;
	uint64_t h = tdm_apply_key_hash(c->key, c->klen);

	/* Only the worker of the key's shard calls, one at a time per shard; the counters are
	 * read after the threads stop. */
	__atomic_add_fetch(&t->calls, 1, __ATOMIC_RELAXED);
	if (!pthread_equal(pthread_self(), t->test_thread))
		__atomic_add_fetch(&t->off_thread, 1, __ATOMIC_RELAXED);
	if ((int)(h % (uint64_t)t->shards) != c->shard)
		__atomic_add_fetch(&t->bad_shard, 1, __ATOMIC_RELAXED);
}

static void test_merge_callback_threads(void **state)
{
	struct mfx *fx = *state;
	struct thread_seen t = { pthread_self(), 0, 0, 0, 2 };
	struct tdm_store *s = store_at(fx, 0, 2, true, on_conflict_threads, &t);
	struct tdm_store_conflict_stats st;
	struct tdm_log_config lc;
	struct tdm_apply_config cfg;
	struct tdm_log *log;
	uint8_t key[40];

	tlog_config(fx->lfx, &lc, 1 * MIB, 1 * MIB);
	assert_ok(tlog_open(fx->lfx, &lc, &log));
	/* Per key: a newer put from origin 2, then an older one from origin 1 (STALE). */
	for (uint32_t k = 0; k < 100; k++) {
		struct tdm_log_entry e = { .type = TDM_LOG_REC_PUT, .origin = 2, .hlc = 2000,
					   .key = key, .key_len = key_of(k, key),
					   .value = "v", .value_len = 1 };

		assert_ok(tlog_append(log, &e, NULL, NULL));
		e.origin = 1;
		e.hlc = 1999;
		assert_ok(tlog_append(log, &e, NULL, NULL));
	}
	tdm_apply_config_defaults(&cfg);
	cfg.log = log;
	cfg.workers = 2;
	tdm_store_sink(s, &cfg.sink);
	assert_ok(tdm_apply_create(&cfg, &fx->apps[0]));
	assert_ok(tdm_apply_start_threads(fx->apps[0], TDM_DP_IDLE_YIELD));
	while (tdm_apply_applied(fx->apps[0]) < tdm_log_tail(log)) {
		assert_true(tdm_apply_dispatch_do_work(fx->apps[0]) >= 0);
		sched_yield();
	}
	tdm_apply_stop_threads(fx->apps[0]);
	assert_int_equal(t.calls, 100);
	assert_int_equal(t.off_thread, 100);
	assert_int_equal(t.bad_shard, 0);
	tdm_store_conflict_stats(s, &st);
	assert_u64(st.stale, 100);
	assert_u64(st.stale_in_window, 100);
	assert_u64(tdm_store_count(s), 100);
}

/* ---- Snapshots ---- */

static void snap_path(struct mfx *fx, char *out, size_t cap, const char *leaf)
{
	snprintf(out, cap, "%s/%s", fx->lfx->tmp, leaf);
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void fix_crc(uint8_t *img, size_t len)
{
	uint32_t crc = tdm_crc32c(0, img, len - 8);

	memcpy(img + len - 8, &crc, 4);
}

/* Load path into s: expect want, an empty store, and a message saying what. */
static void expect_load(struct tdm_store *s, const char *path, int want, const char *what)
{
	uint64_t pos = 0;

	tdm_err_clear();
	assert_rc(tdm_store_snapshot_load(s, path, &pos), want);
	assert_u64(tdm_store_count(s), 0);
	assert_u64(tdm_store_tombstones(s), 0);
	if (!strstr(tdm_errmsg(), what))
		fail_msg("message \"%s\" should say \"%s\"", tdm_errmsg(), what);
}

/* A merge store with tombstones round-trips through a version 2 snapshot, into a store of
 * another shard count: the same live entries, tombstones and versions; the tombstones still
 * beat older puts; loading counts no conflict. Version 1 files load into merge stores; version
 * 2 files do not load into plain ones; damaged version 2 files are refused. */
static void test_merge_snapshot(void **state)
{
	struct mfx *fx = *state;
	static struct mrec set[MAX_RECS];
	uint32_t n = make_set(31337, 300, 30, set);
	struct tdm_store *a = store_at(fx, 0, 4, true, NULL, NULL);
	struct tdm_store *b = store_at(fx, 1, 2, true, NULL, NULL);
	struct tdm_store *plain = store_at(fx, 2, 3, false, NULL, NULL);
	struct tdm_store_conflict_stats st;
	char path[512], bad[512], ppath[512];
	uint8_t key[40], *img, *copy;
	uint64_t pos = 0;
	int best[MAX_KEYS];
	size_t len;

	snap_path(fx, path, sizeof(path), "merge.snap");
	snap_path(fx, bad, sizeof(bad), "bad.snap");
	snap_path(fx, ppath, sizeof(ppath), "plain.snap");
	for (uint32_t i = 0; i < n; i++)
		apply_rec(a, &set[i]);
	assert_true(tdm_store_tombstones(a) > 0);
	assert_ok(tdm_store_snapshot_write(a, 777, path));
	assert_ok(tdm_store_put(b, "pre", 3, "gone", 4, 1, 1)); /* replaced by the load */
	assert_ok(tdm_store_snapshot_load(b, path, &pos));
	assert_u64(pos, 777);
	assert_model(fx, b, set, n, 30);
	assert_u64(tdm_store_tombstones(b), tdm_store_tombstones(a));
	assert_u64(tdm_store_digest(b), tdm_store_digest(a));
	tdm_store_conflict_stats(b, &st);
	assert_u64(st.stale + st.overwrites, 0);
	model(set, n, best);
	for (uint32_t k = 0; k < 30; k++) {
		const struct mrec *w = best[k] < 0 ? NULL : &set[best[k]];
		uint32_t kl = key_of(k, key), vlen;

		if (!w || w->type != TDM_LOG_REC_DEL)
			continue;
		assert_ok(tdm_store_put(b, key, kl, "old", 3, w->hlc - 1, w->origin));
		assert_rc(tdm_store_get(b, key, kl, NULL, 0, &vlen, NULL, NULL),
			  TDM_ERR_NOT_FOUND);
	}

	/* Version 1 (plain) into a merge store; version 2 into a plain store is refused. */
	assert_ok(tdm_store_put(plain, "p", 1, "plain", 5, 42, 4));
	assert_ok(tdm_store_snapshot_write(plain, 5, ppath));
	assert_ok(tdm_store_snapshot_load(b, ppath, &pos));
	assert_u64(pos, 5);
	assert_value(b, "p", "plain", 42, 4);
	assert_u64(tdm_store_count(b), 1);
	assert_u64(tdm_store_tombstones(b), 0);
	expect_load(plain, path, TDM_ERR_VERSION, "merge-mode");

	/* Damage: a cut header, header flags, an entry's flags (unknown bit; a tombstone with a
	 * value). The first entry starts at offset 64; find a live one for the last case. */
	img = tlog_read_file(path, &len);
	assert_non_null(img);
	fx->lfx->mem[14] = img;
	copy = tlog_alloc(fx->lfx, len);
	assert_non_null(copy);
	write_file(bad, img, 50);
	expect_load(b, bad, TDM_ERR_CORRUPT, "truncated");
	memcpy(copy, img, len);
	copy[56] = 3;
	fix_crc(copy, len);
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_CORRUPT, "bad header flags");
	memcpy(copy, img, len);
	copy[64 + 18] |= 0x2;
	fix_crc(copy, len);
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_CORRUPT, "bad flags");
	for (size_t off = 64;;) {
		uint32_t kl, vl;

		memcpy(&kl, img + off, 4);
		memcpy(&vl, img + off + 4, 4);
		if (vl) {
			memcpy(copy, img, len);
			copy[off + 18] |= 0x1; /* a tombstone mark on an entry with a value */
			fix_crc(copy, len);
			write_file(bad, copy, len);
			expect_load(b, bad, TDM_ERR_CORRUPT, "bad flags");
			break;
		}
		off += 20 + kl + vl;
		assert_true(off < len - 8);
	}
	/* The header's tombstone count, off by one. */
	memcpy(copy, img, len);
	copy[48] ^= 1;
	fix_crc(copy, len);
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_CORRUPT, "");
	/* The good file still loads. */
	assert_ok(tdm_store_snapshot_load(b, path, &pos));
	assert_model(fx, b, set, n, 30);
}

#define T(f) cmocka_unit_test_setup_teardown(f, mfx_setup, mfx_teardown)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(test_hlc_now),
		T(test_hlc_observe),
		T(test_hlc_threads),
		T(test_merge_permutations),
		T(test_merge_apply_sink),
		T(test_merge_delete_vs_put),
		T(test_merge_idempotent),
		T(test_merge_purge),
		T(test_merge_conflicts),
		T(test_merge_conflict_ring),
		T(test_merge_callback_threads),
		T(test_merge_snapshot),
	};

	if (argc > 1 && strcmp(argv[1], "unit")) {
		fprintf(stderr, "usage: %s [unit]\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests_name("apply-merge", tests, NULL, NULL);
}
