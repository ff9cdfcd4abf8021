/*
 * engine internals: the node, the status file's layout, the HELLO handshake payloads, and the
 * functions the engine's files share. Only the .c files of engine/ include it.
 */
#ifndef TDM_ENGINE_PVT_H
#define TDM_ENGINE_PVT_H

#include <pthread.h>
#include <stdarg.h>
#include <time.h>

#include "tandem.h"

#define TDM_API __attribute__((visibility("default")))

static inline uint64_t eng_load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void eng_store(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/*
 * STATUS FILE  DATA_DIR/status, mapped shared by the node (the one writer, its engine agent) and
 * by attached writers and tandemctl (readers). Fixed-width fields, a magic and a version.
 *   - The hot part: one 128-byte slot per quorum position (received, durable, applied): the
 *     position k replicas have reached, which commit waits poll. Written every engine round.
 *   - Counters attached writers add to (timeouts, degrades) and the degraded flag they raise;
 *     the engine clears the flag when the quorum catches up.
 *   - A copy of struct tdm_status under a sequence lock (odd while being written), refreshed
 *     every status interval, for tandemctl and tdm_status().
 */
#define TDM_STATUS_MAGIC 0x5441545344444e54ull /* "TNDDSTAT" */
#define TDM_STATUS_VERSION 1u

struct tdm_status_slot {
	uint64_t v;
	uint8_t pad[120];
};

struct tdm_status_shm {
	uint64_t magic;
	uint32_t version;
	uint32_t size;              /**< sizeof(struct tdm_status_shm) */
	int32_t pid;                /**< the node's process */
	uint16_t node_id;
	uint8_t role;               /**< enum tdm_role (engine writes on role changes) */
	uint8_t on_timeout;         /**< enum tdm_on_timeout */
	uint64_t cluster_id;
	uint64_t timeout_ns;        /**< configured commit wait timeout */
	int32_t quorum;
	uint16_t primary_id;        /**< the primary, when known (0: unknown) */
	uint8_t level;              /**< configured commit level */
	uint8_t closed;             /**< the node closed cleanly */
	char ring_name[64];         /**< shared-memory ring of the node's log (attach) */
	char ctl_path[256];         /**< control socket */
	uint8_t pad0[1024 - 368];
	struct tdm_status_slot quorum_pos[3]; /**< received, durable, applied (engine writes) */
	struct tdm_status_slot alive_ns;      /**< engine's last round, CLOCK_MONOTONIC */
	struct tdm_status_slot degraded;      /**< non-zero: writes do not wait for the quorum */
	struct tdm_status_slot timeouts;      /**< waits that timed out (any writer, atomic add) */
	struct tdm_status_slot degrades;      /**< waits that degraded (any writer, atomic add) */
	struct tdm_status_slot seq;           /**< sequence lock of `status` (engine writes) */
	struct tdm_status status;
};
_Static_assert(offsetof(struct tdm_status_shm, quorum_pos) == 1024, "status layout");
_Static_assert(offsetof(struct tdm_status_shm, ring_name) == 48, "status layout");

/* CLOCK_REALTIME in nanoseconds: record timestamps (hlc) and the status file's update time. */
static inline uint64_t eng_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A replica's received, durable and applied positions from its sender's stats. STATUS may
 * report durable/applied past what we know it received (a replica restarted on a longer log):
 * clamp them, so a level never counts data the replica has not acknowledged receiving. */
static inline void eng_replica_positions(const struct tdm_dp_sender_stats *ss, uint64_t *received,
					 uint64_t *durable, uint64_t *applied)
{
	*received = ss->acked;
	*durable = ss->peer_durable < ss->acked ? ss->peer_durable : ss->acked;
	*applied = ss->peer_applied < ss->acked ? ss->peer_applied : ss->acked;
}

/* Map a node's status file. create: make it (owner). @return 0 or a negative errno (message). */
int eng_status_map(const char *data_dir, bool create, struct tdm_status_shm **out);
void eng_status_unmap(struct tdm_status_shm *s);
/* Copy the status out of the sequence lock. */
void eng_status_copy(const struct tdm_status_shm *s, struct tdm_status *out);
/* Publish a new status (engine only). */
void eng_status_publish(struct tdm_status_shm *s, const struct tdm_status *st);
/* True when the process that owns the status file is alive. */
bool eng_status_alive(const struct tdm_status_shm *s);

/*
 * HELLO handshake (payload of TDM_DP_HELLO frames), little-endian, fixed size:
 *   replica -> primary  kind HELLO_REQ: where its log ends and what it needs.
 *   primary -> replica  kind STREAM (streaming from `from`), RESYNC (a snapshot of the store at
 *                       snap_pos comes as stream 1; then the log from base), REFUSE (reason).
 */
enum eng_hello_kind {
	ENG_HELLO_REQ = 1,
	ENG_HELLO_STREAM = 2,
	ENG_HELLO_RESYNC = 3,
	ENG_HELLO_REFUSE = 4,
};

#define ENG_HELLO_NEED_RESYNC 1u /* flags: the replica cannot rebuild its store from its log */
#define ENG_HELLO_MOVE_ASIDE 2u  /* RESYNC: the replica's log has records the primary lacks */

struct eng_hello {
	uint32_t kind;          /**< enum eng_hello_kind */
	uint32_t flags;
	uint64_t log_start;     /**< REQ: first position of the replica's log */
	uint64_t log_end;       /**< REQ: end of its log (all durable after recovery) */
	uint64_t segment_size;  /**< both: must match */
	uint64_t from;          /**< STREAM: first position sent; RESYNC: log base */
	uint64_t snap_pos;      /**< RESYNC: position the snapshot belongs to */
	uint32_t epoch;         /**< reply: the primary's epoch */
	uint32_t pad;
	char reason[160];       /**< REFUSE: why, and what to do */
};
_Static_assert(sizeof(struct eng_hello) == 216, "hello size");

/* The final record of a snapshot stream (stream 1): a NOOP whose value is this. */
#define ENG_SNAP_END_MAGIC 0x444e45504153444eull /* "NDSAPEND" */
struct eng_snap_end {
	uint64_t magic;
	uint64_t pos;      /**< the snapshot's position */
	uint64_t base;     /**< the log follows from here (a segment boundary <= pos) */
	uint64_t count;    /**< entries sent */
	uint64_t digest;   /**< digest of the store at pos */
};

#define ENG_STREAM_LOG 0u  /* the primary's log */
#define ENG_STREAM_SNAP 1u /* a full-resync snapshot */

/* A replica, as its primary tracks it. */
struct eng_replica {
	uint16_t id;
	enum tdm_peer_state state;
	struct tdm_dp_sender *sender;   /**< stream 0, from the replica's HELLO */
	int log_slot;                   /**< retention slot in our log (-1 none) */
	uint64_t hello_end;             /**< where its log ended at its last HELLO */
	uint64_t resyncs;
	/* full resync in progress */
	struct tdm_log *snap_log;       /**< the store as PUT records, then an end record */
	struct tdm_dp_sender *snap_sender;
	uint64_t snap_pos, snap_base, snap_end;
	bool move_aside;                /**< the replica's log has records we lack */
	char snap_dir[300];
	/* rates */
	uint64_t last_received, last_records;
	bool refused_logged;
};

/* The replica's side of its primary. */
struct eng_upstream {
	enum tdm_peer_state state;
	struct tdm_dp_receiver *receiver;      /**< stream 0 into our log */
	struct tdm_dp_receiver *snap_receiver; /**< stream 1 into the store (resync) */
	uint64_t hello_sent_ns;
	uint64_t snap_count;
	uint32_t flags;                        /**< ENG_HELLO_NEED_RESYNC while the store is stale */
	bool move_aside;
	bool snap_done;
	struct eng_snap_end snap_end;
	uint64_t resyncs;
	uint32_t epoch;                        /**< the primary's, from its HELLO replies */
	char refused[160];
};

struct eng_worker {
	struct tdm_node *node;
	int index;
};

/* (position, time) samples of the tail, to turn "bytes behind" into "time behind". */
#define ENG_TAIL_SAMPLES 65536

struct tdm_node {
	struct tdm_config cfg;
	bool attached;                 /**< attached handle: only log + status are set */
	struct tdm_log *log;
	struct tdm_status_shm *shm;
	uint16_t origin;
	/* owner only */
	struct tdm_dp *dp;
	struct tdm_store *store;
	struct tdm_apply *apply;
	bool apply_threads;
	struct tdm_dp_agent agents[4 + TDM_APPLY_MAX_WORKERS];
	struct eng_worker workers[TDM_APPLY_MAX_WORKERS];
	int n_agents;
	pthread_t thread;
	bool thread_running;
	int thread_rc;                 /**< set when the node's thread ends: its error, or 1 */
	bool stop;
	int lock_fd;
	int ctl_fd;
	char transport[48];
	uint64_t open_ns, last_status_ns, last_ctl_ns, last_drop_check_ns;
	uint64_t degraded_at;         /**< tail when degraded mode began (0: not degraded) */
	uint64_t degrade_logged;
	uint64_t bad_cluster_seen;
	uint64_t resyncs;
	int self_slot;                /**< retention slot from snapshot_pos: what a rebuild needs */
	uint64_t snapshot_pos;        /**< position of DATA_DIR/snapshot (0: none) */
	uint64_t last_bytes_tail, last_records; /**< rates (engine thread) */
	struct tdm_status st;         /**< being built by the engine agent */
	/* roles */
	struct eng_replica replicas[TDM_MAX_PEERS];
	int n_replicas;
	struct eng_upstream up;
	/* tail samples (engine thread) */
	uint64_t *sample_pos, *sample_ns;
	uint32_t sample_head, sample_count;
};

/* log lines (stderr, timestamped): slow paths only */
void eng_log(const struct tdm_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* node.c */
int eng_open_log(struct tdm_node *n, uint64_t base);
int eng_retain_snapshot(struct tdm_node *n);
int eng_remove_log_dir(const char *dir);
int eng_start_apply(struct tdm_node *n, uint64_t from);
void eng_stop_apply(struct tdm_node *n);
int eng_drain_apply(struct tdm_node *n);
int eng_write_local_snapshot(struct tdm_node *n);
void eng_snapshot_path(const struct tdm_node *n, char *buf, size_t len);

/* Every record before it is applied on this node (the snapshot's position while apply is
 * stopped for a resync). */
static inline uint64_t eng_applied(const struct tdm_node *n)
{
	return n->apply ? tdm_apply_applied(n->apply) : n->snapshot_pos;
}

/* primary.c */
int eng_primary_init(struct tdm_node *n);
void eng_primary_fini(struct tdm_node *n);
int eng_primary_do_work(struct tdm_node *n, uint64_t now);
void eng_primary_on_hello(struct tdm_node *n, uint16_t src, const struct eng_hello *h);

/* replica.c */
int eng_replica_init(struct tdm_node *n);
void eng_replica_fini(struct tdm_node *n);
int eng_replica_do_work(struct tdm_node *n, uint64_t now);
void eng_replica_on_hello(struct tdm_node *n, uint16_t src, const struct eng_hello *h);

/* status.c: the engine's per-round publishing and the status interval */
void eng_sample_tail(struct tdm_node *n, uint64_t tail, uint64_t now);
uint64_t eng_lag_ns(const struct tdm_node *n, uint64_t pos, uint64_t now);
void eng_publish_positions(struct tdm_node *n, uint64_t now);
void eng_publish_status(struct tdm_node *n, uint64_t now);

/* ctl.c: the control socket */
int eng_ctl_open(struct tdm_node *n);
void eng_ctl_close(struct tdm_node *n);
int eng_ctl_poll(struct tdm_node *n);

#endif /* TDM_ENGINE_PVT_H */
