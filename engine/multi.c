/*
 * Multi-primary: every node takes writes into its own log (its origin) and streams that log to
 * every peer, exactly as a primary streams to its replicas (primary.c: one eng_replica per
 * peer, HELLO says where to start, commit levels count those peers). This file is the other
 * half: our copy of each peer's origin (struct eng_origin), kept in DATA_DIR/origin-<id>/ at the
 * peer's positions, so a link resumes from where our copy ends after a restart or a partition.
 * An apply per copy merges its records into the one merge store (last-writer-wins on (hlc,
 * origin), apply/store.c), so arrival order across origins does not matter.
 *
 * Clocks: writers stamp with the node's hybrid logical clock (commit.c); the receiver's filter
 * (on_record) observes every record's timestamp before it enters our copy, so later local
 * writes order after it. A record stamped more than max_clock_offset_ms ahead of our clock is
 * refused, counted and sent again by the peer (go-back-N) until our clock catches up: nothing
 * is lost and one bad clock cannot drag every clock forward.
 *
 * Tombstones: a delete stays as a tombstone until no record older than it can still arrive.
 * Each origin's records are applied in log order, and each origin stamps in (nearly) log order,
 * so once everything up to a record stamped T is applied, that origin sends nothing below
 * T - PURGE_SLACK_NS. The purge bound is the minimum of that over our own origin and every copy
 * (struct eng_floor). An idle node stamps a NOOP now and then so its floor keeps moving.
 *
 * States of a copy: CONNECTING (HELLO every hello_ms) -> STREAMING; FAILED when the peer refused
 * us (its reason is logged and shown; asked again each second). A peer silent for longer than
 * ORIGIN_SILENT_NS sends the copy back to CONNECTING.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine_pvt.h"

#define ORIGIN_SILENT_NS 500000000ull
#define REFUSED_RETRY_NS 1000000000ull
#define TICK_NS 200000000ull          /* an idle origin stamps a NOOP this often */
#define PURGE_EVERY_NS 100000000ull
#define PURGE_SLACK_NS 1000000000ull  /* stamp-to-append reordering between writers */
#define CLOCK_LOG_EVERY_NS 1000000000ull

uint64_t eng_multi_clock(const struct tdm_node *n)
{
	return eng_wall_ns() + n->shm->clock_skew_ns;
}

static struct eng_origin *find_origin(struct tdm_node *n, uint16_t id)
{
	for (int i = 0; i < n->n_origins; i++)
		if (n->origins[i].id == id)
			return &n->origins[i];
	return NULL;
}

/* The receiver's filter: observe the record's timestamp, or refuse it when it is too far ahead. */
static int on_record(void *ctx, const struct tdm_log_rec *rec)
{
	struct eng_origin *o = ctx;
	struct tdm_node *n = o->node;
	const struct tdm_log_rec_hdr *h = rec->hdr;
	uint64_t now = eng_multi_clock(n);
	int rc = tdm_hlc_observe(&n->shm->hlc, h->hlc, now,
				 n->cfg.max_clock_offset_ms * 1000000ull);

	o->clock_offset_ns = (int64_t)(h->hlc - now);
	if (rc == TDM_ERR_CLOCK_AHEAD) {
		o->clock_refused++;
		return rc;
	}
	o->last_hlc = h->hlc;
	o->last_end = h->position + tdm_log_rec_span(h->key_len, h->value_len);
	return 0;
}

static void send_hello(struct tdm_node *n, struct eng_origin *o, uint64_t now)
{
	struct eng_hello h = {
		.kind = ENG_HELLO_REQ, .log_start = tdm_log_start(o->log),
		.log_end = tdm_log_tail(o->log), .segment_size = n->cfg.segment_size,
		.last_epoch = tdm_log_epoch(o->log),
	};

	o->hello_sent_ns = now;
	tdm_dp_send_control(n->dp, o->id, TDM_DP_HELLO, &h, sizeof(h));
}

/* Our copy of peer `id`'s origin: its log, an apply into the store from the log's start (a
 * restart rebuilds the store from every log), and a receiver from where the copy ends. */
static int open_origin(struct tdm_node *n, struct eng_origin *o, uint16_t id)
{
	struct tdm_dp_receiver_config rc;
	struct tdm_log_config lc;
	char dir[400], name[96];
	int err;

	memset(o, 0, sizeof(*o));
	o->node = n;
	o->id = id;
	o->state = TDM_PEER_CONNECTING;
	snprintf(dir, sizeof(dir), "%s/origin-%u", n->cfg.data_dir, id);
	snprintf(name, sizeof(name), "%s-o%u", n->shm->ring_name, id);
	eng_log_config(n, &lc, dir, name);
	err = tdm_log_open(&lc, &o->log);
	if (err)
		return tdm_err_append(err, "opening node %u's copy of node %u's writes in %s",
				      n->cfg.node_id, id, dir);
	if (tdm_log_start(o->log) != 0)
		return TDM_ERR(TDM_ERR_TRIMMED, "%s starts at %" PRIu64 ", not 0: the store cannot "
			       "be rebuilt from it; move the data_dir aside and start this node "
			       "empty", dir, tdm_log_start(o->log));
	err = eng_apply_open(n, o->log, 0, &o->apply);
	if (err)
		return err;
	tdm_dp_receiver_config_defaults(&rc);
	rc.peer = id;
	rc.stream = ENG_STREAM_LOG;
	rc.from = tdm_log_tail(o->log);
	rc.log = o->log;
	rc.on_record = on_record;
	rc.ctx = o;
	err = tdm_dp_receiver_add(n->dp, &rc, &o->receiver);
	if (err)
		return tdm_err_append(err, "receiving node %u's writes", id);
	if (tdm_log_tail(o->log))
		eng_log(n, "copy of node %u's writes ends at %" PRIu64 ": resuming from there", id,
			tdm_log_tail(o->log));
	send_hello(n, o, tdm_dp_now_ns());
	return 0;
}

int eng_multi_open(struct tdm_node *n)
{
	n->n_origins = 0;
	for (int i = 0; i < n->cfg.n_peers; i++) {
		int rc = open_origin(n, &n->origins[n->n_origins++], n->cfg.peers[i].id);
		if (rc)
			return rc;
	}
	return 0;
}

void eng_multi_close(struct tdm_node *n)
{
	for (int i = 0; i < n->n_origins; i++) {
		struct eng_origin *o = &n->origins[i];

		if (o->receiver && n->dp)
			tdm_dp_receiver_remove(n->dp, o->receiver);
		o->receiver = NULL;
		eng_apply_close(n, &o->apply);
		if (o->log)
			tdm_log_close(o->log);
		o->log = NULL;
	}
	n->n_origins = 0;
}

void eng_multi_on_hello(struct tdm_node *n, uint16_t src, const struct eng_hello *h)
{
	struct eng_origin *o = find_origin(n, src);

	if (!o) {
		eng_log(n, "ignored a HELLO (kind %u) from node %u: not a peer", h->kind, src);
		return;
	}
	switch (h->kind) {
	case ENG_HELLO_STREAM:
		if (h->from > tdm_log_tail(o->log))
			return; /* not ours yet: an answer to an older copy (before a restart) */
		/* At or below our tail: it streams from what we said (data may have come since). */
		if (o->state != TDM_PEER_STREAMING)
			eng_log(n, "receiving node %u's writes from position %" PRIu64, src, h->from);
		o->state = TDM_PEER_STREAMING;
		o->refused[0] = 0;
		return;
	case ENG_HELLO_REFUSE:
		if (strcmp(o->refused, h->reason))
			eng_log(n, "node %u refused to stream its writes to us: %s", src, h->reason);
		snprintf(o->refused, sizeof(o->refused), "%s", h->reason);
		o->state = TDM_PEER_FAILED;
		return;
	default:
		eng_log(n, "ignored a HELLO of kind %u from node %u: multi-primary peers only "
			"stream or refuse", h->kind, src);
	}
}

/* Say so (once a second at most) when a peer's records are refused for their timestamps. */
static void report_clock(struct tdm_node *n, struct eng_origin *o, uint64_t now)
{
	static const uint64_t ms = 1000000ull;

	if (o->clock_refused == o->refused_logged || now - o->refused_logged_ns < CLOCK_LOG_EVERY_NS)
		return;
	o->refused_logged_ns = now;
	eng_log(n, "refused %" PRIu64 " record(s) of node %u stamped %" PRId64 " ms ahead of our "
		"clock (max_clock_offset_ms = %" PRIu64 "); they are sent again until our clock "
		"catches up: check the clocks (NTP) of node %u and of this node",
		o->clock_refused - o->refused_logged, o->id, o->clock_offset_ns / (int64_t)ms,
		n->cfg.max_clock_offset_ms, o->id);
	o->refused_logged = o->clock_refused;
}

static void origin_do_work(struct tdm_node *n, struct eng_origin *o, uint64_t now)
{
	struct tdm_dp_receiver_stats rs;

	switch (o->state) {
	case TDM_PEER_CONNECTING:
		if (now - o->hello_sent_ns >= n->cfg.hello_ms * 1000000ull)
			send_hello(n, o, now);
		break;
	case TDM_PEER_FAILED:
		if (now - o->hello_sent_ns >= REFUSED_RETRY_NS)
			send_hello(n, o, now);
		break;
	case TDM_PEER_STREAMING:
		tdm_dp_receiver_stats(o->receiver, &rs);
		if (now - rs.last_heard_ns > ORIGIN_SILENT_NS &&
		    now - o->hello_sent_ns > ORIGIN_SILENT_NS) {
			eng_log(n, "node %u silent for %" PRIu64 " ms: asking for its writes again",
				o->id, (now - rs.last_heard_ns) / 1000000);
			o->state = TDM_PEER_CONNECTING;
			send_hello(n, o, now);
		}
		report_clock(n, o, now);
		break;
	default:
		break;
	}
	tdm_dp_receiver_set_applied(o->receiver, tdm_apply_applied(o->apply));
}

/* An idle origin stamps a NOOP now and then: its peers' purge floors keep moving. */
static void tick(struct tdm_node *n, uint64_t now)
{
	uint64_t tail = tdm_log_tail(n->log);
	struct tdm_log_entry e = { .type = TDM_LOG_REC_NOOP, .origin = n->origin };

	if (now - n->last_tick_ns < TICK_NS)
		return;
	n->last_tick_ns = now;
	if (tail != n->last_tick_tail) {
		n->last_tick_tail = tail;
		return;
	}
	e.hlc = tdm_hlc_now(&n->shm->hlc, eng_multi_clock(n));
	if (tdm_log_append(n->log, &e, NULL, &n->last_tick_tail) != 0)
		n->last_tick_tail = tail; /* fenced or full: nothing to say now */
}

static void advance_floor(struct eng_floor *f, uint64_t applied, uint64_t end, uint64_t hlc)
{
	if (applied < f->pos)
		return;
	f->floor = f->hlc;
	f->pos = end;
	f->hlc = hlc;
}

/* Purge the tombstones no record can still beat (see the top of this file). */
static void purge(struct tdm_node *n, uint64_t now)
{
	uint64_t hlc, bound;

	if (now - n->last_purge_ns < PURGE_EVERY_NS || !n->apply)
		return;
	n->last_purge_ns = now;
	hlc = tdm_hlc_last(&n->shm->hlc); /* before the tail: later appends stamp above it */
	advance_floor(&n->own_floor, tdm_apply_applied(n->apply), tdm_log_tail(n->log), hlc);
	bound = n->own_floor.floor;
	for (int i = 0; i < n->n_origins; i++) {
		struct eng_origin *o = &n->origins[i];

		advance_floor(&o->floor, tdm_apply_applied(o->apply), o->last_end, o->last_hlc);
		bound = o->floor.floor < bound ? o->floor.floor : bound;
	}
	if (bound <= PURGE_SLACK_NS || bound - PURGE_SLACK_NS <= n->purge_hlc)
		return;
	n->purge_hlc = bound - PURGE_SLACK_NS;
	if (tdm_store_tombstones(n->store))
		tdm_store_purge_tombstones(n->store, n->purge_hlc);
}

int eng_multi_do_work(struct tdm_node *n, uint64_t now)
{
	for (int i = 0; i < n->n_origins; i++)
		origin_do_work(n, &n->origins[i], now);
	tick(n, now);
	purge(n, now);
	return 0;
}

int eng_multi_flush(struct tdm_node *n)
{
	int work = 0;

	for (int i = 0; i < n->n_origins; i++) {
		int rc = tdm_log_flusher_do_work(n->origins[i].log);

		if (rc == TDM_ERR_FAILED)
			return rc;
		work += rc > 0 ? rc : 0;
	}
	return work;
}

int eng_multi_apply(struct tdm_node *n)
{
	int work = 0;

	for (int i = 0; i < n->n_origins; i++) {
		struct tdm_apply *a = n->origins[i].apply;
		int rc = tdm_apply_dispatch_do_work(a);

		for (int w = 0; rc >= 0 && !n->apply_threads && w < n->cfg.apply_workers; w++) {
			int k = tdm_apply_worker_do_work(a, w);
			rc = k < 0 ? k : rc + k;
		}
		if (rc < 0)
			return tdm_err_append(rc, "applying node %u's writes", n->origins[i].id);
		work += rc;
	}
	return work;
}

/* ---- Status ---- */

static void conflicts_of(const struct tdm_store_conflict_stats *cs, uint16_t id,
			 struct tdm_peer_status *p)
{
	for (int i = 0; i < cs->n_origins; i++)
		if (cs->origins[i].origin == id) {
			p->conflicts_lost = cs->origins[i].lost;
			p->conflicts_won = cs->origins[i].won;
		}
}

void eng_multi_status(struct tdm_node *n, struct tdm_status *st, uint64_t now)
{
	struct tdm_store_conflict_stats cs;
	uint64_t wall = eng_multi_clock(n);

	(void)now;
	tdm_store_conflict_stats(n->store, &cs);
	st->mode = TDM_MODE_MULTI_PRIMARY;
	st->write_mode = (uint8_t)n->cfg.write_mode;
	st->writable = tdm_log_writable(n->log);
	st->hlc = tdm_hlc_last(&n->shm->hlc);
	st->max_clock_offset_ms = n->cfg.max_clock_offset_ms;
	st->conflicts_stale = cs.stale;
	st->conflicts_stale_in_window = cs.stale_in_window;
	st->conflicts_overwrites = cs.overwrites;
	st->tombstones = tdm_store_tombstones(n->store);
	st->tombstones_purged = cs.purged;
	st->purge_hlc = n->purge_hlc;
	st->clock_refused = 0;
	for (int i = 0; i < n->n_origins; i++) {
		struct eng_origin *o = &n->origins[i];
		struct tdm_peer_status *p = NULL;
		struct tdm_dp_receiver_stats rs;

		for (int j = 0; j < st->n_peers; j++)
			if (st->peers[j].node_id == o->id)
				p = &st->peers[j];
		if (!p)
			continue;
		tdm_dp_receiver_stats(o->receiver, &rs);
		p->origin_state = (uint8_t)o->state;
		p->origin_sent = rs.sender_sent > rs.received ? rs.sender_sent : rs.received;
		p->origin_received = rs.received;
		p->origin_durable = tdm_log_durable(o->log);
		p->origin_applied = tdm_apply_applied(o->apply);
		p->origin_lag_ns = p->origin_applied < o->last_end && wall > o->last_hlc ?
				   wall - o->last_hlc : 0;
		p->clock_offset_ns = o->clock_offset_ns;
		p->clock_refused = o->clock_refused;
		st->clock_refused += o->clock_refused;
		conflicts_of(&cs, o->id, p);
	}
}
