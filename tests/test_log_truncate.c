/*
 * cmocka tests of the write log's failover features: the writers' gate (tdm_log_set_writable),
 * tdm_log_truncate with its side file (tdm_log_side_read), and the history a replica keeps when
 * tdm_log_append_at copies EPOCH records. Unit tests in tlog_unit_truncate_tests, crash and
 * damaged-file tests in tlog_fault_truncate_tests; helpers in tlog_util.c.
 */
#include "tlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEG (64 * KIB)
#define RING (256 * KIB)
#define XCAP 8192

/* ---- What a test wrote: PUT records (xs) and EPOCH records (ep), by position ---- */

struct expect {
	struct tlog_gen g;
	struct xrec xs[XCAP];
	size_t n;
	uint32_t idx;
	struct {
		uint64_t pos;
		uint32_t epoch;
	} ep[16];
	int ne;
};

static struct expect *expect_new(struct tlog_fx *fx, uint64_t seed)
{
	struct expect *ex = tlog_alloc(fx, sizeof(*ex));
	assert_non_null(ex);
	ex->g.seed = seed;
	return ex;
}

static void add_until(struct tdm_log *log, struct expect *ex, uint64_t until)
{
	tlog_append_until(log, &ex->g, until, &ex->idx, ex->xs, &ex->n, XCAP);
}

/* Begin epoch `epoch` and note where its EPOCH record went (the history's last entry). */
static void add_epoch(struct tlog_fx *fx, struct tdm_log *log, struct expect *ex, uint32_t epoch)
{
	struct tdm_log_epoch_start h[16];
	assert_ok(tdm_log_begin_epoch(log, epoch, 1000 + epoch));
	int n = tdm_log_history_read(fx->dir, h, 16);
	assert_true(n > 0);
	assert_int_equal(h[n - 1].epoch, epoch);
	assert_true(ex->ne < 16);
	ex->ep[ex->ne].pos = h[n - 1].start;
	ex->ep[ex->ne].epoch = epoch;
	ex->ne++;
}

/* Forget what is at or after pos (a truncate). */
static void expect_cut(struct expect *ex, uint64_t pos)
{
	while (ex->n && ex->xs[ex->n - 1].pos >= pos)
		ex->n--;
	while (ex->ne && ex->ep[ex->ne - 1].pos >= pos)
		ex->ne--;
}

/* Index of the first PUT record at or after pos. */
static size_t first_at(const struct expect *ex, uint64_t pos)
{
	size_t i = 0;
	while (i < ex->n && ex->xs[i].pos < pos)
		i++;
	return i;
}

/* Expected records in [from, to), in position order, against what a scan or side read gives. */
struct walk {
	const struct expect *ex;
	uint64_t from, to;
	size_t ix;
	int ie;
	uint64_t seen;
	char err[1500];
};

static void walk_init(struct walk *w, const struct expect *ex, uint64_t from, uint64_t to)
{
	memset(w, 0, sizeof(*w));
	w->ex = ex;
	w->from = from;
	w->to = to;
	w->ix = first_at(ex, from);
	while (w->ie < ex->ne && ex->ep[w->ie].pos < from)
		w->ie++;
}

static int on_walk(void *ctx, const struct tdm_log_rec *r)
{
	struct walk *w = ctx;
	const struct expect *ex = w->ex;
	uint64_t px = w->ix < ex->n && ex->xs[w->ix].pos < w->to ? ex->xs[w->ix].pos : UINT64_MAX;
	uint64_t pe = w->ie < ex->ne && ex->ep[w->ie].pos < w->to ? ex->ep[w->ie].pos : UINT64_MAX;

	if (r->hdr->position < w->from)
		return 0;
	if (px == UINT64_MAX && pe == UINT64_MAX) {
		snprintf(w->err, sizeof(w->err), "unexpected %s record at %" PRIu64,
			 tdm_log_rec_type_name(r->hdr->type), r->hdr->position);
		return 1;
	}
	if (pe < px) {
		if (r->hdr->type != TDM_LOG_REC_EPOCH || r->hdr->position != pe ||
		    r->hdr->epoch != ex->ep[w->ie].epoch) {
			snprintf(w->err, sizeof(w->err), "record at %" PRIu64 " (type %u, epoch %u), "
				 "want EPOCH %u at %" PRIu64, r->hdr->position, r->hdr->type,
				 r->hdr->epoch, ex->ep[w->ie].epoch, pe);
			return 1;
		}
		w->ie++;
	} else {
		const char *d = tlog_rec_diff(r, &ex->xs[w->ix], ex->g.seed);
		if (d) {
			snprintf(w->err, sizeof(w->err), "%s", d);
			return 1;
		}
		w->ix++;
	}
	w->seen++;
	return 0;
}

/* All expected records were seen. */
static void walk_done(const struct walk *w)
{
	const struct expect *ex = w->ex;
	if (w->err[0])
		fail_msg("%s", w->err);
	if (w->ix < ex->n && ex->xs[w->ix].pos < w->to)
		fail_msg("record %u at %" PRIu64 " was not found", ex->xs[w->ix].idx,
			 ex->xs[w->ix].pos);
	if (w->ie < ex->ne && ex->ep[w->ie].pos < w->to)
		fail_msg("EPOCH %u at %" PRIu64 " was not found", ex->ep[w->ie].epoch,
			 ex->ep[w->ie].pos);
}

/* Scan dir offline: exactly the expected records, and the log ends at end. */
static void check_dir(const char *dir, const struct expect *ex, uint64_t end)
{
	struct tdm_log_scan_report rep;
	struct walk w;
	walk_init(&w, ex, 0, UINT64_MAX);
	int rc = tdm_log_scan(dir, TLOG_CLUSTER, 0, on_walk, &w, &rep);
	if (rc && !w.err[0])
		fail_msg("tdm_log_scan(%s) = %d (%s): %s", dir, rc, tdm_strerror(rc), tdm_errmsg());
	walk_done(&w);
	assert_u64(rep.end, end);
	assert_u64(rep.torn_bytes, 0);
}

/* The side file at path holds exactly the expected records of [first, end). */
static void check_side(const char *path, const struct expect *ex, uint64_t first, uint64_t end,
		       uint32_t epoch)
{
	struct tdm_log_side_info info;
	struct walk w;
	walk_init(&w, ex, first, end);
	int rc = tdm_log_side_read(path, &info, on_walk, &w);
	if (rc && !w.err[0])
		fail_msg("tdm_log_side_read(%s) = %d (%s): %s", path, rc, tdm_strerror(rc),
			 tdm_errmsg());
	walk_done(&w);
	assert_u64(info.first, first);
	assert_u64(info.end, end);
	assert_u64(info.count, w.seen);
	assert_u64(info.records, w.seen);
	assert_true(info.count > 0);
	assert_u64(info.cluster_id, TLOG_CLUSTER);
	assert_int_equal(info.node_id, TLOG_NODE);
	assert_int_equal(info.epoch, epoch);
}

static void check_history(const char *dir, const struct expect *ex)
{
	struct tdm_log_epoch_start h[16];
	int n = tdm_log_history_read(dir, h, 16);
	assert_int_equal(n, ex->ne);
	for (int i = 0; i < n; i++) {
		assert_int_equal(h[i].epoch, ex->ep[i].epoch);
		assert_u64(h[i].start, ex->ep[i].pos);
	}
}

/* ---- Fixture helpers ---- */

static void track(struct tlog_fx *fx, struct tdm_log *log)
{
	for (int i = 0; i < TLOG_MAX_LOGS; i++) {
		if (!fx->logs[i]) {
			fx->logs[i] = log;
			return;
		}
	}
	fail_msg("no free log slot");
}

static struct tdm_log *attach(struct tlog_fx *fx)
{
	struct tdm_log *b = NULL;
	assert_ok(tdm_log_attach(fx->shm, &b));
	track(fx, b);
	return b;
}

/* A second log beside fx->dir: dir2 = tmp/log2, ring fx->shm2. */
static void config2(struct tlog_fx *fx, struct tdm_log_config *c, char *dir2, size_t len)
{
	snprintf(dir2, len, "%s/log2", fx->tmp);
	tlog_config(fx, c, RING, SEG);
	c->dir = dir2;
	c->shm_name = fx->shm2;
}

static void side_path(const struct tlog_fx *fx, char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", fx->tmp, name);
}

/* Append e through a (maybe attached) handle, driving owner's flusher on back-pressure. */
static int append_via(struct tdm_log *log, struct tdm_log *owner, const struct tdm_log_entry *e,
		      uint64_t *pos)
{
	for (int i = 0; i < 2000000; i++) {
		int rc = tdm_log_append(log, e, pos, NULL);
		if (rc != TDM_ERR_BACKPRESSURE)
			return rc;
		if (tdm_log_flusher_do_work(owner) == 0 && i % 64 == 63)
			usleep(20);
	}
	return TDM_ERR_BACKPRESSURE;
}

static void add_via(struct tdm_log *log, struct tdm_log *owner, struct expect *ex, uint64_t until)
{
	while (tdm_log_tail(owner) < until) {
		struct tdm_log_entry e;
		uint32_t k, v;
		assert_true(ex->n < XCAP);
		tlog_rnd_sizes(ex->g.seed, ex->idx, &k, &v);
		tlog_entry(&ex->g, &e, ex->idx, k, v, TDM_LOG_REC_PUT, TLOG_NODE);
		struct xrec *x = &ex->xs[ex->n];
		memset(x, 0, sizeof(*x));
		assert_ok(append_via(log, owner, &e, &x->pos));
		x->idx = ex->idx++;
		x->klen = k;
		x->vlen = v;
		x->type = TDM_LOG_REC_PUT;
		x->origin = TLOG_NODE;
		x->epoch = tdm_log_epoch(owner);
		ex->n++;
	}
}

/* Copy [from, end) of a into b as a replica does: runs of whole records with append_at (at most
 * batch bytes each), PADs with pad_at. */
static void copy_batched(struct tlog_fx *fx, struct tdm_log *a, struct tdm_log *b, uint64_t from,
			 uint64_t end, size_t batch)
{
	static uint8_t buf[64 * KIB];
	struct tdm_log_cursor *c = tlog_cursor(fx, a, from);
	uint64_t at = from;
	size_t len = 0;
	int rc;

	assert_true(batch <= sizeof(buf));
	for (;;) {
		struct tdm_log_rec r;
		uint64_t pos = end, span = 0;
		if (at + len < end) {
			assert_ok(tdm_log_cursor_next(c, &r));
			pos = r.hdr->position;
			span = tdm_log_rec_span(r.hdr->key_len, r.hdr->value_len);
		}
		if (len && (pos >= end || pos != at + len || len + span > batch)) {
			while ((rc = tdm_log_append_at(b, at, buf, len)) == TDM_ERR_BACKPRESSURE)
				assert_true(tdm_log_flusher_do_work(b) >= 0);
			assert_ok(rc);
			at += len;
			len = 0;
		}
		if (pos > at + len) { /* a PAD in a (len is 0 here) */
			while ((rc = tdm_log_pad_at(b, at, pos - at)) == TDM_ERR_BACKPRESSURE)
				assert_true(tdm_log_flusher_do_work(b) >= 0);
			assert_ok(rc);
			at = pos;
		}
		if (pos >= end)
			break;
		memset(buf + len, 0, span);
		memcpy(buf + len, r.hdr, r.hdr->length);
		len += span;
	}
	tlog_cursor_free(fx, c);
	assert_u64(tdm_log_tail(b), end);
}

/* ---- The writers' gate ---- */

static void test_gate_fences_appends(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg, c2;
	struct tdm_log *a, *b, *c;
	char dir2[320];
	struct expect *ex = expect_new(fx, 0x6a7e);
	struct tdm_log_entry e;

	tlog_config(fx, &cfg, RING, SEG);
	assert_ok(tlog_open(fx, &cfg, &a));
	assert_true(tdm_log_writable(a));
	add_epoch(fx, a, ex, 1);
	add_until(a, ex, 20 * KIB);
	b = attach(fx);
	assert_true(tdm_log_writable(b));

	tdm_log_set_writable(a, false);
	assert_false(tdm_log_writable(a));
	assert_false(tdm_log_writable(b));
	uint64_t tail = tdm_log_tail(a);
	tlog_entry(&ex->g, &e, 99999, 9, 100, TDM_LOG_REC_PUT, TLOG_NODE);
	tdm_err_clear();
	assert_rc(tdm_log_append(a, &e, NULL, NULL), TDM_ERR_NOT_PRIMARY);
	assert_non_null(strstr(tdm_errmsg(), "node 1 is not accepting writes"));
	assert_rc(tdm_log_append(b, &e, NULL, NULL), TDM_ERR_NOT_PRIMARY);
	tdm_log_set_writable(b, true); /* attached: ignored */
	assert_false(tdm_log_writable(a));
	assert_u64(tdm_log_tail(a), tail);
	assert_u64(tdm_log_tail(b), tail);

	/* The new primary's EPOCH record passes the closed gate. */
	add_epoch(fx, a, ex, 2);
	assert_int_equal(tdm_log_epoch(a), 2);
	assert_false(tdm_log_writable(a));
	assert_true(tdm_log_tail(a) > tail);

	/* A replica with its gate closed still copies its primary's stream, and stays closed. */
	config2(fx, &c2, dir2, sizeof(dir2));
	assert_ok(tlog_open(fx, &c2, &c));
	tdm_log_set_writable(c, false);
	assert_ok(tdm_log_flush_until(a, tdm_log_tail(a)));
	copy_batched(fx, a, c, 0, tdm_log_tail(a), 8 * KIB);
	assert_false(tdm_log_writable(c));
	assert_rc(tdm_log_append(c, &e, NULL, NULL), TDM_ERR_NOT_PRIMARY);
	assert_ok(tdm_log_flush_until(c, tdm_log_tail(c)));
	check_dir(dir2, ex, tdm_log_tail(a));

	/* Open again: appends continue where the tail is, from both handles. */
	tdm_log_set_writable(a, true);
	assert_true(tdm_log_writable(b));
	tail = tdm_log_tail(a);
	size_t n0 = ex->n;
	add_until(a, ex, tail + 10 * KIB);
	assert_u64(ex->xs[n0].pos, tail);
	add_via(b, a, ex, tdm_log_tail(a) + 10 * KIB);
	uint64_t end = tdm_log_tail(a);
	assert_ok(tdm_log_flush_until(a, end));
	tlog_close(fx, a);
	assert_ok(tlog_open(fx, &cfg, &a));
	assert_true(tdm_log_writable(a)); /* not kept across opens */
	assert_u64(tdm_log_recovery(a)->end, end);
	check_dir(fx->dir, ex, end);
}

/* Writers racing the gate: nothing is reserved after set_writable(false) returns. */
#define RACERS 3

struct racer {
	struct tdm_log *log;
	atomic_uint count;
	uint64_t max_end;
	int last_rc;
	atomic_bool done;
};

static void *race_writer(void *arg)
{
	struct racer *r = arg;
	uint8_t key[16], val[64];
	struct tdm_log_entry e = { .type = TDM_LOG_REC_PUT, .origin = TLOG_NODE, .key = key,
				   .key_len = sizeof(key), .value = val, .value_len = sizeof(val) };

	memset(val, 0x5a, sizeof(val));
	for (uint64_t i = 0;; i++) {
		uint64_t end;
		memset(key, (int)i, sizeof(key));
		e.hlc = i;
		int rc = tdm_log_append(r->log, &e, NULL, &end);
		if (rc == TDM_ERR_BACKPRESSURE) {
			sched_yield();
			continue;
		}
		if (rc) {
			r->last_rc = rc;
			break;
		}
		if (end > r->max_end)
			r->max_end = end;
		atomic_fetch_add(&r->count, 1);
	}
	atomic_store(&r->done, true);
	return NULL;
}

static int count_rec(void *ctx, const struct tdm_log_rec *r)
{
	(void)r;
	(*(uint64_t *)ctx)++;
	return 0;
}

static void test_gate_race(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	static struct racer rs[RACERS];
	pthread_t th[RACERS];

	tlog_config(fx, &cfg, RING, SEG);
	assert_ok(tlog_open(fx, &cfg, &log));
	for (int i = 0; i < RACERS; i++) {
		memset(&rs[i], 0, sizeof(rs[i]));
		rs[i].log = log;
		assert_int_equal(pthread_create(&th[i], NULL, race_writer, &rs[i]), 0);
	}
	/* Run the flusher until every writer has appended a while, then close the gate. */
	for (int spins = 0;; spins++) {
		bool all = true;
		for (int i = 0; i < RACERS; i++)
			all = all && atomic_load(&rs[i].count) >= 2000;
		if (all || spins > 20000000)
			break;
		if (tdm_log_flusher_do_work(log) == 0)
			sched_yield();
	}
	tdm_log_set_writable(log, false);
	uint64_t fence = tdm_log_tail(log);
	for (int spins = 0; spins < 20000000; spins++) {
		bool all = true;
		for (int i = 0; i < RACERS; i++)
			all = all && atomic_load(&rs[i].done);
		if (all)
			break;
		if (tdm_log_flusher_do_work(log) == 0)
			sched_yield();
	}
	uint64_t total = 0;
	for (int i = 0; i < RACERS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_rc(rs[i].last_rc, TDM_ERR_NOT_PRIMARY);
		assert_true(rs[i].count >= 2000);
		assert_true(rs[i].max_end <= fence);
		total += rs[i].count;
	}
	assert_u64(tdm_log_tail(log), fence);
	assert_ok(tdm_log_flush_until(log, fence));
	struct tdm_log_scan_report rep;
	uint64_t seen = 0;
	assert_ok(tdm_log_scan(fx->dir, TLOG_CLUSTER, 0, count_rec, &seen, &rep));
	assert_u64(seen, total);
	assert_u64(rep.end, fence);
}

/* ---- Truncate ---- */

/* Truncate a at pos; check the log, the side file, the history and the epoch; then append,
 * reopen and check again. */
static void truncate_and_check(struct tlog_fx *fx, const struct tdm_log_config *cfg,
			       struct tdm_log **a, struct expect *ex, uint64_t pos,
			       uint32_t epoch_after)
{
	char side[300];
	uint64_t tail = tdm_log_tail(*a);
	size_t i = first_at(ex, pos);
	uint32_t first_epoch = i < ex->n ? ex->xs[i].epoch : 0;

	for (int k = 0; k < ex->ne; k++)
		if (ex->ep[k].pos == pos)
			first_epoch = ex->ep[k].epoch;
	side_path(fx, side, sizeof(side), "side.records");
	tdm_log_set_writable(*a, false);
	assert_ok(tdm_log_truncate(*a, pos, side));
	assert_u64(tdm_log_tail(*a), pos);
	assert_u64(tdm_log_durable(*a), pos);
	assert_u64(tdm_log_written(*a), pos);
	assert_false(tdm_log_writable(*a));
	assert_int_equal(tdm_log_epoch(*a), epoch_after);
	check_side(side, ex, pos, tail, first_epoch);
	char tmp[320];
	snprintf(tmp, sizeof(tmp), "%s.tmp", side);
	assert_int_equal(access(tmp, F_OK), -1);
	expect_cut(ex, pos);
	check_history(fx->dir, ex);
	check_dir(fx->dir, ex, pos);
	/* Segments after pos's are gone. */
	char names[64][32];
	int nseg = tlog_segments(fx->dir, names, 64);
	assert_true(nseg >= 1);
	char want[32];
	snprintf(want, sizeof(want), "%016" PRIx64 ".seg", pos & ~(uint64_t)(SEG - 1));
	assert_string_equal(names[nseg - 1], want);
	/* A cursor re-created at pos finds nothing yet. */
	struct tdm_log_cursor *c = tlog_cursor(fx, *a, pos);
	struct tdm_log_rec r;
	assert_rc(tdm_log_cursor_next(c, &r), TDM_ERR_EMPTY);
	tlog_cursor_free(fx, c);

	/* Appends continue at pos: a cut epoch can begin again, more than a ring's worth follows. */
	add_epoch(fx, *a, ex, epoch_after + 1);
	assert_u64(ex->ep[ex->ne - 1].pos, pos);
	tdm_log_set_writable(*a, true);
	add_until(*a, ex, pos + RING + 40 * KIB);
	uint64_t end = tdm_log_tail(*a);
	assert_ok(tdm_log_flush_until(*a, end));
	check_dir(fx->dir, ex, end);
	tlog_close(fx, *a);
	assert_ok(tlog_open(fx, cfg, a));
	const struct tdm_log_recovery *rv = tdm_log_recovery(*a);
	assert_u64(rv->end, end);
	assert_u64(rv->bytes_cut, 0);
	assert_int_equal(tdm_log_epoch(*a), epoch_after + 1);
	check_history(fx->dir, ex);
	check_dir(fx->dir, ex, end);
}

static void test_truncate_mid_segment(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *a;
	struct expect *ex = expect_new(fx, 0x7c01);

	tlog_config(fx, &cfg, RING, SEG);
	assert_ok(tlog_open(fx, &cfg, &a));
	add_epoch(fx, a, ex, 1);
	add_until(a, ex, 150 * KIB);
	add_epoch(fx, a, ex, 2);
	add_until(a, ex, 170 * KIB);
	add_epoch(fx, a, ex, 3);
	add_until(a, ex, 185 * KIB);
	uint64_t pos = ex->xs[first_at(ex, 160 * KIB)].pos;
	assert_true(pos / SEG == tdm_log_tail(a) / SEG); /* the tail's segment */
	assert_true(pos > ex->ep[1].pos && pos < ex->ep[2].pos);
	truncate_and_check(fx, &cfg, &a, ex, pos, 2);
}

static void test_truncate_across_segments(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *a, *b;
	struct expect *ex = expect_new(fx, 0x7c02);

	tlog_config(fx, &cfg, RING, SEG);
	assert_ok(tlog_open(fx, &cfg, &a));
	add_epoch(fx, a, ex, 1);
	add_until(a, ex, 40 * KIB);
	add_epoch(fx, a, ex, 2);
	add_until(a, ex, 100 * KIB);
	add_epoch(fx, a, ex, 3);
	add_until(a, ex, 200 * KIB);
	add_epoch(fx, a, ex, 4);
	add_until(a, ex, 300 * KIB);
	/* The cut is more than half a ring back: the flusher's gate is past it and moves back. */
	uint64_t pos = ex->xs[first_at(ex, 90 * KIB)].pos;
	assert_true(pos / SEG + 2 < tdm_log_tail(a) / SEG);
	assert_true(tdm_log_tail(a) - pos > RING / 2);
	truncate_and_check(fx, &cfg, &a, ex, pos, 2);

	/* And through an attached handle after the reopen. */
	b = attach(fx);
	add_via(b, a, ex, tdm_log_tail(a) + 2 * RING);
	uint64_t end = tdm_log_tail(a);
	assert_ok(tdm_log_flush_until(a, end));
	tlog_close(fx, a);
	assert_ok(tlog_open(fx, &cfg, &a));
	assert_u64(tdm_log_recovery(a)->end, end);
	check_dir(fx->dir, ex, end);
}

/*
 * An attached handle cached the gate before a truncate moved it back far below: after the cut
 * the owner fills the ring without flushing, and b's next append must be refused for
 * back-pressure (a stale cached gate would let it overwrite unflushed records).
 */
static void test_truncate_stale_writer(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *a, *b;
	struct expect *ex = expect_new(fx, 0x7c03);
	struct tdm_log_entry e;
	char side[300];

	tlog_config(fx, &cfg, RING, SEG);
	assert_ok(tlog_open(fx, &cfg, &a));
	b = attach(fx);
	add_via(b, a, ex, 400 * KIB); /* b reserved up to 400K: its cached gate is >= 400K - RING */
	uint64_t pos = ex->xs[first_at(ex, 30 * KIB)].pos;
	side_path(fx, side, sizeof(side), "side.records");
	tdm_log_set_writable(a, false);
	assert_ok(tdm_log_truncate(a, pos, side));
	expect_cut(ex, pos);
	tdm_log_set_writable(a, true);
	for (;;) { /* the owner fills the ring; nothing is flushed */
		struct xrec *x = &ex->xs[ex->n];
		assert_true(ex->n < XCAP);
		tlog_entry(&ex->g, &e, ex->idx, 9, 300, TDM_LOG_REC_PUT, TLOG_NODE);
		memset(x, 0, sizeof(*x));
		int rc = tdm_log_append(a, &e, &x->pos, NULL);
		if (rc == TDM_ERR_BACKPRESSURE)
			break;
		assert_ok(rc);
		*x = (struct xrec){ .pos = x->pos, .idx = ex->idx++, .klen = 9, .vlen = 300,
				    .type = TDM_LOG_REC_PUT, .origin = TLOG_NODE };
		ex->n++;
	}
	assert_true(tdm_log_tail(a) > pos + RING - 1024);
	assert_rc(tdm_log_append(b, &e, NULL, NULL), TDM_ERR_BACKPRESSURE);
	add_via(b, a, ex, pos + 3 * RING);
	uint64_t end = tdm_log_tail(a);
	assert_ok(tdm_log_flush_until(a, end));
	check_dir(fx->dir, ex, end);
	tlog_close(fx, a);
	assert_ok(tlog_open(fx, &cfg, &a));
	check_dir(fx->dir, ex, end);
}

static void test_truncate_noop_and_bad_pos(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *a, *b;
	struct expect *ex = expect_new(fx, 0x7c04);
	char side[300];
	const uint64_t base = 2 * SEG;

	tlog_config(fx, &cfg, RING, SEG);
	cfg.base = base;
	assert_ok(tlog_open(fx, &cfg, &a));
	assert_u64(tdm_log_start(a), base);
	add_until(a, ex, base + 30 * KIB);
	uint64_t tail = tdm_log_tail(a);
	side_path(fx, side, sizeof(side), "side.records");

	assert_rc(tdm_log_truncate(a, ex->xs[3].pos, side), -EBUSY); /* gate open */
	assert_non_null(strstr(tdm_errmsg(), "writers' gate"));
	tdm_log_set_writable(a, false);
	b = attach(fx);
	assert_rc(tdm_log_truncate(b, ex->xs[3].pos, side), -EINVAL);
	assert_rc(tdm_log_truncate(a, tail + 8, side), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "beyond its end"));
	assert_rc(tdm_log_truncate(a, base - 64, side), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "below its start"));
	assert_rc(tdm_log_truncate(a, ex->xs[3].pos + 4, side), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "not a record boundary"));
	assert_rc(tdm_log_truncate(a, ex->xs[3].pos + 8, side), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "not a record boundary"));
	assert_rc(tdm_log_truncate(a, ex->xs[3].pos, NULL), -EINVAL);
	assert_u64(tdm_log_tail(a), tail);
	assert_int_equal(access(side, F_OK), -1);

	/* pos == tail: nothing moves and no side file is written. */
	assert_ok(tdm_log_truncate(a, tail, side));
	assert_ok(tdm_log_truncate(a, tail, NULL));
	assert_int_equal(access(side, F_OK), -1);
	assert_u64(tdm_log_tail(a), tail);
	check_dir(fx->dir, ex, tail);

	/* The whole log, back to its start (a segment boundary). */
	assert_ok(tdm_log_truncate(a, base, side));
	check_side(side, ex, base, tail, 0);
	expect_cut(ex, base);
	assert_u64(tdm_log_tail(a), base);
	tdm_log_set_writable(a, true);
	add_until(a, ex, base + 10 * KIB);
	uint64_t end = tdm_log_tail(a);
	assert_ok(tdm_log_flush_until(a, end));
	tlog_close(fx, a);
	assert_ok(tlog_open(fx, &cfg, &a));
	assert_u64(tdm_log_start(a), base);
	assert_u64(tdm_log_recovery(a)->end, end);
	check_dir(fx->dir, ex, end);
}

/* ---- A replica's history ---- */

static void test_replica_history(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg, c2;
	struct tdm_log *a, *c;
	struct expect *ex = expect_new(fx, 0x4e57);
	char dir2[320], side[300], tmp[400];

	tlog_config(fx, &cfg, RING, SEG);
	assert_ok(tlog_open(fx, &cfg, &a));
	add_epoch(fx, a, ex, 1);
	add_until(a, ex, 70 * KIB);
	add_epoch(fx, a, ex, 4);
	add_until(a, ex, 150 * KIB);
	uint64_t end = tdm_log_tail(a);
	assert_ok(tdm_log_flush_until(a, end));

	config2(fx, &c2, dir2, sizeof(dir2));
	assert_ok(tlog_open(fx, &c2, &c));
	/* A history that cannot be written: the copy holding EPOCH 1 fails and copies nothing. */
	snprintf(tmp, sizeof(tmp), "%s/history.tmp", dir2);
	assert_int_equal(mkdir(tmp, 0755), 0);
	uint8_t rec[64];
	assert_ok(tlog_read(a, 0, rec, 48));
	tdm_err_clear();
	int rc = tdm_log_append_at(c, 0, rec, 48);
	assert_true(rc < 0 && rc != -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "history"));
	assert_u64(tdm_log_tail(c), 0);
	assert_int_equal(tdm_log_epoch(c), 0);
	assert_int_equal(rmdir(tmp), 0);

	copy_batched(fx, a, c, 0, end, 16 * KIB);
	assert_int_equal(tdm_log_epoch(c), 4);
	check_history(dir2, ex);
	check_history(fx->dir, ex);

	/* An EPOCH record that does not follow the history: refused, nothing copied. */
	struct tdm_log_rec_hdr *h = (struct tdm_log_rec_hdr *)rec;
	tdm_err_clear();
	memset(rec, 0, sizeof(rec));
	h->length = TDM_LOG_REC_HDR_SIZE + 8;
	h->position = end;
	h->epoch = 3;
	h->type = TDM_LOG_REC_EPOCH;
	h->value_len = 8;
	assert_rc(tdm_log_append_at(c, end, rec, 48), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "history"));
	assert_u64(tdm_log_tail(c), end);

	/* Cut the replica back before EPOCH 4 and copy again: the same history. */
	tdm_log_set_writable(c, false);
	snprintf(side, sizeof(side), "%s/replica.records", fx->tmp);
	assert_ok(tdm_log_truncate(c, ex->ep[1].pos, side));
	assert_int_equal(tdm_log_epoch(c), 1);
	struct tdm_log_epoch_start hs[4];
	assert_int_equal(tdm_log_history_read(dir2, hs, 4), 1);
	copy_batched(fx, a, c, ex->ep[1].pos, end, 4 * KIB);
	assert_int_equal(tdm_log_epoch(c), 4);
	check_history(dir2, ex);
	assert_ok(tdm_log_flush_until(c, end));
	tlog_close(fx, c);
	assert_ok(tlog_open(fx, &c2, &c));
	assert_int_equal(tdm_log_epoch(c), 4);
	check_history(dir2, ex);
	check_dir(dir2, ex, end);
}

/* ---- Damaged side files ---- */

static int stop_at_3(void *ctx, const struct tdm_log_rec *r)
{
	(void)r;
	return ++*(int *)ctx == 3 ? 42 : 0;
}

/* Write bytes to path, replacing it. */
static void put_file(const char *path, const uint8_t *b, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_true(fwrite(b, 1, n, f) == n);
	assert_int_equal(fclose(f), 0);
}

static void expect_corrupt(const char *path, uint64_t off, const char *text)
{
	struct tdm_log_side_info info;
	tdm_err_clear();
	assert_rc(tdm_log_side_read(path, &info, NULL, NULL), TDM_ERR_CORRUPT);
	assert_u64(info.error_offset, off);
	assert_non_null(strstr(info.error_text, text));
	assert_non_null(strstr(tdm_errmsg(), path));
	char at[64];
	snprintf(at, sizeof(at), "byte offset %" PRIu64, off);
	assert_non_null(strstr(tdm_errmsg(), at));
}

static void test_side_file_corrupt(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *a;
	struct expect *ex = expect_new(fx, 0x51de);
	char side[300], bad[300];
	struct tdm_log_side_info info;

	tlog_config(fx, &cfg, RING, SEG);
	assert_ok(tlog_open(fx, &cfg, &a));
	add_until(a, ex, 20 * KIB);
	size_t k = ex->n - 10;
	uint64_t pos = ex->xs[k].pos;
	side_path(fx, side, sizeof(side), "side.records");
	side_path(fx, bad, sizeof(bad), "bad.records");
	tdm_log_set_writable(a, false);
	assert_ok(tdm_log_truncate(a, pos, side));
	int calls = 0;
	assert_rc(tdm_log_side_read(side, &info, stop_at_3, &calls), 42);
	assert_int_equal(calls, 3);
	assert_ok(tdm_log_side_read(side, &info, NULL, NULL));
	assert_u64(info.count, 10);

	size_t len;
	uint8_t *orig = tlog_read_file(side, &len);
	assert_non_null(orig);
	uint8_t *b = tlog_alloc(fx, len + 64);
	/* File offset of record k + 2, and a byte of its key. */
	uint64_t off2 = 64 + (ex->xs[k + 2].pos - pos);
	memcpy(b, orig, len);
	b[off2 + TDM_LOG_REC_HDR_SIZE + 1] ^= 0x04;
	put_file(bad, b, len);
	expect_corrupt(bad, off2, "fails its checks");
	uint64_t seen = 0;
	assert_rc(tdm_log_side_read(bad, &info, count_rec, &seen), TDM_ERR_CORRUPT);
	assert_u64(seen, 2); /* the records before the damage */
	/* Header. */
	memcpy(b, orig, len);
	b[44] ^= 1; /* count */
	put_file(bad, b, len);
	expect_corrupt(bad, 0, "checksum");
	memcpy(b, orig, len);
	b[0] = 'X';
	put_file(bad, b, len);
	expect_corrupt(bad, 0, "not a tandem side file");
	/* Cut short, and bytes after the last record. */
	put_file(bad, orig, len - 8);
	expect_corrupt(bad, 64 + (ex->xs[k + 9].pos - pos), "ends inside record 9 of 10");
	memcpy(b, orig, len);
	memset(b + len, 0, 8);
	put_file(bad, b, len + 8);
	expect_corrupt(bad, len, "bytes after the last");
	put_file(bad, orig, 40);
	expect_corrupt(bad, 0, "shorter than a side file header");
	/* Positions out of order: record k+1's position field rewritten (its CRC then fails too,
	 * but the order is checked first). */
	memcpy(b, orig, len);
	uint64_t off1 = 64 + (ex->xs[k + 1].pos - pos), p0 = pos;
	memcpy(b + off1 + 8, &p0, 8);
	put_file(bad, b, len);
	expect_corrupt(bad, off1, "out of order");
	free(orig);
	assert_rc(tdm_log_side_read("/nonexistent/side", &info, NULL, NULL), -ENOENT);
}

/* ---- Crashes in the middle of a truncate ---- */

static void copy_file(const char *from, const char *to)
{
	size_t n;
	uint8_t *b = tlog_read_file(from, &n);
	assert_non_null(b);
	put_file(to, b, n);
	free(b);
}

/* The cut fails after the segments were cut (the history cannot be rewritten): the log stops,
 * and opening it again finishes the cut. Then the same from the state right after the marker
 * was written (old segments and history put back). */
static void test_truncate_resume(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *a;
	struct expect *ex = expect_new(fx, 0x2e50);
	char side[300], tmp[400], bak[300], path[700], names[64][32];
	struct tdm_log_entry e;

	tlog_config(fx, &cfg, RING, SEG);
	assert_ok(tlog_open(fx, &cfg, &a));
	add_epoch(fx, a, ex, 1);
	add_until(a, ex, 50 * KIB);
	add_epoch(fx, a, ex, 2);
	add_until(a, ex, 150 * KIB);
	add_epoch(fx, a, ex, 3);
	add_until(a, ex, 200 * KIB);
	uint64_t pos = ex->xs[first_at(ex, 60 * KIB)].pos, tail = tdm_log_tail(a);
	assert_ok(tdm_log_flush_until(a, tail));
	tdm_log_set_writable(a, false);
	assert_ok(tdm_log_flush_until(a, tail));

	/* Keep the files as they are before the cut. */
	snprintf(bak, sizeof(bak), "%s/bak", fx->tmp);
	assert_int_equal(mkdir(bak, 0755), 0);
	int nseg = tlog_segments(fx->dir, names, 64);
	assert_true(nseg >= 4);
	for (int i = 0; i < nseg; i++) {
		char to[700];
		snprintf(path, sizeof(path), "%s/%.31s", fx->dir, names[i]);
		snprintf(to, sizeof(to), "%s/%.31s", bak, names[i]);
		copy_file(path, to);
	}
	snprintf(path, sizeof(path), "%s/history", fx->dir);
	char hbak[400];
	snprintf(hbak, sizeof(hbak), "%s/history", bak);
	copy_file(path, hbak);

	/* The marker cannot be written: nothing is cut, the log goes on. */
	snprintf(tmp, sizeof(tmp), "%s/truncating.tmp", fx->dir);
	assert_int_equal(mkdir(tmp, 0755), 0);
	side_path(fx, side, sizeof(side), "side.records");
	assert_true(tdm_log_truncate(a, pos, side) < 0);
	assert_int_equal(rmdir(tmp), 0);
	assert_u64(tdm_log_tail(a), tail);
	check_side(side, ex, pos, tail, 2); /* written before the marker: exists, complete */
	check_dir(fx->dir, ex, tail);

	/* The history cannot be rewritten: the segments are cut, then the log stops. */
	snprintf(tmp, sizeof(tmp), "%s/history.tmp", fx->dir);
	assert_int_equal(mkdir(tmp, 0755), 0);
	assert_rc(tdm_log_truncate(a, pos, side), TDM_ERR_FAILED);
	assert_non_null(strstr(tdm_errmsg(), "finishes the cut"));
	tdm_log_set_writable(a, true);
	tlog_entry(&ex->g, &e, 77777, 9, 10, TDM_LOG_REC_PUT, TLOG_NODE);
	assert_rc(tdm_log_append(a, &e, NULL, NULL), TDM_ERR_FAILED);
	tlog_close(fx, a);
	assert_int_equal(rmdir(tmp), 0);
	snprintf(path, sizeof(path), "%s/truncating", fx->dir);
	assert_int_equal(access(path, F_OK), 0);
	/* Back to the state right after the marker was written: every old file, and the marker. */
	for (int i = 0; i < nseg; i++) {
		char from[700];
		snprintf(from, sizeof(from), "%s/%.31s", bak, names[i]);
		snprintf(path, sizeof(path), "%s/%.31s", fx->dir, names[i]);
		copy_file(from, path);
	}
	snprintf(path, sizeof(path), "%s/history", fx->dir);
	copy_file(hbak, path);

	struct expect *cut = expect_new(fx, ex->g.seed);
	memcpy(cut, ex, sizeof(*cut));
	expect_cut(cut, pos);
	for (int round = 0; round < 2; round++) {
		assert_ok(tlog_open(fx, &cfg, &a));
		const struct tdm_log_recovery *rv = tdm_log_recovery(a);
		assert_u64(rv->end, pos);
		assert_u64(rv->bytes_cut, 0);
		assert_u64(tdm_log_tail(a), pos);
		assert_int_equal(tdm_log_epoch(a), 2);
		snprintf(path, sizeof(path), "%s/truncating", fx->dir);
		assert_int_equal(access(path, F_OK), -1);
		check_history(fx->dir, cut);
		check_dir(fx->dir, cut, pos);
		/* the later segments are gone (closing may prepare the next one again) */
		if (round == 0)
			assert_int_equal(tlog_segments(fx->dir, names, 64), (int)(pos / SEG) + 1);
		tlog_close(fx, a);
	}
}

/* The owner is killed (-9) right after a truncate and a few appends: recovery gives the log
 * ending where the appends ended, with the cut records gone. */
static void test_truncate_then_kill(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *a;
	struct expect *ex = expect_new(fx, 0x9ce1);
	struct shared {
		atomic_int stage;
		uint64_t pos, end;
		size_t n;
		uint32_t idx;
	} *sh = tlog_shared(fx, sizeof(struct shared));
	char side[300];

	assert_non_null(sh);
	tlog_config(fx, &cfg, RING, SEG);
	side_path(fx, side, sizeof(side), "side.records");
	/* Both sides compute the same records: the child appends, the parent predicts. */
	assert_ok(tlog_open(fx, &cfg, &a));
	add_epoch(fx, a, ex, 1);
	add_until(a, ex, 120 * KIB);
	add_epoch(fx, a, ex, 2);
	add_until(a, ex, 150 * KIB);
	assert_ok(tdm_log_flush_until(a, tdm_log_tail(a)));
	tlog_close(fx, a);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct tdm_log *l = NULL;
		if (tdm_log_open(&cfg, &l))
			_exit(1);
		tdm_log_set_writable(l, false);
		uint64_t pos = ex->xs[first_at(ex, 100 * KIB)].pos;
		if (tdm_log_truncate(l, pos, side))
			_exit(2);
		expect_cut(ex, pos);
		tdm_log_set_writable(l, true);
		for (int i = 0; i < 20; i++) {
			struct tdm_log_entry e;
			tlog_entry(&ex->g, &e, ex->idx, 9, 200, TDM_LOG_REC_PUT, TLOG_NODE);
			if (tlog_append(l, &e, &ex->xs[ex->n].pos, NULL))
				_exit(3);
			ex->n++;
			ex->idx++;
		}
		uint64_t end = tdm_log_tail(l);
		if (tdm_log_flush_until(l, end))
			_exit(4);
		sh->pos = pos;
		sh->end = end;
		atomic_store(&sh->stage, 1);
		kill(getpid(), SIGKILL);
		_exit(5);
	}
	tlog_track_child(fx, pid);
	int wst = 0;
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	tlog_forget_child(fx, pid);
	assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
	assert_int_equal(atomic_load(&sh->stage), 1);
	expect_cut(ex, sh->pos);
	for (int i = 0; i < 20; i++) {
		struct xrec *x = &ex->xs[ex->n++];
		memset(x, 0, sizeof(*x));
		x->idx = ex->idx++;
		x->klen = 9;
		x->vlen = 200;
		x->type = TDM_LOG_REC_PUT;
		x->origin = TLOG_NODE;
		x->epoch = 1;
		x->pos = i ? ex->xs[ex->n - 2].pos + tdm_log_rec_span(9, 200) : sh->pos;
	}
	assert_ok(tlog_open(fx, &cfg, &a));
	assert_u64(tdm_log_recovery(a)->end, sh->end);
	assert_int_equal(tdm_log_epoch(a), 1);
	check_history(fx->dir, ex);
	check_dir(fx->dir, ex, sh->end);
}

/* ---- Groups ---- */

#define T(f) cmocka_unit_test_setup_teardown(f, tlog_setup, tlog_teardown)

int tlog_unit_truncate_tests(struct CMUnitTest *out, int max)
{
	const struct CMUnitTest tests[] = {
		T(test_gate_fences_appends),
		T(test_gate_race),
		T(test_truncate_mid_segment),
		T(test_truncate_across_segments),
		T(test_truncate_stale_writer),
		T(test_truncate_noop_and_bad_pos),
		T(test_replica_history),
	};
	int n = (int)(sizeof(tests) / sizeof(tests[0]));
	if (n > max)
		n = max;
	memcpy(out, tests, (size_t)n * sizeof(tests[0]));
	return n;
}

int tlog_fault_truncate_tests(struct CMUnitTest *out, int max)
{
	const struct CMUnitTest tests[] = {
		T(test_side_file_corrupt),
		T(test_truncate_resume),
		T(test_truncate_then_kill),
	};
	int n = (int)(sizeof(tests) / sizeof(tests[0]));
	if (n > max)
		n = max;
	memcpy(out, tests, (size_t)n * sizeof(tests[0]));
	return n;
}
