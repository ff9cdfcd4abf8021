/*
 * cmocka tests of the write log: the "fault" group. An owner killed at seeded points must recover
 * every durable record bit for bit; corrupted, reconfigured or missing segment files give the
 * outcomes of the format comment at the top of log/record.c, name the file, and are never modified by a failed open or a scan.
 */
#include "tlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CRASH_SEEDS 32
#define CRASH_MAX_REC 32768u
#define SEG_HDR 4096u

/* ---- Records and configurations from a seed ---- */

static void crash_sizes(uint64_t seed, uint32_t idx, uint32_t *k, uint32_t *v)
{
	uint64_t h = tlog_mix(seed ^ ((uint64_t)idx * 0x2545F4914F6CDD1Dull));
	*k = 9 + (uint32_t)(h % 20);
	*v = (uint32_t)((h >> 8) % 1500);
	if ((h >> 32) % 61 == 0) /* large, but a record's span is at most ring/4 (16 KiB here) */
		*v = 5000 + (uint32_t)((h >> 40) % 11000);
}

struct crash_params {
	uint64_t ring, seg, target;
	uint32_t max_batch;
	uint64_t checkpoint;
	uint32_t extra_records, spin;
	uint32_t tear; /* non-zero: damage a record above durable and the checkpoint */
};

static void crash_params(uint64_t seed, struct crash_params *p)
{
	static const uint32_t batches[] = {4 * KIB, 16 * KIB, 64 * KIB, 1024 * KIB};
	uint64_t h = tlog_mix(seed * 0x9E37ull + 1);
	p->ring = (64ull * KIB) << (seed % 3);
	p->seg = (64ull * KIB) << ((seed / 3) % 3);
	p->max_batch = batches[(h >> 8) % 4];
	p->checkpoint = (h >> 16) % 2 ? 8 * KIB : (1ull << 40);
	p->target = 2 * p->seg + (h >> 24) % p->seg;
	p->extra_records = (uint32_t)((h >> 40) % 4 == 0 ? 0 : (h >> 44) % 300);
	p->spin = (uint32_t)((h >> 50) % 200000);
	p->tear = seed % 2 ? 1 + (uint32_t)(tlog_mix(seed ^ 0x7ea2) % 1000) : 0;
}

static void seg_path(const struct tlog_fx *fx, uint64_t seg_start, char *out, size_t len)
{
	snprintf(out, len, "%s/%016" PRIx64 ".seg", fx->dir, seg_start);
}

static void seg_name(uint64_t seg_start, char *out, size_t len)
{
	snprintf(out, len, "%016" PRIx64 ".seg", seg_start);
}

static void snap(struct tlog_fx *fx)
{
	tlog_snap_free(fx->snap);
	fx->snap = tlog_snap_take(fx->dir);
	assert_non_null(fx->snap);
}

#define assert_unchanged(fx, what)                                                            \
	do {                                                                                  \
		const char *d_ = tlog_snap_diff((fx)->snap, (fx)->dir);                       \
		if (d_)                                                                       \
			fail_msg("%s changed the log directory: %s", (what), d_);             \
	} while (0)

/* ---- Crash of the owner at seeded points ---- */

struct crash_page {
	_Atomic uint64_t durable;
	atomic_uint count;
	atomic_int state;
	int rc;
	uint64_t pos[CRASH_MAX_REC];
};

/* Child: the owner. Appends records, drives the flusher, publishes durable after every step. */
static int crash_child(const struct tdm_log_config *c, uint64_t seed, struct crash_page *pg)
{
	struct tdm_log *log = NULL;
	int rc = tdm_log_open(c, &log);
	if (rc)
		return pg->rc = rc, -1;
	struct tlog_gen *g = malloc(sizeof(*g));
	if (!g)
		return -2;
	g->seed = seed;
	for (uint32_t i = 0; i < CRASH_MAX_REC; i++) {
		uint32_t k, v, idle = 0, sleeps = 0;
		struct tdm_log_entry e;
		uint64_t pos = 0;
		crash_sizes(seed, i, &k, &v);
		tlog_entry(g, &e, i, k, v, TDM_LOG_REC_PUT, TLOG_NODE);
		for (;;) {
			rc = tdm_log_append(log, &e, &pos, NULL);
			if (rc != TDM_ERR_BACKPRESSURE)
				break;
			int w = tdm_log_flusher_do_work(log);
			if (w < 0)
				return pg->rc = w, -3;
			atomic_store(&pg->durable, tdm_log_durable(log));
			if (w == 0 && ++idle % 8 == 0) {
				if (++sleeps > 400000)
					return pg->rc = rc, -4;
				usleep(20);
			}
		}
		if (rc)
			return pg->rc = rc, -5;
		pg->pos[i] = pos;
		atomic_store(&pg->count, i + 1);
		int w = tdm_log_flusher_do_work(log);
		if (w < 0)
			return pg->rc = w, -3;
		atomic_store(&pg->durable, tdm_log_durable(log));
	}
	for (int j = 0; j < 300000; j++) { /* wait to be killed */
		if (tdm_log_flusher_do_work(log) < 0)
			return -3;
		atomic_store(&pg->durable, tdm_log_durable(log));
		usleep(100);
	}
	return -6;
}

static const char *crash_step(int st)
{
	static const char *steps[] = {"running", "tdm_log_open",  "malloc",
				      "flusher",  "back-pressure never cleared",
				      "append",   "never killed"};
	return st <= 0 && st >= -6 ? steps[-st] : "?";
}

struct scan_ctx {
	uint64_t seed;
	uint32_t next, count;
	const uint64_t *pos;
	uint64_t *seen; /* positions of the records seen */
	uint32_t cap;
	char err[512];
};

static int crash_scan_cb(void *ctx, const struct tdm_log_rec *r)
{
	struct scan_ctx *s = ctx;
	if (r->hdr->type == TDM_LOG_REC_PAD)
		return 0;
	if (s->next >= s->cap) {
		snprintf(s->err, sizeof(s->err), "more than %u records", s->cap);
		return 1;
	}
	struct xrec x = {.pos = s->next < s->count ? s->pos[s->next] : r->hdr->position,
			 .idx = s->next, .type = TDM_LOG_REC_PUT, .origin = TLOG_NODE};
	crash_sizes(s->seed, s->next, &x.klen, &x.vlen);
	const char *d = tlog_rec_diff(r, &x, s->seed);
	if (d) {
		snprintf(s->err, sizeof(s->err), "%s", d);
		return 1;
	}
	s->seen[s->next++] = r->hdr->position;
	return 0;
}

static void wait_exit(struct tlog_fx *fx, pid_t pid, int *wst)
{
	assert_int_equal(waitpid(pid, wst, 0), pid);
	tlog_forget_child(fx, pid);
}

static void test_crash_seed(void **state)
{
	struct tlog_fx *fx = *state;
	uint64_t seed = fx->param - 1;
	struct crash_params p;
	crash_params(seed, &p);
	struct tdm_log_config cfg;
	tlog_config(fx, &cfg, p.ring, p.seg);
	cfg.max_batch = p.max_batch;
	cfg.checkpoint_bytes = p.checkpoint;
	struct crash_page *pg = tlog_shared(fx, sizeof(*pg));
	assert_non_null(pg);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		atomic_store(&pg->state, crash_child(&cfg, seed, pg));
		_exit(1);
	}
	tlog_track_child(fx, pid);
	int wst = 0;
	for (uint32_t polls = 0; atomic_load(&pg->durable) < p.target; polls++) {
		if (waitpid(pid, &wst, WNOHANG) == pid) {
			tlog_forget_child(fx, pid);
			int st = atomic_load(&pg->state);
			fail_msg("seed %" PRIu64 ": the owner stopped at \"%s\": %d (%s)", seed,
				 crash_step(st), pg->rc, tdm_strerror(pg->rc));
		}
		if (polls > 300000)
			fail_msg("seed %" PRIu64 ": durable stuck at %" PRIu64 " (target %" PRIu64
				 ", %u records appended)",
				 seed, (uint64_t)atomic_load(&pg->durable), p.target,
				 atomic_load(&pg->count));
		usleep(100);
	}
	uint32_t c0 = atomic_load(&pg->count);
	for (uint32_t polls = 0; atomic_load(&pg->count) < c0 + p.extra_records && polls < 100000;
	     polls++)
		usleep(20);
	for (volatile uint32_t s = 0; s < p.spin; s = s + 1)
		;
	kill(pid, SIGKILL);
	wait_exit(fx, pid, &wst);
	if (!WIFSIGNALED(wst))
		fail_msg("seed %" PRIu64 ": the owner exited by itself at \"%s\": %d (%s)", seed,
			 crash_step(atomic_load(&pg->state)), pg->rc, tdm_strerror(pg->rc));
	const uint64_t D = atomic_load(&pg->durable);
	const uint32_t C = atomic_load(&pg->count);
	uint32_t need = 0; /* records whose end <= D */
	for (uint32_t i = 0; i < C; i++) {
		uint32_t k, v;
		crash_sizes(seed, i, &k, &v);
		if (pg->pos[i] + tdm_log_rec_span(k, v) <= D)
			need = i + 1;
	}

	/* The dead owner's ring is still there, and attaching to it says so. */
	assert_int_equal(access(fx->shm_path, F_OK), 0);
	struct tdm_log *a = NULL;
	assert_rc(tdm_log_attach(fx->shm, &a), TDM_ERR_CLOSED);

	/* An offline scan sees every durable record and changes nothing. */
	snap(fx);
	struct scan_ctx sc = {.seed = seed, .count = C, .pos = pg->pos, .cap = CRASH_MAX_REC + 1};
	sc.seen = tlog_alloc(fx, sc.cap * sizeof(uint64_t));
	struct tdm_log_scan_report rep;
	memset(&rep, 0, sizeof(rep));
	int rc = tdm_log_scan(fx->dir, TLOG_CLUSTER, 0, crash_scan_cb, &sc, &rep);
	if (rc)
		fail_msg("seed %" PRIu64 ": tdm_log_scan = %d (%s) at record %u: %s / %s in %s at "
			 "offset %" PRIu64,
			 seed, rc, tdm_strerror(rc), sc.next, sc.err, rep.error_text, rep.error_file,
			 rep.error_offset);
	assert_unchanged(fx, "tdm_log_scan");
	assert_int_equal(rep.error, 0);
	assert_u64(rep.start, 0);
	if (rep.end < D || sc.next < need)
		fail_msg("seed %" PRIu64 ": scan ends at %" PRIu64 " with %u records; durable was "
			 "%" PRIu64 " (%u records)",
			 seed, rep.end, sc.next, D, need);

	/* Half the seeds: damage one record past what was durable and past the checkpoint of the
	 * last segment holding data (a torn write). Recovery must end exactly there. */
	uint64_t torn_at = UINT64_MAX;
	if (p.tear && rep.end > 0) {
		/* The last segment holding data: when the kill left a partial record at the very
		 * start of a segment, the end is that segment's start and every record before it is
		 * durable (a segment is written only after the one before it was synced). */
		uint64_t lstart = rep.end / p.seg * p.seg;
		char path[400];
		uint8_t cp[8], w[4] = {0};
		uint64_t ckpt;
		seg_path(fx, lstart, path, sizeof(path));
		if (access(path, F_OK) != 0 || tlog_pread_bytes(path, SEG_HDR, w, 4) != 0 ||
		    !(w[0] | w[1] | w[2] | w[3]))
			lstart = (rep.end - 1) / p.seg * p.seg;
		seg_path(fx, lstart, path, sizeof(path));
		assert_ok(tlog_pread_bytes(path, 512, cp, 8));
		memcpy(&ckpt, cp, 8);
		uint64_t lo = D > ckpt ? D : ckpt;
		lo = lo > lstart ? lo : lstart;
		uint32_t cand = 0, ncand = 0;
		for (uint32_t i = 0; i < sc.next; i++) {
			if (sc.seen[i] >= lo) {
				if (ncand++ == 0)
					cand = i;
			}
		}
		if (ncand) {
			cand += (uint32_t)(p.tear % ncand);
			uint32_t k, v;
			crash_sizes(seed, cand, &k, &v);
			torn_at = sc.seen[cand];
			assert_ok(tlog_flip(path, SEG_HDR + (torn_at - lstart) + TDM_LOG_REC_HDR_SIZE +
						      (p.tear % k),
					    0x40));
			snap(fx);
			uint64_t *seen = sc.seen;
			sc = (struct scan_ctx){.seed = seed, .count = C, .pos = pg->pos,
					       .cap = CRASH_MAX_REC + 1, .seen = seen};
			memset(&rep, 0, sizeof(rep));
			rc = tdm_log_scan(fx->dir, TLOG_CLUSTER, 0, crash_scan_cb, &sc, &rep);
			if (rc)
				fail_msg("seed %" PRIu64 ": scan with a torn record at %" PRIu64
					 " = %d (%s) at record %u: %s / %s",
					 seed, torn_at, rc, tdm_strerror(rc), sc.next, sc.err,
					 rep.error_text);
			assert_unchanged(fx, "tdm_log_scan");
			assert_u64(rep.end, torn_at);
			assert_int_equal(sc.next, cand);
			assert_true(rep.torn_bytes > 0);
		}
	}

	/* Recovery. */
	struct tdm_log *log = NULL;
	rc = tlog_open(fx, &cfg, &log);
	if (rc)
		fail_msg("seed %" PRIu64 ": open after the crash = %d (%s): %s", seed, rc,
			 tdm_strerror(rc), tdm_errmsg());
	const struct tdm_log_recovery *rv = tdm_log_recovery(log);
	if (rv->end < D)
		fail_msg("seed %" PRIu64 ": recovery end %" PRIu64 " < durable %" PRIu64, seed,
			 rv->end, D);
	assert_u64(rv->end, rep.end);
	assert_u64(rv->start, 0);
	assert_u64(rv->bytes_cut, rep.torn_bytes);
	if (torn_at != UINT64_MAX) {
		assert_u64(rv->end, torn_at);
		assert_true(rv->bytes_cut > 0);
	}
	if (rv->bytes_cut) {
		char want[64];
		snprintf(want, sizeof(want), "cut-%016" PRIx64 ".bin", rv->end);
		assert_non_null(strstr(rv->cut_file, want));
		char path[1200];
		if (rv->cut_file[0] == '/')
			snprintf(path, sizeof(path), "%s", rv->cut_file);
		else
			snprintf(path, sizeof(path), "%s/%s", fx->dir, rv->cut_file);
		assert_int_equal(access(path, R_OK), 0);
	}
	assert_u64(tdm_log_tail(log), rv->end);
	assert_u64(tdm_log_durable(log), rv->end);
	uint32_t n = sc.next;
	if (getenv("TLOG_VERBOSE"))
		fprintf(stderr,
			"crash seed %2" PRIu64 ": ring %3" PRIu64 "K seg %3" PRIu64 "K batch %4uK "
			"ckpt %s: appended %5u, durable %7" PRIu64 " (%5u rec), recovered end %7" PRIu64
			" (%5u rec), cut %" PRIu64 "%s\n",
			seed, p.ring / KIB, p.seg / KIB, p.max_batch / KIB,
			p.checkpoint > (1ull << 30) ? "none" : "8K  ", C, D, need, rv->end, n,
			rv->bytes_cut, torn_at != UINT64_MAX ? " (torn)" : "");
	struct xrec *xs = tlog_alloc(fx, (n + 1) * sizeof(*xs));
	for (uint32_t i = 0; i < n; i++) {
		xs[i] = (struct xrec){.pos = sc.seen[i], .idx = i, .type = TDM_LOG_REC_PUT,
				      .origin = TLOG_NODE};
		crash_sizes(seed, i, &xs[i].klen, &xs[i].vlen);
	}
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	g->seed = seed;
	tlog_verify(fx, log, 0, xs, n, seed, p.seg);

	/* Appends continue at the end; a clean close and reopen keeps everything. */
	uint32_t k, v;
	crash_sizes(seed, n, &k, &v);
	uint64_t end = 0;
	assert_ok(tlog_append_rec(log, g, n, k, v, TLOG_NODE, &xs[n], &end));
	if (xs[n].pos != rv->end) {
		assert_u64(xs[n].pos % p.seg, 0);
		assert_nodiff(tlog_pad_diff(log, rv->end, xs[n].pos, p.seg));
	}
	assert_ok(tdm_log_flush_until(log, end));
	tlog_close(fx, log);
	assert_ok(tlog_open(fx, &cfg, &log));
	rv = tdm_log_recovery(log);
	assert_u64(rv->end, end);
	assert_u64(rv->bytes_cut, 0);
	tlog_verify(fx, log, 0, xs, n + 1, seed, p.seg);
}

/* ---- Corrupted files ---- */

#define BUILD_CAP 20000u
#define BUILD_SEG (64ull * KIB)

struct built {
	struct tdm_log_config cfg;
	struct xrec *xs;
	size_t n;
	uint64_t tail;
	int nseg;
	char segs[64][32];
};

/* A closed log of about 4.5 segments of 64 KiB. */
static void build_log(struct tlog_fx *fx, struct built *b, uint64_t seed)
{
	struct tdm_log *log;
	tlog_config(fx, &b->cfg, 64 * KIB, BUILD_SEG);
	assert_ok(tlog_open(fx, &b->cfg, &log));
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	b->xs = tlog_alloc(fx, BUILD_CAP * sizeof(*b->xs));
	g->seed = seed;
	b->n = 0;
	while (tdm_log_tail(log) < 4 * BUILD_SEG + BUILD_SEG / 2) {
		uint32_t k, v;
		crash_sizes(seed, (uint32_t)b->n, &k, &v);
		assert_true(b->n < BUILD_CAP);
		assert_ok(tlog_append_rec(log, g, (uint32_t)b->n, k, v, TLOG_NODE, &b->xs[b->n],
					  NULL));
		b->n++;
	}
	b->tail = tdm_log_tail(log);
	assert_ok(tdm_log_flush_until(log, b->tail));
	tlog_close(fx, log);
	b->nseg = tlog_segments(fx->dir, b->segs, 64);
	assert_true(b->nseg >= 5); /* 5 with data, maybe a prepared next one */
}

/* Open must fail with want, name the file (and optionally more), and change nothing. */
static void expect_open_error(struct tlog_fx *fx, const struct built *b, uint64_t cluster,
			      int want, const char *file, const char *what)
{
	struct tdm_log_config c = b->cfg;
	struct tdm_log *log = NULL;
	c.cluster_id = cluster;
	snap(fx);
	tdm_err_clear();
	int rc = tlog_open(fx, &c, &log);
	if (rc != want)
		fail_msg("%s: tdm_log_open = %d (%s), want %d (%s); errmsg: %s", what, rc,
			 tdm_strerror(rc), want, tdm_strerror(want), tdm_errmsg());
	if (file && !strstr(tdm_errmsg(), file))
		fail_msg("%s: errmsg does not name %s: \"%s\"", what, file, tdm_errmsg());
	if (!file && tdm_errmsg()[0] == '\0')
		fail_msg("%s: errmsg is empty", what);
	assert_unchanged(fx, what);
	if (access(fx->shm_path, F_OK) == 0)
		fail_msg("%s: the failed open left the ring %s behind", what, fx->shm_path);
}

/* Scan must report want in file at offset (UINT64_MAX: any) and change nothing. */
static void expect_scan_error(struct tlog_fx *fx, uint64_t cluster, int want, const char *file,
			      uint64_t offset, const char *what, struct tdm_log_scan_report *rep)
{
	snap(fx);
	memset(rep, 0, sizeof(*rep));
	int rc = tdm_log_scan(fx->dir, cluster, 0, NULL, NULL, rep);
	if (rc != want || rep->error != want)
		fail_msg("%s: tdm_log_scan = %d, rep.error = %d (%s), want %d (%s): %s", what, rc,
			 rep->error, tdm_strerror(rep->error), want, tdm_strerror(want),
			 rep->error_text);
	if (file && !strstr(rep->error_file, file))
		fail_msg("%s: rep.error_file \"%s\" does not name %s", what, rep->error_file, file);
	if (offset != UINT64_MAX && rep->error_offset != offset)
		fail_msg("%s: rep.error_offset %" PRIu64 ", want %" PRIu64, what,
			 rep->error_offset, offset);
	assert_unchanged(fx, what);
}

static void expect_opens(struct tlog_fx *fx, const struct built *b)
{
	struct tdm_log *log = NULL;
	int rc = tlog_open(fx, &b->cfg, &log);
	if (rc)
		fail_msg("restored log: open = %d (%s): %s", rc, tdm_strerror(rc), tdm_errmsg());
	assert_u64(tdm_log_recovery(log)->end, b->tail);
	assert_u64(tdm_log_recovery(log)->bytes_cut, 0);
	tlog_close(fx, log);
}

static void test_corrupt_segment_header(void **state)
{
	struct tlog_fx *fx = *state;
	struct built b;
	struct tdm_log_scan_report rep;
	build_log(fx, &b, 0xa1);
	const int which[] = {0, 2, b.nseg - 1};
	for (int w = 0; w < 3; w++) {
		const char *name = b.segs[which[w]];
		char path[400], what[128];
		snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
		/* (a) magic */
		assert_ok(tlog_flip(path, 3, 0x20));
		snprintf(what, sizeof(what), "magic of %s", name);
		expect_open_error(fx, &b, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, what);
		expect_scan_error(fx, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, 0, what, &rep);
		assert_ok(tlog_flip(path, 3, 0x20));
		/* header checksum */
		assert_ok(tlog_flip(path, 41, 0x01));
		snprintf(what, sizeof(what), "header crc of %s", name);
		expect_open_error(fx, &b, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, what);
		expect_scan_error(fx, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, 0, what, &rep);
		assert_ok(tlog_flip(path, 41, 0x01));
	}
	expect_opens(fx, &b);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put_u64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static void test_corrupt_cluster_version(void **state)
{
	struct tlog_fx *fx = *state;
	struct built b;
	struct tdm_log_scan_report rep;
	build_log(fx, &b, 0xb2);

	/* The intact log scans clean. */
	memset(&rep, 0, sizeof(rep));
	assert_ok(tdm_log_scan(fx->dir, TLOG_CLUSTER, 0, NULL, NULL, &rep));
	assert_int_equal(rep.error, 0);
	assert_u64(rep.start, 0);
	assert_u64(rep.end, b.tail);
	assert_int_equal(rep.segments, b.nseg);
	assert_u64(rep.torn_bytes, 0);
	assert_u64(rep.checkpoint, b.tail);
	assert_true(rep.records >= b.n);
	memset(&rep, 0, sizeof(rep));
	assert_ok(tdm_log_scan(fx->dir, 0, 0, NULL, NULL, &rep));

	/* Opened by another cluster. */
	expect_open_error(fx, &b, TLOG_CLUSTER + 1, TDM_ERR_CLUSTER, NULL, "cfg.cluster_id 8");
	expect_scan_error(fx, TLOG_CLUSTER + 1, TDM_ERR_CLUSTER, NULL, UINT64_MAX,
			  "scan with cluster 8", &rep);

	/* One segment of another cluster: without and with a matching header crc. */
	const char *name = b.segs[1];
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
	uint8_t orig[44], hdr[44];
	assert_ok(tlog_pread_bytes(path, 0, orig, sizeof(orig)));
	uint32_t stored;
	memcpy(&stored, orig + 40, 4);
	if (tdm_crc32c(0, orig, 40) != stored)
		fail_msg("%s: header crc at offset 40 is 0x%08x, tdm_crc32c(bytes 0..39) is 0x%08x "
			 "(see log/record.c)",
			 name, stored, tdm_crc32c(0, orig, 40));
	assert_memory_equal(orig, "TNDMSEG1", 8);
	uint64_t v64;
	memcpy(&v64, orig + 16, 8);
	assert_u64(v64, TLOG_CLUSTER);
	memcpy(&v64, orig + 24, 8);
	assert_u64(v64, BUILD_SEG);
	memcpy(&v64, orig + 32, 8);
	assert_u64(v64, BUILD_SEG);

	memcpy(hdr, orig, sizeof(hdr));
	put_u64(hdr + 16, 9);
	assert_ok(tlog_pwrite_bytes(path, 0, hdr, sizeof(hdr)));
	expect_open_error(fx, &b, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, "cluster id, stale crc");
	expect_scan_error(fx, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, 0, "cluster id, stale crc", &rep);
	put_u32(hdr + 40, tdm_crc32c(0, hdr, 40));
	assert_ok(tlog_pwrite_bytes(path, 0, hdr, sizeof(hdr)));
	expect_open_error(fx, &b, TLOG_CLUSTER, TDM_ERR_CLUSTER, name, "cluster id 9");
	expect_scan_error(fx, TLOG_CLUSTER, TDM_ERR_CLUSTER, name, UINT64_MAX, "cluster id 9", &rep);

	/* Another version. */
	memcpy(hdr, orig, sizeof(hdr));
	put_u32(hdr + 8, 2);
	put_u32(hdr + 40, tdm_crc32c(0, hdr, 40));
	assert_ok(tlog_pwrite_bytes(path, 0, hdr, sizeof(hdr)));
	expect_open_error(fx, &b, TLOG_CLUSTER, TDM_ERR_VERSION, name, "version 2");
	expect_scan_error(fx, TLOG_CLUSTER, TDM_ERR_VERSION, name, UINT64_MAX, "version 2", &rep);

	assert_ok(tlog_pwrite_bytes(path, 0, orig, sizeof(orig)));
	expect_opens(fx, &b);
}

/* The message names the record's file offset or stream position, in decimal or hex. */
static bool names_offset(const char *msg, uint64_t off, uint64_t pos)
{
	char s[4][40];
	snprintf(s[0], 40, "%" PRIu64, off);
	snprintf(s[1], 40, "%" PRIx64, off);
	snprintf(s[2], 40, "%" PRIu64, pos);
	snprintf(s[3], 40, "%" PRIx64, pos);
	for (int i = 0; i < 4; i++)
		if (strstr(msg, s[i]))
			return true;
	return false;
}

/* Flip a byte in the record xs[i] (in its key) and expect TDM_ERR_CORRUPT from open and scan. */
static void corrupt_record_case(struct tlog_fx *fx, const struct built *b, size_t i)
{
	const struct xrec *x = &b->xs[i];
	uint64_t start = x->pos / BUILD_SEG * BUILD_SEG;
	uint64_t off = SEG_HDR + (x->pos - start);
	char name[32], path[400], what[160];
	struct tdm_log_scan_report rep;
	seg_name(start, name, sizeof(name));
	seg_path(fx, start, path, sizeof(path));
	assert_ok(tlog_flip(path, off + TDM_LOG_REC_HDR_SIZE + 2, 0x04));
	snprintf(what, sizeof(what), "record %zu at %" PRIu64 " (%s offset %" PRIu64 ")", i,
		 x->pos, name, off);
	expect_open_error(fx, b, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, what);
	if (!names_offset(tdm_errmsg(), off, x->pos))
		fail_msg("%s: errmsg names neither the offset nor the position: \"%s\"", what,
			 tdm_errmsg());
	expect_scan_error(fx, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, off, what, &rep);
	assert_u64(rep.error_position, x->pos);
	assert_ok(tlog_flip(path, off + TDM_LOG_REC_HDR_SIZE + 2, 0x04));
}

static void test_corrupt_record_middle(void **state)
{
	struct tlog_fx *fx = *state;
	struct built b;
	build_log(fx, &b, 0xc3);
	/* (c) the middle of a middle segment, the first record, the last record of segment 0 */
	size_t mid = 0, last0 = 0;
	while (mid < b.n && b.xs[mid].pos < BUILD_SEG + BUILD_SEG / 2)
		mid++;
	while (last0 + 1 < b.n && b.xs[last0 + 1].pos < BUILD_SEG)
		last0++;
	corrupt_record_case(fx, &b, mid);
	corrupt_record_case(fx, &b, 0);
	corrupt_record_case(fx, &b, last0);
	/* A record in the last segment, below the checkpoint of the clean close. */
	char last[400];
	uint8_t cp[8];
	seg_path(fx, (b.tail - 1) / BUILD_SEG * BUILD_SEG, last, sizeof(last));
	assert_ok(tlog_pread_bytes(last, 512, cp, 8));
	uint64_t checkpoint;
	memcpy(&checkpoint, cp, 8);
	assert_u64(checkpoint, b.tail);
	corrupt_record_case(fx, &b, b.n - 1);
	corrupt_record_case(fx, &b, b.n - 3);
	expect_opens(fx, &b);
}

static void test_missing_segment(void **state)
{
	struct tlog_fx *fx = *state;
	struct built b;
	struct tdm_log_scan_report rep;
	build_log(fx, &b, 0xe5);
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", fx->dir, b.segs[2]);
	size_t len = 0;
	uint8_t *saved = tlog_read_file(path, &len);
	assert_non_null(saved);
	fx->mem[15] = saved;
	assert_int_equal(unlink(path), 0);
	expect_open_error(fx, &b, TLOG_CLUSTER, -ENOENT, b.segs[2], "missing middle segment");
	expect_scan_error(fx, TLOG_CLUSTER, -ENOENT, b.segs[2], UINT64_MAX, "missing segment",
			  &rep);
	int fd = open(path, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, saved, len), (ssize_t)len);
	close(fd);
	expect_opens(fx, &b);
}

/*
 * A record that exactly fills the end of a closed segment, with its length word's top bit
 * flipped, reads like a PAD that ends on the boundary (record.c's PAD encoding). It is still a
 * damaged durable record: open and scan must say TDM_ERR_CORRUPT, not drop it silently.
 */
static void test_corrupt_length_top_bit(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	const uint64_t seg = BUILD_SEG, seed = 0xf6;
	tlog_config(fx, &cfg, 64 * KIB, seg);
	assert_ok(tlog_open(fx, &cfg, &log));
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	struct xrec *xs = tlog_alloc(fx, BUILD_CAP * sizeof(*xs));
	g->seed = seed;
	size_t n = 0, exact = SIZE_MAX;
	while (tdm_log_tail(log) < 3 * seg + seg / 2) {
		uint64_t tail = tdm_log_tail(log);
		uint64_t room = (tail / seg + 1) * seg - tail;
		uint32_t k = 9, v;
		if (exact == SIZE_MAX && tail > seg && room >= 56 && room <= 4096)
			v = (uint32_t)room - TDM_LOG_REC_HDR_SIZE - k; /* length == span == room */
		else
			crash_sizes(seed, (uint32_t)n, &k, &v);
		assert_true(n < BUILD_CAP);
		assert_ok(tlog_append_rec(log, g, (uint32_t)n, k, v, TLOG_NODE, &xs[n], NULL));
		if (v == room - TDM_LOG_REC_HDR_SIZE - k && xs[n].pos == tail && exact == SIZE_MAX &&
		    tail > seg)
			exact = n;
		n++;
	}
	assert_true(exact != SIZE_MAX);
	const struct xrec *x = &xs[exact];
	uint64_t len = TDM_LOG_REC_HDR_SIZE + x->klen + x->vlen;
	assert_u64((x->pos + len) % seg, 0);
	assert_ok(tdm_log_flush_until(log, tdm_log_tail(log)));
	tlog_close(fx, log);

	uint64_t start = x->pos / seg * seg, off = SEG_HDR + (x->pos - start);
	char name[32], path[400], what[160];
	struct tdm_log_scan_report rep;
	struct built b = {.cfg = cfg, .tail = 0};
	seg_name(start, name, sizeof(name));
	seg_path(fx, start, path, sizeof(path));
	assert_ok(tlog_flip(path, off + 3, 0x80));
	snprintf(what, sizeof(what),
		 "%" PRIu64 "-byte record at %" PRIu64 " filling %s, length bit 31 flipped", len,
		 x->pos, name);
	expect_open_error(fx, &b, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, what);
	expect_scan_error(fx, TLOG_CLUSTER, TDM_ERR_CORRUPT, name, off, what, &rep);
}

/* The history file is checksummed (history.c): a flipped byte is TDM_ERR_CORRUPT. */
static void test_corrupt_history(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	tlog_config(fx, &cfg, 64 * KIB, 64 * KIB);
	assert_ok(tlog_open(fx, &cfg, &log));
	assert_ok(tdm_log_begin_epoch(log, 3, 1));
	assert_ok(tdm_log_begin_epoch(log, 4, 2));
	assert_ok(tdm_log_flush_until(log, tdm_log_tail(log)));
	tlog_close(fx, log);
	struct tdm_log_epoch_start h[4];
	assert_int_equal(tdm_log_history_read(fx->dir, h, 4), 2);
	char path[400];
	snprintf(path, sizeof(path), "%s/history", fx->dir);
	size_t len = 0;
	uint8_t *orig = tlog_read_file(path, &len);
	assert_non_null(orig);
	fx->mem[15] = orig;
	assert_u64(len, 16 + 2 * 16 + 4);
	for (size_t i = 0; i < len; i++) {
		assert_ok(tlog_flip(path, i, 0x08));
		int rc = tdm_log_history_read(fx->dir, h, 4);
		if (rc != TDM_ERR_CORRUPT && rc != TDM_ERR_VERSION)
			fail_msg("history with byte %zu flipped: tdm_log_history_read = %d (%s), want "
				 "TDM_ERR_CORRUPT",
				 i, rc, tdm_strerror(rc));
		assert_ok(tlog_flip(path, i, 0x08));
	}
	assert_int_equal(tdm_log_history_read(fx->dir, h, 4), 2);
	assert_int_equal(h[0].epoch, 3);
	assert_int_equal(h[1].epoch, 4);
}

/* (d) A torn tail above the checkpoint: the owner flushed and died without closing; the last
 * record is then damaged. Recovery cuts it, saves it aside, and appends continue there. */
struct torn_page {
	atomic_int state;
	int rc;
	atomic_uint count;
	uint64_t tail;
	uint64_t pos[BUILD_CAP];
};

static int torn_child(const struct tdm_log_config *c, uint64_t seed, struct torn_page *pg)
{
	struct tdm_log *log = NULL;
	int rc = tdm_log_open(c, &log);
	if (rc)
		return pg->rc = rc, -1;
	struct tlog_gen *g = malloc(sizeof(*g));
	if (!g)
		return -2;
	g->seed = seed;
	for (uint32_t i = 0; tdm_log_tail(log) < 2 * c->segment_size + c->segment_size / 2; i++) {
		uint32_t k, v;
		crash_sizes(seed, i, &k, &v);
		if (i >= BUILD_CAP)
			return -3;
		struct xrec x;
		rc = tlog_append_rec(log, g, i, k, v, TLOG_NODE, &x, NULL);
		if (rc)
			return pg->rc = rc, -4;
		pg->pos[i] = x.pos;
		atomic_store(&pg->count, i + 1);
	}
	pg->tail = tdm_log_tail(log);
	rc = tdm_log_flush_until(log, pg->tail);
	if (rc)
		return pg->rc = rc, -5;
	return 1; /* and exit without tdm_log_close */
}

static void test_torn_tail_cut(void **state)
{
	struct tlog_fx *fx = *state;
	const uint64_t seed = 0xd4, seg = BUILD_SEG;
	struct tdm_log_config cfg;
	tlog_config(fx, &cfg, 64 * KIB, seg);
	cfg.checkpoint_bytes = 1ull << 40;
	struct torn_page *pg = tlog_shared(fx, sizeof(*pg));
	assert_non_null(pg);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int st = torn_child(&cfg, seed, pg);
		atomic_store(&pg->state, st);
		_exit(st == 1 ? 0 : 1);
	}
	tlog_track_child(fx, pid);
	int wst = 0;
	wait_exit(fx, pid, &wst);
	if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
		fail_msg("owner child failed at step %d: %d (%s)", atomic_load(&pg->state), pg->rc,
			 tdm_strerror(pg->rc));
	uint32_t C = atomic_load(&pg->count);
	struct xrec *xs = tlog_alloc(fx, C * sizeof(*xs));
	for (uint32_t i = 0; i < C; i++) {
		xs[i] = (struct xrec){.pos = pg->pos[i], .idx = i, .type = TDM_LOG_REC_PUT,
				      .origin = TLOG_NODE};
		crash_sizes(seed, i, &xs[i].klen, &xs[i].vlen);
	}
	const struct xrec *L = &xs[C - 1];
	uint64_t lstart = L->pos / seg * seg;
	uint64_t off = SEG_HDR + (L->pos - lstart);
	uint32_t rlen = TDM_LOG_REC_HDR_SIZE + L->klen + L->vlen;
	assert_u64(L->pos + tdm_log_rec_span(L->klen, L->vlen), pg->tail);
	char name[32], path[400];
	seg_name(lstart, name, sizeof(name));
	seg_path(fx, lstart, path, sizeof(path));
	uint8_t cp[8];
	uint64_t checkpoint;
	assert_ok(tlog_pread_bytes(path, 512, cp, 8));
	memcpy(&checkpoint, cp, 8);
	if (checkpoint > L->pos)
		fail_msg("premise: checkpoint_bytes is 2^40 and the owner never closed, yet %s "
			 "records checkpoint %" PRIu64 " past the last record at %" PRIu64,
			 name, checkpoint, L->pos);

	/* Damage the last record (a key byte). */
	assert_ok(tlog_flip(path, off + TDM_LOG_REC_HDR_SIZE + 1, 0x10));
	uint8_t *damaged = tlog_alloc(fx, rlen);
	assert_ok(tlog_pread_bytes(path, off, damaged, rlen));

	struct tdm_log_scan_report rep;
	memset(&rep, 0, sizeof(rep));
	snap(fx);
	int rc = tdm_log_scan(fx->dir, TLOG_CLUSTER, 0, NULL, NULL, &rep);
	if (rc)
		fail_msg("scan of a torn tail = %d (%s): %s in %s", rc, tdm_strerror(rc),
			 rep.error_text, rep.error_file);
	assert_unchanged(fx, "tdm_log_scan");
	assert_int_equal(rep.error, 0);
	assert_u64(rep.end, L->pos);
	assert_true(rep.torn_bytes > 0);

	assert_int_equal(access(fx->shm_path, F_OK), 0); /* the dead owner's ring */
	struct tdm_log *log = NULL;
	rc = tlog_open(fx, &cfg, &log);
	if (rc)
		fail_msg("open with a torn tail = %d (%s): %s", rc, tdm_strerror(rc), tdm_errmsg());
	const struct tdm_log_recovery *rv = tdm_log_recovery(log);
	assert_u64(rv->end, L->pos);
	assert_true(rv->bytes_cut > 0);
	assert_u64(rv->bytes_cut, rep.torn_bytes);
	char want[64], cut[1200];
	snprintf(want, sizeof(want), "cut-%016" PRIx64 ".bin", L->pos);
	if (!strstr(rv->cut_file, want))
		fail_msg("cut_file \"%s\", want DIR/%s", rv->cut_file, want);
	if (rv->cut_file[0] == '/')
		snprintf(cut, sizeof(cut), "%s", rv->cut_file);
	else
		snprintf(cut, sizeof(cut), "%s/%s", fx->dir, rv->cut_file);
	size_t clen = 0;
	uint8_t *cb = tlog_read_file(cut, &clen);
	if (!cb)
		fail_msg("cut file %s is not readable", cut);
	fx->mem[15] = cb;
	if (clen < rlen || memcmp(cb, damaged, rlen) != 0)
		fail_msg("cut file %s (%zu bytes) does not start with the %u bytes of the cut record",
			 cut, clen, rlen);
	/* The segment is zero past the end. */
	size_t slen = 0;
	uint8_t *sb = tlog_read_file(path, &slen);
	assert_non_null(sb);
	fx->mem[14] = sb;
	assert_u64(slen, SEG_HDR + seg);
	for (size_t i = off; i < slen; i++)
		if (sb[i])
			fail_msg("%s: byte %zu (past the recovered end) is 0x%02x, want 0", name, i,
				 sb[i]);
	assert_u64(tdm_log_tail(log), L->pos);
	tlog_verify(fx, log, 0, xs, C - 1, seed, seg);

	/* Appends continue at the cut: write the same record again. */
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	g->seed = seed;
	uint64_t end = 0;
	struct xrec again;
	assert_ok(tlog_append_rec(log, g, C - 1, L->klen, L->vlen, TLOG_NODE, &again, &end));
	assert_u64(again.pos, L->pos);
	assert_ok(tdm_log_flush_until(log, end));
	tlog_close(fx, log);
	assert_ok(tlog_open(fx, &cfg, &log));
	rv = tdm_log_recovery(log);
	assert_u64(rv->end, end);
	assert_u64(rv->bytes_cut, 0);
	tlog_verify(fx, log, 0, xs, C, seed, seg);
	/* The cut file stays. */
	assert_int_equal(access(cut, F_OK), 0);
}

/* ---- Group ---- */

#define T(f) cmocka_unit_test_setup_teardown(f, tlog_setup, tlog_teardown)

int tlog_run_fault(void)
{
	static char names[CRASH_SEEDS][40];
	enum { NFIXED = 7, NTRUNC = 8 };
	struct CMUnitTest tests[NFIXED + CRASH_SEEDS + NTRUNC] = {
		T(test_corrupt_segment_header), T(test_corrupt_cluster_version),
		T(test_corrupt_record_middle),  T(test_corrupt_length_top_bit),
		T(test_missing_segment),        T(test_corrupt_history),
		T(test_torn_tail_cut),
	};
	for (int i = 0; i < CRASH_SEEDS; i++) {
		snprintf(names[i], sizeof(names[i]), "test_crash_seed_%02d", i);
		tests[NFIXED + i] = (struct CMUnitTest){names[i], test_crash_seed, tlog_setup,
						   tlog_teardown, (void *)(uintptr_t)(i + 1)};
	}
	int n = NFIXED + CRASH_SEEDS;
	n += tlog_fault_truncate_tests(tests + n, NTRUNC);
	return _cmocka_run_group_tests("log-fault", tests, (size_t)n, NULL, NULL);
}
