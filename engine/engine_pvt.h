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
#define TDM_STATUS_VERSION 2u

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
	uint32_t epoch;             /**< the epoch the node follows (engine writes) */
	uint8_t fenced;             /**< primary cut off from a majority: writes refused */
	uint8_t mode;               /**< enum tdm_mode */
	uint8_t pad1[2];
	char why_not_writable[120]; /**< fenced / switching over: why writes are refused */
	uint64_t clock_skew_ns;     /**< multi-primary: [faults] clock_skew_ms, for every writer */
	uint8_t pad2[8];
	struct tdm_hlc hlc;         /**< multi-primary: the node's clock; every writer stamps with
	                                 it, the engine observes received records with it */
	uint8_t pad0[1024 - 520];
	struct tdm_status_slot quorum_pos[3]; /**< received, durable, applied (engine writes) */
	struct tdm_status_slot alive_ns;      /**< engine's last round, CLOCK_MONOTONIC */
	struct tdm_status_slot degraded;      /**< non-zero: writes do not wait for the quorum */
	struct tdm_status_slot timeouts;      /**< waits that timed out (any writer, atomic add) */
	struct tdm_status_slot degrades;      /**< waits that degraded (any writer, atomic add) */
	struct tdm_status_slot seq;           /**< sequence lock of `status` (engine writes) */
	struct tdm_status_slot term;          /**< +1 on every role change: a commit wait that
	                                           sees it move was not acknowledged */
	struct tdm_status status;
};
_Static_assert(offsetof(struct tdm_status_shm, quorum_pos) == 1024, "status layout");
_Static_assert(offsetof(struct tdm_status_shm, ring_name) == 48, "status layout");
_Static_assert(offsetof(struct tdm_status_shm, hlc) == 512, "status layout");

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
	ENG_HELLO_TRUNCATE = 5, /* primary -> replica: cut your log at `from` (records past it
	                           are not ours: move them aside), then HELLO again */
};

#define ENG_HELLO_HIST 8 /* newest history entries a replica sends (epoch, start) */

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
	uint32_t n_hist;        /**< REQ: entries in hist */
	uint32_t last_epoch;    /**< REQ: epoch of the replica's log */
	struct {
		uint32_t epoch;
		uint32_t pad;
		uint64_t start;
	} hist[ENG_HELLO_HIST]; /**< REQ: the newest entries of its history, oldest first */
};
_Static_assert(sizeof(struct eng_hello) == 352, "hello size");

/*
 * Elections (election.c). Every node sends a BEAT (in a HELLO frame, kind ENG_MSG_BEAT) to every
 * peer each beat interval; VOTE_REQUEST frames carry struct eng_vote (kind REQUEST or HANDOFF),
 * VOTE frames answer (GRANT or DENY). All engine control payloads start with their kind.
 */
#define ENG_MSG_BEAT 16u

struct eng_beat {
	uint32_t kind;        /**< ENG_MSG_BEAT */
	uint8_t role;         /**< enum tdm_role (candidate included) */
	uint8_t fenced;
	uint16_t leader;      /**< the primary it follows (itself when primary; 0 unknown) */
	uint32_t epoch;       /**< the epoch it follows */
	uint32_t last_epoch;  /**< epoch of its log's newest EPOCH record */
	uint64_t end;         /**< end of its log */
	uint64_t durable;
};

enum eng_vote_kind {
	ENG_VOTE_REQUEST = 1, /* candidate -> all: vote for me in epoch */
	ENG_VOTE_GRANT = 2,
	ENG_VOTE_DENY = 3,
	ENG_VOTE_HANDOFF = 4, /* primary -> target of a switchover: start an election now */
};

#define ENG_VOTE_TRANSFER 1u /* switchover / promote: a live primary does not block the vote */
#define ENG_VOTE_FORCE 2u    /* promote --force: a shorter log does not block it either */

struct eng_vote {
	uint32_t kind;        /**< enum eng_vote_kind */
	uint32_t flags;
	uint32_t epoch;       /**< the election's epoch */
	uint32_t last_epoch;  /**< candidate: its log's epoch */
	uint64_t end;         /**< candidate: its log's end */
	char reason[120];     /**< DENY: why */
};

/* A cluster member as this node sees it. */
struct eng_member {
	uint16_t id;
	bool witness;
	bool granted;          /**< voted for our current candidacy */
	uint64_t heard_ns;     /**< its last beat (CLOCK_MONOTONIC; 0 never) */
	struct eng_beat beat;  /**< that beat */
};

struct eng_election {
	enum tdm_role role;    /**< now: primary, replica, candidate or witness */
	uint32_t epoch;        /**< the epoch we follow */
	uint16_t leader;       /**< its primary (0: unknown) */
	uint64_t leader_heard_ns; /**< the leader's last live beat (or when we started waiting) */
	uint32_t voted_epoch;  /**< persisted in DATA_DIR/vote before any vote leaves */
	uint16_t voted_for;
	uint32_t cand_epoch;   /**< candidacy */
	uint32_t cand_flags;
	uint64_t cand_start_ns, next_try_ns, last_ask_ns;
	bool fenced;
	uint64_t last_beat_ns, beat_ns, lease_ns, timeout_ns;
	int voters, majority;  /**< voting members (us included) and a majority of them */
	uint64_t elections, won, stale_frames;
	uint64_t failover_wall_ns, failover_ns; /**< last new primary: when, how long it took */
	uint32_t seen_epoch;   /**< newest epoch seen in any vote (a candidacy runs above it) */
	uint16_t handoff_to;   /**< switchover in progress to this node */
	uint16_t handed_to;    /**< switchover done: HANDOFF resent to it until it leads */
	uint64_t handed_until, last_handoff_ns;
	uint64_t handoff_deadline, handoff_tail;
	char note[160];        /**< why there is no failover / why fenced / last outcome */
	struct eng_member members[TDM_MAX_PEERS];
	int n_members;
};

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

/* Tombstone purge: every record of one log below `pos` is applied once apply reaches it, and
 * then nothing of that origin older than `hlc` (less a slack) can still come. */
struct eng_floor {
	uint64_t pos, hlc;              /**< the checkpoint being waited for */
	uint64_t floor;                 /**< hlc below which this origin is wholly applied */
};

/*
 * Multi-primary (multi.c): our copy of one peer's origin. Its records keep the peer's
 * positions in DATA_DIR/origin-<id>/ (the receiver in log mode, with a filter that observes each
 * record's timestamp and refuses those too far ahead); an apply of its own merges them into the
 * store. The peer streams its own log to us on stream 0 once our HELLO says where our copy ends.
 */
struct eng_origin {
	struct tdm_node *node;
	uint16_t id;
	enum tdm_peer_state state;      /**< CONNECTING, STREAMING, FAILED (refused) */
	struct tdm_log *log;
	struct tdm_dp_receiver *receiver;
	struct tdm_apply *apply;
	uint64_t hello_sent_ns;
	uint64_t clock_refused;         /**< records refused for their timestamp */
	uint64_t refused_logged;        /**< clock_refused when we last said so */
	uint64_t refused_logged_ns;     /**< and when */
	int64_t clock_offset_ns;        /**< newest record's hlc minus our clock at receipt */
	uint64_t last_hlc, last_end;    /**< newest record taken: its hlc and where it ends */
	struct eng_floor floor;         /**< tombstone purge bound of this origin */
	char refused[160];              /**< the peer's reason (FAILED) */
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
	struct tdm_dp_agent agents[6 + TDM_APPLY_MAX_WORKERS];
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
	struct eng_election el;
	/* multi-primary */
	bool multi;
	struct eng_origin origins[TDM_MAX_PEERS];
	int n_origins;
	struct eng_floor own_floor;    /**< tombstone purge bound of our own origin */
	uint64_t last_tick_ns, last_tick_tail, last_purge_ns, purge_hlc;
	/* tail samples (engine thread) */
	uint64_t *sample_pos, *sample_ns;
	uint32_t sample_head, sample_count;
};

/* log lines (stderr, timestamped): slow paths only */
void eng_log(const struct tdm_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* node.c */
/* A log configuration of this node's sizes and ids, for dir and its ring shm_name. */
void eng_log_config(const struct tdm_node *n, struct tdm_log_config *lc, const char *dir,
		    const char *shm_name);
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
/* The replica with node id `id`, or NULL. */
struct eng_replica *eng_find_replica(struct tdm_node *n, uint16_t id);

/* replica.c */
int eng_replica_init(struct tdm_node *n);
void eng_replica_fini(struct tdm_node *n);
int eng_replica_do_work(struct tdm_node *n, uint64_t now);
void eng_replica_on_hello(struct tdm_node *n, uint16_t src, const struct eng_hello *h);

/* election.c */
int eng_election_init(struct tdm_node *n);
int eng_election_do_work(struct tdm_node *n, uint64_t now);
void eng_election_on_beat(struct tdm_node *n, uint16_t src, const struct eng_beat *b);
void eng_election_on_vote(struct tdm_node *n, uint16_t src, unsigned type,
			  const struct eng_vote *v);
/* ctl requests: start a switchover to node `to` / promote this node. @return 0 or an error with
 * a message. */
int eng_switchover(struct tdm_node *n, uint16_t to);
int eng_promote(struct tdm_node *n, bool force);
bool eng_is_primary(const struct tdm_node *n);

/* replica.c: follow a (new) primary: receivers towards it, HELLO. */
int eng_replica_follow(struct tdm_node *n, uint16_t leader);

/* node.c: our log's history (malloc'ed; free it) and its number of entries */
int eng_history(const struct tdm_node *n, struct tdm_log_epoch_start **out);
/* node.c: rebuild the store from the local snapshot and the log (after a truncation) */
int eng_rebuild_store(struct tdm_node *n);

/* multi.c: multi-primary (every node writes; it streams its origin through primary.c's
 * replicas and receives every peer's origin into a copy of its own) */
int eng_multi_open(struct tdm_node *n);
void eng_multi_close(struct tdm_node *n);
int eng_multi_do_work(struct tdm_node *n, uint64_t now);
void eng_multi_on_hello(struct tdm_node *n, uint16_t src, const struct eng_hello *h);
void eng_multi_status(struct tdm_node *n, struct tdm_status *st, uint64_t now);
int eng_multi_flush(struct tdm_node *n);     /* the copies' flushers (an agent's step) */
int eng_multi_apply(struct tdm_node *n);     /* the copies' applies (an agent's step) */
uint64_t eng_multi_clock(const struct tdm_node *n); /* wall clock (+ skew) for the hlc */

/* node.c: an apply of log from `from` into the node's store */
int eng_apply_open(struct tdm_node *n, struct tdm_log *log, uint64_t from,
		   struct tdm_apply **out);
void eng_apply_close(struct tdm_node *n, struct tdm_apply **a);

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
