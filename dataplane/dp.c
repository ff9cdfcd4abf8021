/*
 * One node's dataplane: owns the transport, validates every received frame against the node
 * (cluster, destination, source, epoch) after the stateless checks of frame.c, hands it to the
 * sender or receiver of its (peer, stream), and batches what they send into tx bursts.
 */
#include <errno.h>
#include <stdlib.h>

#include "dp_pvt.h"

TDM_DP_API void tdm_dp_config_defaults(struct tdm_dp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cluster_id = 1;
	tdm_dp_transport_config_defaults(&cfg->transport);
}

TDM_DP_API int tdm_dp_create(const struct tdm_dp_config *cfg, struct tdm_dp **out)
{
	struct tdm_dp *dp = calloc(1, sizeof(*dp));
	int rc;

	if (!dp)
		return -ENOMEM;
	dp->cfg = *cfg;
	dp->self = cfg->transport.node_id;
	dp->epoch = cfg->epoch;
	rc = tdm_dp_transport_create(&cfg->transport, &dp->t);
	if (rc) {
		free(dp);
		return rc;
	}
	dp->max_payload = dp->t->mtu - TDM_DP_LOWER_HDRS - TDM_DP_HDR_SIZE;
	dp->now = tdm_dp_now_ns();
	*out = dp;
	return 0;
}

TDM_DP_API void tdm_dp_destroy(struct tdm_dp *dp)
{
	if (!dp)
		return;
	for (int i = 0; i < dp->n_senders; i++)
		tdm_dp_sender_free(dp->senders[i]);
	for (int i = 0; i < dp->n_receivers; i++)
		tdm_dp_receiver_free(dp->receivers[i]);
	for (int i = 0; i < dp->txq_n; i++)
		tdm_dp_buf_free(dp->t, dp->txq[i]);
	tdm_dp_transport_destroy(dp->t);
	free(dp);
}

TDM_DP_API struct tdm_dp_transport *tdm_dp_transport(struct tdm_dp *dp)
{
	return dp->t;
}

TDM_DP_API void tdm_dp_set_epoch(struct tdm_dp *dp, uint32_t epoch)
{
	if (epoch > dp->epoch)
		dp->epoch = epoch;
}

TDM_DP_API void tdm_dp_on_control(struct tdm_dp *dp, tdm_dp_on_control_fn fn, void *ctx)
{
	dp->on_control = fn;
	dp->control_ctx = ctx;
}

TDM_DP_API void tdm_dp_stats(const struct tdm_dp *dp, struct tdm_dp_stats *out)
{
	*out = dp->st;
	tdm_dp_transport_stats(dp->t, &out->transport);
}

/* ---- Sending ---- */

void tdm_dp_tx_flush(struct tdm_dp *dp)
{
	if (dp->txq_n)
		tdm_dp_tx_burst(dp->t, dp->txq, dp->txq_n);
	dp->txq_n = 0;
}

struct tdm_dp_buf *tdm_dp_frame_start(struct tdm_dp *dp, uint16_t peer, unsigned type,
				      uint32_t stream)
{
	struct tdm_dp_buf *b = tdm_dp_buf_alloc(dp->t);

	if (!b) { /* frames we queued hold the pool: send them and try once more */
		tdm_dp_tx_flush(dp);
		b = tdm_dp_buf_alloc(dp->t);
		if (!b)
			return NULL;
	}
	b->peer = peer;
	tdm_dp_hdr_fill((struct tdm_dp_hdr *)b->data, type, dp->cfg.cluster_id, dp->self, peer,
			dp->epoch, stream);
	return b;
}

void tdm_dp_frame_queue(struct tdm_dp *dp, struct tdm_dp_buf *b, uint32_t payload_len)
{
	tdm_dp_frame_seal(b->data, payload_len);
	b->len = TDM_DP_HDR_SIZE + payload_len;
	dp->txq[dp->txq_n++] = b;
	if (dp->txq_n == TDM_DP_TXQ)
		tdm_dp_tx_flush(dp);
}

TDM_DP_API int tdm_dp_send_control(struct tdm_dp *dp, uint16_t peer, unsigned type,
				   const void *payload, uint32_t len)
{
	struct tdm_dp_buf *b;

	if (type < TDM_DP_HELLO || type > TDM_DP_FRAME_TYPE_MAX || len > dp->max_payload ||
	    tdm_dp_peer_index(&dp->cfg.transport, peer) < 0)
		return TDM_ERR(-EINVAL, "control frame type %u, %u bytes, to node %u: type must be "
			       "HELLO/VOTE_REQUEST/VOTE, payload at most %u bytes, node a peer",
			       type, len, peer, dp->max_payload);
	b = tdm_dp_frame_start(dp, peer, type, 0);
	if (!b)
		return -ENOBUFS;
	if (len)
		memcpy(b->data + TDM_DP_HDR_SIZE, payload, len);
	tdm_dp_frame_queue(dp, b, len);
	tdm_dp_tx_flush(dp);
	return 0;
}

/* ---- Receiving ---- */

static struct tdm_dp_sender *find_sender(struct tdm_dp *dp, uint16_t peer, uint32_t stream)
{
	for (int i = 0; i < dp->n_senders; i++)
		if (tdm_dp_sender_peer(dp->senders[i]) == peer &&
		    tdm_dp_sender_stream(dp->senders[i]) == stream)
			return dp->senders[i];
	return NULL;
}

static struct tdm_dp_receiver *find_receiver(struct tdm_dp *dp, uint16_t peer, uint32_t stream)
{
	for (int i = 0; i < dp->n_receivers; i++)
		if (tdm_dp_receiver_peer(dp->receivers[i]) == peer &&
		    tdm_dp_receiver_stream(dp->receivers[i]) == stream)
			return dp->receivers[i];
	return NULL;
}

/* Node-level checks after frame.c's stateless ones. @return a drop reason, or -1 to accept. */
static int node_check(const struct tdm_dp *dp, const struct tdm_dp_hdr *h)
{
	if (h->cluster_id != dp->cfg.cluster_id)
		return TDM_DP_DROP_CLUSTER;
	if (h->dst != dp->self)
		return TDM_DP_DROP_DEST;
	if (tdm_dp_peer_index(&dp->cfg.transport, h->src) < 0)
		return TDM_DP_DROP_SOURCE;
	/* Handshake and election frames pass with any epoch: a node that was away (a restarted
	 * replica, a rejoining old primary) introduces itself with the epoch it last knew, and the
	 * engine compares epochs itself (the callback gets it). */
	if (h->epoch < dp->epoch && h->type != TDM_DP_HELLO && h->type != TDM_DP_VOTE_REQUEST &&
	    h->type != TDM_DP_VOTE)
		return TDM_DP_DROP_EPOCH;
	return -1;
}

/* Hand one valid frame to its stream. @return a drop reason, or -1 when used. */
static int dispatch(struct tdm_dp *dp, const struct tdm_dp_hdr *h, const uint8_t *payload)
{
	struct tdm_dp_sender *s;
	struct tdm_dp_receiver *r;

	switch (h->type) {
	case TDM_DP_DATA:
	case TDM_DP_HEARTBEAT:
		r = find_receiver(dp, h->src, h->stream);
		if (!r)
			return TDM_DP_DROP_STREAM;
		return tdm_dp_receiver_on_frame(r, h, payload) - 1;
	case TDM_DP_STATUS:
	case TDM_DP_NAK:
		s = find_sender(dp, h->src, h->stream);
		if (!s)
			return TDM_DP_DROP_STREAM;
		if (h->type == TDM_DP_STATUS)
			tdm_dp_sender_on_status(s, h, payload);
		else
			tdm_dp_sender_on_nak(s, h);
		return -1;
	default:
		dp->st.control_frames++;
		if (dp->on_control)
			dp->on_control(dp->control_ctx, h->src, h->type, h->epoch, payload,
				       h->length);
		return -1;
	}
}

/* Validate and dispatch one received frame. @return 0 or -(1 + drop reason). */
static int on_frame(struct tdm_dp *dp, const uint8_t *frame, uint32_t len)
{
	struct tdm_dp_hdr h;
	int reason;

	/* Records are handed to consumers as structs: give them 8-byte alignment (DPDK puts the
	 * tandem header 42 bytes into the packet). */
	if (((uintptr_t)frame & 7) && len <= sizeof(dp->rx_scratch)) {
		memcpy(dp->rx_scratch, frame, len);
		frame = dp->rx_scratch;
	}
	reason = tdm_dp_frame_check(frame, len);

	if (reason < 0) {
		dp->st.drops[-reason - 1]++;
		return reason;
	}
	memcpy(&h, frame, sizeof(h));
	reason = node_check(dp, &h);
	if (reason < 0)
		reason = dispatch(dp, &h, frame + TDM_DP_HDR_SIZE);
	if (reason >= 0) {
		dp->st.drops[reason]++;
		return -(1 + reason);
	}
	dp->st.rx_frames++;
	return 0;
}

TDM_DP_API int tdm_dp_inject(struct tdm_dp *dp, const void *frame, uint32_t len)
{
	dp->now = tdm_dp_now_ns();
	return on_frame(dp, frame, len);
}

TDM_DP_API int tdm_dp_do_work(struct tdm_dp *dp)
{
	struct tdm_dp_buf *rx[TDM_DP_BURST];
	int n, work;

	dp->now = tdm_dp_now_ns();
	n = tdm_dp_rx_burst(dp->t, rx, TDM_DP_BURST);
	for (int i = 0; i < n; i++) {
		on_frame(dp, rx[i]->data, rx[i]->len);
		tdm_dp_buf_free(dp->t, rx[i]);
	}
	work = n;
	for (int i = 0; i < dp->n_receivers; i++)
		work += tdm_dp_receiver_do_work(dp->receivers[i]);
	for (int i = 0; i < dp->n_senders; i++)
		work += tdm_dp_sender_do_work(dp->senders[i]);
	work += dp->txq_n;
	tdm_dp_tx_flush(dp);
	return work;
}

TDM_DP_API int tdm_dp_agent_do_work(void *ctx)
{
	return tdm_dp_do_work(ctx);
}
