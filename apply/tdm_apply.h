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
 *
 * Multi-primary: the store has a merge mode (last-writer-wins on (hlc, origin), tombstones,
 * conflict counting and reporting; see "The default store"), and apply/ provides the hybrid
 * logical clock that stamps the writes it merges (tdm_hlc_*). Which origins a node receives,
 * and when tombstones may be purged, is the engine's business.
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

/* ---- Hybrid logical clock (hlc.c): the timestamps of multi-primary writes ---- */

/*
 * A timestamp is one 64-bit integer: wall-clock nanoseconds since the Unix epoch whose low
 * TDM_HLC_LOGICAL_BITS (8) bits are replaced by a logical counter:
 *
 *   bit 63 ........................................ 8 | 7 ...... 0
 *       physical: wall ns rounded down to 256 ns       | logical count within that tick
 *
 * Why this packing: timestamps compare as plain integers (the merge's last-writer-wins orders
 * on them), the clock is one word updated by one compare-and-swap, and a timestamp stays a
 * time in the unit records already carry (engine stamps wall ns today; lag "time behind" is
 * computed from it), within 256 ns: tandem measures lag in microseconds, so 16 logical bits
 * (65.5 us ticks) or milliseconds would blur it. 256 stamps per 256 ns tick is more than one
 * clock issues (each stamp is a CAS on a shared line, tens of ns); more would only carry into
 * the physical part, which keeps the order (see hlc.c). Range: until the year 2554.
 *
 * One struct tdm_hlc per node, shared by the threads that stamp local writes and the thread(s)
 * that observe received ones. Put it on a cache line of its own (it is written per stamp).
 */
#define TDM_HLC_LOGICAL_BITS 8

/** tdm_hlc_observe: the remote timestamp is more than max_offset ahead of this node's wall
 *  clock (its clock is wrong, or ours is); the clock did not move. The caller counts it and
 *  refuses the record. (Apply's own code: to move into log/tdm_err.h with a name in
 *  tdm_strerror, which reports it as "unknown error" until then.) */
#ifndef TDM_ERR_CLOCK_AHEAD
#define TDM_ERR_CLOCK_AHEAD (-30101)
#endif

struct tdm_hlc {
	uint64_t last; /**< greatest timestamp issued or observed; only through the calls below */
};

/** Physical part of a timestamp: wall ns, rounded down to the tick. */
static inline uint64_t tdm_hlc_wall(uint64_t hlc)
{
	return hlc & ~((1ull << TDM_HLC_LOGICAL_BITS) - 1);
}

/** Logical part of a timestamp: how many stamps came before it within its tick. */
static inline uint32_t tdm_hlc_logical(uint64_t hlc)
{
	return (uint32_t)(hlc & ((1ull << TDM_HLC_LOGICAL_BITS) - 1));
}

/** Start the clock at `start` (0, or the greatest timestamp found in the log on restart, so that
 *  a clock stepped back while the node was down cannot reissue old timestamps). Not
 *  thread-safe: before any stamp. */
void tdm_hlc_init(struct tdm_hlc *c, uint64_t start);

/**
 * Stamp a local write: max(physical tick of wall_ns, last + 1). Strictly greater than every
 * timestamp this clock issued or observed before, even when wall_ns goes back. Thread-safe
 * (lock-free; any number of threads may stamp and observe through one clock).
 * @param wall_ns CLOCK_REALTIME in ns (the caller's cached time is fine)
 * @return the timestamp
 */
uint64_t tdm_hlc_now(struct tdm_hlc *c, uint64_t wall_ns);

/**
 * Observe a timestamp received from another node: afterwards every tdm_hlc_now returns more
 * than `remote`. Thread-safe like tdm_hlc_now.
 * @param max_offset_ns how far a remote clock may be ahead of wall_ns (the cluster's maximum
 *        clock offset)
 * @return 0 (also when remote is behind: nothing to do); TDM_ERR_CLOCK_AHEAD remote > wall_ns +
 *         max_offset_ns: the clock is left as it was (a peer with a clock running far ahead
 *         must not drag every node's clock with it).
 */
int tdm_hlc_observe(struct tdm_hlc *c, uint64_t remote, uint64_t wall_ns,
		    uint64_t max_offset_ns);

/** The greatest timestamp issued or observed so far (any thread). */
uint64_t tdm_hlc_last(const struct tdm_hlc *c);

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

/*
 * Two modes, chosen at creation:
 *
 * PLAIN (primary-replica): the last record applied for a key wins; a delete removes the key.
 * The records of a key arrive in log order, which is the order the primary accepted them.
 *
 * MERGE (multi-primary): last-writer-wins on the version (hlc, origin), compared hlc first,
 * then origin (the node id breaks ties between equal timestamps). A put applies only if its
 * version is greater than the stored one's; equal versions are the same write (a node never
 * stamps two writes alike: tdm_hlc_now is strictly increasing), so re-applying is a no-op. A
 * delete with a greater version leaves a TOMBSTONE: the key's entry stays, with the delete's
 * version, no value and a deleted mark, so that a put older than the delete that arrives after
 * it still loses. Tombstones are invisible to get, foreach, count, data_bytes and the digest.
 * So for every key the store holds the greatest version among all the records of that key it
 * was given (live if that is a put, absent if a delete): the same set of records in any order
 * gives the same store and digest. tdm_store_purge_tombstones drops old tombstones.
 *
 * CONFLICTS (merge mode). Last-writer-wins keeps one version per key and drops the other:
 * each such lost update is a conflict, of one of two kinds:
 *   STALE       the incoming version is smaller than the stored one: it is dropped. Counted
 *               for every drop, whatever the origins and the distance in time; `in_window`
 *               (below) tells which of them are between different origins within the window.
 *   OVERWRITE   the incoming version is greater and replaces a stored version of ANOTHER
 *               origin whose hlc is at most conflict_window_ns older (incoming.hlc - stored.hlc
 *               <= window): that write is lost. Replacing a version of the same origin, or one
 *               older than the window, is an ordinary update, not counted.
 * Limits: without vector clocks the store cannot know whether two writes were truly concurrent
 * (made without one seeing the other); the window is a stand-in (set it to the cluster's
 * maximum clock offset): two writes of different nodes that close in time may have been
 * concurrent. What one node counts depends on the order in which the versions reached it: a
 * pair of close writes is an OVERWRITE where the older arrived first and a STALE in_window drop
 * where the newer did, so overwrites + stale_in_window counts each such meeting once on every
 * node; stale alone also counts late arrivals that nobody would call concurrent (a node that
 * was partitioned for a while sends writes already superseded). Deletes are versions like puts
 * (a delete can lose, and can make a put lose).
 */

struct tdm_store;

/** One version of a key, as handed to the conflict callback and tdm_store_foreach_all. */
struct tdm_store_version {
	const void *val;  /**< vlen value bytes, never NULL; valid during the call only */
	uint32_t vlen;    /**< 0 for a delete */
	uint64_t hlc;
	uint16_t origin;
	bool deleted;     /**< a delete (tombstone) */
};

enum tdm_store_conflict_kind {
	TDM_STORE_CONFLICT_STALE = 1,     /**< the incoming version lost and was dropped */
	TDM_STORE_CONFLICT_OVERWRITE = 2, /**< the stored version (another origin, within the
	                                       window) lost and was replaced */
};

/** A conflict as the callback sees it. */
struct tdm_store_conflict {
	enum tdm_store_conflict_kind kind;
	const void *key;                 /**< valid during the call */
	uint32_t klen;
	int shard;                       /**< the key's shard (= the apply worker) */
	struct tdm_store_version winner; /**< the version kept */
	struct tdm_store_version loser;  /**< the version lost (incoming for STALE) */
};

/** Conflict callback. Called on the thread that applies the losing write: an apply worker's
 *  thread (through tdm_store_sink), or the caller of tdm_store_put/del_at; with the key's
 *  shard write-locked, before the store changes. It must be quick, must not block and must not
 *  call into the same store (its shard lock is held). */
typedef void (*tdm_store_conflict_fn)(void *ctx, const struct tdm_store_conflict *c);

/** Default concurrency window: 500 ms (a common bound on clock offsets between servers). */
#define TDM_STORE_CONFLICT_WINDOW_NS 500000000ull

struct tdm_store_config {
	int shards;                   /**< 1..TDM_APPLY_MAX_WORKERS (one per apply worker) */
	bool merge;                   /**< multi-primary: last-writer-wins, tombstones, conflicts */
	uint64_t conflict_window_ns;  /**< merge: OVERWRITE window (see above) */
	tdm_store_conflict_fn on_conflict; /**< merge: may be NULL; fixed for the store's life */
	void *conflict_ctx;           /**< its ctx */
};

/** Defaults: 1 shard, plain mode, window TDM_STORE_CONFLICT_WINDOW_NS, no callback. */
void tdm_store_config_defaults(struct tdm_store_config *cfg);

/**
 * Create an empty store of `shards` shards (one per apply worker: worker i writes only shard i,
 * so shard = tdm_apply_key_hash % shards). Memory comes from malloc (jemalloc in our programs).
 * Used as a sink, it needs exactly as many shards as apply has workers (a worker given a key of
 * another shard fails with -EINVAL). A plain-mode store (tdm_store_create_cfg for merge mode).
 * @return 0, -EINVAL (shards 0 or > TDM_APPLY_MAX_WORKERS), -ENOMEM.
 */
int tdm_store_create(int shards, struct tdm_store **out);
/** Create a store as configured. @return as tdm_store_create. */
int tdm_store_create_cfg(const struct tdm_store_config *cfg, struct tdm_store **out);
void tdm_store_destroy(struct tdm_store *s);

/** Whether the store was created in merge mode. */
bool tdm_store_is_merge(const struct tdm_store *s);

/** The store as a sink (worker i -> shard i). Merge mode: each PUT/DEL record is merged with
 *  its header's (hlc, origin). */
void tdm_store_sink(struct tdm_store *s, struct tdm_apply_sink *out);

/** Put key = value with its timestamp and origin (kept for multi-primary merges). Takes the
 *  key's shard lock for the call: use it from one writer per shard (tdm_store_sink's workers
 *  write through the sink instead). Merge mode: applies only if (hlc, origin) is greater than
 *  the stored version (a dropped put returns 0 too and counts a conflict). @return 0; -EINVAL
 *  key > TDM_LOG_MAX_KEY or value > TDM_LOG_MAX_VALUE; -ENOMEM. */
int tdm_store_put(struct tdm_store *s, const void *key, uint32_t klen, const void *val,
		  uint32_t vlen, uint64_t hlc, uint16_t origin);
/** Delete key. @return 0 (also when it was missing); -EINVAL on a merge-mode store (a delete
 *  there needs its version: tdm_store_del_at). */
int tdm_store_del(struct tdm_store *s, const void *key, uint32_t klen);
/** Delete key as the write (hlc, origin). Merge mode: leaves a tombstone if the version is
 *  greater than the stored one (also when the key is missing: a put older than the delete may
 *  still come); else drops it as put does. Plain mode: as tdm_store_del. @return 0; -EINVAL
 *  key > TDM_LOG_MAX_KEY; -ENOMEM. */
int tdm_store_del_at(struct tdm_store *s, const void *key, uint32_t klen, uint64_t hlc,
		     uint16_t origin);

/**
 * Point read from any thread: copy the value into buf (up to cap bytes).
 * @param vlen out: the value's full length (may be > cap: call again with a bigger buffer)
 * @param hlc, origin out, may be NULL
 * @return 0; TDM_ERR_NOT_FOUND no such key (or, merge mode, a tombstone).
 */
int tdm_store_get(struct tdm_store *s, const void *key, uint32_t klen, void *buf, uint32_t cap,
		  uint32_t *vlen, uint64_t *hlc, uint16_t *origin);

/** Order-independent digest of the whole contents: the sum mod 2^64 of a 64-bit hash of each
 *  (key, value). Equal contents give equal digests whatever the shard count or history.
 *  Kept up to date on every put/delete and published when the put/del or the sink's batch
 *  ends: reading it costs one load per shard. count and data_bytes likewise.
 *  Merge mode: live entries only, with the same hash as plain mode. Neither tombstones nor
 *  versions enter it: nodes purge tombstones at different times (each when its own peers have
 *  acknowledged), so a digest over them would differ between nodes whose contents agree; and
 *  two nodes given the same records hold the same versions anyway (the greatest per key), so
 *  equal digests mean equal contents as in plain mode. Compare tombstones with
 *  tdm_store_foreach_all when that matters (tests, a resync check). */
uint64_t tdm_store_digest(const struct tdm_store *s);
uint64_t tdm_store_count(const struct tdm_store *s);      /**< live keys */
uint64_t tdm_store_data_bytes(const struct tdm_store *s); /**< sum of key + value bytes */
uint64_t tdm_store_tombstones(const struct tdm_store *s); /**< merge: tombstones held */
/** Remove everything (tombstones too; conflict counters and the recent ring are kept). */
void tdm_store_clear(struct tdm_store *s);

/** Called for each entry by tdm_store_foreach (shard by shard; under the shard's lock, so the
 *  entry is stable). Return non-zero to stop (that value is returned). */
typedef int (*tdm_store_entry_fn)(void *ctx, const void *key, uint32_t klen, const void *val,
				  uint32_t vlen, uint64_t hlc, uint16_t origin);
/** Every live entry (tombstones are left out). */
int tdm_store_foreach(struct tdm_store *s, tdm_store_entry_fn fn, void *ctx);

/** Called for each entry, tombstones included, by tdm_store_foreach_all (as foreach). */
typedef int (*tdm_store_version_fn)(void *ctx, const void *key, uint32_t klen,
				    const struct tdm_store_version *v);
/** Every entry with its version, tombstones included (v->deleted): what a merge-mode resync
 *  must carry (give each to tdm_store_put or tdm_store_del_at on the other side). */
int tdm_store_foreach_all(struct tdm_store *s, tdm_store_version_fn fn, void *ctx);

/**
 * Merge mode: drop the tombstones whose hlc is below hlc_before. Safe once no record older than
 * hlc_before can still arrive (every peer has acknowledged everything stamped before it): a put
 * older than a purged tombstone would bring its key back. Takes each shard's lock in turn and
 * scans its table (about 1-2 ns per slot): call it from a slow path, now and then.
 * @return tombstones dropped (0 in plain mode).
 */
uint64_t tdm_store_purge_tombstones(struct tdm_store *s, uint64_t hlc_before);

/* ---- Conflict reporting (merge mode) ---- */

#define TDM_STORE_CONFLICT_RING 64  /**< recent conflicts kept (per shard; the store's newest
                                         TDM_STORE_CONFLICT_RING are always among them) */
#define TDM_STORE_CONFLICT_KEY 32   /**< key bytes kept per recent conflict */
#define TDM_STORE_CONFLICT_ORIGINS 32 /**< distinct origins counted per shard */

/* tdm_store_conflict_rec.flags */
#define TDM_STORE_CF_INCOMING_WON 0x01   /**< the incoming version won (OVERWRITE) */
#define TDM_STORE_CF_WINNER_DELETED 0x02 /**< the winner is a delete */
#define TDM_STORE_CF_LOSER_DELETED 0x04  /**< the loser is a delete */
#define TDM_STORE_CF_IN_WINDOW 0x08      /**< different origins, hlcs within the window (every
                                              OVERWRITE; STALE ones that were that close) */

/** A recent conflict, as copied out by tdm_store_conflicts_recent. */
struct tdm_store_conflict_rec {
	uint64_t time_ns;        /**< CLOCK_REALTIME when it was found (cached per batch) */
	uint64_t winner_hlc, loser_hlc;
	uint32_t key_len;        /**< the key's full length */
	uint16_t winner_origin, loser_origin;
	uint8_t kind;            /**< enum tdm_store_conflict_kind */
	uint8_t flags;           /**< TDM_STORE_CF_... */
	uint8_t key[TDM_STORE_CONFLICT_KEY]; /**< the key's first min(key_len, 32) bytes */
};

/** Conflicts counted for one origin (node id). */
struct tdm_store_conflict_origin {
	uint16_t origin;
	uint64_t lost;  /**< versions of this origin that lost (dropped or replaced) */
	uint64_t won;   /**< conflicts this origin's version won */
};

struct tdm_store_conflict_stats {
	uint64_t stale;           /**< STALE: incoming versions dropped */
	uint64_t stale_in_window; /**< of those, from another origin within the window */
	uint64_t overwrites;      /**< OVERWRITE: stored versions replaced within the window */
	uint64_t purged;          /**< tombstones dropped by tdm_store_purge_tombstones */
	int n_origins;            /**< entries of origins[] in use (by origin id) */
	struct tdm_store_conflict_origin origins[TDM_STORE_CONFLICT_ORIGINS];
	uint64_t other_lost, other_won; /**< origins that did not fit in a shard's table */
};

/** Conflict counters, summed over the shards (takes each shard's read lock: waits for a batch
 *  in progress; any thread). All zero in plain mode. */
void tdm_store_conflict_stats(struct tdm_store *s, struct tdm_store_conflict_stats *out);

/**
 * Copy out the most recent conflicts, newest first (any thread; takes each shard's read lock
 * in turn). Recording one costs no allocation: each shard keeps its last
 * TDM_STORE_CONFLICT_RING in a ring written by the shard's writer.
 * @return how many were copied: min(cap, conflicts recorded, TDM_STORE_CONFLICT_RING *
 *         shards); -ENOMEM (for the merge's scratch copy).
 */
int tdm_store_conflicts_recent(struct tdm_store *s, struct tdm_store_conflict_rec *out,
			       int cap);

/*
 * Snapshot file (written out byte by byte at the top of apply/snapshot.c): a header with magic,
 * version, the position the contents correspond to, the entry count and the digest; the entries;
 * a CRC32C trailer. Written to a temporary name, fsynced, renamed: a crash leaves the old one.
 * A plain store writes version 1 (as before); a merge store writes version 2, which adds the
 * tombstones (each entry keeps its hlc and origin in both). Both load.
 */

/** Write the store's contents as of position `pos` to path (the caller stops the workers first
 *  so the contents are those of exactly `pos`). @return 0; -EAGAIN the store changed while it
 *  was written (nothing replaced); another negative errno (message set). */
int tdm_store_snapshot_write(struct tdm_store *s, uint64_t pos, const char *path);

/** Replace the store's contents with a snapshot file's. @param pos out: its position.
 *  A version 1 file loads into either mode; a version 2 file (tombstones) into a merge store
 *  only. @return 0; -ENOENT no file; TDM_ERR_CORRUPT bad magic/CRC/lengths, a truncated file
 *  or a digest that does not match the entries; TDM_ERR_VERSION an unknown version, or a
 *  version 2 file for a plain store. On any error the store is left empty and tdm_errmsg
 *  names the file and what is wrong. */
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
