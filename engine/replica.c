/*
 * The replica's side of replication (struct eng_upstream): the HELLO handshake, the stream of
 * the primary's log into our own log at the same positions (the receiver in log mode; our
 * flusher makes it durable; apply reads it back), and a full resync when the primary says so.
 *
 * States: CONNECTING (HELLO every hello_ms until the primary answers) -> STREAMING, or
 * -> RESYNC (the snapshot arrives as stream 1 into the store; then our log restarts at the
 * snapshot's base and we say HELLO again) -> CONNECTING -> STREAMING. FAILED: the primary
 * refused us (the reason is logged and shown); we keep asking once a second. A primary silent
 * for longer than the link timeout sends us back to CONNECTING.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_pvt.h"

#define PRIMARY_SILENT_NS 500000000ull /* no frame from the primary this long: reconnect */
#define REFUSED_RETRY_NS 1000000000ull

static int on_snap_record(void *ctx, const struct tdm_log_rec *rec);

/* Receive one of the primary's streams: the log into our log, or a resync snapshot from 0
 * into the store (through on_snap_record). */
static int add_receiver(struct tdm_node *n, uint32_t stream, uint64_t from,
			struct tdm_dp_receiver **out)
{
	struct tdm_dp_receiver_config rc;

	tdm_dp_receiver_config_defaults(&rc);
	rc.peer = n->el.leader;
	rc.stream = stream;
	rc.from = from;
	if (stream == ENG_STREAM_LOG) {
		rc.log = n->log;
	} else {
		rc.on_record = on_snap_record;
		rc.ctx = n;
	}
	return tdm_dp_receiver_add(n->dp, &rc, out);
}

int eng_replica_init(struct tdm_node *n)
{
	uint32_t need = n->up.flags & ENG_HELLO_NEED_RESYNC; /* from the store rebuild */

	memset(&n->up, 0, sizeof(n->up));
	n->up.flags = need;
	n->up.state = TDM_PEER_DOWN;
	return n->el.leader ? eng_replica_follow(n, n->el.leader) : 0;
}

static void send_hello(struct tdm_node *n, uint64_t now);

/* Stream from `leader` (a new primary, or the first one): our log continues at its tail. A
 * resync in progress starts over with the new primary. */
int eng_replica_follow(struct tdm_node *n, uint16_t leader)
{
	struct eng_upstream *u = &n->up;
	int rc;

	eng_replica_fini(n);
	if (u->state == TDM_PEER_RESYNC) {
		tdm_store_clear(n->store);
		u->flags |= ENG_HELLO_NEED_RESYNC;
	}
	u->state = TDM_PEER_CONNECTING;
	u->refused[0] = 0;
	u->snap_done = false;
	rc = add_receiver(n, ENG_STREAM_LOG, tdm_log_tail(n->log), &u->receiver);
	if (rc)
		return tdm_err_append(rc, "node %u: following primary %u", n->cfg.node_id, leader);
	send_hello(n, tdm_dp_now_ns());
	return 0;
}

void eng_replica_fini(struct tdm_node *n)
{
	if (n->dp && n->up.receiver)
		tdm_dp_receiver_remove(n->dp, n->up.receiver);
	if (n->dp && n->up.snap_receiver)
		tdm_dp_receiver_remove(n->dp, n->up.snap_receiver);
	n->up.receiver = n->up.snap_receiver = NULL;
}

static void send_hello(struct tdm_node *n, uint64_t now)
{
	struct tdm_log_epoch_start *hist;
	struct eng_hello h = {
		.kind = ENG_HELLO_REQ, .flags = n->up.flags,
		.log_start = tdm_log_start(n->log), .log_end = tdm_log_tail(n->log),
		.segment_size = n->cfg.segment_size, .last_epoch = tdm_log_epoch(n->log),
	};
	int k = eng_history(n, &hist);

	/* The newest history entries: the primary finds where our logs stop agreeing. */
	for (int i = k > ENG_HELLO_HIST ? k - ENG_HELLO_HIST : 0; i < k; i++) {
		h.hist[h.n_hist].epoch = hist[i].epoch;
		h.hist[h.n_hist].start = hist[i].start;
		h.n_hist++;
	}
	free(hist);
	n->up.hello_sent_ns = now;
	if (n->el.leader)
		tdm_dp_send_control(n->dp, n->el.leader, TDM_DP_HELLO, &h, sizeof(h));
}

/* Snapshot records (stream 1) go straight into the store: apply is stopped during a resync. */
static int on_snap_record(void *ctx, const struct tdm_log_rec *rec)
{
	struct tdm_node *n = ctx;
	const struct tdm_log_rec_hdr *h = rec->hdr;

	if (h->type == TDM_LOG_REC_PUT) {
		n->up.snap_count++;
		return tdm_store_put(n->store, rec->key, h->key_len, rec->value, h->value_len,
				     h->hlc, h->origin);
	}
	if (h->type == TDM_LOG_REC_NOOP && h->value_len == sizeof(struct eng_snap_end)) {
		memcpy(&n->up.snap_end, rec->value, sizeof(n->up.snap_end));
		n->up.snap_done = n->up.snap_end.magic == ENG_SNAP_END_MAGIC;
	}
	return 0;
}

static void start_resync(struct tdm_node *n, const struct eng_hello *h)
{
	int err;

	eng_log(n, "primary %u sends a full resync: snapshot at %" PRIu64 ", then its log from %"
		PRIu64 " (our log ends at %" PRIu64 ")", n->el.leader, h->snap_pos, h->from,
		tdm_log_tail(n->log));
	eng_stop_apply(n);
	if (n->up.receiver)
		tdm_dp_receiver_remove(n->dp, n->up.receiver);
	n->up.receiver = NULL;
	if (n->up.snap_receiver)
		tdm_dp_receiver_remove(n->dp, n->up.snap_receiver);
	tdm_store_clear(n->store);
	n->up.flags |= ENG_HELLO_NEED_RESYNC; /* until the snapshot is complete */
	n->up.snap_count = 0;
	n->up.snap_done = false;
	n->up.move_aside = h->flags & ENG_HELLO_MOVE_ASIDE;
	err = add_receiver(n, ENG_STREAM_SNAP, 0, &n->up.snap_receiver);
	if (err) {
		eng_log(n, "cannot receive the snapshot: %s", tdm_errmsg());
		n->up.state = TDM_PEER_CONNECTING;
		return;
	}
	n->up.state = TDM_PEER_RESYNC;
	n->up.resyncs++;
	n->resyncs++;
}

/* Our old log goes: deleted when it is a prefix of the primary's, else kept aside. */
static int retire_log(struct tdm_node *n)
{
	char dir[400], aside[460];

	tdm_log_close(n->log);
	n->log = NULL;
	snprintf(dir, sizeof(dir), "%s/log", n->cfg.data_dir);
	snprintf(aside, sizeof(aside), "%s/log.%s-%ld", n->cfg.data_dir,
		 n->up.move_aside ? "diverged" : "replaced", (long)time(NULL));
	if (rename(dir, aside) != 0)
		return TDM_ERR(-errno, "cannot move %s to %s: %s", dir, aside, strerror(errno));
	if (n->up.move_aside) {
		eng_log(n, "our log had records the primary does not have: kept in %s", aside);
		return 0;
	}
	return eng_remove_log_dir(aside);
}

/* The snapshot is in the store: check it, save it, restart our log at the base, say HELLO. */
static int finish_resync(struct tdm_node *n, uint64_t now)
{
	struct eng_snap_end *e = &n->up.snap_end;
	char path[400];
	int rc;

	tdm_dp_receiver_remove(n->dp, n->up.snap_receiver);
	n->up.snap_receiver = NULL;
	if (e->count != n->up.snap_count || e->digest != tdm_store_digest(n->store)) {
		eng_log(n, "resync snapshot does not match (%" PRIu64 "/%" PRIu64 " entries, "
			"digest %016" PRIx64 " vs %016" PRIx64 "): asking again", n->up.snap_count,
			e->count, tdm_store_digest(n->store), e->digest);
		tdm_store_clear(n->store);
		n->up.state = TDM_PEER_CONNECTING;
		send_hello(n, now);
		return 0;
	}
	eng_snapshot_path(n, path, sizeof(path));
	rc = tdm_store_snapshot_write(n->store, e->pos, path);
	if (!rc)
		rc = retire_log(n);
	if (!rc) {
		n->snapshot_pos = e->pos;
		rc = eng_open_log(n, e->base);
	}
	if (!rc)
		rc = eng_retain_snapshot(n);
	if (!rc)
		rc = add_receiver(n, ENG_STREAM_LOG, e->base, &n->up.receiver);
	if (rc)
		return tdm_err_append(rc, "node %u: finishing a full resync", n->cfg.node_id);
	n->up.flags &= ~ENG_HELLO_NEED_RESYNC;
	eng_log(n, "resync snapshot loaded: %" PRIu64 " keys at position %" PRIu64 "; log "
		"restarts at %" PRIu64, e->count, e->pos, e->base);
	n->up.state = TDM_PEER_CONNECTING;
	send_hello(n, now);
	return 1;
}

/*
 * Our log has records the primary does not (we were a primary whose last writes never reached
 * the others): move them aside to a file, cut the log where it stops agreeing, rebuild the
 * store without them, and say HELLO again.
 */
static void truncate_divergent(struct tdm_node *n, const struct eng_hello *h)
{
	uint64_t tail = tdm_log_tail(n->log);
	char side[400], snap[400], aside[440];
	int rc;

	if (h->from >= tail || h->from < tdm_log_start(n->log))
		return; /* an answer to an older HELLO */
	snprintf(side, sizeof(side), "%s/diverged-e%u-%" PRIu64 ".records", n->cfg.data_dir,
		 tdm_log_epoch(n->log), h->from);
	eng_stop_apply(n);
	eng_replica_fini(n);
	rc = tdm_log_truncate(n->log, h->from, side);
	if (rc) {
		eng_log(n, "cannot move our divergent records aside: %s: %s; asking for a full "
			"resync instead", tdm_strerror(rc), tdm_errmsg());
		n->up.flags |= ENG_HELLO_NEED_RESYNC;
		tdm_store_clear(n->store);
	} else {
		eng_log(n, "primary %u: our log diverged at %" PRIu64 "; records %" PRIu64 "..%"
			PRIu64 " moved aside to %s (tandemctl log dump %s shows them), log cut there",
			n->el.leader, h->from, h->from, tail, side, side);
		if (n->snapshot_pos > h->from) {
			/* The local snapshot holds divergent writes: keep it aside too. */
			eng_snapshot_path(n, snap, sizeof(snap));
			snprintf(aside, sizeof(aside), "%s.diverged-%" PRIu64, snap, h->from);
			rename(snap, aside);
			eng_log(n, "our snapshot at %" PRIu64 " is past the cut: moved to %s; asking "
				"for a full resync", n->snapshot_pos, aside);
			n->snapshot_pos = 0;
			n->up.flags |= ENG_HELLO_NEED_RESYNC;
			tdm_store_clear(n->store);
		} else if ((rc = eng_rebuild_store(n)) != 0) {
			eng_log(n, "rebuilding the store after the cut: %s", tdm_errmsg());
		}
	}
	if (!(n->up.flags & ENG_HELLO_NEED_RESYNC) && !n->apply &&
	    (rc = eng_start_apply(n, n->snapshot_pos)) != 0)
		eng_log(n, "restarting apply: %s", tdm_errmsg());
	if (eng_replica_follow(n, n->el.leader) != 0)
		eng_log(n, "cannot receive from primary %u: %s", n->el.leader, tdm_errmsg());
}

void eng_replica_on_hello(struct tdm_node *n, uint16_t src, const struct eng_hello *h)
{
	if (src != n->el.leader) {
		eng_log(n, "ignored a HELLO from node %u: our primary is node %u", src,
			n->el.leader);
		return;
	}
	if (h->epoch > n->up.epoch) {
		n->up.epoch = h->epoch;
		tdm_dp_set_epoch(n->dp, h->epoch);
	}
	switch (h->kind) {
	case ENG_HELLO_STREAM:
		if (n->up.state == TDM_PEER_RESYNC || h->from != tdm_log_tail(n->log))
			return; /* an answer to an older HELLO */
		if (n->up.state != TDM_PEER_STREAMING)
			eng_log(n, "streaming from primary %u at position %" PRIu64, src, h->from);
		n->up.state = TDM_PEER_STREAMING;
		n->up.refused[0] = 0;
		return;
	case ENG_HELLO_TRUNCATE:
		if (n->up.state != TDM_PEER_RESYNC)
			truncate_divergent(n, h);
		return;
	case ENG_HELLO_RESYNC:
		if (n->up.state != TDM_PEER_RESYNC)
			start_resync(n, h);
		return;
	case ENG_HELLO_REFUSE:
		if (strcmp(n->up.refused, h->reason))
			eng_log(n, "primary %u refused us: %s", src, h->reason);
		snprintf(n->up.refused, sizeof(n->up.refused), "%s", h->reason);
		n->up.state = TDM_PEER_FAILED;
		return;
	default:
		eng_log(n, "ignored a HELLO of kind %u from node %u", h->kind, src);
	}
}

int eng_replica_do_work(struct tdm_node *n, uint64_t now)
{
	struct eng_upstream *u = &n->up;
	struct tdm_dp_receiver_stats rs;

	switch (n->el.leader && (u->receiver || u->snap_receiver) ? u->state : TDM_PEER_DOWN) {
	case TDM_PEER_CONNECTING:
		if (now - u->hello_sent_ns >= n->cfg.hello_ms * 1000000ull)
			send_hello(n, now);
		break;
	case TDM_PEER_FAILED:
		if (now - u->hello_sent_ns >= REFUSED_RETRY_NS)
			send_hello(n, now);
		break;
	case TDM_PEER_RESYNC:
		if (u->snap_done)
			return finish_resync(n, now);
		break;
	case TDM_PEER_STREAMING:
		tdm_dp_receiver_stats(u->receiver, &rs);
		if (now - rs.last_heard_ns > PRIMARY_SILENT_NS &&
		    now - u->hello_sent_ns > PRIMARY_SILENT_NS) {
			eng_log(n, "primary %u silent for %" PRIu64 " ms: reconnecting",
				n->el.leader, (now - rs.last_heard_ns) / 1000000);
			u->state = TDM_PEER_CONNECTING;
			send_hello(n, now);
		}
		break;
	default:
		break;
	}
	/* Apply starts once the log reaches the snapshot's position (after a resync). */
	if (!n->apply && !(u->flags & ENG_HELLO_NEED_RESYNC) &&
	    tdm_log_tail(n->log) >= n->snapshot_pos) {
		int rc = eng_start_apply(n, n->snapshot_pos);
		if (rc)
			return rc;
	}
	if (u->receiver && n->apply)
		tdm_dp_receiver_set_applied(u->receiver, tdm_apply_applied(n->apply));
	return 0;
}
