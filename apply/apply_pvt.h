/*
 * Internals of apply/: the export macro, the two atomic helpers, the hash used for keys and for
 * the digest, the store's layout shared by store.c, merge.c and snapshot.c, and the
 * dispatcher/worker layout shared by apply.c and threads.c. Only the .c files of apply/
 * include this.
 */
#ifndef TDM_APPLY_PVT_H
#define TDM_APPLY_PVT_H

#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- The store's layout (store.c: tables, plain mode, reads, sink; merge.c: merge mode) ---- */

#define TDM_STORE_PF_N 32u /* announced records remembered per shard (>= TDM_APPLY_PREFETCH) */

/* Entry meta word: key length (17 bits: up to 64 KiB), value length (25 bits: up to 16 MiB),
 * origin (16 bits), then the deleted mark (bit 58: a merge-mode tombstone, value length 0). */
#define TDM_STORE_KLEN_BITS 17
#define TDM_STORE_VLEN_BITS 25
#define TDM_STORE_KLEN_MASK ((1ull << TDM_STORE_KLEN_BITS) - 1)
#define TDM_STORE_VLEN_MASK ((1ull << TDM_STORE_VLEN_BITS) - 1)
#define TDM_STORE_ORIGIN_SHIFT (TDM_STORE_KLEN_BITS + TDM_STORE_VLEN_BITS)
#define TDM_STORE_DELETED (1ull << (TDM_STORE_ORIGIN_SHIFT + 16))
_Static_assert(TDM_LOG_MAX_KEY <= TDM_STORE_KLEN_MASK, "key length fits the entry word");
_Static_assert(TDM_LOG_MAX_VALUE <= TDM_STORE_VLEN_MASK, "value length fits the entry word");
_Static_assert(TDM_STORE_ORIGIN_SHIFT + 16 < 64, "the deleted mark fits the entry word");

/** One key: a single malloc block of hlc, meta, then the key and the value. */
struct tdm_store_entry {
	uint64_t hlc;
	uint64_t meta;   /**< klen | vlen << 17 | origin << 42 | deleted << 58 */
	uint8_t data[];  /**< key, then value */
};

struct tdm_store_slot {
	uint64_t hash;                /**< key hash (meaningless when e is NULL) */
	struct tdm_store_entry *e;    /**< NULL: empty */
};

/** A record announced by the prefetch hook: its key (in the worker's ring) and its hash. */
struct tdm_store_pf {
	const uint8_t *key;
	uint64_t hash;
};

/** Per-origin conflict counts of a shard (an open-addressed table by origin id). */
struct tdm_store_origin_count {
	uint64_t lost, won;
	uint16_t origin;
	bool used;
};

/** Merge-mode state of a shard. Written by the shard's writer with the write lock held; read
 *  by tdm_store_conflict_stats/_recent under the read lock. */
struct tdm_store_merge {
	uint64_t now;        /**< time of conflicts found during this lock hold; 0: not read */
	uint64_t stale, stale_in_window, overwrites, purged;
	uint64_t ring_head;  /**< conflicts recorded; the next goes to ring[ring_head % RING] */
	uint64_t other_lost, other_won;
	struct tdm_store_origin_count origins[TDM_STORE_CONFLICT_ORIGINS];
	struct tdm_store_conflict_rec ring[TDM_STORE_CONFLICT_RING];
};

/** A shard. Everything but the published counters is touched only with the lock held. */
struct tdm_store_shard {
	_Alignas(TDM_APPLY_LINE) pthread_rwlock_t lock;
	struct tdm_store_slot *slots;
	uint64_t mask;     /**< slots - 1 */
	unsigned shift;    /**< 64 - log2(slots): home slot = hash >> shift */
	uint64_t digest, count, bytes;  /**< the writer's, under the lock (live entries) */
	uint64_t tombs;    /**< merge: tombstones (they use slots too) */
	struct tdm_store_merge *m;      /**< merge-mode state; NULL in plain mode */
	uint32_t pf_head, pf_tail;      /**< announced / taken back by put and del, this batch */
	struct tdm_store_pf pf[TDM_STORE_PF_N];

	/* Written by the shard's writer when it unlocks (release); read by any thread. */
	_Alignas(TDM_APPLY_LINE) uint64_t pub_digest;
	uint64_t pub_count, pub_bytes, pub_tombs;
};

struct tdm_store {
	int nshards;
	bool merge;
	uint64_t window;                   /**< merge: conflict_window_ns */
	tdm_store_conflict_fn on_conflict; /**< merge: may be NULL */
	void *conflict_ctx;
	struct tdm_store_shard *shards;    /**< nshards entries, 128-aligned */
};

static inline uint32_t tdm_store_e_klen(const struct tdm_store_entry *e)
{
	return (uint32_t)(e->meta & TDM_STORE_KLEN_MASK);
}

static inline uint32_t tdm_store_e_vlen(const struct tdm_store_entry *e)
{
	return (uint32_t)((e->meta >> TDM_STORE_KLEN_BITS) & TDM_STORE_VLEN_MASK);
}

static inline uint16_t tdm_store_e_origin(const struct tdm_store_entry *e)
{
	return (uint16_t)(e->meta >> TDM_STORE_ORIGIN_SHIFT);
}

static inline bool tdm_store_e_deleted(const struct tdm_store_entry *e)
{
	return (e->meta & TDM_STORE_DELETED) != 0;
}

static inline const uint8_t *tdm_store_e_val(const struct tdm_store_entry *e)
{
	return e->data + tdm_store_e_klen(e);
}

/** Fill e (already big enough) with the value and metadata; the key is in place. */
static inline void tdm_store_e_set(struct tdm_store_entry *e, uint32_t klen, const void *val,
				   uint32_t vlen, uint64_t hlc, uint16_t origin, bool deleted)
{
	e->hlc = hlc;
	e->meta = klen | (uint64_t)vlen << TDM_STORE_KLEN_BITS |
		  (uint64_t)origin << TDM_STORE_ORIGIN_SHIFT | (deleted ? TDM_STORE_DELETED : 0);
	if (vlen)
		memcpy(e->data + klen, val, vlen);
}

/** A new block for a key and a value of vlen bytes, the key copied in. NULL: no memory. */
static inline struct tdm_store_entry *tdm_store_e_new(const void *key, uint32_t klen,
						      uint32_t vlen)
{
	struct tdm_store_entry *e = malloc(sizeof(*e) + klen + vlen);

	if (e && klen)
		memcpy(e->data, key, klen);
	return e;
}

/** The slot holding key, or the empty slot where it would go. */
static inline struct tdm_store_slot *tdm_store_find(const struct tdm_store_shard *sh, uint64_t h,
						    const void *key, uint32_t klen)
{
	for (uint64_t i = h >> sh->shift;; i = (i + 1) & sh->mask) {
		struct tdm_store_slot *sl = &sh->slots[i];

		if (!sl->e)
			return sl;
		if (sl->hash == h && tdm_store_e_klen(sl->e) == klen &&
		    !memcmp(sl->e->data, key, klen))
			return sl;
	}
}

static inline struct tdm_store_shard *tdm_store_shard_of(struct tdm_store *s, uint64_t h)
{
	return &s->shards[s->nshards == 1 ? 0 : h % (uint64_t)s->nshards];
}

/** Does a block holding an entry of old_vlen also suit one of vlen? The same length always
 *  does; otherwise the block's real size (its malloc size class) must hold the new entry and
 *  not leave more than a quarter of it unused. */
static inline bool tdm_store_block_fits(struct tdm_store_entry *e, uint32_t klen,
					uint32_t old_vlen, uint32_t vlen)
{
	size_t need, have;

	if (vlen == old_vlen)
		return true;
	need = sizeof(*e) + klen + vlen;
	have = malloc_usable_size(e);
	return need <= have && need >= have - have / 4;
}

/** Whether one more entry needs the table to double first (3/4 full; tombstones count). */
static inline bool tdm_store_full(const struct tdm_store_shard *sh)
{
	return (sh->count + sh->tombs + 1) * 4 > (sh->mask + 1) * 3;
}

int tdm_store_grow(struct tdm_store_shard *sh);
void tdm_store_remove_slot(struct tdm_store_shard *sh, struct tdm_store_slot *sl);
void tdm_store_lock(struct tdm_store_shard *sh);
void tdm_store_unlock(struct tdm_store_shard *sh);
int tdm_store_check_lengths(uint32_t klen, uint32_t vlen);

/* ---- Merge mode (merge.c) ---- */

/** An incoming write for the merge: a put of val, or a delete (val NULL, vlen 0). */
struct tdm_store_in {
	const void *key;
	uint32_t klen;
	const void *val;
	uint32_t vlen;
	uint64_t hlc;
	uint16_t origin;
	bool del;
};

/** Merge in into shard sh (write-locked; h the key's hash): last-writer-wins, tombstones,
 *  conflicts. @return 0 (applied, or dropped as older or equal); -ENOMEM (nothing changed). */
int tdm_store_merge_write(struct tdm_store *s, struct tdm_store_shard *sh, uint64_t h,
			  const struct tdm_store_in *in);

/** Set key to exactly this version, live or tombstone, without comparing or counting
 *  conflicts (snapshot load; locks the shard). @return 0; -ENOMEM. */
int tdm_store_load_version(struct tdm_store *s, const struct tdm_store_in *in);

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
