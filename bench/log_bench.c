/*
 * tandem benchmarks: the write log (log/). Every record is a PUT with a 16-byte key and a 64-byte
 * value: 120 bytes in the stream. Logs live in a scratch directory on the real disk (not
 * /dev/shm) and are removed at exit, rings included.
 *
 *   log_append_64B        appends into memory, nothing waits for durability; 1 and 2 producer
 *                         threads on one shared log. The ring (1 GiB) is touched by a warm-up lap
 *                         and emptied before each run, and a run (3 M records, 67% of the half
 *                         the flusher frees) fits, so neither page faults nor back-pressure are
 *                         measured. 5 repetitions: read the median. Goal: >= 20 M records/s with
 *                         one producer.
 *   log_durable_latency   one record at a time: append, then spin until durable >= its end
 *                         while a flusher thread runs tdm_log_flusher_do_work in a loop.
 *                         Interleaved (order rotating) with the same number of bare pwrite(120 B)
 *                         + fdatasync calls, and of io_uring linked write + fdatasync submitted
 *                         and awaited by the writer itself, each appending to a posix_fallocate'd
 *                         file in the same directory (segments are preallocated the same way).
 *                         Reports p50/p99/p999/mean of all three and p50(flusher)/p50(bare).
 *                         Goal: ratio <= 1.3. Variants: the flusher thread busy-polls (_spin, the
 *                         goal's case) or sleeps in tdm_log_flusher_idle when idle (_flusher_idle).
 *   log_group_commit      records made durable per second: one thread appends as fast as it can
 *                         (retrying on back-pressure) while the flusher drains; the time runs
 *                         until durable >= the last record's end. Variant w64: the thread keeps
 *                         at most 64 records outstanding, like 64 clients each waiting for its
 *                         commit (also with the flusher sleeping in tdm_log_flusher_idle when idle),
 *                         and w512 (512 outstanding). With one batch in flight, a window of W
 *                         carries about W/2 records per fdatasync: W bounds the rate, not the log.
 *                         Goal: >= 1 M records/s.
 *
 * The durable benchmarks report the flusher's batch count (tdm_log_stats) and records per batch.
 * On a 2-core machine the spinning writer, the busy-polling flusher and the io_uring worker that
 * runs each write + fdatasync share two cores: that shows in p99 (compare _flusher_idle).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <liburing.h>

#include "bench_util.h"
#include "tdm_bench.h"
#include "tdm_log.h"

#define LB_KEY_LEN 16u
#define LB_VALUE_LEN 64u
#define LB_CLUSTER 0x62656e6368ull /* "bench" */

/* The flusher keeps half the ring as readable history (log/flusher.c, free_ring), so an emptied
 * ring takes ring_size / 2 bytes before back-pressure: a run must fit in that half. */
#define LB_APPEND_RING (1ull << 30)
#define LB_APPEND_RECORDS 3000000ull /* per run, all producers together: 360 MB, 67% of 512 MiB */
#define LB_APPEND_REPS 5             /* runs are short and this VM noisy: report the median */
#define LB_APPEND_BATCH 1024u        /* appends per call into the wrapper */

#define LB_LAT_OPS 20000u
#define LB_GC_RECORDS 2000000ull   /* 240 MB */
#define LB_GC_W64_RECORDS 300000ull
#define LB_GC_WINDOW 64u
#define LB_GC_WIDE_WINDOW 512u /* enough writers in flight to fill an fdatasync */
#define LB_GC_WIDE_RECORDS 1500000ull

#define LB_WAIT_LIMIT_NS (10ull * 1000000000u) /* durable not moving this long: a bug, say so */
#define LB_RUN_LIMIT_NS (60ull * 1000000000u)  /* a durable run taking longer stops early */

/* Error text for tdm_bench_skip and setup failures (copied by the library). */
static _Thread_local char lb_msg[1024];

static const char *lb_fail(const char *what, int rc)
{
	const char *detail = tdm_errmsg();

	snprintf(lb_msg, sizeof(lb_msg), "%s: %s%s%s", what, tdm_strerror(rc),
		 detail[0] ? " -- " : "", detail);
	return lb_msg;
}

/* ---- Records ---- */

/** A record to append again and again; lb_rec_next() changes its key and timestamp. */
struct lb_rec {
	uint64_t key[2]; /**< thread, sequence: 16 bytes */
	uint8_t value[LB_VALUE_LEN];
	struct tdm_log_entry e;
};

static void lb_rec_init(struct lb_rec *r, uint64_t thread)
{
	memset(r, 0, sizeof(*r));
	r->key[0] = thread;
	for (unsigned i = 0; i < LB_VALUE_LEN; i++)
		r->value[i] = (uint8_t)(i * 7 + 1);
	r->e.type = TDM_LOG_REC_PUT;
	r->e.origin = 1;
	r->e.key = r->key;
	r->e.key_len = LB_KEY_LEN;
	r->e.value = r->value;
	r->e.value_len = LB_VALUE_LEN;
}

static inline void lb_rec_next(struct lb_rec *r, uint64_t seq)
{
	r->key[1] = seq;
	r->e.hlc = seq + 1;
}

/* ---- A log in the scratch directory ---- */

struct lb_log {
	struct tdm_log *log;
	char dir[512];
	char shm[64];
};

/* Empty the ring: everything appended becomes durable and its ring space free. Caller is the
 * only thread running the flusher. */
static const char *lb_log_drain(struct lb_log *l)
{
	int rc = tdm_log_flush_until(l->log, tdm_log_tail(l->log));

	return rc ? lb_fail("tdm_log_flush_until", rc) : NULL;
}

/* Append one full lap of the ring (flushing when it is full) and flush it all, so every ring page
 * has been written once before anything is timed. */
static const char *lb_log_warm(struct lb_log *l, uint64_t ring_size)
{
	struct lb_rec r;
	uint64_t start = tdm_log_tail(l->log), end = start, seq = 0, refused = 0;

	lb_rec_init(&r, 1000);
	while (end - start < ring_size + tdm_log_rec_span(LB_KEY_LEN, LB_VALUE_LEN)) {
		lb_rec_next(&r, seq);
		int rc = tdm_log_append(l->log, &r.e, NULL, &end);
		if (rc == TDM_ERR_BACKPRESSURE) {
			const char *err = refused ? NULL : lb_log_drain(l);
			if (err)
				return err;
			if (refused)
				tdm_log_flusher_do_work(l->log);
			if (++refused > 1000000) {
				snprintf(lb_msg, sizeof(lb_msg),
					 "warm-up: ring still full after flushing everything "
					 "(tail %llu, written %llu, durable %llu)",
					 (unsigned long long)tdm_log_tail(l->log),
					 (unsigned long long)tdm_log_written(l->log),
					 (unsigned long long)tdm_log_durable(l->log));
				return lb_msg;
			}
			continue;
		}
		if (rc)
			return lb_fail("warm-up: tdm_log_append", rc);
		refused = 0;
		seq++;
	}
	return lb_log_drain(l);
}

static void lb_log_close(struct lb_log *l)
{
	char path[128];

	if (!l->log)
		return;
	tdm_log_close(l->log);
	l->log = NULL;
	tdm_bench_rmtree(l->dir);
	snprintf(path, sizeof(path), "/dev/shm/%s", l->shm);
	unlink(path);
}

/* Open a new log in <scratch>/<leaf>-<n> with its own ring name, ring_size 0 = default, and warm
 * it up. */
static const char *lb_log_open(struct lb_log *l, const char *leaf, uint64_t ring_size)
{
	static unsigned seq;
	struct tdm_log_config cfg;
	char name[64];

	tdm_log_config_defaults(&cfg);
	snprintf(name, sizeof(name), "%s-%u", leaf, seq++);
	if (tdm_bench_scratch_path(l->dir, sizeof(l->dir), name) != 0 ||
	    tdm_bench_shm_name(l->shm, sizeof(l->shm)) != 0)
		return "no scratch directory or ring name (see stderr)";
	cfg.dir = l->dir;
	cfg.shm_name = l->shm;
	if (ring_size)
		cfg.ring_size = ring_size;
	cfg.cluster_id = LB_CLUSTER;
	cfg.node_id = 1;
	int rc = tdm_log_open(&cfg, &l->log);
	if (rc) {
		l->log = NULL;
		return lb_fail("tdm_log_open", rc);
	}
	const char *err = lb_log_warm(l, cfg.ring_size);
	if (err) {
		/* keep the message: closing may overwrite the thread's error text, not lb_msg */
		lb_log_close(l);
		return err;
	}
	return NULL;
}

/* ---- The flusher thread of the durable benchmarks ---- */

struct lb_flusher {
	struct tdm_log *log;
	pthread_t tid;
	bool running;
	atomic_bool stop;
	bool idle_wait;  /**< tdm_log_flusher_idle when do_work found nothing to do (else spin) */
	atomic_int rc;    /**< 0, or what do_work returned when the thread gave up */
	char msg[512];    /**< tdm_errmsg() of the flusher thread then; read after rc (acquire) */
};

static void *lb_flusher_main(void *arg)
{
	struct lb_flusher *f = arg;

	while (!atomic_load_explicit(&f->stop, memory_order_relaxed)) {
		int rc = tdm_log_flusher_do_work(f->log);
		if (rc < 0) {
			snprintf(f->msg, sizeof(f->msg), "%s", tdm_errmsg());
			atomic_store_explicit(&f->rc, rc, memory_order_release);
			break;
		}
		if (rc == 0 && f->idle_wait)
			tdm_log_flusher_idle(f->log); /* sleeps while a batch is in flight */
	}
	return NULL;
}

static const char *lb_flusher_start(struct lb_flusher *f, struct tdm_log *log, bool idle_wait)
{
	f->log = log;
	f->idle_wait = idle_wait;
	f->msg[0] = '\0';
	atomic_store(&f->stop, false);
	atomic_store(&f->rc, 0);
	int rc = pthread_create(&f->tid, NULL, lb_flusher_main, f);
	if (rc)
		return lb_fail("pthread_create (flusher)", -rc);
	f->running = true;
	return NULL;
}

static void lb_flusher_stop(struct lb_flusher *f)
{
	if (!f->running)
		return;
	atomic_store(&f->stop, true);
	pthread_join(f->tid, NULL);
	f->running = false;
}

/* Says why durable stopped moving; NULL while all is well. */
static const char *lb_flusher_check(struct lb_flusher *f, uint64_t pos, uint64_t since_ns)
{
	int rc = atomic_load_explicit(&f->rc, memory_order_acquire);

	if (rc) {
		snprintf(lb_msg, sizeof(lb_msg), "tdm_log_flusher_do_work: %s -- %s", tdm_strerror(rc),
			 f->msg);
		return lb_msg;
	}
	if (tdm_bench_now_ns() - since_ns < LB_WAIT_LIMIT_NS)
		return NULL;
	struct tdm_log_stats s;
	tdm_log_stats(f->log, &s);
	snprintf(lb_msg, sizeof(lb_msg),
		 "durable stuck below %llu for 10 s: tail %llu, written %llu, durable %llu, "
		 "batches %llu, stalls %llu",
		 (unsigned long long)pos, (unsigned long long)tdm_log_tail(f->log),
		 (unsigned long long)tdm_log_written(f->log),
		 (unsigned long long)tdm_log_durable(f->log), (unsigned long long)s.batches,
		 (unsigned long long)s.stalls);
	return lb_msg;
}

/* Wait (yielding the CPU, as a commit waiter does) until durable >= pos. @return NULL, or why
 * it never came. */
static const char *lb_wait_durable(struct lb_flusher *f, uint64_t pos)
{
	uint64_t spins = 0, since = 0;

	while (tdm_log_durable(f->log) < pos) {
		sched_yield();
		if ((++spins & 0x3fff) == 0) {
			if (!since)
				since = tdm_bench_now_ns();
			const char *err = lb_flusher_check(f, pos, since);
			if (err)
				return err;
		}
	}
	return NULL;
}

/* Append, retrying on back-pressure while the flusher thread frees ring space.
 * @return NULL, or why not; *retries counts the refusals. */
static const char *lb_append_retry(struct lb_flusher *f, const struct lb_rec *r, uint64_t *end,
				   uint64_t *retries)
{
	uint64_t spins = 0, since = 0;
	int rc;

	while ((rc = tdm_log_append(f->log, &r->e, NULL, end)) == TDM_ERR_BACKPRESSURE) {
		tdm_bench_cpu_relax();
		(*retries)++;
		if ((++spins & 0x3fff) == 0) {
			if (!since)
				since = tdm_bench_now_ns();
			const char *err = lb_flusher_check(f, tdm_log_tail(f->log), since);
			if (err)
				return err;
		}
	}
	return rc ? lb_fail("tdm_log_append", rc) : NULL;
}

static void lb_stats_counters(struct tdm_bench_state *st, struct tdm_log *log,
			      const struct tdm_log_stats *before, uint64_t records)
{
	struct tdm_log_stats s;

	tdm_log_stats(log, &s);
	uint64_t batches = s.batches - before->batches;
	tdm_bench_counter(st, "batches", (double)batches, TDM_BENCH_COUNTER_PLAIN);
	tdm_bench_counter(st, "rec_per_batch", batches ? (double)records / (double)batches : 0,
			  TDM_BENCH_COUNTER_PLAIN);
	tdm_bench_counter(st, "stalls", (double)(s.stalls - before->stalls),
			  TDM_BENCH_COUNTER_PLAIN);
	tdm_bench_counter(st, "io_errors", (double)(s.io_errors - before->io_errors),
			  TDM_BENCH_COUNTER_PLAIN);
}

/* ---- 1. Append throughput into memory ---- */

struct lb_append {
	struct lb_log l;             /**< one log for every run (1 and 2 threads), closed in main */
	struct tdm_log_stats before; /**< at the start of the current run */
};

static struct lb_append lb_append_ctx;

static const char *lb_append_setup(void *ctx, int threads)
{
	struct lb_append *a = ctx;
	const char *err;

	(void)threads;
	if (!a->l.log && (err = lb_log_open(&a->l, "append", LB_APPEND_RING)) != NULL)
		return err;
	if ((err = lb_log_drain(&a->l)) != NULL)
		return err;
	tdm_log_stats(a->l.log, &a->before);
	return NULL;
}

static void lb_append_body(struct tdm_bench_state *st, void *ctx)
{
	struct lb_append *a = ctx;
	struct tdm_log *log = a->l.log;
	struct lb_rec r;
	uint64_t seq = 0, n;
	int rc = 0;

	lb_rec_init(&r, (uint64_t)tdm_bench_thread_index(st));
	while ((n = tdm_bench_next_batch(st, LB_APPEND_BATCH)) != 0) {
		for (uint64_t end = seq + n; seq < end; seq++) {
			lb_rec_next(&r, seq);
			rc = tdm_log_append(log, &r.e, NULL, NULL);
			if (__builtin_expect(rc != 0, 0))
				goto fail;
		}
	}
	tdm_bench_set_items(st, (int64_t)seq);
	tdm_bench_set_bytes(st, (int64_t)(seq * tdm_log_rec_span(LB_KEY_LEN, LB_VALUE_LEN)));
	if (tdm_bench_thread_index(st) == 0) {
		struct tdm_log_stats s;
		tdm_log_stats(log, &s);
		tdm_bench_counter(st, "backpressure", (double)(s.backpressure - a->before.backpressure),
				  TDM_BENCH_COUNTER_PLAIN);
	}
	return;
fail:
	if (rc == TDM_ERR_BACKPRESSURE)
		snprintf(lb_msg, sizeof(lb_msg),
			 "ring full after %llu appends on thread %d (tail %llu, durable %llu): the "
			 "run no longer fits in the free part of the emptied ring; lower "
			 "LB_APPEND_RECORDS or raise LB_APPEND_RING",
			 (unsigned long long)seq, tdm_bench_thread_index(st),
			 (unsigned long long)tdm_log_tail(log),
			 (unsigned long long)tdm_log_durable(log));
	else
		lb_fail("tdm_log_append", rc);
	tdm_bench_skip(st, lb_msg);
	while (tdm_bench_next_batch(st, UINT64_MAX))
		;
}

/* ---- 2. Durable-commit latency against bare write + fdatasync ---- */

/* The three ways one 120-byte record is made durable in each iteration. */
enum lb_way {
	LB_FLUSHER, /**< tdm_log_append + wait for durable (the flusher thread does the I/O) */
	LB_BARE,    /**< pwrite + fdatasync on the writer thread */
	LB_URING,   /**< io_uring linked write + fdatasync, submitted and awaited by the writer */
	LB_WAYS
};

static const char *const lb_way_name[LB_WAYS] = { "flusher", "bare", "uring" };

struct lb_latency {
	bool flusher_idle; /**< the flusher thread sleeps in tdm_log_flusher_idle when idle instead of spinning */
	struct lb_log l;
	struct lb_flusher f;
	int fd[LB_WAYS];    /**< files of the baselines (LB_BARE, LB_URING) */
	char path[LB_WAYS][512];
	struct io_uring ring; /**< the LB_URING baseline's own ring */
	bool ring_ok;
	uint8_t bytes[128]; /**< one record as the log wrote it: what the baselines write */
	bool synthetic;     /**< bytes are not a copy from the log (tdm_log_read failed) */
	uint64_t *ns[LB_WAYS]; /**< per-op latency, LB_LAT_OPS each */
	struct tdm_log_stats before;
};

static struct lb_latency lb_lat_spin = { .fd = { -1, -1, -1 } };
static struct lb_latency lb_lat_fidle = { .flusher_idle = true, .fd = { -1, -1, -1 } };

static void lb_latency_teardown(void *ctx, int threads)
{
	struct lb_latency *b = ctx;

	(void)threads;
	lb_flusher_stop(&b->f);
	lb_log_close(&b->l);
	if (b->ring_ok)
		io_uring_queue_exit(&b->ring);
	b->ring_ok = false;
	for (int w = 0; w < LB_WAYS; w++) {
		if (b->fd[w] >= 0) {
			close(b->fd[w]);
			unlink(b->path[w]);
			b->fd[w] = -1;
		}
		free(b->ns[w]);
		b->ns[w] = NULL;
	}
}

/* Copy the bytes of one real record, so the baselines write what the flusher writes. */
static const char *lb_latency_sample(struct lb_latency *b)
{
	struct lb_rec r;
	uint64_t pos, end;
	const uint64_t span = tdm_log_rec_span(LB_KEY_LEN, LB_VALUE_LEN);

	lb_rec_init(&r, 0);
	lb_rec_next(&r, 0);
	int rc = tdm_log_append(b->l.log, &r.e, &pos, &end);
	if (rc)
		return lb_fail("tdm_log_append", rc);
	rc = tdm_log_flush_until(b->l.log, end);
	if (rc)
		return lb_fail("tdm_log_flush_until", rc);
	b->synthetic = tdm_log_read(b->l.log, pos, b->bytes, span) != 0;
	if (b->synthetic)
		memset(b->bytes, 0x5a, span);
	return NULL;
}

/* A baseline's file: preallocated like a segment (posix_fallocate), next to the log. */
static const char *lb_latency_file(struct lb_latency *b, enum lb_way w)
{
	static unsigned seq;
	const off_t size = (off_t)LB_LAT_OPS * 128 + (1 << 20);
	char leaf[64];

	snprintf(leaf, sizeof(leaf), "%s-%u.dat", lb_way_name[w], seq++);
	if (tdm_bench_scratch_path(b->path[w], sizeof(b->path[w]), leaf) != 0)
		return "scratch path too long";
	b->fd[w] = open(b->path[w], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (b->fd[w] < 0)
		return lb_fail("open (baseline file)", -errno);
	int rc = posix_fallocate(b->fd[w], 0, size);
	if (rc)
		return lb_fail("posix_fallocate (baseline file)", -rc);
	if (fsync(b->fd[w]) != 0)
		return lb_fail("fsync (baseline file)", -errno);
	return NULL;
}

static const char *lb_latency_setup(void *ctx, int threads)
{
	struct lb_latency *b = ctx;
	const char *err = NULL;

	for (int w = 0; w < LB_WAYS && !err; w++) {
		b->ns[w] = malloc(LB_LAT_OPS * sizeof(uint64_t));
		if (!b->ns[w])
			err = "out of memory";
		else /* touch the arrays now, not during the timed loop */
			memset(b->ns[w], 0xff, LB_LAT_OPS * sizeof(uint64_t));
	}
	if (err || (err = lb_log_open(&b->l, "latency", 0)) != NULL ||
	    (err = lb_latency_sample(b)) != NULL || (err = lb_latency_file(b, LB_BARE)) != NULL ||
	    (err = lb_latency_file(b, LB_URING)) != NULL)
		goto fail;
	int rc = io_uring_queue_init(8, &b->ring, 0);
	if (rc) {
		err = lb_fail("io_uring_queue_init (baseline)", rc);
		goto fail;
	}
	b->ring_ok = true;
	if ((err = lb_flusher_start(&b->f, b->l.log, b->flusher_idle)) != NULL)
		goto fail;
	tdm_log_stats(b->l.log, &b->before);
	return NULL;
fail:
	lb_latency_teardown(b, threads);
	return err;
}

/* One record through the log: append, spin until durable covers it. */
static const char *lb_latency_flusher_op(struct lb_latency *b, struct lb_rec *r,
					 uint64_t *retries)
{
	uint64_t end;
	const char *err = lb_append_retry(&b->f, r, &end, retries);

	return err ? err : lb_wait_durable(&b->f, end);
}

static const char *lb_latency_bare_op(struct lb_latency *b, off_t off)
{
	const size_t span = tdm_log_rec_span(LB_KEY_LEN, LB_VALUE_LEN);

	if (pwrite(b->fd[LB_BARE], b->bytes, span, off) != (ssize_t)span)
		return lb_fail("pwrite (bare baseline)", -errno);
	if (fdatasync(b->fd[LB_BARE]) != 0)
		return lb_fail("fdatasync (bare baseline)", -errno);
	return NULL;
}

static const char *lb_latency_uring_op(struct lb_latency *b, off_t off)
{
	const unsigned span = (unsigned)tdm_log_rec_span(LB_KEY_LEN, LB_VALUE_LEN);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
	struct io_uring_cqe *cqe;
	int rc, bad = 0;

	io_uring_prep_write(sqe, b->fd[LB_URING], b->bytes, span, (uint64_t)off);
	sqe->flags |= IOSQE_IO_LINK;
	sqe = io_uring_get_sqe(&b->ring);
	io_uring_prep_fsync(sqe, b->fd[LB_URING], IORING_FSYNC_DATASYNC);
	rc = io_uring_submit_and_wait(&b->ring, 2);
	if (rc < 0)
		return lb_fail("io_uring_submit_and_wait (baseline)", rc);
	for (int i = 0; i < 2; i++) {
		rc = io_uring_wait_cqe(&b->ring, &cqe);
		if (rc < 0)
			return lb_fail("io_uring_wait_cqe (baseline)", rc);
		if (cqe->res < 0 && !bad)
			bad = cqe->res;
		io_uring_cqe_seen(&b->ring, cqe);
	}
	return bad ? lb_fail("io_uring write/fdatasync (baseline)", bad) : NULL;
}

static void lb_latency_report(struct tdm_bench_state *st, struct lb_latency *b, uint64_t ops,
			      uint64_t retries)
{
	static const struct {
		const char *suffix;
		double q;
	} qs[] = { { "p50", 0.50 }, { "p99", 0.99 }, { "p999", 0.999 } };
	uint64_t v[LB_WAYS][3];
	char name[64];

	for (int w = 0; w < LB_WAYS; w++) {
		uint64_t sum = 0;
		for (uint64_t i = 0; i < ops; i++)
			sum += b->ns[w][i];
		tdm_bench_sort_u64(b->ns[w], ops);
		for (int q = 0; q < 3; q++) {
			v[w][q] = tdm_bench_quantile(b->ns[w], ops, qs[q].q);
			snprintf(name, sizeof(name), "%s_%s_us", lb_way_name[w], qs[q].suffix);
			tdm_bench_counter(st, name, (double)v[w][q] / 1e3, TDM_BENCH_COUNTER_PLAIN);
		}
		snprintf(name, sizeof(name), "%s_mean_us", lb_way_name[w]);
		tdm_bench_counter(st, name, ops ? (double)sum / (double)ops / 1e3 : 0,
				  TDM_BENCH_COUNTER_PLAIN);
	}
	/* the goal: flusher against bare; against uring shows what io_uring itself costs */
	tdm_bench_counter(st, "ratio_p50",
			  v[LB_BARE][0] ? (double)v[LB_FLUSHER][0] / (double)v[LB_BARE][0] : 0,
			  TDM_BENCH_COUNTER_PLAIN);
	tdm_bench_counter(st, "ratio_p99",
			  v[LB_BARE][1] ? (double)v[LB_FLUSHER][1] / (double)v[LB_BARE][1] : 0,
			  TDM_BENCH_COUNTER_PLAIN);
	tdm_bench_counter(st, "ratio_p50_uring",
			  v[LB_URING][0] ? (double)v[LB_FLUSHER][0] / (double)v[LB_URING][0] : 0,
			  TDM_BENCH_COUNTER_PLAIN);
	tdm_bench_counter(st, "backpressure", (double)retries, TDM_BENCH_COUNTER_PLAIN);
	lb_stats_counters(st, b->l.log, &b->before, ops);
	if (b->synthetic)
		tdm_bench_label(st, "baselines write synthetic bytes: tdm_log_read failed");
}

/* Stop a run that takes too long; says how far it got. */
static const char *lb_latency_too_long(struct lb_latency *b, uint64_t ops)
{
	tdm_bench_sort_u64(b->ns[LB_FLUSHER], ops);
	tdm_bench_sort_u64(b->ns[LB_BARE], ops);
	snprintf(lb_msg, sizeof(lb_msg),
		 "time limit: %llu ops in 60 s; so far p50 flusher %.1f us, bare %.1f us",
		 (unsigned long long)ops,
		 (double)tdm_bench_quantile(b->ns[LB_FLUSHER], ops, 0.5) / 1e3,
		 (double)tdm_bench_quantile(b->ns[LB_BARE], ops, 0.5) / 1e3);
	return lb_msg;
}

static void lb_latency_body(struct tdm_bench_state *st, void *ctx)
{
	struct lb_latency *b = ctx;
	const uint64_t span = tdm_log_rec_span(LB_KEY_LEN, LB_VALUE_LEN);
	const char *err = NULL;
	struct lb_rec r;
	uint64_t i = 0, retries = 0, t_start = tdm_bench_now_ns();

	if (tdm_bench_max_iterations(st) > LB_LAT_OPS) {
		tdm_bench_skip(st, "more iterations than the latency arrays hold");
		while (tdm_bench_keep_running(st))
			;
		return;
	}
	lb_rec_init(&r, 0);
	while (tdm_bench_keep_running(st)) {
		lb_rec_next(&r, i + 1);
		/* rotate the order so no way always follows another's I/O */
		for (int k = 0; k < LB_WAYS && !err; k++) {
			enum lb_way w = (enum lb_way)((i + (uint64_t)k) % LB_WAYS);
			uint64_t t0 = tdm_bench_now_ns();
			if (w == LB_FLUSHER)
				err = lb_latency_flusher_op(b, &r, &retries);
			else if (w == LB_BARE)
				err = lb_latency_bare_op(b, (off_t)(i * span));
			else
				err = lb_latency_uring_op(b, (off_t)(i * span));
			b->ns[w][i] = tdm_bench_now_ns() - t0;
		}
		if (err)
			break;
		tdm_bench_set_iteration_time(st, (double)b->ns[LB_FLUSHER][i] * 1e-9);
		if (++i % 1024 == 0 && tdm_bench_now_ns() - t_start > LB_RUN_LIMIT_NS) {
			err = lb_latency_too_long(b, i);
			break;
		}
	}
	if (err) {
		tdm_bench_skip(st, err);
		while (tdm_bench_keep_running(st))
			;
		return;
	}
	lb_latency_report(st, b, i, retries);
}

/* ---- 3. Group-commit throughput ---- */

struct lb_group {
	unsigned window;  /**< records outstanding at most; 0 = no limit (stream) */
	bool flusher_idle; /**< the flusher thread sleeps in tdm_log_flusher_idle when idle instead of spinning */
	uint64_t records; /**< per run */
	struct lb_log l;
	struct lb_flusher f;
	struct tdm_log_stats before;
};

static struct lb_group lb_gc_stream = { .window = 0, .records = LB_GC_RECORDS };
static struct lb_group lb_gc_w64 = { .window = LB_GC_WINDOW, .records = LB_GC_W64_RECORDS };
static struct lb_group lb_gc_w64_fidle = { .window = LB_GC_WINDOW, .flusher_idle = true,
					    .records = LB_GC_W64_RECORDS };
static struct lb_group lb_gc_w512_fidle = { .window = LB_GC_WIDE_WINDOW, .flusher_idle = true,
					    .records = LB_GC_WIDE_RECORDS };

static void lb_group_teardown(void *ctx, int threads)
{
	struct lb_group *g = ctx;

	(void)threads;
	lb_flusher_stop(&g->f);
	lb_log_close(&g->l);
}

static const char *lb_group_setup(void *ctx, int threads)
{
	struct lb_group *g = ctx;
	const char *err;

	if ((err = lb_log_open(&g->l, g->window ? "group-window" : "group-stream", 0)) != NULL)
		return err;
	if ((err = lb_flusher_start(&g->f, g->l.log, g->flusher_idle)) != NULL) {
		lb_group_teardown(g, threads);
		return err;
	}
	tdm_log_stats(g->l.log, &g->before);
	return NULL;
}

/* Append g->records records (keeping at most g->window outstanding when set), wait until the
 * last is durable. @return records appended (fewer when the time limit hit); *err on failure. */
static uint64_t lb_group_run(struct lb_group *g, uint64_t *retries, const char **err)
{
	uint64_t ends[LB_GC_WIDE_WINDOW], end = 0, i, t0 = tdm_bench_now_ns();
	struct lb_rec r;

	lb_rec_init(&r, 0);
	for (i = 0; i < g->records; i++) {
		if (g->window && i >= g->window &&
		    (*err = lb_wait_durable(&g->f, ends[i % g->window])) != NULL)
			return i;
		lb_rec_next(&r, i);
		if ((*err = lb_append_retry(&g->f, &r, &end, retries)) != NULL)
			return i;
		if (g->window)
			ends[i % g->window] = end;
		if ((i & 0xfff) == 0xfff && tdm_bench_now_ns() - t0 > LB_RUN_LIMIT_NS) {
			i++;
			break;
		}
	}
	*err = lb_wait_durable(&g->f, end);
	return i;
}

static void lb_group_body(struct tdm_bench_state *st, void *ctx)
{
	struct lb_group *g = ctx;
	const char *err = NULL;
	uint64_t done = 0, retries = 0;

	while (tdm_bench_keep_running(st)) {
		uint64_t t0 = tdm_bench_now_ns();
		done += lb_group_run(g, &retries, &err);
		tdm_bench_set_iteration_time(st, (double)(tdm_bench_now_ns() - t0) * 1e-9);
		if (err)
			break;
	}
	if (err) {
		tdm_bench_skip(st, err);
		while (tdm_bench_keep_running(st))
			;
		return;
	}
	tdm_bench_set_items(st, (int64_t)done);
	tdm_bench_set_bytes(st, (int64_t)(done * tdm_log_rec_span(LB_KEY_LEN, LB_VALUE_LEN)));
	tdm_bench_counter(st, "backpressure", (double)retries, TDM_BENCH_COUNTER_PLAIN);
	lb_stats_counters(st, g->l.log, &g->before, done);
	if (done < g->records * tdm_bench_iterations(st))
		tdm_bench_label(st, "stopped early: 60 s time limit");
}

/* ---- Registration ---- */

static int lb_register(void)
{
	const struct tdm_bench_opts append1 = {
		.threads = 1, .iterations = (int64_t)LB_APPEND_RECORDS, .real_time = true,
		.repetitions = LB_APPEND_REPS, .setup = lb_append_setup,
	};
	const struct tdm_bench_opts append2 = {
		.threads = 2, .iterations = (int64_t)(LB_APPEND_RECORDS / 2), .real_time = true,
		.repetitions = LB_APPEND_REPS, .setup = lb_append_setup,
	};
	const struct tdm_bench_opts latency = {
		.threads = 1, .iterations = LB_LAT_OPS, .manual_time = true, .unit = TDM_BENCH_US,
		.setup = lb_latency_setup, .teardown = lb_latency_teardown,
	};
	const struct tdm_bench_opts group = {
		.threads = 1, .iterations = 1, .manual_time = true, .unit = TDM_BENCH_MS,
		.setup = lb_group_setup, .teardown = lb_group_teardown,
	};
	int rc = 0;

	rc |= tdm_bench_register("log_append_64B", lb_append_body, &lb_append_ctx, &append1);
	rc |= tdm_bench_register("log_append_64B", lb_append_body, &lb_append_ctx, &append2);
	rc |= tdm_bench_register("log_durable_latency_spin", lb_latency_body, &lb_lat_spin,
				 &latency);
	rc |= tdm_bench_register("log_durable_latency_flusher_idle", lb_latency_body,
				 &lb_lat_fidle, &latency);
	rc |= tdm_bench_register("log_group_commit_stream", lb_group_body, &lb_gc_stream, &group);
	rc |= tdm_bench_register("log_group_commit_w64", lb_group_body, &lb_gc_w64, &group);
	rc |= tdm_bench_register("log_group_commit_w64_flusher_idle", lb_group_body,
				 &lb_gc_w64_fidle, &group);
	rc |= tdm_bench_register("log_group_commit_w512_flusher_idle", lb_group_body,
				 &lb_gc_w512_fidle, &group);
	return rc;
}

int main(int argc, char **argv)
{
	const char *dir = tdm_bench_scratch_dir();
	char fs[64];

	if (!dir)
		return 1;
	tdm_bench_fs_type(dir, fs, sizeof(fs));
	tdm_bench_context("tdm_scratch_dir", dir);
	tdm_bench_context("tdm_scratch_fs", fs);
	tdm_bench_context("tdm_record", "PUT, 16 B key, 64 B value, 120 B in the stream");
	if (strcmp(fs, "tmpfs") == 0)
		fprintf(stderr, "bench_log: warning: %s is on tmpfs: durable figures mean nothing; "
				"set TDM_BENCH_DIR to a directory on a disk\n", dir);
	if (lb_register() != 0) {
		fprintf(stderr, "bench_log: registering the benchmarks failed\n");
		return 1;
	}
	int rc = tdm_bench_main(argc, argv);
	lb_log_close(&lb_append_ctx.l);
	tdm_bench_cleanup();
	return rc;
}
