/*
 * tandem apply: the public interface of apply/.
 *
 * Turns a log into state. A dispatcher reads the node's log with a cursor and hands each PUT/DEL
 * record to one of N apply workers, chosen by a hash of the key, so per-key order holds while the
 * workers run in parallel. Workers apply through a sink (begin batch, put, delete, end batch); the
 * default sink is an in-memory hash store with point reads, an order-independent digest of its
 * whole contents, and snapshots.
 *
 * Positions: the applied position is the position below which every record is applied. A worker
 * with nothing in its partition does not hold it back: the dispatcher publishes how far it has
 * dispatched, and a worker that has drained everything below that mark counts as applied up to it.
 *
 * Threads: the dispatcher is one agent (one thread). Each worker is one agent; all may run on the
 * dispatcher's thread (small machines, tests) or each on its own thread. Dispatcher and workers
 * talk through one single-producer single-consumer ring per worker, with no lock. The store takes
 * one shard lock per batch (not per record) so that point reads from other threads are safe.
 */
#ifndef TDM_APPLY_H
#define TDM_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tdm_dp.h"
#include "tdm_err.h"
#include "tdm_log.h"

#define TDM_APPLY_MAX_WORKERS 64

/** Hash of a key (XXH64 with seed 0: 64-bit, stable across processes and builds: snapshots and
 *  the worker choice depend on it). Worker of a key = tdm_apply_key_hash(k, n) % workers. */
uint64_t tdm_apply_key_hash(const void *key, uint32_t len);

/* ---- The sink interface: where workers put what they apply ---- */

/** Start a batch on worker `worker` (called before the first put/del of a batch). */
typedef int (*tdm_apply_begin_fn)(void *ctx, int worker);
/** Apply a PUT record (rec->hdr has hlc and origin; key/value point into a buffer valid for the
 *  call only). Return 0, or a negative code: the worker stops and reports it (its do_work
 *  returns it; tdm_apply_stats' error). */
typedef int (*tdm_apply_put_fn)(void *ctx, int worker, const struct tdm_log_rec *rec);
/** Apply a DEL record. Deleting a missing key is not an error. */
typedef int (*tdm_apply_del_fn)(void *ctx, int worker, const struct tdm_log_rec *rec);
/** End a batch; every record before `applied` (a position) is now applied on this worker. */
typedef int (*tdm_apply_end_fn)(void *ctx, int worker, uint64_t applied);

/** Records a worker announces before applying them (see tdm_apply_prefetch_fn). */
#define TDM_APPLY_PREFETCH 16

/** Optional hint: `rec` will be put or deleted soon on this worker. Called inside a batch (after
 *  begin_batch), in the order of the records' put/del calls, at most TDM_APPLY_PREFETCH records
 *  ahead of them, so the sink can start loading the memory they will touch; rec is valid until
 *  its own put/del returns. Records announced but not applied when the batch ends are dropped. */
typedef void (*tdm_apply_prefetch_fn)(void *ctx, int worker, const struct tdm_log_rec *rec);

/** The sink's calls and their context. A sink sets a message (TDM_ERR) when it fails. */
struct tdm_apply_sink {
	tdm_apply_begin_fn begin_batch; /**< may be NULL */
	tdm_apply_put_fn put;
	tdm_apply_del_fn del;
	tdm_apply_end_fn end_batch;     /**< may be NULL */
	void *ctx;
	tdm_apply_prefetch_fn prefetch; /**< may be NULL; tdm_store_sink sets it */
};

/* ---- The default store ---- */

struct tdm_store;

/**
 * Create an empty store of `shards` shards (one per apply worker: worker i writes only shard i,
 * so shard = tdm_apply_key_hash % shards). Memory comes from malloc (jemalloc in our programs).
 * Used as a sink, it needs exactly as many shards as apply has workers (a worker given a key of
 * another shard fails with -EINVAL).
 * @return 0, -EINVAL (shards 0 or > TDM_APPLY_MAX_WORKERS), -ENOMEM.
 */
int tdm_store_create(int shards, struct tdm_store **out);
void tdm_store_destroy(struct tdm_store *s);

/** The store as a sink (worker i -> shard i). */
void tdm_store_sink(struct tdm_store *s, struct tdm_apply_sink *out);

/** Put key = value with its timestamp and origin (kept for multi-primary merges). Takes the
 *  key's shard lock for the call: use it from one writer per shard (tdm_store_sink's workers
 *  write through the sink instead). @return 0; -EINVAL key > TDM_LOG_MAX_KEY or value >
 *  TDM_LOG_MAX_VALUE; -ENOMEM. */
int tdm_store_put(struct tdm_store *s, const void *key, uint32_t klen, const void *val,
		  uint32_t vlen, uint64_t hlc, uint16_t origin);
/** Delete key. @return 0 (also when it was missing). */
int tdm_store_del(struct tdm_store *s, const void *key, uint32_t klen);

/**
 * Point read from any thread: copy the value into buf (up to cap bytes).
 * @param vlen out: the value's full length (may be > cap: call again with a bigger buffer)
 * @param hlc, origin out, may be NULL
 * @return 0; TDM_ERR_NOT_FOUND no such key.
 */
int tdm_store_get(struct tdm_store *s, const void *key, uint32_t klen, void *buf, uint32_t cap,
		  uint32_t *vlen, uint64_t *hlc, uint16_t *origin);

/** Order-independent digest of the whole contents: the sum mod 2^64 of a 64-bit hash of each
 *  (key, value). Equal contents give equal digests whatever the shard count or history.
 *  Kept up to date on every put/delete and published when the put/del or the sink's batch
 *  ends: reading it costs one load per shard. count and data_bytes likewise. */
uint64_t tdm_store_digest(const struct tdm_store *s);
uint64_t tdm_store_count(const struct tdm_store *s);      /**< keys */
uint64_t tdm_store_data_bytes(const struct tdm_store *s); /**< sum of key + value bytes */
void tdm_store_clear(struct tdm_store *s);                /**< remove everything */

/** Called for each entry by tdm_store_foreach (shard by shard; under the shard's lock, so the
 *  entry is stable). Return non-zero to stop (that value is returned). */
typedef int (*tdm_store_entry_fn)(void *ctx, const void *key, uint32_t klen, const void *val,
				  uint32_t vlen, uint64_t hlc, uint16_t origin);
int tdm_store_foreach(struct tdm_store *s, tdm_store_entry_fn fn, void *ctx);

/*
 * Snapshot file (written out byte by byte at the top of apply/snapshot.c): a header with magic,
 * version, the position the contents correspond to, the entry count and the digest; the entries;
 * a CRC32C trailer. Written to a temporary name, fsynced, renamed: a crash leaves the old one.
 */

/** Write the store's contents as of position `pos` to path (the caller stops the workers first
 *  so the contents are those of exactly `pos`). @return 0; -EAGAIN the store changed while it
 *  was written (nothing replaced); another negative errno (message set). */
int tdm_store_snapshot_write(struct tdm_store *s, uint64_t pos, const char *path);

/** Replace the store's contents with a snapshot file's. @param pos out: its position.
 *  @return 0; -ENOENT no file; TDM_ERR_CORRUPT bad magic/CRC/lengths, a truncated file or a
 *  digest that does not match the entries; TDM_ERR_VERSION. On any error the store is left
 *  empty and tdm_errmsg names the file and what is wrong. */
int tdm_store_snapshot_load(struct tdm_store *s, const char *path, uint64_t *pos);

/* ---- Dispatcher and workers ---- */

struct tdm_apply_config {
	struct tdm_log *log;        /**< the node's log (owner or attached) */
	uint64_t from;              /**< first position to apply (a record boundary: 0, the
	                                 position of a snapshot, a record's position) */
	int workers;                /**< 1..TDM_APPLY_MAX_WORKERS */
	uint32_t batch;             /**< most records a dispatcher or worker step handles; 0 = 256 */
	uint32_t ring_bytes;        /**< per-worker ring (power of two, 1 KiB..1 GiB); 0 = 4 MiB.
	                                 A record bigger than a quarter of it is refused (error
	                                 set, the dispatcher stops: -EMSGSIZE) */
	struct tdm_apply_sink sink;
};

void tdm_apply_config_defaults(struct tdm_apply_config *cfg);

struct tdm_apply_stats {
	uint64_t dispatched;      /**< position up to which records were handed to workers */
	uint64_t applied;         /**< min over workers: every record before it is applied */
	uint64_t records;         /**< PUT + DEL records applied */
	uint64_t puts, dels;
	uint64_t skipped;         /**< EPOCH/NOOP records passed over (they still advance positions) */
	uint64_t batches;         /**< worker batches */
	uint64_t ring_full;       /**< dispatcher steps that stopped because a worker's ring was full */
	int error;                /**< the dispatcher's error, else the lowest-numbered failed
	                               worker's, 0 if none (tdm_errmsg on the thread it failed on;
	                               tdm_apply_stop_threads hands a worker thread's to the caller) */
};

struct tdm_apply;

/** @return 0; -EINVAL (bad configuration, from past the log's tail); -ENOMEM; TDM_ERR_TRIMMED
 *  from is older than the log's start: resync from a snapshot. */
int tdm_apply_create(const struct tdm_apply_config *cfg, struct tdm_apply **out);
/** Free it. The workers must not be running (stop their threads first). */
void tdm_apply_destroy(struct tdm_apply *a);

/** One dispatcher step: read up to `batch` published records, route each to its worker's ring,
 *  then publish the dispatched mark. @return records read (> 0), 0 idle (or every ring it needed
 *  was full), negative after a fatal error, returned again by every later call: cursor errors
 *  (TDM_ERR_CORRUPT, TDM_ERR_TRIMMED, I/O) or -EMSGSIZE a record too big for the rings;
 *  tdm_errmsg names the position. */
int tdm_apply_dispatch_do_work(struct tdm_apply *a);
/** One step of worker i: apply up to `batch` queued records as one sink batch, then advance the
 *  worker's applied mark (also when it had nothing to apply). @return records applied, 0 idle,
 *  negative when the sink failed (returned again by every later call). */
int tdm_apply_worker_do_work(struct tdm_apply *a, int worker);

/** Every record before this position is applied (acquire loads; any thread). */
uint64_t tdm_apply_applied(const struct tdm_apply *a);
/** Position the dispatcher has reached. Equal to applied when the workers are idle. */
uint64_t tdm_apply_dispatched(const struct tdm_apply *a);
void tdm_apply_stats(const struct tdm_apply *a, struct tdm_apply_stats *out);

/** Agents for a runner: ctx = the struct tdm_apply (dispatcher), and a per-worker context from
 *  tdm_apply_worker_ctx (worker i). */
int tdm_apply_dispatch_agent(void *ctx);
int tdm_apply_worker_agent(void *ctx);
void *tdm_apply_worker_ctx(struct tdm_apply *a, int worker);

/** Worker threads: start one thread per worker, each running its worker agent with the given
 *  idle strategy until tdm_apply_stop_threads (or until its sink fails). When not called, the
 *  caller runs the worker agents itself (one-thread mode). @return 0; -EBUSY already running;
 *  -errno from pthread_create. */
int tdm_apply_start_threads(struct tdm_apply *a, enum tdm_dp_idle_kind idle);
void tdm_apply_stop_threads(struct tdm_apply *a);

#endif /* TDM_APPLY_H */
