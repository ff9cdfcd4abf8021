/*
 * cmocka tests of the write log, "unit" group continued: a second process attaching to the ring,
 * retention with lagging and acking peers, and the refusals (bad configuration, bad appends,
 * rings of another version, a directory opened twice).
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

/* ---- Attach from another process ---- */

#define ATT_RECORDS 6000u
#define ATT_ORIGIN 2u

struct att_page {
	atomic_uint appended;
	atomic_int status; /* child: 0 running, 1 done, < 0 failed at a step */
	int rc;
	uint64_t pos[ATT_RECORDS];
};

static void att_sizes(uint32_t idx, uint32_t *k, uint32_t *v)
{
	uint64_t h = tlog_mix(0xa77ull * 31 + idx);
	*k = 9 + (uint32_t)(h % 8);
	*v = (uint32_t)((h >> 8) % 500);
}

/* Child: attach, append ATT_RECORDS (retrying on back-pressure while the parent flushes), then
 * read every record back through its own cursor (old ones from the segment files). */
static int attach_child(const char *shm, uint64_t seed, struct att_page *pg)
{
	struct tdm_log *log = NULL;
	int rc = tdm_log_attach(shm, &log);
	if (rc)
		return pg->rc = rc, -1;
	const struct tdm_log_recovery *rv = tdm_log_recovery(log);
	if (!rv || rv->end != 0 || rv->start != 0 || rv->bytes_cut != 0)
		return -2;
	struct tlog_gen *g = malloc(sizeof(*g));
	if (!g)
		return -3;
	g->seed = seed;
	for (uint32_t i = 0; i < ATT_RECORDS; i++) {
		uint32_t k, v;
		struct tdm_log_entry e;
		att_sizes(i, &k, &v);
		tlog_entry(g, &e, i, k, v, TDM_LOG_REC_PUT, ATT_ORIGIN);
		for (uint32_t tries = 0;; tries++) {
			rc = tdm_log_append(log, &e, &pg->pos[i], NULL);
			if (rc != TDM_ERR_BACKPRESSURE)
				break;
			if (tries > 400000)
				return pg->rc = rc, -4;
			usleep(20);
		}
		if (rc)
			return pg->rc = rc, -5;
		atomic_store(&pg->appended, i + 1);
	}
	struct tdm_log_cursor *c = NULL;
	rc = tdm_log_cursor_create(log, 0, &c);
	if (rc)
		return pg->rc = rc, -6;
	for (uint32_t i = 0; i < ATT_RECORDS; i++) {
		struct tdm_log_rec r;
		struct xrec x = {.pos = pg->pos[i], .idx = i, .type = TDM_LOG_REC_PUT,
				 .origin = ATT_ORIGIN};
		att_sizes(i, &x.klen, &x.vlen);
		rc = tdm_log_cursor_next(c, &r);
		if (rc)
			return pg->rc = rc, -7;
		if (tlog_rec_diff(&r, &x, seed))
			return -8;
	}
	tdm_log_cursor_destroy(c);
	tdm_log_close(log);
	free(g);
	return 1;
}

static const char *att_step(int st)
{
	static const char *steps[] = {"?",
				      "tdm_log_attach",
				      "recovery of an attached log is not zero",
				      "malloc",
				      "append: back-pressure never cleared",
				      "tdm_log_append",
				      "tdm_log_cursor_create(0)",
				      "tdm_log_cursor_next",
				      "record read back differs"};
	return st < 0 && st >= -8 ? steps[-st] : "?";
}

static void test_attach_child_appends(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	const uint64_t seg = 64 * KIB, seed = 0xa77;
	tlog_config(fx, &cfg, 256 * KIB, seg);
	assert_ok(tlog_open(fx, &cfg, &log));
	struct att_page *pg = tlog_shared(fx, sizeof(struct att_page));
	assert_non_null(pg);
	struct tdm_log_cursor *c = tlog_cursor(fx, log, 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int st = attach_child(fx->shm, seed, pg);
		atomic_store(&pg->status, st);
		_exit(st == 1 ? 0 : 1);
	}
	tlog_track_child(fx, pid);

	/* Flush and read what the child appends, in order, as it arrives. */
	struct tlog_gen g;
	g.seed = seed;
	uint32_t got = 0;
	int wst = 0;
	bool exited = false;
	uint64_t idle = 0;
	while (got < ATT_RECORDS || !exited) {
		int w = tdm_log_flusher_do_work(log);
		if (w < 0)
			fail_msg("flusher: %d (%s): %s", w, tdm_strerror(w), tdm_errmsg());
		struct tdm_log_rec r;
		int rc = got < ATT_RECORDS ? tdm_log_cursor_next(c, &r) : TDM_ERR_EMPTY;
		if (rc == 0) {
			struct xrec x = {.pos = r.hdr->position, .idx = got, .type = TDM_LOG_REC_PUT,
					 .origin = ATT_ORIGIN};
			att_sizes(got, &x.klen, &x.vlen);
			assert_nodiff(tlog_rec_diff(&r, &x, seed));
			got++;
			idle = 0;
			continue;
		}
		if (rc != TDM_ERR_EMPTY)
			fail_msg("parent cursor_next at record %u: %d (%s): %s", got, rc,
				 tdm_strerror(rc), tdm_errmsg());
		if (!exited && waitpid(pid, &wst, WNOHANG) == pid) {
			exited = true;
			tlog_forget_child(fx, pid);
			if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
				fail_msg("child failed at step \"%s\": rc %d (%s); status 0x%x",
					 att_step(atomic_load(&pg->status)), pg->rc,
					 tdm_strerror(pg->rc), wst);
		}
		if (w == 0 && ++idle % 16 == 0) {
			if (idle > 16 * 400000)
				fail_msg("no progress: %u records read, child %s", got,
					 exited ? "exited" : "running");
			usleep(20);
		}
	}
	for (uint32_t i = 0; i < ATT_RECORDS; i++) {
		(void)g;
		if (i > 0 && pg->pos[i] <= pg->pos[i - 1])
			fail_msg("child record %u at %" PRIu64 " not after %" PRIu64, i, pg->pos[i],
				 pg->pos[i - 1]);
	}
	/* Positions the child got from append are where the parent found the records. */
	tlog_cursor_free(fx, c);
	struct xrec *xs = tlog_alloc(fx, ATT_RECORDS * sizeof(*xs));
	for (uint32_t i = 0; i < ATT_RECORDS; i++) {
		xs[i] = (struct xrec){.pos = pg->pos[i], .idx = i, .type = TDM_LOG_REC_PUT,
				      .origin = ATT_ORIGIN};
		att_sizes(i, &xs[i].klen, &xs[i].vlen);
	}
	assert_ok(tdm_log_flush_until(log, tdm_log_tail(log)));
	tlog_verify(fx, log, 0, xs, ATT_RECORDS, seed, seg);
	tlog_close(fx, log);
	/* Closed: the ring is gone. */
	assert_int_equal(access(fx->shm_path, F_OK), -1);
	struct tdm_log *a = NULL;
	assert_rc(tdm_log_attach(fx->shm, &a), -ENOENT);
	assert_ok(tlog_open(fx, &cfg, &log));
	tlog_verify(fx, log, 0, xs, ATT_RECORDS, seed, seg);
}

/* An attached writer whose owner closes the log gets TDM_ERR_CLOSED. */
static void test_attach_owner_closes(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	tlog_config(fx, &cfg, 64 * KIB, 64 * KIB);
	assert_ok(tlog_open(fx, &cfg, &log));
	int to_parent[2], to_child[2];
	assert_int_equal(pipe(to_parent), 0);
	assert_int_equal(pipe(to_child), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(to_parent[0]);
		close(to_child[1]);
		struct tdm_log *a = NULL;
		char ch = 'A';
		int rc = tdm_log_attach(fx->shm, &a);
		if (rc)
			_exit(10);
		struct tlog_gen *g = malloc(sizeof(*g));
		struct tdm_log_entry e;
		g->seed = 1;
		tlog_entry(g, &e, 0, 9, 10, TDM_LOG_REC_PUT, 2);
		if (tdm_log_append(a, &e, NULL, NULL) != 0)
			_exit(11);
		if (write(to_parent[1], &ch, 1) != 1 || read(to_child[0], &ch, 1) != 1)
			_exit(12);
		rc = tdm_log_append(a, &e, NULL, NULL);
		tdm_log_close(a);
		_exit(rc == TDM_ERR_CLOSED ? 0 : rc == 0 ? 13 : 14);
	}
	tlog_track_child(fx, pid);
	close(to_parent[1]);
	close(to_child[0]);
	char ch = 0;
	ssize_t rd = read(to_parent[0], &ch, 1);
	int wst = 0;
	if (rd != 1) {
		waitpid(pid, &wst, 0);
		tlog_forget_child(fx, pid);
		close(to_parent[0]);
		close(to_child[1]);
		fail_msg("child could not attach or append: exit %d (10 attach, 11 append)",
			 WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
	}
	assert_u64(tdm_log_tail(log), tdm_log_rec_span(9, 10));
	tlog_close(fx, log);
	ch = 'C';
	assert_int_equal(write(to_child[1], &ch, 1), 1);
	close(to_parent[0]);
	close(to_child[1]);
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	tlog_forget_child(fx, pid);
	assert_true(WIFEXITED(wst));
	if (WEXITSTATUS(wst) != 0)
		fail_msg("append after the owner closed: child exit %d (13: returned 0, 14: "
			 "another error), want TDM_ERR_CLOSED",
			 WEXITSTATUS(wst));
	/* The record appended before the close was flushed by the close. */
	assert_ok(tlog_open(fx, &cfg, &log));
	assert_u64(tdm_log_recovery(log)->end, tdm_log_rec_span(9, 10));
}

/* An attached writer whose owner was killed (no close) gets TDM_ERR_CLOSED once the ring is full,
 * never back-pressure forever. */
static void test_attach_owner_killed(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	tlog_config(fx, &cfg, 64 * KIB, 64 * KIB);
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* the owner: open, say so, wait to be killed (no flusher runs) */
		struct tdm_log *own = NULL;
		char ch = tdm_log_open(&cfg, &own) == 0 ? 'R' : 'E';
		close(ready[0]);
		if (write(ready[1], &ch, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	tlog_track_child(fx, pid);
	close(ready[1]);
	char ch = 0;
	assert_int_equal(read(ready[0], &ch, 1), 1);
	close(ready[0]);
	assert_int_equal(ch, 'R');
	struct tdm_log *a = NULL;
	assert_ok(tdm_log_attach(fx->shm, &a));
	kill(pid, SIGKILL);
	int wst;
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	tlog_forget_child(fx, pid);

	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	struct tdm_log_entry e;
	g->seed = 3;
	tlog_entry(g, &e, 0, 9, 100, TDM_LOG_REC_PUT, 2);
	int rc = 0;
	unsigned i;
	for (i = 0; i < 10000 && rc == 0; i++) /* the 64 KiB ring fills long before */
		rc = tdm_log_append(a, &e, NULL, NULL);
	tdm_log_close(a);
	if (rc != TDM_ERR_CLOSED)
		fail_msg("append %u after the owner was killed: %d (%s), want TDM_ERR_CLOSED", i, rc,
			 tdm_strerror(rc));
}

/* ---- Retention ---- */

#define RET_CAP 20000u

static void test_retention_cap_forces_resync(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	const uint64_t seg = 64 * KIB;
	tlog_config(fx, &cfg, 64 * KIB, seg);
	cfg.retention_cap = 4 * seg;
	assert_ok(tlog_open(fx, &cfg, &log));
	int lag = tdm_log_peer_add(log, 2, 0);
	int ack = tdm_log_peer_add(log, 3, 0);
	assert_true(lag >= 0);
	assert_true(ack >= 0);
	assert_true(lag != ack);
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	struct xrec *xs = tlog_alloc(fx, RET_CAP * sizeof(*xs));
	g->seed = 0x4e7;
	uint32_t idx = 0;
	size_t n = 0, acked_i = 0;
	while (tdm_log_tail(log) < 12 * seg) {
		tlog_append_until(log, g, tdm_log_tail(log) + 16 * KIB, &idx, xs, &n, RET_CAP);
		/* The acking peer stays about two segments behind. */
		while (acked_i + 1 < n && xs[acked_i + 1].pos + 2 * seg < tdm_log_tail(log))
			acked_i++;
		tdm_log_peer_ack(log, ack, xs[acked_i].pos);
	}
	assert_ok(tlog_flusher_settle(log));
	struct tdm_log_stats st;
	tdm_log_stats(log, &st);
	uint64_t start = tdm_log_start(log);
	assert_true(tdm_log_peer_needs_resync(log, lag));
	assert_false(tdm_log_peer_needs_resync(log, ack));
	assert_true(st.resyncs_forced >= 1);
	assert_true(st.segments_removed >= 1);
	assert_true(start > 0);
	if (start > xs[acked_i].pos)
		fail_msg("start %" PRIu64 " passed the acking peer's position %" PRIu64, start,
			 xs[acked_i].pos);
	if (tdm_log_tail(log) - start > cfg.retention_cap + 2 * seg)
		fail_msg("retained %" PRIu64 " bytes with a cap of %" PRIu64,
			 tdm_log_tail(log) - start, cfg.retention_cap);
	char names[64][32];
	int nseg = tlog_segments(fx->dir, names, 64);
	assert_true(nseg >= 1);
	assert_u64(strtoull(names[0], NULL, 16), start);
	/* Position 0 is gone. */
	uint8_t b[8];
	assert_rc(tdm_log_read(log, 0, b, 8), TDM_ERR_TRIMMED);
	struct tdm_log_cursor *c = NULL;
	int rc = tdm_log_cursor_create(log, 0, &c);
	if (rc == 0) {
		struct tdm_log_rec r;
		rc = tdm_log_cursor_next(c, &r);
		tdm_log_cursor_destroy(c);
	}
	assert_rc(rc, TDM_ERR_TRIMMED);
	/* What is kept reads back. */
	size_t first = 0;
	while (first < n && xs[first].pos < start)
		first++;
	assert_true(first < n);
	assert_u64(xs[first].pos, start);
	tlog_verify(fx, log, start, xs + first, n - first, g->seed, seg);
	tdm_log_peer_remove(log, lag);
	int again = tdm_log_peer_add(log, 4, tdm_log_tail(log));
	assert_true(again >= 0);
	assert_false(tdm_log_peer_needs_resync(log, again));
	/* A peer added below the start needs a resync from the beginning. */
	int late = tdm_log_peer_add(log, 5, 0);
	assert_true(late >= 0);
	assert_true(tdm_log_peer_needs_resync(log, late));

	/* Reopen: the log starts at the oldest kept segment. */
	uint64_t tail = tdm_log_tail(log);
	tlog_close(fx, log);
	assert_ok(tlog_open(fx, &cfg, &log));
	const struct tdm_log_recovery *rv = tdm_log_recovery(log);
	assert_u64(rv->end, tail);
	nseg = tlog_segments(fx->dir, names, 64);
	assert_u64(rv->start, strtoull(names[0], NULL, 16));
	assert_u64(tdm_log_start(log), rv->start);
	assert_true(rv->start >= start);
	assert_rc(tdm_log_read(log, 0, b, 8), TDM_ERR_TRIMMED);
	while (first < n && xs[first].pos < rv->start)
		first++;
	tlog_verify(fx, log, rv->start, xs + first, n - first, g->seed, seg);
}

static void test_retention_acking_peer_keeps(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	const uint64_t seg = 64 * KIB;
	tlog_config(fx, &cfg, 64 * KIB, seg);
	cfg.retention_cap = 8 * seg;
	assert_ok(tlog_open(fx, &cfg, &log));
	int p = tdm_log_peer_add(log, 2, 0);
	assert_true(p >= 0);
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	struct xrec *xs = tlog_alloc(fx, RET_CAP * sizeof(*xs));
	g->seed = 0xacc;
	uint32_t idx = 0;
	size_t n = 0;
	tlog_append_until(log, g, 2 * seg + 1000, &idx, xs, &n, RET_CAP);
	size_t ai = n / 2; /* somewhere in segment 1 */
	tdm_log_peer_ack(log, p, xs[ai].pos);
	tlog_append_until(log, g, 7 * seg, &idx, xs, &n, RET_CAP);
	assert_ok(tlog_flusher_settle(log));
	struct tdm_log_stats st;
	tdm_log_stats(log, &st);
	assert_false(tdm_log_peer_needs_resync(log, p));
	assert_u64(st.resyncs_forced, 0);
	assert_true(tdm_log_start(log) <= xs[ai].pos);
	tlog_verify(fx, log, xs[ai].pos, xs + ai, n - ai, g->seed, seg);
	/* Keep acking a segment behind the tail: still within the cap, never a resync. */
	while (tdm_log_tail(log) < 20 * seg) {
		tlog_append_until(log, g, tdm_log_tail(log) + 32 * KIB, &idx, xs, &n, RET_CAP);
		while (ai + 1 < n && xs[ai + 1].pos + seg < tdm_log_tail(log))
			ai++;
		tdm_log_peer_ack(log, p, xs[ai].pos);
	}
	assert_ok(tlog_flusher_settle(log));
	tdm_log_stats(log, &st);
	assert_false(tdm_log_peer_needs_resync(log, p));
	assert_u64(st.resyncs_forced, 0);
	assert_true(tdm_log_start(log) <= xs[ai].pos);
	tlog_verify(fx, log, xs[ai].pos, xs + ai, n - ai, g->seed, seg);
}

/* ---- Bad parameters and refusals ---- */

static void expect_open_fails(struct tlog_fx *fx, const struct tdm_log_config *c, int want,
			      const char *what)
{
	struct tdm_log *log = NULL;
	tdm_err_clear();
	int rc = tlog_open(fx, c, &log);
	if (rc != want)
		fail_msg("%s: tdm_log_open = %d (%s), want %d (%s); errmsg: %s", what, rc,
			 tdm_strerror(rc), want, tdm_strerror(want), tdm_errmsg());
	if (tdm_errmsg()[0] == '\0')
		fail_msg("%s: tdm_log_open = %d but tdm_errmsg() is empty", what, rc);
	if (access(fx->shm_path, F_OK) == 0)
		fail_msg("%s: the failed open left %s behind", what, fx->shm_path);
}

static void test_bad_config(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config c;
	tlog_config(fx, &c, 0, 64 * KIB);
	expect_open_fails(fx, &c, -EINVAL, "ring_size 0");
	tlog_config(fx, &c, 96 * KIB, 64 * KIB);
	expect_open_fails(fx, &c, -EINVAL, "ring_size 96 KiB");
	tlog_config(fx, &c, 32 * KIB, 64 * KIB);
	expect_open_fails(fx, &c, -EINVAL, "ring_size 32 KiB");
	tlog_config(fx, &c, 64 * KIB + 8, 64 * KIB);
	expect_open_fails(fx, &c, -EINVAL, "ring_size 64 KiB + 8");
	tlog_config(fx, &c, 64 * KIB, 0);
	expect_open_fails(fx, &c, -EINVAL, "segment_size 0");
	tlog_config(fx, &c, 64 * KIB, 64 * KIB + 1);
	expect_open_fails(fx, &c, -EINVAL, "segment_size odd");
	tlog_config(fx, &c, 64 * KIB, 96 * KIB);
	expect_open_fails(fx, &c, -EINVAL, "segment_size 96 KiB");
	tlog_config(fx, &c, 64 * KIB, 32 * KIB);
	expect_open_fails(fx, &c, -EINVAL, "segment_size 32 KiB");
	tlog_config(fx, &c, 64 * KIB, 64 * KIB);
	c.dir = NULL;
	expect_open_fails(fx, &c, -EINVAL, "dir NULL");
	/* Nothing was created for the bad configurations. */
	assert_int_equal(access(fx->dir, F_OK), -1);

	/* A directory that cannot be created: its parent is a regular file (root ignores modes). */
	char file[400], bad[420];
	snprintf(file, sizeof(file), "%s/plainfile", fx->tmp);
	int fd = open(file, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	snprintf(bad, sizeof(bad), "%s/log", file);
	tlog_config(fx, &c, 64 * KIB, 64 * KIB);
	c.dir = bad;
	struct tdm_log *log = NULL;
	tdm_err_clear();
	int rc = tlog_open(fx, &c, &log);
	if (!(rc < 0 && rc > -4096))
		fail_msg("dir under a regular file: tdm_log_open = %d (%s), want a negative errno",
			 rc, tdm_strerror(rc));
	assert_true(tdm_errmsg()[0] != '\0');
	assert_int_equal(access(fx->shm_path, F_OK), -1);

	/* The good configuration works after all that. */
	tlog_config(fx, &c, 64 * KIB, 64 * KIB);
	assert_ok(tlog_open(fx, &c, &log));
}

static void test_attach_errors(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log *a = NULL;
	tdm_err_clear();
	assert_rc(tdm_log_attach(fx->shm, &a), -ENOENT);
	assert_null(a);
	/* A ring file of layout version 99. */
	int fd = open(fx->shm_path, O_CREAT | O_EXCL | O_RDWR, 0600);
	assert_true(fd >= 0);
	int trc = ftruncate(fd, 16 * KIB + 64 * KIB);
	uint8_t hdr[16];
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, "TNDMRING", 8);
	uint32_t ver = 99;
	memcpy(hdr + 8, &ver, 4);
	ssize_t w = pwrite(fd, hdr, sizeof(hdr), 0);
	close(fd);
	assert_int_equal(trc, 0);
	assert_int_equal(w, (ssize_t)sizeof(hdr));
	tdm_err_clear();
	assert_rc(tdm_log_attach(fx->shm, &a), TDM_ERR_VERSION);
	assert_true(tdm_errmsg()[0] != '\0');
	uint8_t back[16];
	assert_ok(tlog_pread_bytes(fx->shm_path, 0, back, sizeof(back)));
	assert_memory_equal(back, hdr, sizeof(hdr));
}

static void test_bad_appends(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	tlog_config(fx, &cfg, 64 * KIB, 64 * KIB);
	assert_ok(tlog_open(fx, &cfg, &log));
	uint8_t *big = tlog_alloc(fx, TDM_LOG_MAX_VALUE + 1);
	assert_non_null(big);
	struct tdm_log_entry e = {.type = TDM_LOG_REC_PUT, .origin = 1, .key = "k", .key_len = 1,
				  .value = big};
	uint64_t pos = 77, end = 77;
	e.value_len = TDM_LOG_MAX_VALUE + 1;
	assert_rc(tdm_log_append(log, &e, &pos, &end), -EINVAL);
	e.value_len = TDM_LOG_MAX_VALUE;
	assert_rc(tdm_log_append(log, &e, &pos, &end), -EINVAL); /* larger than ring/segment */
	e.value_len = 64 * KIB;
	assert_rc(tdm_log_append(log, &e, &pos, &end), -EINVAL);
	/* record.c: a record's span is at most ring/4 (16 KiB for this ring). */
	e.value_len = 16 * KIB - TDM_LOG_REC_HDR_SIZE - 1 + 1;
	assert_rc(tdm_log_append(log, &e, &pos, &end), -EINVAL);
	e.value_len = 0;
	e.value = NULL;
	e.key = big;
	e.key_len = TDM_LOG_MAX_KEY + 1;
	assert_rc(tdm_log_append(log, &e, &pos, &end), -EINVAL);
	e.key_len = 1;
	const uint8_t bad_types[] = {0, TDM_LOG_REC_PAD, 6, 255};
	for (size_t i = 0; i < sizeof(bad_types); i++) {
		e.type = bad_types[i];
		int rc = tdm_log_append(log, &e, &pos, &end);
		if (rc != -EINVAL)
			fail_msg("append of type %u = %d (%s), want -EINVAL", bad_types[i], rc,
				 tdm_strerror(rc));
	}
	/* Nothing was written. */
	assert_u64(tdm_log_tail(log), 0);
	e.type = TDM_LOG_REC_PUT;
	assert_ok(tdm_log_append(log, &e, &pos, &end));
	assert_u64(pos, 0);
	assert_u64(end, tdm_log_rec_span(1, 0));
	e.value = big;
	e.value_len = 16 * KIB - TDM_LOG_REC_HDR_SIZE - 1;
	assert_ok(tdm_log_append(log, &e, &pos, &end));
	assert_u64(pos, tdm_log_rec_span(1, 0));
	assert_u64(end - pos, 16 * KIB);
	/* Peers: 16 slots. */
	int slots[TDM_LOG_MAX_PEERS];
	for (int i = 0; i < TDM_LOG_MAX_PEERS; i++) {
		slots[i] = tdm_log_peer_add(log, (uint16_t)(10 + i), 0);
		assert_true(slots[i] >= 0);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(slots[i], slots[j]);
	}
	assert_rc(tdm_log_peer_add(log, 99, 0), -ENOSPC);
	tdm_log_peer_remove(log, slots[3]);
	assert_true(tdm_log_peer_add(log, 99, 0) >= 0);
}

static void test_open_twice_busy(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg, c2;
	struct tdm_log *log, *other = NULL;
	tlog_config(fx, &cfg, 64 * KIB, 64 * KIB);
	assert_ok(tlog_open(fx, &cfg, &log));
	uint64_t end;
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	g->seed = 5;
	assert_ok(tlog_append_rec(log, g, 0, 9, 9, TLOG_NODE, NULL, &end));
	/* Same directory and ring; same directory, other ring; other directory, same ring. */
	tdm_err_clear();
	assert_rc(tlog_open(fx, &cfg, &other), -EBUSY);
	assert_true(tdm_errmsg()[0] != '\0');
	c2 = cfg;
	c2.shm_name = fx->shm2;
	tdm_err_clear();
	assert_rc(tlog_open(fx, &c2, &other), -EBUSY);
	assert_int_equal(access(fx->shm2_path, F_OK), -1);
	char dir2[400];
	snprintf(dir2, sizeof(dir2), "%s/log2", fx->tmp);
	c2 = cfg;
	c2.dir = dir2;
	assert_rc(tlog_open(fx, &c2, &other), -EBUSY);
	/* From another process too. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct tdm_log *l = NULL;
		int rc = tdm_log_open(&cfg, &l);
		_exit(rc == -EBUSY ? 0 : rc == 0 ? 1 : 2);
	}
	int wst = 0;
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	if (WEXITSTATUS(wst) != 0)
		fail_msg("open from another process while open: %s, want -EBUSY",
			 WEXITSTATUS(wst) == 1 ? "succeeded" : "another error");
	/* The owner was not disturbed. */
	assert_u64(tdm_log_tail(log), end);
	assert_ok(tdm_log_flush_until(log, end));
	tlog_close(fx, log);
	assert_ok(tlog_open(fx, &cfg, &log));
	assert_u64(tdm_log_recovery(log)->end, end);
}

#define T(f) cmocka_unit_test_setup_teardown(f, tlog_setup, tlog_teardown)

int tlog_unit_proc_tests(struct CMUnitTest *out, int max)
{
	const struct CMUnitTest tests[] = {
		T(test_attach_child_appends),
		T(test_attach_owner_closes),
		T(test_attach_owner_killed),
		T(test_retention_cap_forces_resync),
		T(test_retention_acking_peer_keeps),
		T(test_bad_config),
		T(test_attach_errors),
		T(test_bad_appends),
		T(test_open_twice_busy),
	};
	int n = (int)(sizeof(tests) / sizeof(tests[0]));
	if (n > max)
		n = max;
	memcpy(out, tests, (size_t)n * sizeof(tests[0]));
	return n;
}
