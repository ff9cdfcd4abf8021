/*
 * Receiver: takes one peer's stream and hands its records, in order and exactly once, to a
 * consumer callback or to a log (at the same positions as in the sender's log). It accepts data
 * only at the position it expects: older data is a duplicate (answered with STATUS so the
 * sender learns where we are), newer data is a gap (answered with a NAK, so the sender goes back).
 * Every record's CRC, position and zero padding are checked before it is handed over; a record
 * that fails drops the rest of its frame, which will come again.
 */
#include <errno.h>
#include <stdlib.h>

#include "dp_pvt.h"

#define DEFAULT_WINDOW (1u << 20)
#define DEFAULT_MAX_RECORD \
	(TDM_LOG_REC_HDR_SIZE + TDM_LOG_MAX_KEY + TDM_LOG_MAX_VALUE + TDM_LOG_REC_ALIGN)

struct tdm_dp_receiver {
	struct tdm_dp *dp;
	struct tdm_dp_receiver_config cfg;
	uint64_t expected;          /**< position of the next byte we accept (= received) */
	uint64_t sent_received;     /**< positions in the last STATUS sent */
	uint64_t sent_durable;
	uint64_t sent_applied;
	uint64_t last_status_ns;
	uint64_t last_nak_ns;
	uint64_t last_nak_pos;
	bool status_due;
	bool nak_due;
	bool refusing;              /**< the log or consumer refused a record: the window shrinks
	                                 to that record (at least a frame), so each retry resends
	                                 it alone, not the whole window */
	uint32_t refused_span;      /**< bytes of what was refused */
	uint8_t *frag_buf;          /**< reassembly of one large record at `expected` */
	uint32_t frag_have;         /**< bytes joined so far */
	uint32_t frag_span;         /**< the record's span (0: nothing being joined) */
	struct tdm_dp_receiver_stats st;
};

TDM_DP_API void tdm_dp_receiver_config_defaults(struct tdm_dp_receiver_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->window = DEFAULT_WINDOW;
	cfg->max_record = DEFAULT_MAX_RECORD;
	cfg->status_ns = 50000;
}

uint16_t tdm_dp_receiver_peer(const struct tdm_dp_receiver *r)
{
	return r->cfg.peer;
}

uint32_t tdm_dp_receiver_stream(const struct tdm_dp_receiver *r)
{
	return r->cfg.stream;
}

void tdm_dp_receiver_free(struct tdm_dp_receiver *r)
{
	free(r->frag_buf);
	free(r);
}

static int check_config(struct tdm_dp *dp, const struct tdm_dp_receiver_config *cfg)
{
	if (tdm_dp_peer_index(&dp->cfg.transport, cfg->peer) < 0)
		return TDM_ERR(-EINVAL, "receiver from node %u: not a configured peer", cfg->peer);
	if (!cfg->on_record && !cfg->log)
		return TDM_ERR(-EINVAL, "receiver from node %u: give a consumer callback or a log",
			       cfg->peer);
	if (cfg->from % TDM_LOG_REC_ALIGN)
		return TDM_ERR(-EINVAL, "receiver from node %u: start position %llu is not a record "
			       "boundary", cfg->peer, (unsigned long long)cfg->from);
	for (int i = 0; i < dp->n_receivers; i++)
		if (dp->receivers[i]->cfg.peer == cfg->peer &&
		    dp->receivers[i]->cfg.stream == cfg->stream)
			return TDM_ERR(-EEXIST, "a receiver for node %u stream %u exists", cfg->peer,
				       cfg->stream);
	if (dp->n_receivers == TDM_DP_MAX_STREAMS)
		return TDM_ERR(-ENOSPC, "at most %d receivers per node", TDM_DP_MAX_STREAMS);
	return 0;
}

TDM_DP_API int tdm_dp_receiver_add(struct tdm_dp *dp, const struct tdm_dp_receiver_config *cfg,
				   struct tdm_dp_receiver **out)
{
	struct tdm_dp_receiver *r;
	int rc = check_config(dp, cfg);

	if (rc)
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->dp = dp;
	r->cfg = *cfg;
	if (!r->cfg.window)
		r->cfg.window = DEFAULT_WINDOW;
	if (!r->cfg.max_record || r->cfg.max_record > DEFAULT_MAX_RECORD)
		r->cfg.max_record = DEFAULT_MAX_RECORD;
	if (!r->cfg.status_ns)
		r->cfg.status_ns = 50000;
	/* Virtual memory: only the pages a large record touches become resident. */
	r->frag_buf = malloc(r->cfg.max_record);
	if (!r->frag_buf) {
		free(r);
		return -ENOMEM;
	}
	r->expected = cfg->from;
	r->status_due = true; /* tell the sender where we start */
	r->st.last_heard_ns = dp->now;
	dp->receivers[dp->n_receivers++] = r;
	*out = r;
	return 0;
}

TDM_DP_API void tdm_dp_receiver_remove(struct tdm_dp *dp, struct tdm_dp_receiver *r)
{
	for (int i = 0; i < dp->n_receivers; i++) {
		if (dp->receivers[i] == r) {
			dp->receivers[i] = dp->receivers[--dp->n_receivers];
			break;
		}
	}
	tdm_dp_receiver_free(r);
}

TDM_DP_API void tdm_dp_receiver_set_durable(struct tdm_dp_receiver *r, uint64_t durable)
{
	if (durable > r->st.durable)
		r->st.durable = durable;
}

TDM_DP_API void tdm_dp_receiver_set_applied(struct tdm_dp_receiver *r, uint64_t applied)
{
	if (applied > r->st.applied)
		r->st.applied = applied;
}

TDM_DP_API void tdm_dp_receiver_reset(struct tdm_dp_receiver *r, uint64_t from)
{
	r->expected = from;
	r->frag_span = 0;
	r->status_due = true;
}

TDM_DP_API void tdm_dp_receiver_stats(const struct tdm_dp_receiver *r,
				      struct tdm_dp_receiver_stats *out)
{
	*out = r->st;
	out->received = r->expected;
}

/* A gap: ask for `expected` again (rate-limited in do_work). */
static void gap(struct tdm_dp_receiver *r)
{
	r->st.out_of_order++;
	r->nak_due = true;
	r->frag_span = 0;
}

/* Record at p (span bytes) checked for delivery at pos: CRC, position, zero padding. */
static bool record_ok(const uint8_t *p, uint32_t span, uint64_t pos)
{
	uint32_t len;

	if (tdm_log_rec_check(p, span, pos))
		return false;
	memcpy(&len, p, 4);
	for (uint32_t i = len; i < span; i++)
		if (p[i])
			return false;
	return true;
}

/* Something at `expected` (span bytes) was refused: count it, ask again soon with a window
 * of just that much (back-pressure, or a filter that will take it later). */
static void refuse(struct tdm_dp_receiver *r, uint64_t span)
{
	r->st.refused++;
	r->nak_due = r->refusing = true;
	r->refused_span = (uint32_t)span;
}

/* Hand the checked records [p, p + n) (nrecs of them) at r->expected to the consumer one by one
 * and/or to the log (a consumer beside a log is its filter: the log takes the records before
 * the first one it refuses), and move expected past what was taken; *recs counts it.
 * @return true when all was taken (the log may refuse all, the consumer stop part way). */
static bool flush_run(struct tdm_dp_receiver *r, const uint8_t *p, uint32_t n, uint32_t nrecs,
		      uint64_t *recs)
{
	uint32_t take = n, took = nrecs;

	if (r->cfg.on_record) {
		for (take = took = 0; take < n; took++) {
			struct tdm_log_rec rec;

			rec.hdr = (const struct tdm_log_rec_hdr *)(p + take);
			rec.key = p + take + TDM_LOG_REC_HDR_SIZE;
			rec.value = rec.key + rec.hdr->key_len;
			if (r->cfg.on_record(r->cfg.ctx, &rec) != 0) {
				refuse(r, tdm_dp_span_of(rec.hdr->length));
				break;
			}
			take += tdm_dp_span_of(rec.hdr->length);
		}
	}
	if (r->cfg.log && take && tdm_log_append_at(r->cfg.log, r->expected, p, take) != 0) {
		if (take == n)
			refuse(r, n); /* back-pressure (a filter's refusal is counted already) */
		return false;
	}
	r->expected += take;
	*recs += took;
	return take == n;
}

static bool deliver_pad(struct tdm_dp_receiver *r, uint64_t pad_pos, uint64_t span)
{
	if (pad_pos != r->expected)
		return false;
	if (r->cfg.log && tdm_log_pad_at(r->cfg.log, pad_pos, span) != 0) {
		refuse(r, span);
		return false;
	}
	r->expected += span;
	return true;
}

/* DATA without FRAG at position <= expected. @return 0 or a drop reason + 1. */
static int on_items(struct tdm_dp_receiver *r, const struct tdm_dp_hdr *h, const uint8_t *p)
{
	const uint8_t *end = p + h->length, *run = NULL;
	uint64_t pos = h->position, recs = 0, first = r->expected;
	uint32_t run_len = 0, run_recs = 0;
	bool refused = false; /* the log or a filter took only part: the NAK stays due */
	int rc = 0;

	while (p < end) {
		uint64_t span, pad_pos;
		bool is_pad;
		uint32_t n = tdm_dp_item_next(p, (uint32_t)(end - p), &span, &is_pad, &pad_pos);

		if (pos + span <= r->expected) { /* already have it */
		} else if (pos != r->expected + run_len) {
			break; /* straddles what we have: not a boundary of our stream */
		} else if (is_pad) {
			if (!flush_run(r, run, run_len, run_recs, &recs)) {
				refused = true;
				break;
			}
			if (!deliver_pad(r, pad_pos, span))
				break;
			run = NULL;
			run_len = run_recs = 0;
		} else if (!record_ok(p, (uint32_t)span, pos)) {
			r->st.bad_records++;
			r->nak_due = true;
			rc = TDM_DP_DROP_CHECKSUM + 1;
			break;
		} else {
			if (!run)
				run = p;
			run_len += (uint32_t)span;
			run_recs++;
		}
		p += n;
		pos += span;
	}
	if (!refused && !flush_run(r, run, run_len, run_recs, &recs))
		refused = true;
	if (r->expected == first) {
		if (!rc)
			r->st.duplicates++;
		r->status_due = true; /* tell the sender where we are */
		return rc;
	}
	r->st.frames++;
	r->st.bytes += r->expected - first;
	r->st.records += recs;
	r->status_due = true;
	r->nak_due = r->refusing = refused;
	return rc;
}

/* The last slice of a large record arrived: check and deliver it. */
static int frag_complete(struct tdm_dp_receiver *r)
{
	uint32_t span = r->frag_span;
	uint64_t recs = 0;

	r->frag_span = 0;
	if (!record_ok(r->frag_buf, span, r->expected)) {
		r->st.bad_records++;
		r->nak_due = true;
		return TDM_DP_DROP_CHECKSUM + 1;
	}
	if (flush_run(r, r->frag_buf, span, 1, &recs)) {
		r->st.records += recs;
		r->st.bytes += span;
		r->status_due = true;
		r->nak_due = r->refusing = false;
	}
	return 0;
}

/* DATA with FRAG at position == expected. @return 0 or a drop reason + 1. */
static int on_fragment(struct tdm_dp_receiver *r, const struct tdm_dp_hdr *h, const uint8_t *p)
{
	if (h->frag_off == 0) {
		uint32_t len;

		memcpy(&len, p, 4);
		if (len < TDM_LOG_REC_HDR_SIZE || tdm_dp_span_of(len) > r->cfg.max_record) {
			r->st.bad_records++; /* larger than we take: a configuration mismatch */
			return TDM_DP_DROP_PAYLOAD + 1;
		}
		r->frag_span = tdm_dp_span_of(len);
		r->frag_have = 0;
	} else if (!r->frag_span || h->frag_off != r->frag_have) {
		gap(r); /* a slice went missing */
		return 0;
	}
	if (h->length > r->frag_span - r->frag_have) {
		r->frag_span = 0;
		return TDM_DP_DROP_PAYLOAD + 1;
	}
	memcpy(r->frag_buf + r->frag_have, p, h->length);
	r->frag_have += h->length;
	r->st.fragments++;
	r->st.frames++;
	return r->frag_have == r->frag_span ? frag_complete(r) : 0;
}

static void on_heartbeat(struct tdm_dp_receiver *r, const uint8_t *payload)
{
	struct tdm_dp_heartbeat_payload hb;

	memcpy(&hb, payload, sizeof(hb));
	r->st.heartbeats++;
	r->st.sender_sent = hb.sent;
	if (hb.sent > r->expected && !r->frag_span)
		r->nak_due = true; /* the end of what was sent never reached us */
	r->status_due = true;
}

int tdm_dp_receiver_on_frame(struct tdm_dp_receiver *r, const struct tdm_dp_hdr *h,
			     const uint8_t *payload)
{
	r->st.last_heard_ns = r->dp->now;
	if (h->type == TDM_DP_HEARTBEAT) {
		on_heartbeat(r, payload);
		return 0;
	}
	if (h->position > r->expected) {
		gap(r);
		return 0;
	}
	if (h->flags & TDM_DP_F_FRAG) {
		if (h->position < r->expected) {
			r->st.duplicates++;
			r->status_due = true;
			return 0;
		}
		return on_fragment(r, h, payload);
	}
	r->frag_span = 0; /* the sender went back: a partial record will come again */
	return on_items(r, h, payload);
}

static void send_nak(struct tdm_dp_receiver *r)
{
	struct tdm_dp_buf *b = tdm_dp_frame_start(r->dp, r->cfg.peer, TDM_DP_NAK, r->cfg.stream);

	if (!b)
		return;
	((struct tdm_dp_hdr *)b->data)->position = r->expected;
	tdm_dp_frame_queue(r->dp, b, 0);
	r->st.naks_sent++;
	r->nak_due = false;
	r->last_nak_pos = r->expected;
	r->last_nak_ns = r->dp->now;
}

static void send_status(struct tdm_dp_receiver *r)
{
	struct tdm_dp_status_payload sp = {
		.received = r->expected, .durable = r->st.durable, .applied = r->st.applied,
		.window = r->cfg.window,
	};

	if (r->refusing) {
		uint32_t w = r->refused_span > TDM_DP_MAX_MTU ? r->refused_span : TDM_DP_MAX_MTU;
		sp.window = w < sp.window ? w : sp.window;
	}
	struct tdm_dp_buf *b = tdm_dp_frame_start(r->dp, r->cfg.peer, TDM_DP_STATUS,
						  r->cfg.stream);

	if (!b)
		return;
	((struct tdm_dp_hdr *)b->data)->position = r->expected;
	memcpy(b->data + TDM_DP_HDR_SIZE, &sp, sizeof(sp));
	tdm_dp_frame_queue(r->dp, b, sizeof(sp));
	r->st.status_sent++;
	r->status_due = false;
	r->sent_received = sp.received;
	r->sent_durable = sp.durable;
	r->sent_applied = sp.applied;
	r->last_status_ns = r->dp->now;
}

int tdm_dp_receiver_do_work(struct tdm_dp_receiver *r)
{
	uint64_t now = r->dp->now;
	int work = 0;

	if (r->cfg.log)
		tdm_dp_receiver_set_durable(r, tdm_log_durable(r->cfg.log));
	if (r->nak_due && (r->expected != r->last_nak_pos ||
			   now - r->last_nak_ns >= r->cfg.status_ns)) {
		send_nak(r);
		work++;
	}
	if (r->status_due || r->st.durable != r->sent_durable || r->st.applied != r->sent_applied) {
		send_status(r);
		work++;
	}
	return work;
}
