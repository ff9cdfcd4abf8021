/*
 * apply_bench: how fast the dispatcher and one apply worker turn a log into store contents on
 * one thread, and how much memory the store takes per key. Records of a 16-byte key and a
 * 64-byte value (120 bytes in the log).
 *
 * Throughput: the log (scratch directory, 256 MiB ring) is filled a chunk at a time (200k
 * records, made durable and kept readable from the ring); only the dispatch + apply of each chunk
 * is timed, all agents on this thread (dispatcher step, then each worker step). Keys are drawn at
 * random from --keys distinct keys, so the store first grows and then overwrites in place.
 * The sink alone (begin / 256 puts / end, records announced ahead as a worker does; no log, no
 * dispatcher) is timed too, to show the split.
 *
 * Memory: a store of --mem-keys keys (16 B + 64 B) is built; reported are the bytes jemalloc has
 * allocated for it (stats.allocated, when linked with jemalloc) and the growth of the resident
 * set, each per key and against the raw 80 bytes.
 *
 * Both wall time and the thread's CPU time (CLOCK_THREAD_CPUTIME_ID: what the thread ran,
 * without the time other processes had the core) are reported. The machine is shared and noisy:
 * run it several times and take the best.
 *
 * --merge 1 makes the stores of the sink and apply runs multi-primary (merge mode): every record
 * is then compared with the stored version (hlc, origin) before it replaces it. The records'
 * hlcs rise, so each one wins, as most do in a real cluster; no conflict is counted.
 *
 * Usage: apply_bench [--records N] [--keys K] [--workers W] [--mem-keys M] [--prefetch 0|1]
 *                    [--sink 0|1]   (0: leave out the sink-alone run, e.g. under perf)
 *                    [--merge 0|1]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef TDM_HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "bench_util.h"
#include "tdm_apply.h"

#define KLEN 16u
#define VLEN 64u
#define CHUNK 200000u
#define SPAN 120u /* a record's bytes in the log and in a worker's ring */

struct opts {
	uint64_t records;
	uint32_t keys;
	int workers;
	uint32_t mem_keys;
	int prefetch; /* 0: the sink's prefetch hook is left out (to measure what it brings) */
	int sink;     /* 0: no sink-alone run */
	int merge;    /* 1: merge-mode stores (sink and apply runs) */
};

static int new_store(const struct opts *o, int shards, struct tdm_store **s)
{
	struct tdm_store_config c;

	tdm_store_config_defaults(&c);
	c.shards = shards;
	c.merge = o->merge != 0;
	return tdm_store_create_cfg(&c, s);
}

static const char *mode(const struct opts *o)
{
	return o->merge ? ", merge mode" : "";
}

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

/* Key of index k (16 bytes) and a value for record i (64 bytes). */
static void make_kv(uint32_t k, uint64_t i, uint8_t *key, uint8_t *val)
{
	uint64_t a = mix(k), b = mix(a);

	memcpy(key, &a, 8);
	memcpy(key + 8, &b, 8);
	for (unsigned j = 0; j < VLEN; j += 8) {
		uint64_t v = mix(i * 8 + j);
		memcpy(val + j, &v, 8);
	}
}

static int open_log(struct tdm_log **log)
{
	struct tdm_log_config c;
	char dir[512], shm[64];
	int rc;

	if ((rc = tdm_bench_scratch_path(dir, sizeof(dir), "apply-log")) ||
	    (rc = tdm_bench_shm_name(shm, sizeof(shm))))
		return rc;
	tdm_log_config_defaults(&c);
	c.dir = dir;
	c.shm_name = shm;
	c.ring_size = 256ull << 20;
	c.segment_size = 64ull << 20;
	rc = tdm_log_open(&c, log);
	if (rc)
		fprintf(stderr, "tdm_log_open: %s: %s\n", tdm_strerror(rc), tdm_errmsg());
	return rc;
}

/* Append n records (random keys of opt's key space); drive the flusher on back-pressure. */
static int append_chunk(struct tdm_log *log, const struct opts *o, uint64_t first, uint64_t n)
{
	uint8_t key[KLEN], val[VLEN];
	struct tdm_log_entry e = { .type = TDM_LOG_REC_PUT, .origin = 1, .key = key,
				   .key_len = KLEN, .value = val, .value_len = VLEN };

	for (uint64_t i = first; i < first + n; i++) {
		int rc;

		make_kv((uint32_t)(mix(i ^ 0xABCDEF) % o->keys), i, key, val);
		e.hlc = i;
		while ((rc = tdm_log_append(log, &e, NULL, NULL)) == TDM_ERR_BACKPRESSURE)
			if ((rc = tdm_log_flusher_do_work(log)) < 0)
				return rc;
		if (rc)
			return rc;
	}
	return tdm_log_flush_until(log, tdm_log_tail(log));
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Dispatch and apply everything up to the log's tail on this thread. @return wall ns spent;
 * *cpu gets the thread's CPU ns added. */
static int64_t apply_chunk(struct tdm_apply *a, int workers, uint64_t tail, uint64_t *cpu)
{
	uint64_t t0 = tdm_bench_now_ns(), c0 = cpu_ns();

	while (tdm_apply_applied(a) < tail) {
		int rc = tdm_apply_dispatch_do_work(a);

		for (int w = 0; rc >= 0 && w < workers; w++)
			rc = tdm_apply_worker_do_work(a, w);
		if (rc < 0) {
			fprintf(stderr, "apply: %s: %s\n", tdm_strerror(rc), tdm_errmsg());
			return rc;
		}
	}
	*cpu += cpu_ns() - c0;
	return (int64_t)(tdm_bench_now_ns() - t0);
}

static int bench_apply(const struct opts *o)
{
	struct tdm_apply_config cfg;
	struct tdm_store *s = NULL;
	struct tdm_apply *a = NULL;
	struct tdm_log *log = NULL;
	uint64_t ns = 0, cpu = 0;
	int rc;

	if ((rc = open_log(&log)) || (rc = new_store(o, o->workers, &s)))
		goto out;
	tdm_apply_config_defaults(&cfg);
	cfg.log = log;
	cfg.workers = o->workers;
	tdm_store_sink(s, &cfg.sink);
	if (!o->prefetch)
		cfg.sink.prefetch = NULL;
	if ((rc = tdm_apply_create(&cfg, &a)))
		goto out;
	for (uint64_t done = 0; done < o->records; done += CHUNK) {
		uint64_t n = o->records - done < CHUNK ? o->records - done : CHUNK;
		int64_t t;

		if ((rc = append_chunk(log, o, done, n)))
			goto out;
		if ((t = apply_chunk(a, o->workers, tdm_log_tail(log), &cpu)) < 0) {
			rc = (int)t;
			goto out;
		}
		ns += (uint64_t)t;
	}
	printf("dispatch+apply, one thread, %d worker(s)%s%s: %" PRIu64 " records over %u keys "
	       "(%" PRIu64 " in the store): wall %.3f s = %.2f M records/s; thread CPU %.3f s = "
	       "%.2f M records/s\n", o->workers, o->prefetch ? "" : ", no prefetch", mode(o),
	       o->records,
	       o->keys, tdm_store_count(s), ns / 1e9, o->records / (ns / 1e3), cpu / 1e9,
	       o->records / (cpu / 1e3));
out:
	if (rc)
		fprintf(stderr, "bench_apply: %s: %s\n", tdm_strerror(rc), tdm_errmsg());
	tdm_apply_destroy(a);
	tdm_store_destroy(s);
	tdm_log_close(log);
	return rc;
}

/* Records first.. first+255 as PUTs, laid out as in a worker's ring. */
static void fill_batch(const struct opts *o, uint8_t *ring, uint64_t first)
{
	for (uint64_t j = 0; j < 256; j++) {
		uint8_t *p = ring + j * SPAN;
		struct tdm_log_rec_hdr *h = (struct tdm_log_rec_hdr *)(void *)p;

		memset(h, 0, sizeof(*h));
		h->type = TDM_LOG_REC_PUT;
		h->key_len = KLEN;
		h->value_len = VLEN;
		h->hlc = first + j;
		make_kv((uint32_t)(mix((first + j) ^ 0xABCDEF) % o->keys), first + j,
			p + TDM_LOG_REC_HDR_SIZE, p + TDM_LOG_REC_HDR_SIZE + KLEN);
	}
}

static struct tdm_log_rec rec_at(uint8_t *ring, uint64_t j)
{
	uint8_t *p = ring + j * SPAN;

	return (struct tdm_log_rec){ (const struct tdm_log_rec_hdr *)(const void *)p,
				     p + TDM_LOG_REC_HDR_SIZE, p + TDM_LOG_REC_HDR_SIZE + KLEN };
}

/* The sink alone, driven as a worker drives it (batches of 256 puts, each record announced
 * TDM_APPLY_PREFETCH ahead unless --prefetch 0), without log, dispatcher or ring. Only the
 * sink calls are timed. */
static int bench_sink(const struct opts *o)
{
	static uint8_t ring[256 * SPAN] __attribute__((aligned(128)));
	struct tdm_apply_sink sink;
	struct tdm_store *s;
	uint64_t ns = 0;
	int rc = new_store(o, 1, &s);

	if (rc)
		return rc;
	tdm_store_sink(s, &sink);
	for (uint64_t i = 0; i < o->records && !rc; i += 256) {
		uint64_t t0, ann = 0;

		fill_batch(o, ring, i);
		t0 = tdm_bench_now_ns();
		sink.begin_batch(sink.ctx, 0);
		for (uint64_t j = 0; j < 256 && !rc; j++) {
			struct tdm_log_rec r;

			for (; o->prefetch && ann < 256 && ann < j + TDM_APPLY_PREFETCH; ann++) {
				r = rec_at(ring, ann);
				sink.prefetch(sink.ctx, 0, &r);
			}
			r = rec_at(ring, j);
			rc = sink.put(sink.ctx, 0, &r);
		}
		sink.end_batch(sink.ctx, 0, 0);
		ns += tdm_bench_now_ns() - t0;
	}
	printf("store sink alone%s%s: %.1f ns per put = %.2f M puts/s over %u keys (%" PRIu64
	       " in the store)\n", o->prefetch ? "" : ", no prefetch", mode(o),
	       (double)ns / o->records,
	       o->records / (ns / 1e3), o->keys, tdm_store_count(s));
	tdm_store_destroy(s);
	return rc;
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%lu %lu", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t allocated_bytes(void)
{
#ifdef TDM_HAVE_JEMALLOC
	uint64_t epoch = 1;
	size_t v = 0, len = sizeof(v);

	mallctl("epoch", NULL, NULL, &epoch, sizeof(epoch));
	if (mallctl("stats.allocated", &v, &len, NULL, 0) == 0)
		return v;
#endif
	return 0;
}

static int bench_memory(const struct opts *o)
{
	uint8_t key[KLEN], val[VLEN];
	uint64_t rss0 = rss_bytes(), al0 = allocated_bytes(), rss, al;
	struct tdm_store *s;
	int rc = tdm_store_create(1, &s);

	for (uint32_t k = 0; !rc && k < o->mem_keys; k++) {
		make_kv(k, k, key, val);
		rc = tdm_store_put(s, key, KLEN, val, VLEN, k, 1);
	}
	if (rc)
		return rc;
	rss = rss_bytes() - rss0;
	al = allocated_bytes() - al0;
	printf("store of %u keys (16 B + 64 B = %.1f MB raw): RSS +%.1f MB = %.1f B/key",
	       o->mem_keys, o->mem_keys * 80 / 1e6, rss / 1e6, (double)rss / o->mem_keys);
	if (al)
		printf("; jemalloc allocated %.1f MB = %.1f B/key", al / 1e6,
		       (double)al / o->mem_keys);
	printf(" (raw 80 B/key)\n");
	tdm_store_destroy(s);
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){ .records = 4000000, .keys = 1000000, .workers = 1,
			    .mem_keys = 1000000, .prefetch = 1, .sink = 1, .merge = 0 };
	for (int i = 1; i + 1 < argc; i += 2) {
		unsigned long long v = strtoull(argv[i + 1], NULL, 10);

		if (!strcmp(argv[i], "--records"))
			o->records = v;
		else if (!strcmp(argv[i], "--keys"))
			o->keys = (uint32_t)v;
		else if (!strcmp(argv[i], "--workers"))
			o->workers = (int)v;
		else if (!strcmp(argv[i], "--mem-keys"))
			o->mem_keys = (uint32_t)v;
		else if (!strcmp(argv[i], "--prefetch"))
			o->prefetch = v != 0;
		else if (!strcmp(argv[i], "--sink"))
			o->sink = v != 0;
		else if (!strcmp(argv[i], "--merge"))
			o->merge = v != 0;
		else
			return -EINVAL;
	}
	if ((argc - 1) % 2 || !o->keys || o->workers < 1 || o->workers > TDM_APPLY_MAX_WORKERS)
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	int rc;

	if (parse(argc, argv, &o)) {
		fprintf(stderr, "usage: %s [--records N] [--keys K] [--workers W] [--mem-keys M] "
			"[--prefetch 0|1] [--sink 0|1] [--merge 0|1]\n", argv[0]);
		return 2;
	}
	if (!tdm_bench_scratch_dir())
		return 1;
	rc = bench_memory(&o);
	if (!rc && o.sink)
		rc = bench_sink(&o);
	if (!rc)
		rc = bench_apply(&o);
	tdm_bench_cleanup();
	return rc ? 1 : 0;
}
