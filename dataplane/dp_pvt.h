/*
 * dataplane internals: the transport backend table, the frame header struct, shared helpers.
 * Only the .c files of dataplane/ include this.
 */
#ifndef TDM_DP_PVT_H
#define TDM_DP_PVT_H

#include <string.h>

#include "tdm_dp.h"

#if defined(__GNUC__)
#define TDM_DP_API __attribute__((visibility("default")))
#else
#define TDM_DP_API
#endif

#define TDM_DP_LIKELY(x) __builtin_expect(!!(x), 1)
#define TDM_DP_UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * A backend. The generic layer (transport.c) owns the fault injection and calls these; a backend
 * never sees a cut link or a held-back frame.
 *   open:      read cfg, set up, store private state in t->backend. Errors set tdm_errmsg.
 *   close:     free everything (buffers still held by the generic layer were freed before).
 *   buf_alloc: a tx buffer with data/cap set (cap = mtu - TDM_DP_LOWER_HDRS), or NULL.
 *   buf_free:  give a buffer back.
 *   tx_burst:  send n frames (b->data, b->len to b->peer); takes ownership of all n, counts
 *              frames it could not send in st->tx_full / tx_errors. @return frames sent.
 *   rx_burst:  up to n frames addressed to us, lower headers validated and stripped.
 *   link_up:   physical link to peer.
 *   describe:  "udp", "dpdk/net_memif", ...
 */
struct tdm_dp_backend_ops {
	const char *name;
	int (*open)(struct tdm_dp_transport *t);
	void (*close)(struct tdm_dp_transport *t);
	struct tdm_dp_buf *(*buf_alloc)(struct tdm_dp_transport *t);
	void (*buf_free)(struct tdm_dp_transport *t, struct tdm_dp_buf *b);
	int (*tx_burst)(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n);
	int (*rx_burst)(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n);
	bool (*link_up)(struct tdm_dp_transport *t, uint16_t peer);
	const char *(*describe)(const struct tdm_dp_transport *t);
};

extern const struct tdm_dp_backend_ops tdm_dp_udp_ops;
#ifdef TDM_HAVE_DPDK
extern const struct tdm_dp_backend_ops tdm_dp_dpdk_ops;
#endif

#define TDM_DP_HOLD_MAX 256 /**< frames the fault layer may hold (delay/reorder) */

/** A transport: the backend's state plus the fault layer. One thread. */
struct tdm_dp_transport {
	struct tdm_dp_transport_config cfg;
	const struct tdm_dp_backend_ops *ops;
	void *backend;                     /**< backend's private state */
	struct tdm_dp_transport_stats st;  /**< backends count into it too */
	uint32_t mtu;                      /**< effective IP MTU */
	/* fault layer */
	struct tdm_dp_faults faults;
	bool faults_on;                    /**< any rate non-zero */
	uint64_t rng;                      /**< xorshift64* state */
	uint32_t cut_mask;                 /**< bit i: link to cfg.peers[i] is cut */
	bool cut_all;
	struct tdm_dp_buf *reorder_held;   /**< held back until the next frame goes */
	struct tdm_dp_buf *delayed[TDM_DP_HOLD_MAX]; /**< delayed frames, FIFO by due time */
	uint32_t delayed_head, delayed_n;
};

/** The backend's view of the link to peer, blind to fault-injection cuts (which stand for a
 *  failure somewhere in the network, invisible to the sender). */
bool tdm_dp_link_physical(struct tdm_dp_transport *t, uint16_t peer);

/** Index of peer node_id in cfg->peers, or -1. */
static inline int tdm_dp_peer_index(const struct tdm_dp_transport_config *cfg, uint16_t node_id)
{
	for (int i = 0; i < cfg->n_peers; i++)
		if (cfg->peers[i].node_id == node_id)
			return i;
	return -1;
}

/*
 * The tandem frame header (48 bytes, little-endian; layout and meaning at the top of frame.c).
 * Read from the wire with memcpy: rx data need not be 8-byte aligned.
 */
struct tdm_dp_hdr {
	uint32_t magic;     /**< TDM_DP_FRAME_MAGIC */
	uint8_t version;    /**< TDM_DP_FRAME_VERSION */
	uint8_t type;       /**< enum tdm_dp_frame_type */
	uint16_t flags;     /**< TDM_DP_F_* */
	uint64_t cluster_id;
	uint16_t src;       /**< sending node */
	uint16_t dst;       /**< receiving node */
	uint32_t epoch;     /**< sender's epoch */
	uint32_t stream;    /**< stream id */
	uint32_t length;    /**< payload bytes after the header */
	uint64_t position;  /**< type-specific position (see frame.c) */
	uint32_t frag_off;  /**< DATA with TDM_DP_F_FRAG: offset of this slice in the record */
	uint32_t crc;       /**< CRC32C, see frame.c for what it covers */
};
_Static_assert(sizeof(struct tdm_dp_hdr) == TDM_DP_HDR_SIZE, "frame header size");

#define TDM_DP_F_FRAG 0x0001u /**< DATA: the payload is one slice of one record */
#define TDM_DP_F_MASK 0x0001u

/** Bytes a record of this length word occupies in the stream (rounded up to 8). */
static inline uint32_t tdm_dp_span_of(uint32_t len)
{
	return (len + TDM_LOG_REC_ALIGN - 1) & ~(TDM_LOG_REC_ALIGN - 1);
}

/** PAD item inside DATA: stands for `span` zero bytes of the log (the end of a segment). */
#define TDM_DP_PAD_ITEM_SIZE 16u

/** STATUS payload. */
struct tdm_dp_status_payload {
	uint64_t received;  /**< every record before it is in the receiver's memory */
	uint64_t durable;   /**< ... on its disk */
	uint64_t applied;   /**< ... applied */
	uint64_t window;    /**< the sender may send up to received + window */
};

/** HEARTBEAT payload. */
struct tdm_dp_heartbeat_payload {
	uint64_t sent;      /**< end of what the sender has sent */
	uint64_t tail;      /**< end of the sender's log */
	uint64_t now_ns;    /**< sender's clock */
};

/* frame.c */
void tdm_dp_hdr_fill(struct tdm_dp_hdr *h, unsigned type, uint64_t cluster, uint16_t src,
		     uint16_t dst, uint32_t epoch, uint32_t stream);
/** Seal a frame whose header and payload are in place: set length and crc. */
void tdm_dp_frame_seal(uint8_t *frame, uint32_t payload_len);
/** Write a PAD item standing for span bytes at position pos. */
void tdm_dp_pad_item_write(uint8_t *p, uint64_t pos, uint64_t span);
/** Walk one DATA item at p (avail bytes): @return its size in the frame (> 0), its span in the
 *  stream in *span, and whether it is a PAD in *is_pad; 0 when malformed. */
uint32_t tdm_dp_item_next(const uint8_t *p, uint32_t avail, uint64_t *span, bool *is_pad,
			  uint64_t *pad_pos);

/* ---- The node (dp.c), shared by sender.c and receiver.c ---- */

#define TDM_DP_MAX_STREAMS 64 /**< senders (and receivers) per node */
#define TDM_DP_TXQ 64         /**< frames queued before a forced flush */

struct tdm_dp {
	struct tdm_dp_config cfg;
	struct tdm_dp_transport *t;
	uint16_t self;
	uint32_t epoch;
	uint32_t max_payload;        /**< mtu - 28 - 48 */
	uint64_t now;                /**< time cached once per do_work */
	struct tdm_dp_sender *senders[TDM_DP_MAX_STREAMS];
	int n_senders;
	struct tdm_dp_receiver *receivers[TDM_DP_MAX_STREAMS];
	int n_receivers;
	struct tdm_dp_buf *txq[TDM_DP_TXQ];
	int txq_n;
	tdm_dp_on_control_fn on_control;
	void *control_ctx;
	struct tdm_dp_stats st;
	_Alignas(64) uint8_t rx_scratch[TDM_DP_MAX_MTU]; /**< aligned copy of a misaligned frame */
};

/** A tx buffer with a header for (peer, type, stream) filled in, or NULL (pool empty). */
struct tdm_dp_buf *tdm_dp_frame_start(struct tdm_dp *dp, uint16_t peer, unsigned type,
				      uint32_t stream);
/** Seal the frame (payload_len bytes after the header) and queue it; flushes when full. */
void tdm_dp_frame_queue(struct tdm_dp *dp, struct tdm_dp_buf *b, uint32_t payload_len);
/** Hand queued frames to the transport. */
void tdm_dp_tx_flush(struct tdm_dp *dp);

/* sender.c */
void tdm_dp_sender_on_status(struct tdm_dp_sender *s, const struct tdm_dp_hdr *h,
			     const uint8_t *payload);
void tdm_dp_sender_on_nak(struct tdm_dp_sender *s, const struct tdm_dp_hdr *h);
int tdm_dp_sender_do_work(struct tdm_dp_sender *s);
uint16_t tdm_dp_sender_peer(const struct tdm_dp_sender *s);
uint32_t tdm_dp_sender_stream(const struct tdm_dp_sender *s);
void tdm_dp_sender_free(struct tdm_dp_sender *s);

/* receiver.c */
/** DATA or HEARTBEAT for this receiver. @return 0, or a drop reason + 1 (frame rejected). */
int tdm_dp_receiver_on_frame(struct tdm_dp_receiver *r, const struct tdm_dp_hdr *h,
			     const uint8_t *payload);
int tdm_dp_receiver_do_work(struct tdm_dp_receiver *r);
uint16_t tdm_dp_receiver_peer(const struct tdm_dp_receiver *r);
uint32_t tdm_dp_receiver_stream(const struct tdm_dp_receiver *r);
void tdm_dp_receiver_free(struct tdm_dp_receiver *r);

#endif /* TDM_DP_PVT_H */
