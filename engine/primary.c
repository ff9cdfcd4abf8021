/*
 * The primary's side of replication: one entry per replica (struct eng_replica). A replica says
 * where its log ends in a HELLO; the primary streams its log from there (stream 0), or, when
 * that history is gone (trimmed by retention) or the replica's log is not a prefix of ours, runs
 * a full resync: a snapshot of the store at position A, written as PUT records into a log of its
 * own and streamed as stream 1, ending with a record that names A, the base (the segment
 * boundary at or below A, kept by retention) and the snapshot's count and digest. The replica
 * loads it, restarts its log at the base, and says HELLO again; streaming continues from the
 * base, so nothing between the snapshot and the log is missed.
 *
 * Replica states: DOWN (no HELLO yet) -> STREAMING, or -> RESYNC -> STREAMING; FAILED when the
 * replica was refused (segment size mismatch), until a later HELLO is acceptable.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine_pvt.h"

struct eng_replica *eng_find_replica(struct tdm_node *n, uint16_t id)
{
	for (int i = 0; i < n->n_replicas; i++)
		if (n->replicas[i].id == id)
			return &n->replicas[i];
	return NULL;
}

/* Every data peer is a replica of ours (witnesses keep no data); its epoch is begun. */
int eng_primary_init(struct tdm_node *n)
{
	n->n_replicas = 0;
	for (int i = 0; i < n->cfg.n_peers; i++) {
		struct eng_replica *r = &n->replicas[n->n_replicas];

		if (n->cfg.peers[i].witness)
			continue;
		memset(r, 0, sizeof(*r));
		r->id = n->cfg.peers[i].id;
		r->state = TDM_PEER_DOWN;
		r->log_slot = -1;
		n->n_replicas++;
	}
	return 0;
}

static void reply(struct tdm_node *n, uint16_t to, uint32_t kind, uint32_t flags, uint64_t from,
		  uint64_t snap_pos, const char *reason)
{
	struct eng_hello h = {
		.kind = kind, .flags = flags, .log_start = tdm_log_start(n->log),
		.log_end = tdm_log_tail(n->log), .segment_size = n->cfg.segment_size,
		.from = from, .snap_pos = snap_pos, .epoch = n->el.epoch,
	};

	if (reason)
		snprintf(h.reason, sizeof(h.reason), "%s", reason);
	if (tdm_dp_send_control(n->dp, to, TDM_DP_HELLO, &h, sizeof(h)) != 0)
		eng_log(n, "could not send a HELLO reply to node %u: %s", to, tdm_errmsg());
}

static void refuse(struct tdm_node *n, struct eng_replica *r, const char *why);

static void end_resync(struct tdm_node *n, struct eng_replica *r)
{
	if (r->snap_sender)
		tdm_dp_sender_remove(n->dp, r->snap_sender);
	r->snap_sender = NULL;
	if (r->snap_log)
		tdm_log_close(r->snap_log);
	r->snap_log = NULL;
	if (r->snap_dir[0])
		eng_remove_log_dir(r->snap_dir);
	r->snap_dir[0] = 0;
}

/* Keep our log from `from` for this replica (retention), replacing an older mark. */
static void retain_from(struct tdm_node *n, struct eng_replica *r, uint64_t from)
{
	if (r->log_slot >= 0)
		tdm_log_peer_remove(n->log, r->log_slot);
	r->log_slot = tdm_log_peer_add(n->log, r->id, from);
	if (r->log_slot < 0)
		eng_log(n, "replica %u: no retention slot: %s", r->id, tdm_errmsg());
}

/* Append to the snapshot log, running its flusher while the ring is full. */
static int snap_append(struct tdm_log *log, const struct tdm_log_entry *e)
{
	int rc;

	while ((rc = tdm_log_append(log, e, NULL, NULL)) == TDM_ERR_BACKPRESSURE) {
		rc = tdm_log_flusher_do_work(log);
		if (rc < 0)
			return rc;
		if (rc == 0)
			tdm_log_flusher_idle(log);
	}
	return rc;
}

static int snap_put(void *ctx, const void *key, uint32_t klen, const void *val, uint32_t vlen,
		    uint64_t hlc, uint16_t origin)
{
	struct tdm_log_entry e = {
		.type = TDM_LOG_REC_PUT, .origin = origin, .hlc = hlc,
		.key = key, .key_len = klen, .value = val, .value_len = vlen,
	};

	return snap_append(ctx, &e);
}

/* Write the store (drained, at position pos) into a fresh log in r->snap_dir. */
static int build_snapshot_log(struct tdm_node *n, struct eng_replica *r, uint64_t pos,
			      uint64_t base)
{
	struct eng_snap_end end = {
		.magic = ENG_SNAP_END_MAGIC, .pos = pos, .base = base,
		.count = tdm_store_count(n->store), .digest = tdm_store_digest(n->store),
	};
	struct tdm_log_entry e = { .type = TDM_LOG_REC_NOOP, .origin = n->origin,
				   .value = &end, .value_len = sizeof(end) };
	struct tdm_log_config lc;
	char name[96];
	int rc;

	snprintf(r->snap_dir, sizeof(r->snap_dir), "%s/resync-%u", n->cfg.data_dir, r->id);
	eng_remove_log_dir(r->snap_dir);
	snprintf(name, sizeof(name), "%s-rs%u", n->shm->ring_name, r->id);
	eng_log_config(n, &lc, r->snap_dir, name);
	rc = tdm_log_open(&lc, &r->snap_log);
	if (!rc)
		rc = tdm_store_foreach(n->store, snap_put, r->snap_log);
	if (!rc)
		rc = snap_append(r->snap_log, &e);
	return rc;
}

/*
 * Full resync of replica r: snapshot the store at the applied position A, keep our log from the
 * segment boundary at or below A, and stream the snapshot as stream 1.
 */
static void begin_resync(struct tdm_node *n, struct eng_replica *r, uint64_t their_end,
			 bool move_aside)
{
	uint64_t pos, base, t0 = tdm_dp_now_ns();
	struct tdm_dp_sender_config sc;
	int rc;

	if (n->multi) {
		refuse(n, r, "multi-primary cannot resync a peer whose copy of our writes was "
		       "trimmed: restart it with an empty data_dir");
		return;
	}

	eng_log(n, "replica %u: its log ends at %" PRIu64 ", ours is kept from %" PRIu64 " to %"
		PRIu64 ": full resync (snapshot, then the log)%s", r->id, their_end,
		tdm_log_start(n->log), tdm_log_tail(n->log),
		move_aside ? "; its extra records will be moved aside, not deleted" : "");
	if (r->sender)
		tdm_dp_sender_remove(n->dp, r->sender);
	r->sender = NULL;
	end_resync(n, r);
	rc = eng_drain_apply(n);
	pos = eng_applied(n);
	base = pos & ~(n->cfg.segment_size - 1);
	retain_from(n, r, base);
	if (!rc)
		rc = build_snapshot_log(n, r, pos, base);
	if (!rc) {
		r->snap_end = tdm_log_tail(r->snap_log);
		tdm_dp_sender_config_defaults(&sc);
		sc.peer = r->id;
		sc.stream = ENG_STREAM_SNAP;
		sc.from = 0;
		rc = tdm_dp_sender_add(n->dp, &sc, r->snap_log, &r->snap_sender);
	}
	if (rc) {
		eng_log(n, "replica %u: cannot prepare the resync snapshot: %s: %s", r->id,
			tdm_strerror(rc), tdm_errmsg());
		end_resync(n, r);
		r->state = TDM_PEER_FAILED;
		return;
	}
	r->snap_pos = pos;
	r->snap_base = base;
	r->move_aside = move_aside;
	r->state = TDM_PEER_RESYNC;
	r->resyncs++;
	n->resyncs++;
	eng_log(n, "replica %u: snapshot of %" PRIu64 " keys at position %" PRIu64 " ready in %"
		PRIu64 " ms; streaming it, then the log from %" PRIu64, r->id,
		tdm_store_count(n->store), pos, (tdm_dp_now_ns() - t0) / 1000000, base);
	reply(n, r->id, ENG_HELLO_RESYNC, move_aside ? ENG_HELLO_MOVE_ASIDE : 0, base, pos, NULL);
}

/* Stream our log to r from its end. @return 0, or TDM_ERR_TRIMMED (resync instead). */
static int stream_from(struct tdm_node *n, struct eng_replica *r, uint64_t from)
{
	struct tdm_dp_sender_config sc;
	int rc = 0;

	end_resync(n, r);
	if (r->sender) {
		rc = tdm_dp_sender_rewind(r->sender, from);
	} else {
		tdm_dp_sender_config_defaults(&sc);
		sc.peer = r->id;
		sc.stream = ENG_STREAM_LOG;
		sc.from = from;
		/* Multi-primary: a peer's copy must stay a prefix of our log after we crash. */
		sc.durable_only = n->multi;
		rc = tdm_dp_sender_add(n->dp, &sc, n->log, &r->sender);
	}
	if (rc)
		return rc;
	retain_from(n, r, from);
	if (r->state != TDM_PEER_STREAMING)
		eng_log(n, "replica %u: streaming from position %" PRIu64 " (our tail %" PRIu64 ")",
			r->id, from, tdm_log_tail(n->log));
	r->state = TDM_PEER_STREAMING;
	r->hello_end = from;
	reply(n, r->id, ENG_HELLO_STREAM, 0, from, 0, NULL);
	return 0;
}

static void refuse(struct tdm_node *n, struct eng_replica *r, const char *why)
{
	if (!r->refused_logged)
		eng_log(n, "replica %u refused: %s", r->id, why);
	r->refused_logged = true;
	r->state = TDM_PEER_FAILED;
	reply(n, r->id, ENG_HELLO_REFUSE, 0, 0, 0, why);
}

/*
 * Where the replica's log stops agreeing with ours. The newest epoch both histories hold (same
 * epoch, same start) is shared up to where the first of the two logs leaves it: the next epoch
 * in either history, or either log's end. A replica without history (it never saw an EPOCH
 * record: fresh, or restarted at a resync's base) holds a prefix of ours. *known = false: no
 * common epoch among those it sent (then only a full resync helps).
 */
static uint64_t agreed_end(struct tdm_node *n, const struct eng_hello *h, uint64_t tail,
			   bool *known)
{
	struct tdm_log_epoch_start *ours;
	int k;

	*known = true;
	if (h->n_hist == 0 || h->n_hist > ENG_HELLO_HIST)
		return h->log_end < tail ? h->log_end : tail;
	k = eng_history(n, &ours);
	for (int i = (int)h->n_hist - 1; i >= 0; i--) {
		for (int j = 0; j < k; j++) {
			uint64_t theirs_end, ours_end;

			if (ours[j].epoch != h->hist[i].epoch || ours[j].start != h->hist[i].start)
				continue;
			theirs_end = i + 1 < (int)h->n_hist ? h->hist[i + 1].start : h->log_end;
			ours_end = j + 1 < k ? ours[j + 1].start : tail;
			free(ours);
			return theirs_end < ours_end ? theirs_end : ours_end;
		}
	}
	free(ours);
	*known = false;
	return 0;
}

void eng_primary_on_hello(struct tdm_node *n, uint16_t src, const struct eng_hello *h)
{
	struct eng_replica *r = eng_find_replica(n, src);
	uint64_t start = tdm_log_start(n->log), tail = tdm_log_tail(n->log), div;
	bool known;
	char why[160];

	if (!r || h->kind != ENG_HELLO_REQ) {
		eng_log(n, "ignored a HELLO (kind %u) from node %u: not a replica's request",
			h->kind, src);
		return;
	}
	if (h->segment_size != n->cfg.segment_size) {
		snprintf(why, sizeof(why), "segment_size differs (primary %" PRIu64 ", replica %"
			 PRIu64 "): set the same [log] segment_size on every node",
			 n->cfg.segment_size, h->segment_size);
		refuse(n, r, why);
		return;
	}
	r->refused_logged = false;
	if (r->state == TDM_PEER_RESYNC && r->snap_sender &&
	    (h->log_end != r->snap_base || (h->flags & ENG_HELLO_NEED_RESYNC))) {
		/* It did not get our RESYNC, or restarted since: the snapshot is still good (the
		 * log from its base is kept); send it again from the start. */
		tdm_dp_sender_rewind(r->snap_sender, 0);
		reply(n, r->id, ENG_HELLO_RESYNC, r->move_aside ? ENG_HELLO_MOVE_ASIDE : 0,
		      r->snap_base, r->snap_pos, NULL);
		return;
	}
	div = agreed_end(n, h, tail, &known);
	if (n->multi && (h->log_end > tail || h->log_end < start)) {
		/* Its copy of our origin is not a prefix of our log or is older than we keep:
		 * multi-primary has no full resync (yet). Say so until it is fixed by hand. */
		snprintf(why, sizeof(why), "its copy of node %u's writes ends at %" PRIu64 " but "
			 "node %u keeps %" PRIu64 "..%" PRIu64 "; multi-primary cannot resync it: "
			 "restart node %u with an empty data_dir", n->cfg.node_id, h->log_end,
			 n->cfg.node_id, start, tail, r->id);
		refuse(n, r, why);
		return;
	}
	if (known && div < h->log_end && div >= start && !(h->flags & ENG_HELLO_NEED_RESYNC)) {
		eng_log(n, "replica %u: its log has records past %" PRIu64 " that are not ours "
			"(it ends at %" PRIu64 ", epoch %u): it moves them aside and cuts its log "
			"there", r->id, div, h->log_end, h->last_epoch);
		reply(n, r->id, ENG_HELLO_TRUNCATE, 0, div, 0, NULL);
		return;
	}
	if (!known || div < h->log_end || (h->flags & ENG_HELLO_NEED_RESYNC) ||
	    h->log_end < start) {
		begin_resync(n, r, h->log_end, !known || div < h->log_end);
		return;
	}
	if (stream_from(n, r, h->log_end) == TDM_ERR_TRIMMED)
		begin_resync(n, r, h->log_end, false);
}

int eng_primary_do_work(struct tdm_node *n, uint64_t now)
{
	for (int i = 0; i < n->n_replicas; i++) {
		struct eng_replica *r = &n->replicas[i];
		struct tdm_dp_sender_stats ss;
		uint64_t received, durable, applied;

		if (!r->sender)
			continue;
		tdm_dp_sender_stats(r->sender, &ss);
		eng_replica_positions(&ss, &received, &durable, &applied);
		if (r->log_slot >= 0)
			tdm_log_peer_ack(n->log, r->log_slot, durable);
		if (ss.error == TDM_ERR_TRIMMED ||
		    (r->log_slot >= 0 && tdm_log_peer_needs_resync(n->log, r->log_slot))) {
			/* Our history for it is gone. Stop streaming: it notices the silence and
			 * says HELLO, and the resync starts then (not now: it may be down for long,
			 * and the snapshot would be stale). */
			eng_log(n, "replica %u: the history it needs from %" PRIu64 " was trimmed by "
				"retention; it gets a full resync when it next says HELLO", r->id,
				ss.acked);
			tdm_dp_sender_remove(n->dp, r->sender);
			r->sender = NULL;
			r->state = TDM_PEER_DOWN;
		}
	}
	(void)now;
	return 0;
}

void eng_primary_fini(struct tdm_node *n)
{
	for (int i = 0; i < n->n_replicas; i++) {
		struct eng_replica *r = &n->replicas[i];

		if (r->sender && n->dp)
			tdm_dp_sender_remove(n->dp, r->sender);
		r->sender = NULL;
		if (n->dp)
			end_resync(n, r);
		if (r->log_slot >= 0 && n->log)
			tdm_log_peer_remove(n->log, r->log_slot);
		r->log_slot = -1;
	}
	n->n_replicas = 0;
}
