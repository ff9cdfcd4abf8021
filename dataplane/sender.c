/*
 * Sender: streams one log to one peer with go-back-N, using the log itself as the retransmit
 * buffer. It reads records with a log cursor, packs them into DATA frames up to the MTU (a
 * record larger than a frame goes out in FRAG slices), and never sends past the receiver's
 * received position + window. A NAK or a retransmit timeout seeks the cursor back; nothing is
 * buffered here.
 *
 * Positions: acked <= next. `next` is where the next item starts; the cursor stands at `next`
 * unless a record is held (read but not yet sent, because the frame was full).
 */
#include <errno.h>
#include <stdlib.h>

#include "dp_pvt.h"

struct tdm_dp_sender {
	struct tdm_dp *dp;
	struct tdm_dp_sender_config cfg;
	struct tdm_log *log;
	struct tdm_log_cursor *cur;
	uint64_t next;          /**< stream position of the next item to send */
	uint64_t high;          /**< highest position ever sent (retransmission accounting) */
	struct tdm_log_rec rec; /**< held record (valid until the next cursor call) */
	bool held;              /**< rec is read but not yet (wholly) sent */
	uint32_t frag_off;      /**< bytes of the held record already sent in FRAG slices */
	uint64_t window;        /**< receiver's window from its last STATUS */
	uint64_t last_tx_ns;    /**< last frame of any type we sent */
	uint64_t progress_ns;   /**< last time acked moved, or data went out with none pending */
	uint64_t rewind_pos;    /**< where the last NAK rewound to ... */
	uint64_t rewind_ns;     /**< ... and when */
	struct tdm_dp_sender_stats st;
};

TDM_DP_API void tdm_dp_sender_config_defaults(struct tdm_dp_sender_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->heartbeat_ns = 1000000;
	cfg->rto_ns = 10000000;
	cfg->link_timeout_ns = 500000000;
	cfg->initial_window = 256 * 1024;
}

uint16_t tdm_dp_sender_peer(const struct tdm_dp_sender *s)
{
	return s->cfg.peer;
}

uint32_t tdm_dp_sender_stream(const struct tdm_dp_sender *s)
{
	return s->cfg.stream;
}

void tdm_dp_sender_free(struct tdm_dp_sender *s)
{
	tdm_log_cursor_destroy(s->cur);
	free(s);
}

static void fill_defaults(struct tdm_dp_sender_config *c)
{
	struct tdm_dp_sender_config d;

	tdm_dp_sender_config_defaults(&d);
	if (!c->heartbeat_ns)
		c->heartbeat_ns = d.heartbeat_ns;
	if (!c->rto_ns)
		c->rto_ns = d.rto_ns;
	if (!c->link_timeout_ns)
		c->link_timeout_ns = d.link_timeout_ns;
	if (!c->initial_window)
		c->initial_window = d.initial_window;
}

TDM_DP_API int tdm_dp_sender_add(struct tdm_dp *dp, const struct tdm_dp_sender_config *cfg,
				 struct tdm_log *log, struct tdm_dp_sender **out)
{
	struct tdm_dp_sender *s;
	int rc;

	if (!log || tdm_dp_peer_index(&dp->cfg.transport, cfg->peer) < 0)
		return TDM_ERR(-EINVAL, "sender to node %u: not a configured peer (add it to the "
			       "peers) or no log", cfg->peer);
	for (int i = 0; i < dp->n_senders; i++)
		if (dp->senders[i]->cfg.peer == cfg->peer && dp->senders[i]->cfg.stream == cfg->stream)
			return TDM_ERR(-EEXIST, "a sender for node %u stream %u exists", cfg->peer,
				       cfg->stream);
	if (dp->n_senders == TDM_DP_MAX_STREAMS)
		return TDM_ERR(-ENOSPC, "at most %d senders per node", TDM_DP_MAX_STREAMS);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	rc = tdm_log_cursor_create(log, cfg->from, &s->cur);
	if (rc) {
		free(s);
		return rc;
	}
	s->dp = dp;
	s->cfg = *cfg;
	fill_defaults(&s->cfg);
	s->log = log;
	s->next = s->high = s->st.acked = cfg->from;
	s->window = s->cfg.initial_window;
	s->progress_ns = s->st.last_heard_ns = dp->now;
	dp->senders[dp->n_senders++] = s;
	*out = s;
	return 0;
}

TDM_DP_API void tdm_dp_sender_remove(struct tdm_dp *dp, struct tdm_dp_sender *s)
{
	for (int i = 0; i < dp->n_senders; i++) {
		if (dp->senders[i] == s) {
			dp->senders[i] = dp->senders[--dp->n_senders];
			break;
		}
	}
	tdm_dp_sender_free(s);
}

/* Go back to pos: drop the held record, seek the cursor. */
static void rewind_to(struct tdm_dp_sender *s, uint64_t pos)
{
	s->held = false;
	s->frag_off = 0;
	s->next = pos;
	tdm_log_cursor_seek(s->cur, pos);
	s->progress_ns = s->dp->now;
	s->st.rewinds++;
}

TDM_DP_API int tdm_dp_sender_rewind(struct tdm_dp_sender *s, uint64_t from)
{
	rewind_to(s, from);
	s->st.acked = from;
	s->st.error = 0;
	return 0;
}

TDM_DP_API void tdm_dp_sender_stats(const struct tdm_dp_sender *s,
				    struct tdm_dp_sender_stats *out)
{
	*out = s->st;
	out->sent = s->next;
	out->window_end = s->st.acked + s->window;
	out->link_up = tdm_dp_link_up(s->dp->t, s->cfg.peer) &&
		       s->dp->now - s->st.last_heard_ns < s->cfg.link_timeout_ns;
}

void tdm_dp_sender_on_status(struct tdm_dp_sender *s, const struct tdm_dp_hdr *h,
			     const uint8_t *payload)
{
	struct tdm_dp_status_payload sp;

	memcpy(&sp, payload, sizeof(sp));
	s->st.last_heard_ns = s->dp->now;
	if (sp.durable > s->st.peer_durable)
		s->st.peer_durable = sp.durable;
	if (sp.applied > s->st.peer_applied)
		s->st.peer_applied = sp.applied;
	if (sp.received < s->st.acked)
		return; /* an old STATUS, overtaken by a newer one */
	if (sp.received > s->st.acked)
		s->progress_ns = s->dp->now;
	s->st.acked = sp.received;
	s->window = sp.window;
	/* The receiver already has more than we sent (we restarted or rewound below it): skip
	 * ahead, but only to a position our log has. */
	if (sp.received > s->next && sp.received <= tdm_log_tail(s->log))
		rewind_to(s, sp.received);
}

void tdm_dp_sender_on_nak(struct tdm_dp_sender *s, const struct tdm_dp_hdr *h)
{
	uint64_t pos = h->position;

	s->st.last_heard_ns = s->dp->now;
	s->st.naks++;
	/* A NAK below acked is old (the receiver has moved on); one beyond next asks for what we
	 * have not sent. Many frames in flight after one loss each draw a NAK for the same
	 * position: rewind once per position until the resent data had time to arrive. */
	if (pos < s->st.acked || pos > s->next)
		return;
	if (pos == s->rewind_pos && s->dp->now - s->rewind_ns < s->cfg.rto_ns / 8)
		return;
	if (pos > s->st.acked) {
		s->st.acked = pos; /* the receiver has everything before pos */
		s->progress_ns = s->dp->now;
	}
	s->rewind_pos = pos;
	s->rewind_ns = s->dp->now;
	rewind_to(s, pos);
}

/* Hold the next record from the cursor. @return 0, TDM_ERR_EMPTY or a cursor error. */
static int hold_next(struct tdm_dp_sender *s)
{
	int rc;

	if (s->held)
		return 0;
	rc = tdm_log_cursor_next(s->cur, &s->rec);
	if (rc == 0) {
		s->held = true;
		s->frag_off = 0;
	} else if (rc != TDM_ERR_EMPTY) {
		s->st.error = rc;
	}
	return rc;
}

static void count_sent(struct tdm_dp_sender *s, uint64_t from, uint32_t bytes)
{
	s->st.frames++;
	s->st.bytes += bytes;
	if (from < s->high)
		s->st.retransmit_bytes += (s->high - from < bytes ? s->high - from : bytes);
	if (s->next > s->high)
		s->high = s->next;
	if (s->st.acked == from)
		s->progress_ns = s->dp->now; /* nothing was outstanding: the timer starts now */
	s->last_tx_ns = s->dp->now;
}

/* Send the next slice of the held record, which is larger than a frame. */
static int send_fragment(struct tdm_dp_sender *s)
{
	uint32_t len = s->rec.hdr->length, span = tdm_dp_span_of(len);
	uint32_t n = span - s->frag_off, copy;
	uint64_t pos = s->rec.hdr->position;
	struct tdm_dp_buf *b = tdm_dp_frame_start(s->dp, s->cfg.peer, TDM_DP_DATA, s->cfg.stream);
	struct tdm_dp_hdr *h;
	uint8_t *p;

	if (!b)
		return 0;
	if (n > s->dp->max_payload)
		n = s->dp->max_payload;
	h = (struct tdm_dp_hdr *)b->data;
	h->flags = TDM_DP_F_FRAG;
	h->position = pos;
	h->frag_off = s->frag_off;
	p = b->data + TDM_DP_HDR_SIZE;
	/* The cursor copied `length` bytes; the span's padding is zero. */
	copy = s->frag_off < len ? len - s->frag_off : 0;
	if (copy > n)
		copy = n;
	memcpy(p, (const uint8_t *)s->rec.hdr + s->frag_off, copy);
	memset(p + copy, 0, n - copy);
	s->frag_off += n;
	if (s->frag_off == span) {
		s->held = false;
		s->next = pos + span;
		s->st.records++;
	}
	s->st.fragments++;
	tdm_dp_frame_queue(s->dp, b, n);
	count_sent(s, pos + s->frag_off - n, n);
	return 1;
}

/* Pack the held record and those after it into p (room bytes). @return bytes used. */
static uint32_t pack_records(struct tdm_dp_sender *s, uint8_t *p, uint32_t room,
			     uint64_t window_end, uint64_t limit)
{
	uint32_t off = 0;

	while (s->next < window_end && hold_next(s) == 0) {
		uint64_t pos = s->rec.hdr->position;
		uint32_t len = s->rec.hdr->length;
		uint64_t span = tdm_dp_span_of(len);

		if (pos + span > limit)
			break; /* durable_only: not on our disk yet */
		if (pos > s->next) { /* a PAD in our log: send its stand-in */
			if (off + TDM_DP_PAD_ITEM_SIZE > room)
				break;
			tdm_dp_pad_item_write(p + off, s->next, pos - s->next);
			off += TDM_DP_PAD_ITEM_SIZE;
			s->next = pos;
		}
		if (off + span > room)
			break; /* next frame (or FRAG slices when it fits no frame) */
		memcpy(p + off, s->rec.hdr, len);
		memset(p + off + len, 0, span - len);
		off += (uint32_t)span;
		s->next = pos + span;
		s->held = false;
		s->st.records++;
	}
	return off;
}

/* Send one DATA frame if the window and the log allow. @return 1 sent, 0 nothing to send. */
static int send_one(struct tdm_dp_sender *s)
{
	uint64_t window_end = s->st.acked + s->window;
	uint64_t limit = s->cfg.durable_only ? tdm_log_durable(s->log) : UINT64_MAX;
	struct tdm_dp_buf *b;
	uint64_t from = s->next;
	uint32_t used;

	if (s->next >= limit)
		return 0;
	if (s->next >= window_end) {
		if (hold_next(s) == 0)
			s->st.window_stalls++;
		return 0;
	}
	if (s->held && (s->frag_off || (s->rec.hdr->position == s->next &&
	    tdm_dp_span_of(s->rec.hdr->length) > s->dp->max_payload)))
		return s->frag_off || s->next + tdm_dp_span_of(s->rec.hdr->length) <= limit ?
		       send_fragment(s) : 0;
	if (hold_next(s) != 0)
		return 0;
	b = tdm_dp_frame_start(s->dp, s->cfg.peer, TDM_DP_DATA, s->cfg.stream);
	if (!b)
		return 0;
	used = pack_records(s, b->data + TDM_DP_HDR_SIZE, s->dp->max_payload, window_end, limit);
	if (!used) {
		tdm_dp_buf_free(s->dp->t, b);
		return 0;
	}
	((struct tdm_dp_hdr *)b->data)->position = from;
	tdm_dp_frame_queue(s->dp, b, used);
	count_sent(s, from, used);
	return 1;
}

static void send_heartbeat(struct tdm_dp_sender *s)
{
	struct tdm_dp_heartbeat_payload hb = {
		.sent = s->next, .tail = tdm_log_tail(s->log), .now_ns = s->dp->now,
	};
	struct tdm_dp_buf *b = tdm_dp_frame_start(s->dp, s->cfg.peer, TDM_DP_HEARTBEAT,
						  s->cfg.stream);

	if (!b)
		return;
	((struct tdm_dp_hdr *)b->data)->position = s->next;
	memcpy(b->data + TDM_DP_HDR_SIZE, &hb, sizeof(hb));
	tdm_dp_frame_queue(s->dp, b, sizeof(hb));
	s->st.heartbeats++;
	s->last_tx_ns = s->dp->now;
}

int tdm_dp_sender_do_work(struct tdm_dp_sender *s)
{
	uint64_t now = s->dp->now;
	int work = 0;

	/* Data outstanding and no ack progress for rto: the tail was lost (or the link was cut
	 * and healed): resend from what the receiver has. */
	if (s->next > s->st.acked && now - s->progress_ns >= s->cfg.rto_ns) {
		s->st.timeouts++;
		rewind_to(s, s->st.acked);
		work++;
	}
	/* No data into a link that is physically down (memif not connected yet, cable out): it
	 * would only be lost and resent. Heartbeats still go. */
	if (tdm_dp_link_physical(s->dp->t, s->cfg.peer)) {
		for (int i = 0; i < TDM_DP_BURST && send_one(s); i++)
			work++;
	}
	if (now - s->last_tx_ns >= s->cfg.heartbeat_ns) {
		send_heartbeat(s);
		work++;
	}
	return work;
}
