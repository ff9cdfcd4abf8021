/*
 * Internals of apply/: the export macro, the two atomic helpers, the hash used for keys and for
 * the digest, and the dispatcher/worker layout shared by apply.c and threads.c. Only the .c
 * files of apply/ include this.
 */
#ifndef TDM_APPLY_PVT_H
#define TDM_APPLY_PVT_H

#include <pthread.h>
#include <stdint.h>

#include "tdm_apply.h"

#define TDM_API __attribute__((visibility("default")))

#define TDM_APPLY_LIKELY(x) __builtin_expect(!!(x), 1)
#define TDM_APPLY_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define TDM_APPLY_LINE 128 /* every hot shared field sits alone on a slot this size */

/* ---- Atomics: the two helpers every shared field goes through ---- */

static inline uint64_t tdm_apply_load_acquire(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void tdm_apply_store_release(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* ---- Hashing (hash.c) ---- */

/** XXH64 of buf with a seed: the key hash is tdm_apply_hash64(key, len, 0). */
uint64_t tdm_apply_hash64(const void *buf, size_t len, uint64_t seed);

/** The digest term of one entry: a 64-bit hash of (key, value), given the key's hash (which
 *  covers the key's bytes and length). The store's digest is the sum of these mod 2^64. */
static inline uint64_t tdm_store_entry_hash(uint64_t key_hash, const void *val, uint32_t vlen)
{
	return tdm_apply_hash64(val, vlen, key_hash);
}

/* ---- Dispatcher and workers (apply.c, threads.c) ---- */

/*
 * One worker: its ring (single producer: the dispatcher; single consumer: the worker) and its
 * applied mark. Fields are grouped by the thread that writes them, each group on its own line.
 * The ring holds copies of log records (header, key, value, padded to 8 bytes: the record's
 * span), back to back; a length word of TDM_APPLY_RING_WRAP means "continue at offset 0".
 */
struct tdm_apply_worker {
	/* Read-only after tdm_apply_create. */
	struct tdm_apply *a;
	uint8_t *buf;   /**< ring bytes (ring_bytes, 128-aligned) */
	uint64_t mask;  /**< ring_bytes - 1 */
	int index;

	/* Written by the dispatcher thread: ring bytes pushed (release in publish_heads). */
	_Alignas(TDM_APPLY_LINE) uint64_t head;

	/* Dispatcher-private: its unpublished head and its cached copy of tail. */
	_Alignas(TDM_APPLY_LINE) uint64_t prod_head;
	uint64_t prod_tail;

	/* Written by the worker thread: ring bytes consumed (release after applying them). */
	_Alignas(TDM_APPLY_LINE) uint64_t tail;

	/* Written by the worker thread: every record of this worker's partition below it is
	 *  applied (release after end_batch; read by tdm_apply_applied from any thread). */
	_Alignas(TDM_APPLY_LINE) uint64_t applied;

	/* Written by the worker thread: counters (release per batch; read by tdm_apply_stats)
	 * and its sticky error. */
	_Alignas(TDM_APPLY_LINE) uint64_t records;
	uint64_t puts, dels, batches;
	uint64_t error;      /**< negative code as (uint64_t)(int64_t), 0 none; set once */
	char errmsg[256];    /**< tdm_errmsg of a failed worker thread (read after join) */
};

/** The dispatcher, its workers and their threads. */
struct tdm_apply {
	/* Read-only after tdm_apply_create. */
	struct tdm_log *log;
	struct tdm_apply_sink sink;
	int workers;
	uint32_t batch;
	uint64_t ring_bytes;
	struct tdm_apply_worker *w; /**< workers entries, 128-aligned */

	/* Written by the dispatcher thread: position up to which records were handed to workers
	 * (release at the end of each step, after the ring heads; acquired by workers). */
	_Alignas(TDM_APPLY_LINE) uint64_t dispatched;

	/* Written by the dispatcher thread: counters (release per step), its sticky error, and its
	 * private cursor. */
	_Alignas(TDM_APPLY_LINE) uint64_t skipped;
	uint64_t ring_full;
	uint64_t error; /**< negative code as (uint64_t)(int64_t), 0 none; set once */
	struct tdm_log_cursor *cursor;

	/* Threads: written by the thread calling start/stop_threads. */
	_Alignas(TDM_APPLY_LINE) uint64_t stop; /**< 1: worker threads return (release) */
	int nthreads;
	enum tdm_dp_idle_kind idle;
	pthread_t threads[TDM_APPLY_MAX_WORKERS];
};

#define TDM_APPLY_RING_WRAP UINT32_MAX /* length word of a wrap marker in a worker ring */

#endif /* TDM_APPLY_PVT_H */
