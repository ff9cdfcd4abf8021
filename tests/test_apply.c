/*
 * cmocka tests of apply/: the hash, the store (contents, counters, digest), snapshots and their
 * damage cases, and the dispatcher with its workers on real logs (one thread and worker
 * threads), compared against a reference store built by a plain put/del loop.
 *
 * Usage: test_apply [unit]. Log fixtures come from tlog_util.c (temp dir and shm name removed by
 * teardown, also after a failed assertion); stores and apply objects are freed by teardown too.
 */
#include "tlog.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tdm_apply.h"

#define MIB (1024u * 1024)
#define CMP_BUF MIB /* largest value assert_same_store compares */

/* ---- Fixture: a log fixture plus the stores and apply objects of a test ---- */

struct afx {
	struct tlog_fx *lfx;
	struct tdm_store *stores[8];
	struct tdm_apply *apps[4];
};

static int afx_setup(void **state)
{
	struct afx *fx = calloc(1, sizeof(*fx));

	if (!fx || tlog_setup(state)) {
		free(fx);
		return -1;
	}
	fx->lfx = *state;
	*state = fx;
	return 0;
}

static int afx_teardown(void **state)
{
	struct afx *fx = *state;

	for (int i = 0; i < 4; i++)
		tdm_apply_destroy(fx->apps[i]); /* stops worker threads first */
	for (int i = 0; i < 8; i++)
		tdm_store_destroy(fx->stores[i]);
	*state = fx->lfx;
	free(fx);
	return tlog_teardown(state);
}

static struct tdm_store *new_store(struct afx *fx, int shards)
{
	for (int i = 0; i < 8; i++) {
		if (!fx->stores[i]) {
			assert_ok(tdm_store_create(shards, &fx->stores[i]));
			return fx->stores[i];
		}
	}
	fail_msg("too many stores in one test");
	return NULL;
}

static struct tdm_apply *new_apply(struct afx *fx, const struct tdm_apply_config *cfg)
{
	for (int i = 0; i < 4; i++) {
		if (!fx->apps[i]) {
			assert_ok(tdm_apply_create(cfg, &fx->apps[i]));
			return fx->apps[i];
		}
	}
	fail_msg("too many apply objects in one test");
	return NULL;
}

static struct tdm_log *open_log(struct afx *fx, uint64_t ring, uint64_t seg)
{
	struct tdm_log_config c;
	struct tdm_log *log;

	tlog_config(fx->lfx, &c, ring, seg);
	assert_ok(tlog_open(fx->lfx, &c, &log));
	return log;
}

static void apply_config(struct tdm_apply_config *cfg, struct tdm_log *log, int workers,
			 struct tdm_store *s)
{
	tdm_apply_config_defaults(cfg);
	cfg->log = log;
	cfg->workers = workers;
	tdm_store_sink(s, &cfg->sink);
}

/* ---- Deterministic workloads ---- */

static uint64_t rnd(uint64_t *s)
{
	*s += 0x9E3779B97F4A7C15ull;
	return tlog_mix(*s);
}

/* Key of key index k: "k<k>." then 0..15 bytes derived from k (the '.' keeps two indexes from
 * making the same key). @return its length. */
static uint32_t make_key(uint32_t k, uint8_t *buf)
{
	int n = snprintf((char *)buf, 16, "k%u.", k);
	uint32_t extra = (uint32_t)(tlog_mix(k) % 16);

	tlog_bytes(0x4B4559, k, buf + n, extra);
	return (uint32_t)n + extra;
}

/* One operation: PUT or DEL of a key, with a value of vlen bytes (PUT). */
struct op {
	uint8_t type;
	uint8_t key[40];
	uint32_t klen;
	uint8_t val[1024];
	uint32_t vlen;
	uint64_t hlc;
	uint16_t origin;
};

/* Operation i of a workload over nkeys keys: 85% PUT with a value of up to vmax bytes. */
static void make_op(uint64_t seed, uint32_t i, uint32_t nkeys, uint32_t vmin, uint32_t vmax,
		    struct op *o)
{
	uint64_t s = seed ^ ((uint64_t)i << 20);
	uint64_t r = rnd(&s);

	o->klen = make_key((uint32_t)(r % nkeys), o->key);
	o->type = (r >> 40) % 100 < 85 ? TDM_LOG_REC_PUT : TDM_LOG_REC_DEL;
	o->vlen = o->type == TDM_LOG_REC_PUT ? vmin + (uint32_t)(rnd(&s) % (vmax - vmin + 1)) : 0;
	tlog_bytes(seed, i, o->val, o->vlen);
	o->hlc = 1000 + i;
	o->origin = (uint16_t)(1 + i % 3);
}

/* Append o to the log (pos: its position, may be NULL) and apply it to ref (may be NULL). */
static void append_op(struct tdm_log *log, const struct op *o, struct tdm_store *ref,
		      uint64_t *pos)
{
	struct tdm_log_entry e = {
		.type = o->type, .origin = o->origin, .hlc = o->hlc, .key = o->key,
		.key_len = o->klen, .value = o->vlen ? o->val : NULL, .value_len = o->vlen,
	};

	assert_ok(tlog_append(log, &e, pos, NULL));
	if (ref && o->type == TDM_LOG_REC_PUT)
		assert_ok(tdm_store_put(ref, o->key, o->klen, o->val, o->vlen, o->hlc, o->origin));
	else if (ref)
		assert_ok(tdm_store_del(ref, o->key, o->klen));
}

static void append_noop(struct tdm_log *log, uint32_t vlen)
{
	static const uint8_t payload[64];
	struct tdm_log_entry e = { .type = TDM_LOG_REC_NOOP, .origin = TLOG_NODE, .hlc = 1,
				   .value = vlen ? payload : NULL, .value_len = vlen };

	assert_ok(tlog_append(log, &e, NULL, NULL));
}

/* Append n operations of workload seed; every 1000th is followed by a NOOP. @return the
 * number of NOOPs appended. */
static uint32_t append_workload(struct tdm_log *log, struct tdm_store *ref, uint64_t seed,
				uint32_t n, uint32_t nkeys, uint32_t vmin, uint32_t vmax)
{
	struct op o;
	uint32_t noops = 0;

	for (uint32_t i = 0; i < n; i++) {
		make_op(seed, i, nkeys, vmin, vmax, &o);
		append_op(log, &o, ref, NULL);
		if (i % 1000 == 999) {
			append_noop(log, i % 64);
			noops++;
		}
	}
	return noops;
}

/* ---- Driving apply on the test thread ---- */

/* Run the dispatcher and every worker until applied reaches target. Fails when a round in which
 * nothing could change (all agents idle twice in a row) leaves it short. */
static void drive(struct tdm_apply *a, int workers, uint64_t target)
{
	int idle = 0;

	while (tdm_apply_applied(a) < target) {
		int rc = tdm_apply_dispatch_do_work(a), work = rc;

		if (rc < 0)
			fail_msg("dispatch: %d (%s) %s", rc, tdm_strerror(rc), tdm_errmsg());
		for (int i = 0; i < workers; i++) {
			rc = tdm_apply_worker_do_work(a, i);
			if (rc < 0)
				fail_msg("worker %d: %d (%s) %s", i, rc, tdm_strerror(rc),
					 tdm_errmsg());
			work += rc;
		}
		idle = work ? 0 : idle + 1;
		if (idle > 2 && tdm_apply_applied(a) < target)
			fail_msg("apply is stuck at %" PRIu64 " (dispatched %" PRIu64 ", target %"
				 PRIu64 ")", tdm_apply_applied(a), tdm_apply_dispatched(a), target);
	}
	assert_u64(tdm_apply_applied(a), target);
	assert_u64(tdm_apply_dispatched(a), target);
}

/* ---- Comparing stores ---- */

struct cmp_ctx {
	struct tdm_store *other;
	uint8_t *buf;
	uint64_t seen;
};

static int cmp_entry(void *ctx, const void *key, uint32_t klen, const void *val, uint32_t vlen,
		     uint64_t hlc, uint16_t origin)
{
	struct cmp_ctx *c = ctx;
	uint32_t got_len = 0;
	uint64_t got_hlc = 0;
	uint16_t got_origin = 0;
	int rc = tdm_store_get(c->other, key, klen, c->buf, CMP_BUF, &got_len, &got_hlc,
			       &got_origin);

	c->seen++;
	if (rc || got_len != vlen || got_hlc != hlc || got_origin != origin ||
	    memcmp(c->buf, val, vlen))
		return 1;
	return 0;
}

/* Same keys, values, timestamps and origins; same counters and digest. */
static void assert_same_store(struct tdm_store *want, struct tdm_store *got)
{
	struct cmp_ctx c = { got, malloc(CMP_BUF), 0 };
	int rc;

	assert_non_null(c.buf);
	assert_u64(tdm_store_count(got), tdm_store_count(want));
	assert_u64(tdm_store_data_bytes(got), tdm_store_data_bytes(want));
	assert_u64(tdm_store_digest(got), tdm_store_digest(want));
	rc = tdm_store_foreach(want, cmp_entry, &c);
	free(c.buf);
	if (rc)
		fail_msg("entry %" PRIu64 " of the reference differs in the applied store", c.seen);
	assert_u64(c.seen, tdm_store_count(want));
}

/* ---- Hash and store ---- */

static void test_hash_vectors(void **state)
{
	uint8_t buf[100];

	/* Reference XXH64 values (seed 0). */
	assert_u64(tdm_apply_key_hash("", 0), 0xef46db3751d8e999ull);
	assert_u64(tdm_apply_key_hash("abc", 3), 0x44bc2cf5ad770999ull);
	for (uint32_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	/* Every length path (stripes, 8, 4, 1 byte tails) is stable and distinct. */
	for (uint32_t n = 1; n < sizeof(buf); n++)
		assert_true(tdm_apply_key_hash(buf, n) != tdm_apply_key_hash(buf, n - 1));
}

static void test_store_basic(void **state)
{
	struct afx *fx = *state;
	struct tdm_store *s = new_store(fx, 4);
	uint8_t buf[64];
	uint32_t vlen = 0;
	uint64_t hlc = 0;
	uint16_t origin = 0;

	assert_rc(tdm_store_get(s, "a", 1, buf, sizeof(buf), &vlen, NULL, NULL),
		  TDM_ERR_NOT_FOUND);
	assert_ok(tdm_store_put(s, "a", 1, "hello", 5, 7, 2));
	assert_ok(tdm_store_put(s, "bb", 2, "", 0, 8, 3));
	assert_u64(tdm_store_count(s), 2);
	assert_u64(tdm_store_data_bytes(s), 1 + 5 + 2);
	assert_ok(tdm_store_get(s, "a", 1, buf, sizeof(buf), &vlen, &hlc, &origin));
	assert_u64(vlen, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_u64(hlc, 7);
	assert_u64(origin, 2);
	assert_ok(tdm_store_get(s, "bb", 2, buf, sizeof(buf), &vlen, NULL, NULL));
	assert_u64(vlen, 0);

	/* Overwrite: same size (block reused), larger, smaller. */
	assert_ok(tdm_store_put(s, "a", 1, "world", 5, 9, 1));
	assert_ok(tdm_store_get(s, "a", 1, buf, sizeof(buf), &vlen, &hlc, &origin));
	assert_memory_equal(buf, "world", 5);
	assert_u64(hlc, 9);
	assert_u64(origin, 1);
	memset(buf, 'x', sizeof(buf));
	assert_ok(tdm_store_put(s, "a", 1, buf, 60, 10, 1));
	assert_u64(tdm_store_data_bytes(s), 1 + 60 + 2);
	assert_ok(tdm_store_put(s, "a", 1, "z", 1, 11, 1));
	assert_u64(tdm_store_data_bytes(s), 1 + 1 + 2);
	assert_u64(tdm_store_count(s), 2);

	/* A buffer too small: the full length is reported, cap bytes are copied. */
	assert_ok(tdm_store_put(s, "big", 3, "0123456789", 10, 12, 1));
	memset(buf, 0, sizeof(buf));
	assert_ok(tdm_store_get(s, "big", 3, buf, 4, &vlen, NULL, NULL));
	assert_u64(vlen, 10);
	assert_memory_equal(buf, "0123", 4);
	assert_u64(buf[4], 0);
	assert_ok(tdm_store_get(s, "big", 3, NULL, 0, &vlen, NULL, NULL));
	assert_u64(vlen, 10);

	/* Delete, and delete of a missing key. */
	assert_ok(tdm_store_del(s, "a", 1));
	assert_ok(tdm_store_del(s, "a", 1));
	assert_ok(tdm_store_del(s, "nope", 4));
	assert_rc(tdm_store_get(s, "a", 1, buf, sizeof(buf), &vlen, NULL, NULL),
		  TDM_ERR_NOT_FOUND);
	assert_u64(tdm_store_count(s), 2);
	assert_u64(tdm_store_data_bytes(s), 2 + 3 + 10);

	tdm_store_clear(s);
	assert_u64(tdm_store_count(s), 0);
	assert_u64(tdm_store_data_bytes(s), 0);
	assert_u64(tdm_store_digest(s), 0);
	assert_rc(tdm_store_get(s, "big", 3, buf, sizeof(buf), &vlen, NULL, NULL),
		  TDM_ERR_NOT_FOUND);

	assert_rc(tdm_store_put(s, "k", 1, buf, TDM_LOG_MAX_VALUE + 1, 1, 1), -EINVAL);
	assert_rc(tdm_store_create(0, &fx->stores[7]), -EINVAL);
	assert_rc(tdm_store_create(TDM_APPLY_MAX_WORKERS + 1, &fx->stores[7]), -EINVAL);
}

/* Many keys (tables double several times), deleting every third, then clear and reuse. */
static void test_store_grow_delete(void **state)
{
	struct afx *fx = *state;
	struct tdm_store *s = new_store(fx, 3);
	uint8_t key[40], val[64], got[64];
	uint32_t vlen;
	const uint32_t n = 100000;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t kl = make_key(i, key);

		tlog_bytes(5, i, val, i % 64);
		assert_ok(tdm_store_put(s, key, kl, val, i % 64, i, 1));
	}
	assert_u64(tdm_store_count(s), n);
	for (uint32_t i = 0; i < n; i += 3)
		assert_ok(tdm_store_del(s, key, make_key(i, key)));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t kl = make_key(i, key);
		int rc = tdm_store_get(s, key, kl, got, sizeof(got), &vlen, NULL, NULL);

		if (i % 3 == 0) {
			assert_rc(rc, TDM_ERR_NOT_FOUND);
			continue;
		}
		assert_ok(rc);
		tlog_bytes(5, i, val, i % 64);
		assert_u64(vlen, i % 64);
		assert_memory_equal(got, val, vlen);
	}
	assert_u64(tdm_store_count(s), n - (n + 2) / 3);
	tdm_store_clear(s);
	assert_u64(tdm_store_count(s), 0);
	assert_ok(tdm_store_put(s, "again", 5, "v", 1, 1, 1));
	assert_u64(tdm_store_count(s), 1);
}

struct stop_ctx {
	int calls;
};

static int stop_at_3(void *ctx, const void *key, uint32_t klen, const void *val, uint32_t vlen,
		     uint64_t hlc, uint16_t origin)
{
	struct stop_ctx *c = ctx;

	return ++c->calls == 3 ? 42 : 0;
}

static void test_store_foreach_stop(void **state)
{
	struct afx *fx = *state;
	struct tdm_store *s = new_store(fx, 2);
	struct stop_ctx c = { 0 };
	uint8_t key[40];

	for (uint32_t i = 0; i < 10; i++)
		assert_ok(tdm_store_put(s, key, make_key(i, key), "v", 1, i, 1));
	assert_rc(tdm_store_foreach(s, stop_at_3, &c), 42);
	assert_int_equal(c.calls, 3);
}

/* Fill s with keys [0, n) in the given direction, after a history of other writes. */
static void fill_keys(struct tdm_store *s, uint32_t n, bool reverse, bool history)
{
	uint8_t key[40], val[64];

	if (history) /* values later overwritten, keys later deleted */
		for (uint32_t i = 0; i < n; i += 2)
			assert_ok(tdm_store_put(s, key, make_key(i, key), "old", 3, 1, 1));
	for (uint32_t j = 0; j < n; j++) {
		uint32_t i = reverse ? n - 1 - j : j;

		tlog_bytes(9, i, val, 1 + i % 50);
		assert_ok(tdm_store_put(s, key, make_key(i, key), val, 1 + i % 50, 1, 1));
	}
	if (history)
		for (uint32_t i = n; i < n + 100; i++) {
			assert_ok(tdm_store_put(s, key, make_key(i, key), "gone", 4, 1, 1));
			assert_ok(tdm_store_del(s, key, make_key(i, key)));
		}
}

static void test_store_digest(void **state)
{
	struct afx *fx = *state;
	static const int shards[] = { 1, 3, 4, 64 };
	struct tdm_store *base = new_store(fx, 1);
	uint64_t d;
	uint8_t key[40];

	assert_u64(tdm_store_digest(base), 0);
	fill_keys(base, 5000, false, false);
	d = tdm_store_digest(base);
	assert_true(d != 0);
	for (int i = 0; i < 4; i++) {
		struct tdm_store *s = new_store(fx, shards[i]);

		fill_keys(s, 5000, i % 2 == 0, true);
		assert_u64(tdm_store_digest(s), d);
		assert_same_store(base, s);
	}
	/* Different contents give a different digest: one value byte, one key fewer, a value moved
	 * into the key (the lengths are part of the hash). */
	assert_ok(tdm_store_put(base, key, make_key(7, key), "other", 5, 1, 1));
	assert_true(tdm_store_digest(base) != d);
	tdm_store_clear(base);
	assert_ok(tdm_store_put(base, "ab", 2, "c", 1, 1, 1));
	d = tdm_store_digest(base);
	tdm_store_clear(base);
	assert_ok(tdm_store_put(base, "a", 1, "bc", 2, 1, 1));
	assert_true(tdm_store_digest(base) != d);
	/* A put then a delete leaves the digest where it was. */
	d = tdm_store_digest(base);
	assert_ok(tdm_store_put(base, "x", 1, "y", 1, 1, 1));
	assert_ok(tdm_store_del(base, "x", 1));
	assert_u64(tdm_store_digest(base), d);
	/* Timestamps and origins are not contents. */
	assert_ok(tdm_store_put(base, "a", 1, "bc", 2, 99, 9));
	assert_u64(tdm_store_digest(base), d);
}

/* ---- Snapshots ---- */

static void snap_path(struct afx *fx, char *out, size_t cap, const char *leaf)
{
	snprintf(out, cap, "%s/%s", fx->lfx->tmp, leaf);
}

static void test_snapshot_roundtrip(void **state)
{
	struct afx *fx = *state;
	struct tdm_store *a = new_store(fx, 4), *b = new_store(fx, 2);
	char path[512];
	uint64_t pos = 0;
	const uint32_t big_len = 600000; /* more than the snapshot's I/O buffer */
	uint8_t *big = tlog_alloc(fx->lfx, big_len);

	assert_non_null(big);
	snap_path(fx, path, sizeof(path), "store.snap");
	fill_keys(a, 3000, false, true);
	tlog_bytes(1, 2, big, big_len);
	assert_ok(tdm_store_put(a, "big", 3, big, big_len, 77, 5));
	assert_ok(tdm_store_put(a, "", 0, "empty key", 9, 78, 6));
	assert_ok(tdm_store_snapshot_write(a, 123456, path));
	assert_ok(tdm_store_put(b, "stale", 5, "x", 1, 1, 1)); /* replaced by the load */
	assert_ok(tdm_store_snapshot_load(b, path, &pos));
	assert_u64(pos, 123456);
	assert_same_store(a, b);
	assert_int_equal(access(path, F_OK), 0);
	snap_path(fx, path, sizeof(path), "store.snap.tmp");
	assert_int_equal(access(path, F_OK), -1); /* the temporary name is gone */

	/* An empty store round-trips too; writing over an existing snapshot replaces it. */
	snap_path(fx, path, sizeof(path), "store.snap");
	tdm_store_clear(a);
	assert_ok(tdm_store_snapshot_write(a, 9, path));
	assert_ok(tdm_store_snapshot_load(b, path, &pos));
	assert_u64(pos, 9);
	assert_u64(tdm_store_count(b), 0);
	assert_u64(tdm_store_digest(b), 0);
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Load a damaged copy: expect rc, an empty store, and a message naming the file and `what`. */
static void expect_load(struct tdm_store *s, const char *path, int want, const char *what)
{
	uint64_t pos = 0;

	assert_ok(tdm_store_put(s, "pre", 3, "existing", 8, 1, 1));
	tdm_err_clear();
	assert_rc(tdm_store_snapshot_load(s, path, &pos), want);
	assert_u64(tdm_store_count(s), 0);
	assert_u64(tdm_store_digest(s), 0);
	assert_u64(tdm_store_data_bytes(s), 0);
	if (!strstr(tdm_errmsg(), path) || !strstr(tdm_errmsg(), what))
		fail_msg("message \"%s\" should name %s and say \"%s\"", tdm_errmsg(), path, what);
}

/* Rewrite the trailer's CRC of a snapshot image so that only the deliberate change remains. */
static void fix_crc(uint8_t *img, size_t len)
{
	uint32_t crc = tdm_crc32c(0, img, len - 8);

	memcpy(img + len - 8, &crc, 4);
}

static void test_snapshot_damage(void **state)
{
	struct afx *fx = *state;
	struct tdm_store *a = new_store(fx, 2), *b = new_store(fx, 3);
	char good[512], bad[512];
	size_t len, cuts[] = { 0, 10, 47, 48 + 5, 48 + 20 + 2, 0, 0 };
	uint8_t *img, *copy;

	snap_path(fx, good, sizeof(good), "good.snap");
	snap_path(fx, bad, sizeof(bad), "bad.snap");
	fill_keys(a, 200, false, false);
	assert_ok(tdm_store_snapshot_write(a, 4096, good));
	img = tlog_read_file(good, &len);
	assert_non_null(img);
	copy = tlog_alloc(fx->lfx, len + 1);
	assert_non_null(copy);
	fx->lfx->mem[15] = img; /* freed by teardown */

	expect_load(b, bad, -ENOENT, "cannot open");
	cuts[5] = len - 4; /* inside the trailer */
	cuts[6] = len - 8; /* without the trailer */
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		write_file(bad, img, cuts[i]);
		expect_load(b, bad, TDM_ERR_CORRUPT, "truncated");
	}
	memcpy(copy, img, len);
	copy[48 + 20 + 1] ^= 0x10; /* a byte of the first entry's key */
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_CORRUPT, "CRC32C mismatch");
	memcpy(copy, img, len);
	copy[len - 9] ^= 0x01; /* the last byte of the last entry's value */
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_CORRUPT, "CRC32C mismatch");
	memcpy(copy, img, len);
	copy[0] = 'X';
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_CORRUPT, "bad magic");
	memcpy(copy, img, len);
	copy[8] = 9; /* version 9 (1 and 2 are known) */
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_VERSION, "version 9");
	memcpy(copy, img, len);
	copy[48 + 18] = 1; /* the first entry's flags: a tombstone mark in a version 1 file */
	fix_crc(copy, len);
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_CORRUPT, "bad flags");
	memcpy(copy, img, len);
	copy[32] ^= 0x01; /* the header's digest, with a CRC that matches the change */
	fix_crc(copy, len);
	write_file(bad, copy, len);
	expect_load(b, bad, TDM_ERR_CORRUPT, "digest");
	memcpy(copy, img, len);
	copy[len] = 0; /* one byte too many */
	write_file(bad, copy, len + 1);
	expect_load(b, bad, TDM_ERR_CORRUPT, "after the trailer");

	/* The good file still loads. */
	uint64_t pos = 0;
	assert_ok(tdm_store_snapshot_load(b, good, &pos));
	assert_u64(pos, 4096);
	assert_same_store(a, b);
}

/* ---- Dispatcher and workers ---- */

/* 200k mixed PUT/DEL records (and NOOPs) applied with 1, 2 and 4 workers on the test thread,
 * read partly from segment files (the ring is smaller than the log). */
static void test_apply_workers(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 4 * MIB, 4 * MIB);
	struct tdm_store *ref = new_store(fx, 1);
	uint32_t noops = append_workload(log, ref, 42, 200000, 30000, 0, 100);
	static const int workers[] = { 1, 2, 4 };

	for (int i = 0; i < 3; i++) {
		struct tdm_store *s = new_store(fx, workers[i]);
		struct tdm_apply_config cfg;
		struct tdm_apply_stats st;
		struct tdm_apply *a;

		apply_config(&cfg, log, workers[i], s);
		a = new_apply(fx, &cfg);
		drive(a, workers[i], tdm_log_tail(log));
		assert_same_store(ref, s);
		tdm_apply_stats(a, &st);
		assert_u64(st.records, 200000);
		assert_u64(st.puts + st.dels, 200000);
		assert_u64(st.skipped, noops);
		assert_u64(st.applied, tdm_log_tail(log));
		assert_int_equal(st.error, 0);
		assert_true(st.batches > 0);
	}
}

/* Many updates to a few keys with a small batch: the last write of each key wins. */
static void test_apply_per_key_order(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 16 * MIB, 16 * MIB);
	struct tdm_store *ref = new_store(fx, 1), *s = new_store(fx, 3);
	struct tdm_apply_config cfg;
	uint64_t last_hlc[5] = { 0 };
	struct op o;

	for (uint32_t i = 0; i < 30000; i++) {
		make_op(7, i, 5, 0, 200, &o);
		append_op(log, &o, ref, NULL);
		for (uint32_t k = 0; k < 5; k++) {
			uint8_t key[40];
			uint32_t kl = make_key(k, key);

			if (kl == o.klen && !memcmp(key, o.key, kl))
				last_hlc[k] = o.type == TDM_LOG_REC_PUT ? o.hlc : 0;
		}
	}
	apply_config(&cfg, log, 3, s);
	cfg.batch = 7;
	drive(new_apply(fx, &cfg), 3, tdm_log_tail(log));
	assert_same_store(ref, s);
	for (uint32_t k = 0; k < 5; k++) {
		uint8_t key[40], buf[256];
		uint32_t vlen;
		uint64_t hlc = 0;
		int rc = tdm_store_get(s, key, make_key(k, key), buf, sizeof(buf), &vlen, &hlc,
				       NULL);

		assert_rc(rc, last_hlc[k] ? 0 : TDM_ERR_NOT_FOUND);
		assert_u64(hlc, last_hlc[k]);
	}
}

/* Keys of worker 0 of 4 only, with EPOCH and NOOP records: idle workers and skipped records do
 * not hold the applied position back, also when the log ends with records that are skipped. */
static void test_apply_skips_and_idle_workers(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 16 * MIB, 16 * MIB);
	struct tdm_store *ref = new_store(fx, 1), *s = new_store(fx, 4);
	struct tdm_apply_config cfg;
	struct tdm_apply_stats st;
	struct tdm_apply *a;
	uint32_t puts = 0;
	struct op o;

	append_noop(log, 0);
	append_noop(log, 8);
	apply_config(&cfg, log, 4, s);
	a = new_apply(fx, &cfg);
	drive(a, 4, tdm_log_tail(log)); /* only skipped records so far */
	for (uint32_t i = 0; puts < 500; i++) {
		make_op(11, i, 100000, 1, 50, &o);
		if (tdm_apply_key_hash(o.key, o.klen) % 4 != 0)
			continue;
		o.type = TDM_LOG_REC_PUT;
		append_op(log, &o, ref, NULL);
		if (++puts == 250)
			assert_ok(tdm_log_begin_epoch(log, 2, 5));
	}
	append_noop(log, 16);
	drive(a, 4, tdm_log_tail(log));
	assert_same_store(ref, s);
	tdm_apply_stats(a, &st);
	assert_u64(st.puts, 500);
	assert_u64(st.skipped, 4);
	assert_u64(st.applied, tdm_log_tail(log));
	assert_u64(tdm_store_count(s), tdm_store_count(ref));
}

/* A tiny ring and big values: the dispatcher stops on full rings and resumes exactly. */
static void test_apply_ring_full(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 16 * MIB, 16 * MIB);
	struct tdm_store *ref = new_store(fx, 1), *s = new_store(fx, 2);
	struct tdm_apply_config cfg;
	struct tdm_apply_stats st;
	struct tdm_apply *a;

	append_workload(log, ref, 99, 3000, 50, 700, 940);
	apply_config(&cfg, log, 2, s);
	cfg.ring_bytes = 4096;
	a = new_apply(fx, &cfg);
	for (int i = 0; i < 3; i++) /* no worker runs: the rings fill up */
		assert_true(tdm_apply_dispatch_do_work(a) >= 0);
	tdm_apply_stats(a, &st);
	assert_true(st.ring_full >= 2);
	assert_true(st.dispatched < tdm_log_tail(log));
	assert_u64(st.records, 0);
	assert_u64(st.applied, 0);
	drive(a, 2, tdm_log_tail(log));
	assert_same_store(ref, s);
	tdm_apply_stats(a, &st);
	assert_u64(st.records, 3000);
	assert_true(st.ring_full > 3);
}

/* Apply from a record in the middle of the log: only the records from there on count. */
static void test_apply_from_middle(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 16 * MIB, 16 * MIB);
	struct tdm_store *ref = new_store(fx, 1), *s = new_store(fx, 2);
	struct tdm_apply_config cfg;
	uint64_t from = 0;
	struct op o;

	for (uint32_t i = 0; i < 20000; i++) {
		make_op(3, i, 2000, 0, 64, &o);
		append_op(log, &o, i >= 10000 ? ref : NULL, i == 10000 ? &from : NULL);
	}
	assert_true(from > 0);
	apply_config(&cfg, log, 2, s);
	cfg.from = from;
	drive(new_apply(fx, &cfg), 2, tdm_log_tail(log));
	assert_same_store(ref, s);

	cfg.from = tdm_log_tail(log) + 8;
	assert_rc(tdm_apply_create(&cfg, &fx->apps[3]), -EINVAL);
}

/* History trimmed by retention: below the dispatcher (it stops with TDM_ERR_TRIMMED and says to
 * resync) and below `from` (create refuses); from the log's new start, apply works. */
static void test_apply_trimmed(void **state)
{
	struct afx *fx = *state;
	struct tdm_store *s = new_store(fx, 2), *s2 = new_store(fx, 2);
	struct tdm_apply_config cfg;
	struct tdm_log_config c;
	struct tdm_apply *a;
	struct tdm_log *log;

	tlog_config(fx->lfx, &c, 64 * KIB, 64 * KIB);
	c.retention_cap = 128 * KIB;
	assert_ok(tlog_open(fx->lfx, &c, &log));
	apply_config(&cfg, log, 2, s);
	a = new_apply(fx, &cfg); /* from 0, before anything is trimmed */
	append_workload(log, NULL, 31, 20000, 500, 0, 60);
	assert_ok(tlog_flusher_settle(log));
	assert_true(tdm_log_start(log) > 0);
	assert_rc(tdm_apply_dispatch_do_work(a), TDM_ERR_TRIMMED);
	assert_non_null(strstr(tdm_errmsg(), "resync"));
	assert_rc(tdm_apply_dispatch_do_work(a), TDM_ERR_TRIMMED);
	assert_u64(tdm_apply_applied(a), 0);

	assert_rc(tdm_apply_create(&cfg, &fx->apps[3]), TDM_ERR_TRIMMED);
	tdm_store_sink(s2, &cfg.sink);
	cfg.from = tdm_log_start(log); /* a segment's start: a record boundary */
	drive(new_apply(fx, &cfg), 2, tdm_log_tail(log));
	assert_true(tdm_store_count(s2) > 0);
}

/* A sink that marks each record it is given, by position (positions of the log's PUT/DEL
 * records, ascending, in pos[0..n)). */
struct marking_sink {
	const uint64_t *pos;
	uint8_t *done;
	size_t n;
};

static int ms_mark(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	struct marking_sink *m = ctx;
	size_t lo = 0, hi = m->n;

	while (lo < hi) { /* binary search for the record's position */
		size_t mid = (lo + hi) / 2;

		if (m->pos[mid] < rec->hdr->position)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == m->n || m->pos[lo] != rec->hdr->position || m->done[lo])
		return -EPROTO; /* not a record of the log, or given twice */
	m->done[lo] = 1;
	return 0;
}

/* After every single agent step: every PUT/DEL below the applied position went through the sink.
 * Four dispatcher steps per worker step and small batches, so workers stop at the batch limit
 * with records left below `dispatched`. */
static void test_apply_applied_invariant(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 16 * MIB, 16 * MIB);
	const size_t n = 5000;
	uint64_t *pos = tlog_alloc(fx->lfx, n * sizeof(*pos));
	struct marking_sink m = { pos, tlog_alloc(fx->lfx, n), n };
	struct tdm_apply_config cfg;
	struct tdm_apply *a;
	size_t below = 0;
	struct op o;

	assert_non_null(pos);
	assert_non_null(m.done);
	for (uint32_t i = 0; i < n; i++) {
		make_op(23, i, 300, 0, 40, &o);
		append_op(log, &o, NULL, &pos[i]);
		if (i % 500 == 0)
			append_noop(log, 0);
	}
	tdm_apply_config_defaults(&cfg);
	cfg.log = log;
	cfg.workers = 3;
	cfg.batch = 5;
	cfg.sink = (struct tdm_apply_sink){ .put = ms_mark, .del = ms_mark, .ctx = &m };
	a = new_apply(fx, &cfg);
	for (int round = 0; tdm_apply_applied(a) < tdm_log_tail(log); round++) {
		assert_true(round < 100000);
		for (int agent = -4; agent < 3; agent++) {
			uint64_t applied;

			assert_true((agent < 0 ? tdm_apply_dispatch_do_work(a)
					       : tdm_apply_worker_do_work(a, agent)) >= 0);
			applied = tdm_apply_applied(a);
			for (below = 0; below < n && pos[below] < applied; below++)
				if (!m.done[below])
					fail_msg("applied %" PRIu64 " passed the unapplied record at %"
						 PRIu64, applied, pos[below]);
		}
	}
	assert_u64(below, n);
}

/* A sink that fails on its 100th put. */
struct failing_sink {
	int begins, ends, puts;
	uint64_t fail_pos;
};

static int fs_begin(void *ctx, int worker)
{
	((struct failing_sink *)ctx)->begins++;
	return 0;
}

static int fs_put(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	struct failing_sink *f = ctx;

	if (++f->puts == 100) {
		f->fail_pos = rec->hdr->position;
		return -EIO;
	}
	return 0;
}

static int fs_del(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	return 0;
}

static int fs_end(void *ctx, int worker, uint64_t applied)
{
	((struct failing_sink *)ctx)->ends++;
	return 0;
}

static void test_apply_sink_fails(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 16 * MIB, 16 * MIB);
	struct failing_sink f = { 0, 0, 0, 0 };
	struct tdm_apply_config cfg;
	struct tdm_apply_stats st;
	struct tdm_apply *a;
	int rc = 0;

	append_workload(log, NULL, 5, 1000, 100, 1, 20);
	tdm_apply_config_defaults(&cfg);
	cfg.log = log;
	cfg.batch = 16;
	cfg.sink = (struct tdm_apply_sink){ .begin_batch = fs_begin, .put = fs_put, .del = fs_del,
					    .end_batch = fs_end, .ctx = &f };
	a = new_apply(fx, &cfg);
	for (int i = 0; i < 1000 && rc >= 0; i++) {
		assert_true(tdm_apply_dispatch_do_work(a) >= 0);
		rc = tdm_apply_worker_do_work(a, 0);
	}
	assert_rc(rc, -EIO);
	assert_non_null(strstr(tdm_errmsg(), "apply worker 0 stopped"));
	assert_rc(tdm_apply_worker_do_work(a, 0), -EIO); /* stays stopped */
	assert_int_equal(f.puts, 100);
	assert_int_equal(f.begins, f.ends);
	tdm_apply_stats(a, &st);
	assert_rc(st.error, -EIO);
	assert_u64(st.applied, f.fail_pos);
	assert_u64(st.puts, 99);
}

/* Worker threads (yield) with the dispatcher on the test thread reach the same contents. */
static void test_apply_threads(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 32 * MIB, 32 * MIB);
	struct tdm_store *ref = new_store(fx, 1), *s = new_store(fx, 2);
	struct tdm_apply_config cfg;
	struct tdm_apply *a;
	uint64_t tail;

	append_workload(log, ref, 17, 100000, 10000, 0, 100);
	tail = tdm_log_tail(log);
	apply_config(&cfg, log, 2, s);
	a = new_apply(fx, &cfg);
	assert_ok(tdm_apply_start_threads(a, TDM_DP_IDLE_YIELD));
	assert_rc(tdm_apply_start_threads(a, TDM_DP_IDLE_YIELD), -EBUSY);
	/* No time limit is asserted; the loop ends when apply has caught up, or the run's own
	 * timeout ends a hung test. */
	while (tdm_apply_applied(a) < tail) {
		struct tdm_apply_stats st;
		int rc = tdm_apply_dispatch_do_work(a);

		assert_true(rc >= 0);
		if (rc > 0)
			continue;
		tdm_apply_stats(a, &st);
		assert_ok(st.error);
		sched_yield();
	}
	tdm_apply_stop_threads(a);
	assert_u64(tdm_apply_applied(a), tail);
	assert_same_store(ref, s);
	/* A point read while threads run again (on an idle log) sees the same. */
	assert_ok(tdm_apply_start_threads(a, TDM_DP_IDLE_BACKOFF));
	assert_u64(tdm_store_digest(s), tdm_store_digest(ref));
	tdm_apply_stop_threads(a);
}

/* A record bigger than a quarter of the ring stops the dispatcher with a clear error; the
 * records before it are applied. */
static void test_apply_record_too_large(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 16 * MIB, 16 * MIB);
	struct tdm_store *ref = new_store(fx, 1), *s = new_store(fx, 1);
	struct tdm_apply_config cfg;
	struct tdm_apply_stats st;
	struct tdm_apply *a;
	uint64_t big_pos = 0;
	struct op o;

	append_workload(log, ref, 8, 10, 100, 1, 100);
	make_op(8, 999, 100, 1, 1, &o);
	o.type = TDM_LOG_REC_PUT;
	o.vlen = 1000; /* span 1040 + key > 4096 / 4 */
	memset(o.val, 0x5A, o.vlen);
	append_op(log, &o, NULL, &big_pos);
	apply_config(&cfg, log, 1, s);
	cfg.ring_bytes = 4096;
	a = new_apply(fx, &cfg);
	assert_rc(tdm_apply_dispatch_do_work(a), -EMSGSIZE);
	assert_non_null(strstr(tdm_errmsg(), "raise ring_bytes"));
	char at[64];
	snprintf(at, sizeof(at), "position %" PRIu64, big_pos);
	assert_non_null(strstr(tdm_errmsg(), at));
	assert_rc(tdm_apply_dispatch_do_work(a), -EMSGSIZE);
	assert_u64(tdm_apply_dispatched(a), big_pos);
	for (int i = 0; i < 100 && tdm_apply_applied(a) < big_pos; i++)
		assert_true(tdm_apply_worker_do_work(a, 0) >= 0);
	assert_u64(tdm_apply_applied(a), big_pos);
	assert_same_store(ref, s);
	tdm_apply_stats(a, &st);
	assert_rc(st.error, -EMSGSIZE);
}

static void test_apply_bad_config(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 1 * MIB, 1 * MIB);
	struct tdm_store *s = new_store(fx, 1);
	struct tdm_apply_config cfg;
	struct tdm_apply *a = NULL;

	apply_config(&cfg, log, 0, s);
	assert_rc(tdm_apply_create(&cfg, &a), -EINVAL);
	cfg.workers = TDM_APPLY_MAX_WORKERS + 1;
	assert_rc(tdm_apply_create(&cfg, &a), -EINVAL);
	cfg.workers = 1;
	cfg.ring_bytes = 3000;
	assert_rc(tdm_apply_create(&cfg, &a), -EINVAL);
	cfg.ring_bytes = 512;
	assert_rc(tdm_apply_create(&cfg, &a), -EINVAL);
	cfg.ring_bytes = 0;
	cfg.sink.put = NULL;
	assert_rc(tdm_apply_create(&cfg, &a), -EINVAL);
	cfg.log = NULL;
	assert_rc(tdm_apply_create(&cfg, &a), -EINVAL);
	assert_null(a);
}

/* A store with fewer shards than apply has workers: the worker stops with a clear error. */
static void test_apply_shard_mismatch(void **state)
{
	struct afx *fx = *state;
	struct tdm_log *log = open_log(fx, 1 * MIB, 1 * MIB);
	struct tdm_store *s = new_store(fx, 1);
	struct tdm_apply_config cfg;
	struct tdm_apply *a;

	append_workload(log, NULL, 1, 50, 50, 1, 10);
	apply_config(&cfg, log, 2, s);
	a = new_apply(fx, &cfg);
	assert_true(tdm_apply_dispatch_do_work(a) > 0);
	assert_rc(tdm_apply_worker_do_work(a, 1), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "as many shards"));
	assert_true(tdm_apply_worker_do_work(a, 0) > 0); /* its own shard is fine */
}

#define T(f) cmocka_unit_test_setup_teardown(f, afx_setup, afx_teardown)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(test_hash_vectors),
		T(test_store_basic),
		T(test_store_grow_delete),
		T(test_store_foreach_stop),
		T(test_store_digest),
		T(test_snapshot_roundtrip),
		T(test_snapshot_damage),
		T(test_apply_workers),
		T(test_apply_per_key_order),
		T(test_apply_skips_and_idle_workers),
		T(test_apply_ring_full),
		T(test_apply_from_middle),
		T(test_apply_applied_invariant),
		T(test_apply_trimmed),
		T(test_apply_sink_fails),
		T(test_apply_threads),
		T(test_apply_record_too_large),
		T(test_apply_bad_config),
		T(test_apply_shard_mismatch),
	};

	if (argc > 1 && strcmp(argv[1], "unit")) {
		fprintf(stderr, "usage: %s [unit]\n", argv[0]);
		return 2;
	}
	return cmocka_run_group_tests_name("apply-unit", tests, NULL, NULL);
}
