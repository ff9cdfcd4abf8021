/*
 * tandem dataplane: the public interface of dataplane/.
 *
 * Moves log bytes between nodes. Three layers, bottom up:
 *   - transports: one interface (struct tdm_dp_transport), two backends: `dpdk` (DPDK ethdev:
 *     memif, af_xdp, af_packet, PCI NICs; we build Ethernet/IPv4/UDP ourselves) and `udp`
 *     (kernel sockets, sendmmsg/recvmmsg). A fault layer on top of either drops, duplicates,
 *     reorders, delays and cuts links, seeded, with a counter for each.
 *   - frames: the tandem header and payloads, written out byte by byte at the top of frame.c.
 *   - streaming: a sender streams a log from a position to one peer, a receiver hands the
 *     records, in order and exactly once, to a callback or to its own log at the same positions.
 *     Go-back-N from the log: the log is the retransmit buffer.
 * struct tdm_dp ties them together for one node: it owns the transport, demultiplexes received
 * frames to its senders and receivers, and is one agent (tdm_dp_do_work) for a poll thread.
 *
 * Threads: a struct tdm_dp and everything added to it are used from one thread only (the thread
 * that runs tdm_dp_do_work). Counters are plain fields of that thread, read with tdm_dp_stats()
 * from the same thread (the engine copies them to shared memory for tandemctl).
 */
#ifndef TDM_DP_H
#define TDM_DP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tdm_err.h"
#include "tdm_log.h"

/* ---- Time, idle strategies and agents ---- */

/** CLOCK_MONOTONIC in nanoseconds (vDSO: no system call). */
uint64_t tdm_dp_now_ns(void);

/** What a poll thread does when a round of its agents found no work. */
enum tdm_dp_idle_kind {
	TDM_DP_IDLE_SPIN,    /**< pause instruction only: lowest latency, burns the core */
	TDM_DP_IDLE_YIELD,   /**< sched_yield(): lets other threads run (2-core machines, tests) */
	TDM_DP_IDLE_BACKOFF, /**< spin, then yield, then sleep up to max_sleep_ns, doubling */
};

struct tdm_dp_idle {
	enum tdm_dp_idle_kind kind;
	uint32_t spins;        /**< BACKOFF: idle rounds spent spinning before yielding */
	uint32_t yields;       /**< BACKOFF: then rounds spent yielding before sleeping */
	uint64_t max_sleep_ns; /**< BACKOFF: longest sleep */
	uint32_t idle_rounds;  /**< state: rounds without work so far */
	uint64_t sleep_ns;     /**< state: current sleep */
};

/** Set up an idle strategy with defaults (BACKOFF: 100 spins, 50 yields, 1 ms max sleep). */
void tdm_dp_idle_init(struct tdm_dp_idle *idle, enum tdm_dp_idle_kind kind);

/** Parse "spin", "yield" or "backoff". @return 0 or -EINVAL. */
int tdm_dp_idle_parse(const char *name, enum tdm_dp_idle_kind *out);

/** After a round of agents: work > 0 resets the strategy; 0 idles one step. */
void tdm_dp_idle_step(struct tdm_dp_idle *idle, int work);

/** One step of an agent: @return work done (> 0), 0 when idle, negative on a fatal error. */
typedef int (*tdm_dp_do_work_fn)(void *ctx);

/** An agent: a do_work function and its context. */
struct tdm_dp_agent {
	const char *name;          /**< for error messages */
	tdm_dp_do_work_fn do_work; /**< one poll step */
	void *ctx;                 /**< passed to do_work */
};

/**
 * Run agents round-robin on the calling thread until *stop is true (read with acquire) or an
 * agent fails, idling with idle between rounds that did no work.
 * @return 0 when stopped; the first negative code an agent returned (tdm_errmsg names it).
 */
int tdm_dp_run(const struct tdm_dp_agent *agents, int n, struct tdm_dp_idle *idle,
	       const bool *stop);

/** One round of agents. @return total work, or the first negative code. */
int tdm_dp_run_once(const struct tdm_dp_agent *agents, int n);

/* ---- Transports ---- */

#define TDM_DP_MAX_PEERS 16
#define TDM_DP_MAX_MTU 9000     /**< largest IP MTU (jumbo frames) */
#define TDM_DP_DEFAULT_MTU 1500
#define TDM_DP_BURST 32         /**< frames per rx/tx burst */

enum tdm_dp_backend {
	TDM_DP_BACKEND_UDP = 1,  /**< kernel UDP sockets */
	TDM_DP_BACKEND_DPDK = 2, /**< DPDK ethdev */
};

/** Parse "udp" or "dpdk". @return 0 or -EINVAL. */
int tdm_dp_backend_parse(const char *name, enum tdm_dp_backend *out);
const char *tdm_dp_backend_name(enum tdm_dp_backend b);

/** Where a peer is reached. */
struct tdm_dp_peer_addr {
	uint16_t node_id;  /**< the peer's node id (never 0) */
	uint32_t ip;       /**< IPv4 address, network byte order */
	uint16_t port;     /**< UDP port, host byte order */
	uint8_t mac[6];    /**< dpdk: destination MAC; all zero = broadcast (memif, veth pairs) */
	uint16_t dpdk_port; /**< dpdk: index of the ethdev (in EAL order) that reaches the peer.
	                         Peers may share a port (one NIC) or each have their own (a memif
	                         link per pair of nodes: see transport_dpdk.c for the mesh layout) */
};

/** Fault injection, per mille rates, applied to frames we send (and `cut` to both ways). */
struct tdm_dp_faults {
	uint32_t drop;         /**< per mille of frames dropped */
	uint32_t duplicate;    /**< per mille of frames sent twice */
	uint32_t reorder;      /**< per mille of frames held back and sent after the next one */
	uint32_t delay;        /**< per mille of frames delayed by delay_ns */
	uint64_t delay_ns;     /**< how long a delayed frame is held */
	uint64_t seed;         /**< PRNG seed (0: a fixed default), so runs are reproducible */
};

struct tdm_dp_transport_config {
	enum tdm_dp_backend backend;
	uint16_t node_id;         /**< this node */
	uint32_t local_ip;        /**< IPv4, network order: udp binds it (0 = any); dpdk puts it
	                               in the IP source and accepts frames sent to it */
	uint16_t local_port;      /**< UDP port, host order: udp binds it; dpdk checks it */
	uint32_t mtu;             /**< IP MTU, 576..TDM_DP_MAX_MTU; 0 = 1500 */
	struct tdm_dp_peer_addr peers[TDM_DP_MAX_PEERS];
	int n_peers;
	/* udp */
	uint32_t udp_bufs;        /**< buffers in the udp pool; 0 = 1024 */
	uint32_t socket_buf;      /**< SO_SNDBUF/SO_RCVBUF bytes; 0 = 4 MiB */
	/* dpdk */
	const char *eal_args;     /**< EAL arguments, whitespace separated, e.g. "--no-huge
	                               --no-pci -m 512 --no-shconf --vdev=net_memif0,role=server,
	                               socket=/run/tandem-a.sock". The first call initialises the
	                               EAL; DPDK allows that once per process */
	uint32_t mbufs;           /**< mbuf pool size; 0 = 8191 */
	uint16_t rx_desc;         /**< descriptors per rx queue; 0 = 1024 */
	uint16_t tx_desc;         /**< descriptors per tx queue; 0 = 1024 */
	struct tdm_dp_faults faults;
};

/** Fill cfg with defaults (udp, 127.0.0.1, MTU 1500, no faults). */
void tdm_dp_transport_config_defaults(struct tdm_dp_transport_config *cfg);

/**
 * A frame buffer, owned by the transport's pool. For tx, data points at where the tandem header
 * goes (room for Ethernet/IP/UDP is kept in front of it) and cap says how much fits (MTU - 28).
 * For rx, data points at the tandem header of a received datagram (lower headers validated and
 * stripped) and len is the datagram's payload length.
 */
struct tdm_dp_buf {
	uint8_t *data;    /**< tandem frame */
	uint32_t len;     /**< frame bytes */
	uint32_t cap;     /**< most bytes data can hold */
	uint16_t peer;    /**< tx: destination node id */
	uint64_t due_ns;  /**< fault layer: when a delayed frame may go */
	void *priv;       /**< backend's handle (mbuf, pool slot) */
};

struct tdm_dp_transport_stats {
	uint64_t tx_frames, tx_bytes;   /**< handed to the NIC or kernel */
	uint64_t rx_frames, rx_bytes;   /**< received and passed up */
	uint64_t tx_full;               /**< frames dropped because the tx queue/socket was full */
	uint64_t tx_link_down;          /**< frames dropped because their port was down (dpdk: a
	                                     memif link not connected, a port not started) */
	uint64_t link_restarts;         /**< dpdk: restarts of memif client ports to reconnect */
	uint64_t tx_errors;             /**< send failures other than full */
	uint64_t rx_not_ours;           /**< frames dropped below tandem: not IPv4/UDP to our port */
	uint64_t rx_bad_lower;          /**< bad IP header checksum or lengths */
	uint64_t no_buf;                /**< buffer pool empty */
	uint64_t fault_drop, fault_duplicate, fault_reorder, fault_delay; /**< injected */
	uint64_t fault_cut_tx, fault_cut_rx; /**< frames lost to a cut link */
};

struct tdm_dp_transport;

/**
 * Open a transport. dpdk: initialise the EAL (first time), create the mbuf pool, configure and
 * start every port with one rx and one tx queue.
 * @return 0; -EINVAL bad configuration (message names the field); -ENOTSUP backend not built
 *         (DPDK missing); -EADDRINUSE port taken; -ENODEV no DPDK port / EAL failed (message
 *         says why and what to change).
 */
int tdm_dp_transport_create(const struct tdm_dp_transport_config *cfg,
			    struct tdm_dp_transport **out);

/** Stop and free a transport (frees buffers it holds). NULL is ignored. */
void tdm_dp_transport_destroy(struct tdm_dp_transport *t);

/** A tx buffer with data/cap set, or NULL when the pool is empty (counted). */
struct tdm_dp_buf *tdm_dp_buf_alloc(struct tdm_dp_transport *t);

/** Return a buffer (tx buffer not sent, or rx buffer done with) to its pool. */
void tdm_dp_buf_free(struct tdm_dp_transport *t, struct tdm_dp_buf *b);

/**
 * Send frames (each b->len bytes to b->peer) through the fault layer. Takes ownership of all n
 * buffers: frames that cannot be sent now are dropped and counted (go-back-N recovers them).
 * @return frames handed to the backend.
 */
int tdm_dp_tx_burst(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n);

/**
 * Receive up to n frames. Each returned buffer must be given back with tdm_dp_buf_free().
 * Also releases frames the fault layer delayed or held back whose time has come.
 * @return frames received (0 when none).
 */
int tdm_dp_rx_burst(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n);

/** Physical link state of the path to peer (dpdk: the port's link, for memif whether the peer
 *  is connected; udp: always up), and false while the link is cut by fault injection. */
bool tdm_dp_link_up(struct tdm_dp_transport *t, uint16_t peer);

/** Cut (true) or heal (false) the link to peer: every frame to or from it is dropped.
 *  peer 0 = all peers. @return 0 or -ENOENT unknown peer. */
int tdm_dp_cut(struct tdm_dp_transport *t, uint16_t peer, bool cut);

/** Change fault rates at run time (tests, tandemctl). */
void tdm_dp_set_faults(struct tdm_dp_transport *t, const struct tdm_dp_faults *f);

void tdm_dp_transport_stats(const struct tdm_dp_transport *t, struct tdm_dp_transport_stats *out);

/** Backend name and, for dpdk, the driver of port 0 ("udp", "dpdk/net_memif"). */
const char *tdm_dp_transport_describe(const struct tdm_dp_transport *t);

/* ---- Frames (format: top of frame.c) ---- */

#define TDM_DP_FRAME_MAGIC 0x46444e54u /**< "TNDF" little-endian */
#define TDM_DP_FRAME_VERSION 1
#define TDM_DP_HDR_SIZE 48u
#define TDM_DP_LOWER_HDRS 28u          /**< IPv4 (20) + UDP (8) inside the MTU */

enum tdm_dp_frame_type {
	TDM_DP_DATA = 1,      /**< log records (or a fragment of one) from `position` */
	TDM_DP_STATUS = 2,    /**< receiver -> sender: positions and window */
	TDM_DP_NAK = 3,       /**< receiver -> sender: resend from `position` */
	TDM_DP_HEARTBEAT = 4, /**< sender -> receiver when idle: the sender's positions */
	TDM_DP_HELLO = 5,     /**< handshake (payload defined by the engine) */
	TDM_DP_VOTE_REQUEST = 6, /**< election (payload defined by the engine) */
	TDM_DP_VOTE = 7,      /**< election answer (payload defined by the engine) */
	TDM_DP_FRAME_TYPE_MAX = 7,
};

/** Name of a frame type ("DATA", ...; "?" for unknown). */
const char *tdm_dp_frame_type_name(unsigned type);

/** Why a received frame was dropped. Indexes tdm_dp_stats.drops[]. */
enum tdm_dp_drop_reason {
	TDM_DP_DROP_SHORT,       /**< shorter than the header or than its length field says */
	TDM_DP_DROP_MAGIC,       /**< not a tandem frame */
	TDM_DP_DROP_VERSION,     /**< another frame version */
	TDM_DP_DROP_TYPE,        /**< unknown type or flags */
	TDM_DP_DROP_CLUSTER,     /**< another cluster id */
	TDM_DP_DROP_DEST,        /**< not addressed to this node */
	TDM_DP_DROP_SOURCE,      /**< from a node that is not a configured peer */
	TDM_DP_DROP_CHECKSUM,    /**< header/control checksum, or a record's CRC, failed */
	TDM_DP_DROP_EPOCH,       /**< an epoch older than ours (HELLO and VOTE frames pass: the
	                              engine judges their epochs) */
	TDM_DP_DROP_PAYLOAD,     /**< payload malformed for its type (lengths, items) */
	TDM_DP_DROP_STREAM,      /**< no sender/receiver for this (peer, stream) */
	TDM_DP_DROP_REASONS,
};

/** Name of a drop reason ("short", "magic", ...). */
const char *tdm_dp_drop_reason_name(unsigned reason);

/* ---- One node's dataplane ---- */

struct tdm_dp_config {
	uint64_t cluster_id;      /**< every frame carries it; others are dropped */
	uint32_t epoch;           /**< frames below it are dropped (tdm_dp_set_epoch raises it) */
	struct tdm_dp_transport_config transport; /**< transport.node_id is this node */
};

void tdm_dp_config_defaults(struct tdm_dp_config *cfg);

/** Counters of one node's dataplane (streams have their own, see below). */
struct tdm_dp_stats {
	uint64_t rx_frames;                       /**< frames that passed validation */
	uint64_t drops[TDM_DP_DROP_REASONS];      /**< frames dropped, per reason */
	uint64_t control_frames;                  /**< HELLO/VOTE frames passed to the callback */
	struct tdm_dp_transport_stats transport;
};

/** Control frames (HELLO, VOTE_REQUEST, VOTE): validated, then handed over with their payload. */
typedef void (*tdm_dp_on_control_fn)(void *ctx, uint16_t src, unsigned type, uint32_t epoch,
				     const void *payload, uint32_t len);

struct tdm_dp;

/** Open the transport and an empty node. @return 0 or the transport's errors. */
int tdm_dp_create(const struct tdm_dp_config *cfg, struct tdm_dp **out);

/** Destroy the node, its senders and receivers, and its transport. NULL is ignored. */
void tdm_dp_destroy(struct tdm_dp *dp);

/**
 * One poll step: receive a burst and dispatch it (data to receivers, status and NAKs to senders),
 * let each sender send what its window allows, send heartbeats, status and NAKs that are due,
 * and flush the tx burst. No allocation, no lock, no system call but the transport's.
 * @return work done (> 0) or 0.
 */
int tdm_dp_do_work(struct tdm_dp *dp);

/**
 * Process one frame as if it had just been received (validation, counters, dispatch). For
 * fuzzing, tests and tools; the poll loop uses the transport. Replies it causes go out with the
 * next tdm_dp_do_work. @return 0 used, or -(1 + enum tdm_dp_drop_reason) dropped.
 */
int tdm_dp_inject(struct tdm_dp *dp, const void *frame, uint32_t len);

/** tdm_dp_do_work as an agent (ctx = the struct tdm_dp). */
int tdm_dp_agent_do_work(void *ctx);

/** Raise the epoch: frames of older epochs are dropped; frames we send carry it. */
void tdm_dp_set_epoch(struct tdm_dp *dp, uint32_t epoch);

void tdm_dp_on_control(struct tdm_dp *dp, tdm_dp_on_control_fn fn, void *ctx);

/** Send one control frame (payload <= MTU - 76 bytes) to peer. @return 0, -EINVAL, -ENOBUFS. */
int tdm_dp_send_control(struct tdm_dp *dp, uint16_t peer, unsigned type, const void *payload,
			uint32_t len);

void tdm_dp_stats(const struct tdm_dp *dp, struct tdm_dp_stats *out);

/** The node's transport (for link state, cuts and faults). */
struct tdm_dp_transport *tdm_dp_transport(struct tdm_dp *dp);

/* ---- Sender: streams a log to one peer ---- */

struct tdm_dp_sender_config {
	uint16_t peer;            /**< destination node id (a configured peer) */
	uint32_t stream;          /**< stream id (0 for a primary's log; the origin in
	                               multi-primary) */
	uint64_t from;            /**< first position to send (a record boundary) */
	uint64_t heartbeat_ns;    /**< heartbeat when nothing was sent for this long; 0 = 100 us */
	uint64_t rto_ns;          /**< no progress in acks with data outstanding for this long:
	                               rewind to the acknowledged position; 0 = 10 ms */
	uint64_t link_timeout_ns; /**< nothing heard from the peer for this long: link down;
	                               0 = 500 ms */
	uint32_t initial_window;  /**< bytes we may send before the first STATUS; 0 = 256 KiB */
	bool durable_only;        /**< send only what is durable in our log: a receiver never
	                               holds records we could lose in a crash (multi-primary,
	                               where nobody else can give them back to us) */
};

void tdm_dp_sender_config_defaults(struct tdm_dp_sender_config *cfg);

/** A sender's positions and counters. */
struct tdm_dp_sender_stats {
	uint64_t sent;           /**< end of the last record sent (rewinds move it back) */
	uint64_t acked;          /**< receiver's received position (from STATUS) */
	uint64_t peer_durable;   /**< receiver's durable position */
	uint64_t peer_applied;   /**< receiver's applied position */
	uint64_t window_end;     /**< we may not send past this */
	bool link_up;            /**< heard from the peer within link_timeout and link not cut */
	uint64_t frames, bytes, records;   /**< DATA sent (retransmissions included) */
	uint64_t fragments;      /**< DATA frames that carried part of a large record */
	uint64_t heartbeats;
	uint64_t naks;           /**< NAKs received */
	uint64_t rewinds;        /**< go-back-N rewinds (NAK or timeout) */
	uint64_t timeouts;       /**< rewinds after rto_ns without ack progress */
	uint64_t retransmit_bytes; /**< bytes sent again after rewinds */
	uint64_t window_stalls;  /**< do_work rounds with data pending but the window full */
	uint64_t last_heard_ns;  /**< when the peer last sent us anything on this stream */
	int error;               /**< last cursor error (TDM_ERR_TRIMMED: peer needs a resync) */
};

struct tdm_dp_sender;

/**
 * Start streaming log to a peer from cfg->from. The log must outlive the sender.
 * @return 0; -EINVAL unknown peer or bad config; -EEXIST a sender for (peer, stream) exists;
 *         cursor errors (TDM_ERR_TRIMMED from is no longer retained).
 */
int tdm_dp_sender_add(struct tdm_dp *dp, const struct tdm_dp_sender_config *cfg,
		      struct tdm_log *log, struct tdm_dp_sender **out);

/** Stop streaming and free the sender. */
void tdm_dp_sender_remove(struct tdm_dp *dp, struct tdm_dp_sender *s);

/** Restart from position from (e.g. after the peer's HELLO): the next frame starts there. */
int tdm_dp_sender_rewind(struct tdm_dp_sender *s, uint64_t from);

void tdm_dp_sender_stats(const struct tdm_dp_sender *s, struct tdm_dp_sender_stats *out);

/* ---- Receiver: takes one peer's stream ---- */

/**
 * Consumer of a stream: called once per record, in position order, each record exactly once
 * (PADs are not passed). rec points into a frame or the reassembly buffer: copy what you keep.
 * @return 0 to accept; a negative code refuses the record (it and the rest of the frame are
 *         dropped and will be sent again: use it for back-pressure).
 */
typedef int (*tdm_dp_on_record_fn)(void *ctx, const struct tdm_log_rec *rec);

struct tdm_dp_receiver_config {
	uint16_t peer;            /**< source node id */
	uint32_t stream;          /**< stream id */
	uint64_t from;            /**< position expected first */
	uint32_t window;          /**< bytes the sender may run ahead of what we received;
	                               0 = 1 MiB (log mode: capped at a quarter of the ring) */
	uint32_t max_record;      /**< largest record span we reassemble; 0 = the largest the
	                               log format allows */
	uint64_t status_ns;       /**< resend STATUS at least this often while data flows, and
	                               repeat a NAK no sooner than this; 0 = 50 us */
	tdm_dp_on_record_fn on_record; /**< consumer; with log set, a filter: it sees each
	                                    record before the log takes it, and a refusal stops
	                                    the run there (the rest is sent again) */
	void *ctx;
	struct tdm_log *log;      /**< log mode: records are appended at their own positions
	                               (tdm_log_append_at), durable comes from the log's flusher */
};

void tdm_dp_receiver_config_defaults(struct tdm_dp_receiver_config *cfg);

struct tdm_dp_receiver_stats {
	uint64_t received;       /**< every record before it was handed over */
	uint64_t durable;        /**< reported durable position */
	uint64_t applied;        /**< reported applied position */
	uint64_t sender_sent;    /**< the sender's position from its last frame or heartbeat */
	uint64_t frames, bytes, records, fragments; /**< accepted DATA */
	uint64_t duplicates;     /**< DATA wholly below received (already have it) */
	uint64_t out_of_order;   /**< DATA beyond received (a gap): NAKed */
	uint64_t naks_sent;
	uint64_t status_sent;
	uint64_t bad_records;    /**< records that failed their checks (frame dropped, NAKed) */
	uint64_t refused;        /**< records the consumer or the log refused (back-pressure) */
	uint64_t heartbeats;
	uint64_t last_heard_ns;
};

struct tdm_dp_receiver;

/** @return 0; -EINVAL; -EEXIST a receiver for (peer, stream) exists; -ENOMEM. */
int tdm_dp_receiver_add(struct tdm_dp *dp, const struct tdm_dp_receiver_config *cfg,
			struct tdm_dp_receiver **out);

void tdm_dp_receiver_remove(struct tdm_dp *dp, struct tdm_dp_receiver *r);

/** Report positions to the sender in the next STATUS (consumer mode durable; applied always).
 *  Positions only move forward. */
void tdm_dp_receiver_set_durable(struct tdm_dp_receiver *r, uint64_t durable);
void tdm_dp_receiver_set_applied(struct tdm_dp_receiver *r, uint64_t applied);

/** Expect position from next (a restarted or resynced stream); the next STATUS says so. */
void tdm_dp_receiver_reset(struct tdm_dp_receiver *r, uint64_t from);

void tdm_dp_receiver_stats(const struct tdm_dp_receiver *r, struct tdm_dp_receiver_stats *out);

/* ---- Frame parsing, exposed for fuzzing and tools ---- */

/**
 * Validate a received frame's header and payload shape without any node state: length, magic,
 * version, type, flags, header checksum, control checksum, DATA items walkable (record lengths
 * and PAD items in bounds). Record CRCs are checked later, as records are delivered.
 * @return 0 or -(1 + enum tdm_dp_drop_reason).
 */
int tdm_dp_frame_check(const void *frame, uint32_t len);

#endif /* TDM_DP_H */
