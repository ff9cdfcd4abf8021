/*
 * tandem: the one header an embedder includes.
 *
 * A node is one member of a cluster: a primary (takes writes and streams them to its replicas)
 * or a replica (appends the stream to its own log at the same positions, makes it durable,
 * applies it in batches, and reports how far it got). tdm_node_open runs a node in this process;
 * tdm_node_attach joins a node that another local process runs (tandemd), through its
 * shared-memory log and status file, to write to it and wait for commits.
 *
 * Commit levels, each a position counter a write waits on:
 *   memory    in the primary's log (shared memory)       local    durable on the primary's disk
 *   received  in the memory of k replicas               durable  on the disks of k replicas
 *   applied   visible to reads on k replicas
 * "k replicas" is the quorum: any k of them. When a wait times out the configured policy either
 * fails the write (TDM_ERR_TIMEOUT) or degrades: the write is acknowledged once it is `local`
 * (TDM_ERR_DEGRADED), and the node stays degraded (later writes do not wait for the quorum) until
 * k replicas catch up; each degrade is counted and logged.
 *
 * Threads: with threads = 0 the caller drives the node (tdm_node_do_work; waits drive it too);
 * with threads = 1 one thread runs every agent (dataplane, flusher, dispatcher, apply workers,
 * the engine); with threads >= 2 the apply workers get their own threads too.
 * put/delete/wait/get/status are safe from any thread and from attached processes.
 */
#ifndef TANDEM_H
#define TANDEM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tdm_apply.h"
#include "tdm_dp.h"
#include "tdm_err.h"
#include "tdm_log.h"

/* ---- Configuration (INI file: see README "Configuration"; parsed by engine/config.c) ---- */

enum tdm_role {
	TDM_ROLE_PRIMARY = 1,   /**< takes writes, streams them to every replica */
	TDM_ROLE_REPLICA = 2,   /**< read-only copy of the primary */
	TDM_ROLE_WITNESS = 3,   /**< keeps no data: votes in elections (two data nodes + witness) */
	TDM_ROLE_CANDIDATE = 4, /**< status only: a replica asking for votes */
};

/** Default [replication] failover_timeout_ms (README "Failover" says why). */
#define TDM_FAILOVER_TIMEOUT_MS_DEFAULT 1000u

/** [replication] mode: one writable primary, or every node writable (README "Multi-primary"). */
enum tdm_mode {
	TDM_MODE_PRIMARY_REPLICA = 0,
	TDM_MODE_MULTI_PRIMARY = 1,   /**< every node takes writes and streams its own to all */
};

/** [replication] write_mode (multi-primary): what a node cut off from its peers does. */
enum tdm_write_mode {
	TDM_WRITES_ANY = 0,      /**< keep taking writes; converge after the partition heals */
	TDM_WRITES_MAJORITY = 1, /**< refuse writes unless a majority of nodes (itself included)
	                              is reachable */
};

/** Default [replication] max_clock_offset_ms (multi-primary). */
#define TDM_MAX_CLOCK_OFFSET_MS_DEFAULT 500u

enum tdm_level {
	TDM_LEVEL_MEMORY = 0,
	TDM_LEVEL_LOCAL = 1,
	TDM_LEVEL_RECEIVED = 2,
	TDM_LEVEL_DURABLE = 3,
	TDM_LEVEL_APPLIED = 4,
};

enum tdm_on_timeout {
	TDM_ON_TIMEOUT_FAIL = 0,    /**< the write fails with TDM_ERR_TIMEOUT */
	TDM_ON_TIMEOUT_DEGRADE = 1, /**< acknowledge at `local`, go async until the quorum catches up */
};

#define TDM_MAX_PEERS TDM_DP_MAX_PEERS

/** One other node of the cluster ([peer.<id>] section). */
struct tdm_peer_config {
	uint16_t id;          /**< its node id (1..65535) */
	char host[64];        /**< IPv4 address as written in the file */
	uint32_t ip;          /**< the same, network byte order */
	uint16_t port;        /**< UDP port (udp: where it listens; dpdk: checked in frames) */
	uint8_t mac[6];       /**< dpdk: its MAC; zero = broadcast (memif, veth) */
	uint16_t dpdk_port;   /**< dpdk: index of the ethdev that reaches it */
	bool witness;         /**< a witness: votes, keeps no data, never primary */
};

struct tdm_config {
	char path[512];           /**< file it was loaded from ("" when built in code) */
	/* [node] */
	uint16_t node_id;         /**< this node (1..65535) */
	enum tdm_role role;
	uint64_t cluster_id;      /**< every frame and segment carries it (non-zero) */
	char data_dir[256];       /**< log segments, snapshot, status file, control socket */
	uint16_t primary_id;      /**< replica: the primary's node id (a configured peer) */
	int threads;              /**< 0 caller drives, 1 one thread, >= 2 apply workers threaded */
	enum tdm_dp_idle_kind idle; /**< idle strategy of the node's threads */
	/* [log] */
	uint64_t ring_size;       /**< shared-memory ring bytes (power of two) */
	uint64_t segment_size;    /**< segment file bytes (power of two; same on every node) */
	uint64_t retention_cap;   /**< most bytes of history kept for lagging replicas; 0 = all */
	/* [dataplane] */
	enum tdm_dp_backend backend;
	bool fallback_udp;        /**< dpdk cannot start: use udp (same addresses) and say why */
	char eal_args[1024];      /**< dpdk EAL arguments */
	char local_host[64];      /**< this node's IPv4 address as written */
	uint32_t local_ip;        /**< network byte order */
	uint16_t port;            /**< this node's UDP port */
	uint32_t mtu;
	struct tdm_dp_faults faults; /**< fault injection (tests, demos): [faults] section */
	uint64_t clock_skew_ms;   /**< [faults] clock_skew_ms: multi-primary timestamps run this
	                               far ahead of the wall clock (tests of the offset check) */
	struct tdm_peer_config peers[TDM_MAX_PEERS];
	int n_peers;
	/* [replication] */
	enum tdm_level level;     /**< default commit level of writes */
	int quorum;               /**< k: replicas that must reach the level (1..replicas) */
	uint64_t timeout_ms;      /**< commit wait timeout */
	enum tdm_on_timeout on_timeout;
	uint64_t hello_ms;        /**< replica: resend HELLO this often until the primary answers */
	uint64_t failover_timeout_ms; /**< no live primary this long: election; 0 = never */
	enum tdm_mode mode;       /**< primary-replica or multi-primary */
	enum tdm_write_mode write_mode; /**< multi-primary: any or majority */
	uint64_t max_clock_offset_ms; /**< multi-primary: a record stamped further ahead of our
	                                   clock is refused (counted) until our clock catches up */
	/* [apply] */
	int apply_workers;        /**< 1..TDM_APPLY_MAX_WORKERS */
	uint32_t apply_batch;     /**< records per apply step */
	/* set in code only (embedders) */
	tdm_store_conflict_fn on_conflict; /**< multi-primary: called for every lost update with
	                                        both versions, on an apply thread, with the key's
	                                        shard locked (see tdm_store_conflict_fn); NULL */
	void *conflict_ctx;
};

/** Defaults: role replica, udp on 127.0.0.1:7000, 64 MiB ring and segments, level local,
 *  quorum 1, timeout 1000 ms, fail, 2 apply workers, threads 1, idle backoff. */
void tdm_config_defaults(struct tdm_config *cfg);

/**
 * Read an INI file into cfg (keys not in the file keep their values). Unknown sections or keys,
 * bad values and syntax errors fail with TDM_ERR_CONFIG and a message "FILE:LINE: [section] key =
 * value: what is wrong; what to write instead" (the message starts with FILE:LINE).
 * @return 0; TDM_ERR_CONFIG; -ENOENT/-EACCES the file cannot be read (message names it).
 */
int tdm_config_load(struct tdm_config *cfg, const char *path);

/** Set one key as the file would ("section.key", value): command-line overrides.
 *  @return 0 or TDM_ERR_CONFIG (message names the key). */
int tdm_config_set(struct tdm_config *cfg, const char *key, const char *value);

/** Check the whole configuration (required keys, ranges, peers, primary_id, quorum).
 *  @return 0 or TDM_ERR_CONFIG naming the key (and the file when loaded from one). */
int tdm_config_check(const struct tdm_config *cfg);

/** Write the effective configuration as an INI file (tandemd --print-config). */
void tdm_config_print(const struct tdm_config *cfg, FILE *out);

/** "memory", "local", "received", "durable", "applied". */
const char *tdm_level_name(enum tdm_level level);
int tdm_level_parse(const char *name, enum tdm_level *out);
const char *tdm_role_name(enum tdm_role role);

/* ---- Nodes ---- */

struct tdm_node;

/**
 * Run a node in this process: open (recover) the log, rebuild the store from the local snapshot
 * and the log, open the dataplane (dpdk, or udp when that fails and fallback_udp is set), create
 * the status file and control socket in data_dir, and start the threads (threads >= 1).
 * @return 0; TDM_ERR_CONFIG; -EBUSY the data directory is in use by another live node; log,
 *         store and transport errors (tdm_errmsg says what and what to do).
 */
int tdm_node_open(const struct tdm_config *cfg, struct tdm_node **out);

/**
 * Attach to a node that another process on this machine runs, through data_dir's status file
 * and the node's shared-memory ring. put/delete/wait/status work; get/digest ask the node over
 * its control socket. @return 0; -ENOENT no node there (message says so); TDM_ERR_CLOSED the
 * node is gone; TDM_ERR_VERSION.
 */
int tdm_node_attach(const char *data_dir, struct tdm_node **out);

/** Stop threads, flush, close. Attached handles just detach. NULL is ignored. */
void tdm_node_close(struct tdm_node *n);

/** threads = 0: one round of every agent. @return work done, or a negative fatal error. */
int tdm_node_do_work(struct tdm_node *n);

/** Run every agent on the calling thread until *stop becomes true (tandemd). */
int tdm_node_run(struct tdm_node *n, const bool *stop);

/* ---- Writing ---- */

/**
 * Append a put to the primary's log (memory level; no wait).
 * @param end out, may be NULL: the position to wait for
 * @return 0; TDM_ERR_NOT_PRIMARY (message names the primary); TDM_ERR_BACKPRESSURE ring full
 *         (retry); -EINVAL sizes; TDM_ERR_CLOSED, TDM_ERR_FAILED.
 */
int tdm_put(struct tdm_node *n, const void *key, uint32_t klen, const void *val, uint32_t vlen,
	    uint64_t *end);
int tdm_delete(struct tdm_node *n, const void *key, uint32_t klen, uint64_t *end);

/**
 * Wait until position end has reached level (quorum and policy from the node's configuration).
 * @param timeout_ns 0 = the configured timeout
 * @return 0; TDM_ERR_TIMEOUT (policy fail); TDM_ERR_DEGRADED (policy degrade: it is `local`);
 *         TDM_ERR_FAILED, TDM_ERR_CLOSED.
 */
int tdm_wait(struct tdm_node *n, uint64_t end, enum tdm_level level, uint64_t timeout_ns);

/** put then wait at level. */
int tdm_commit_put(struct tdm_node *n, const void *key, uint32_t klen, const void *val,
		   uint32_t vlen, enum tdm_level level);
int tdm_commit_delete(struct tdm_node *n, const void *key, uint32_t klen, enum tdm_level level);

/* ---- Reading ---- */

/** Point read of this node's store (replicas: what is applied). See tdm_store_get. */
int tdm_get(struct tdm_node *n, const void *key, uint32_t klen, void *buf, uint32_t cap,
	    uint32_t *vlen);

/** Digest of the store and the applied position it belongs to (equal positions and equal
 *  digests mean equal contents). */
int tdm_digest(struct tdm_node *n, uint64_t *digest, uint64_t *applied, uint64_t *keys);

/* ---- Status ---- */

/** Per-replica state as the primary sees it. */
enum tdm_peer_state {
	TDM_PEER_DOWN = 0,       /**< never heard, or silent for longer than the link timeout */
	TDM_PEER_CONNECTING = 1, /**< replica: HELLO sent, no answer yet */
	TDM_PEER_STREAMING = 2,  /**< streaming the log */
	TDM_PEER_RESYNC = 3,     /**< full resync in progress (snapshot, then the log) */
	TDM_PEER_FAILED = 4,     /**< refused: another cluster, segment size mismatch, ... (see log) */
};
const char *tdm_peer_state_name(enum tdm_peer_state s);

struct tdm_peer_status {
	uint16_t node_id;
	uint8_t state;            /**< enum tdm_peer_state */
	uint8_t link_up;
	uint64_t sent;            /**< primary: end of what we sent */
	uint64_t received, durable, applied; /**< the replica's positions */
	uint64_t lag_received_ns, lag_durable_ns, lag_applied_ns; /**< time behind the tail */
	uint64_t bytes_per_s;     /**< received rate over the last status interval */
	uint64_t records_per_s;
	uint64_t resyncs;         /**< full resyncs of this replica */
	uint64_t rewinds, retransmit_bytes, naks;
	uint64_t last_heard_ns;   /**< CLOCK_MONOTONIC */
	/* from its heartbeats (every member, witnesses included) */
	uint8_t role;             /**< enum tdm_role it announces (0: never heard) */
	uint8_t witness;
	uint8_t fenced;
	uint32_t epoch;           /**< the epoch it follows */
	uint64_t log_end;         /**< where its log ends */
	uint64_t beat_age_ns;     /**< since its last heartbeat (UINT64_MAX: never) */
	/* multi-primary: the peer's own writes (its origin) as they come to us. The fields above
	 * are our origin's stream to it (sent, and its received/durable/applied positions). */
	uint8_t origin_state;     /**< enum tdm_peer_state of our copy of its origin */
	uint64_t origin_sent;     /**< its origin's end, as its last frame said */
	uint64_t origin_received, origin_durable, origin_applied; /**< our copy's positions */
	uint64_t origin_lag_ns;   /**< while records wait to be applied: our clock minus the
	                               newest one's hlc; 0 when caught up */
	int64_t clock_offset_ns;  /**< newest record's hlc minus our wall clock at receipt: its
	                               clock ahead of ours plus transit (negative: behind) */
	uint64_t clock_refused;   /**< its records refused: stamped beyond max_clock_offset_ms */
	uint64_t conflicts_lost;  /**< conflicts its versions lost (our store) */
	uint64_t conflicts_won;   /**< conflicts its versions won */
};

struct tdm_status {
	uint16_t node_id;
	uint8_t role;             /**< enum tdm_role */
	uint8_t degraded;         /**< writes are not waiting for the quorum (policy degrade) */
	uint32_t epoch;           /**< the epoch this node follows */
	uint16_t primary_id;      /**< the leader: the primary of that epoch (0: unknown) */
	uint8_t replica_state;    /**< replica: its own enum tdm_peer_state towards the primary */
	uint8_t fenced;           /**< primary refusing writes: no majority heard within its lease */
	int32_t pid;
	char transport[48];       /**< "dpdk/net_memif", "udp", ... */
	char ring[64];            /**< the log's shared-memory ring: /dev/shm/<ring> (resync
	                               snapshots being served: <ring>-rs<replica>) */
	char level[12];           /**< configured commit level */
	int32_t quorum;
	uint64_t log_start, tail, durable, applied; /**< this node's own positions */
	uint64_t writes_per_s, bytes_per_s;
	uint64_t keys, store_bytes, digest;          /**< store (digest belongs to `applied`) */
	uint64_t timeouts, degrades, resyncs;        /**< commit waits that timed out / degraded;
	                                                  full resyncs (served or received) */
	uint64_t frames_bad_cluster, frames_dropped; /**< dataplane drops (another cluster; all) */
	uint64_t frames_stale_epoch;  /**< frames of an older epoch refused (data and heartbeats) */
	/* failover */
	uint64_t failover_timeout_ms; /**< 0: no automatic failover */
	uint32_t voted_epoch;         /**< the newest epoch this node voted in */
	uint64_t elections;           /**< elections this node ran */
	uint64_t elections_won;
	uint64_t last_failover_ns;    /**< CLOCK_REALTIME when this node last saw a new primary
	                                   take over (0: never) */
	uint64_t last_failover_duration_ns; /**< from the old primary's last heartbeat to then */
	char failover_note[160];      /**< why there is no failover, why fenced, or the last
	                                   election's outcome */
	/* multi-primary */
	uint8_t mode;                 /**< enum tdm_mode */
	uint8_t write_mode;           /**< enum tdm_write_mode */
	uint8_t writable;             /**< this node takes writes now (primary, or multi-primary
	                                   node not refusing them) */
	uint64_t hlc;                 /**< the node's hybrid logical clock (last issued/seen) */
	uint64_t max_clock_offset_ms;
	uint64_t clock_refused;       /**< records refused for their timestamp, all peers */
	uint64_t conflicts_stale;     /**< incoming versions that lost (dropped) */
	uint64_t conflicts_stale_in_window; /**< of those, another origin's within the window */
	uint64_t conflicts_overwrites; /**< stored versions of another origin replaced within it */
	uint64_t tombstones;          /**< deletes kept as tombstones */
	uint64_t tombstones_purged;
	uint64_t purge_hlc;           /**< tombstones below this hlc may go: every origin's
	                                   stream has been applied past it */
	uint64_t uptime_ns;
	uint64_t updated_ns;      /**< CLOCK_REALTIME (ns since the epoch) when the node published
	                               this status; 0 = unknown. tandemctl shows it for a node
	                               that is not running */
	int n_peers;
	struct tdm_peer_status peers[TDM_MAX_PEERS];
};

/** Copy the node's status (from shared memory; works while the node is busy). */
int tdm_status(struct tdm_node *n, struct tdm_status *out);

/** Status of the node whose data_dir this is, without attaching to its log (tandemctl).
 *  @return 0; -ENOENT no status file; TDM_ERR_CLOSED the node is not running (out still holds
 *  its last status). */
int tdm_status_read(const char *data_dir, struct tdm_status *out);

/* ---- Control requests (tandemctl get/digest; answered by the node's engine agent) ---- */

/** Ask the node at data_dir for a key. @return as tdm_get; -ECONNREFUSED node not running. */
int tdm_ctl_get(const char *data_dir, const void *key, uint32_t klen, void *buf, uint32_t cap,
		uint32_t *vlen);
int tdm_ctl_digest(const char *data_dir, uint64_t *digest, uint64_t *applied, uint64_t *keys);

/**
 * Many point reads in one request (verifying many keys quickly): keys is a sequence of
 * (u16 key length, key bytes), at most 1 MiB; out receives, per key and in order, i32 code
 * (0, TDM_ERR_NOT_FOUND, ...), u32 value length, value bytes. @return 0; -ENOBUFS cap too small
 * (*out_len says how much is needed); -E2BIG; errors of tdm_ctl_get.
 */
int tdm_ctl_get_many(const char *data_dir, const void *keys, uint32_t len, void *out,
		     uint32_t cap, uint32_t *out_len);

/**
 * Planned switchover (ask the primary at data_dir): it stops taking writes, waits until node
 * `to` has received its whole log, steps down and lets `to` win an election at once. Nothing
 * acknowledged at any level is lost. Returns when the handover has started; the status shows
 * when it is done (or abandoned, with why). @return 0; TDM_ERR_NOT_PRIMARY (message names the
 * primary); -EINVAL not a data node; -EAGAIN the target is not streaming; -EBUSY in progress.
 */
int tdm_ctl_switchover(const char *data_dir, uint16_t to);

/**
 * Manual failover: the node at data_dir runs an election now, even if the primary is alive
 * (the primary steps down if it votes for it). Refused (-EPERM, message names the node) while
 * a reachable node has a more complete log, which the promotion would lose; force overrides.
 */
int tdm_ctl_promote(const char *data_dir, bool force);

/**
 * Recent conflicts of a multi-primary node (newest first): up to cap records into out, their
 * number in *n. @return 0; errors of tdm_ctl_get. A primary-replica node has none (*n = 0).
 */
int tdm_ctl_conflicts(const char *data_dir, struct tdm_store_conflict_rec *out, int cap,
		      int *n);
/** Fault injection: cut (or heal) the node's links to peer (0: every peer), both directions. */
int tdm_ctl_cut(const char *data_dir, uint16_t peer, bool cut);

/**
 * Who is primary, as the node (attached or in-process) knows it: *primary 0 when unknown,
 * *epoch the epoch it follows. Writers that get TDM_ERR_NOT_PRIMARY ask this to follow a
 * failover (tandem-load --follow). @return 0, or TDM_ERR_CLOSED when the node is gone.
 */
int tdm_primary(struct tdm_node *n, uint16_t *primary, uint32_t *epoch);

#endif /* TANDEM_H */
