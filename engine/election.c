/*
 * Failover (primary–replica): heartbeats, elections, the primary's lease, switchover, promote.
 *
 * Every node sends a BEAT to every peer each beat interval (failover timeout / 5): its role, the
 * epoch and primary it follows, and where its log ends. A replica that hears no live primary for
 * the failover timeout runs for epoch + 1, unless a reachable replica has a more complete log
 * (then that one runs: the most up-to-date replica is promoted; equal logs: the lower node id).
 * It persists its own vote, asks every peer, and wins with a majority of the voting members
 * (data nodes and witnesses). A node votes once per epoch (persisted in DATA_DIR/vote before the
 * answer leaves), only for a log at least as complete as its own (last epoch, then end), and only
 * when it has not heard a live primary within the timeout, so a flapping link does not depose a
 * healthy primary. The winner writes an EPOCH record (and a history entry), raises the
 * dataplane's epoch (older frames are dropped and counted), and beats as primary; the others
 * follow it. A candidacy does not raise anybody's epoch: only a primary's beat does.
 *
 * The lease: a primary that has not heard the peers for 3/4 of the timeout, when those peers
 * could elect another primary without it (they are a majority), closes its log to writers
 * (fenced) until it hears a majority again. Voters wait the whole timeout, so the old primary
 * stops taking writes before a new one can be elected.
 *
 * Switchover: the primary closes its log to writers, waits until the target has received all of
 * it, steps down and tells the target to run at once (HANDOFF); voters let such an election
 * through a live primary (TRANSFER). Promote runs this node's election the same way, refused
 * while a reachable node has a more complete log unless forced.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine_pvt.h"

#define MS ((uint64_t)1000000)
#define BEATS_PER_TIMEOUT 5
#define NO_FAILOVER_BEAT_NS (100 * MS) /* beats still flow (status, rejoin) without failover */
#define SWITCHOVER_MIN_NS (5000 * MS)  /* a switchover's drain may take this long at least */
#define CANDIDACY_MIN_NS (100 * MS)    /* votes are fsynced: give them this long at least */

static uint16_t self_id(const struct tdm_node *n)
{
	return n->cfg.node_id;
}

static struct eng_member *find_member(struct tdm_node *n, uint16_t id)
{
	for (int i = 0; i < n->el.n_members; i++)
		if (n->el.members[i].id == id)
			return &n->el.members[i];
	return NULL;
}

bool eng_is_primary(const struct tdm_node *n)
{
	return n->el.role == TDM_ROLE_PRIMARY;
}

static uint32_t log_epoch(const struct tdm_node *n)
{
	return n->log ? tdm_log_epoch(n->log) : 0;
}

static uint64_t log_end(const struct tdm_node *n)
{
	return n->log ? tdm_log_tail(n->log) : 0;
}

/* Is log (e1, p1) more complete than (e2, p2)? The newer epoch first, then the longer log. */
static int log_cmp(uint32_t e1, uint64_t p1, uint32_t e2, uint64_t p2)
{
	if (e1 != e2)
		return e1 > e2 ? 1 : -1;
	return p1 == p2 ? 0 : (p1 > p2 ? 1 : -1);
}

static bool heard_within(const struct eng_member *m, uint64_t now, uint64_t ns)
{
	return m->heard_ns && now - m->heard_ns < ns;
}

/* ---- The vote file: DATA_DIR/vote, "epoch node\n", replaced atomically and synced ---- */

static int save_vote(struct tdm_node *n, uint32_t epoch, uint16_t who)
{
	char path[400], tmp[410], line[48];
	int fd, len, rc = 0;

	snprintf(path, sizeof(path), "%s/vote", n->cfg.data_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	len = snprintf(line, sizeof(line), "%u %u\n", epoch, who);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, line, (size_t)len) != len || fdatasync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (!rc && rename(tmp, path) != 0)
		rc = -errno;
	if (!rc && (fd = open(n->cfg.data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(fd);
		close(fd);
	}
	if (rc)
		return TDM_ERR(rc, "cannot write %s: %s (a vote must be on disk before it is "
			       "given)", path, strerror(-rc));
	n->el.voted_epoch = epoch;
	n->el.voted_for = who;
	return 0;
}

static void load_vote(struct tdm_node *n)
{
	char path[400];
	unsigned e = 0, who = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/vote", n->cfg.data_dir);
	f = fopen(path, "r");
	if (!f)
		return;
	if (fscanf(f, "%u %u", &e, &who) == 2) {
		n->el.voted_epoch = e;
		n->el.voted_for = (uint16_t)who;
	} else {
		eng_log(n, "%s is unreadable: votes start from our log's epoch", path);
	}
	fclose(f);
}

/* ---- Publishing the role ---- */

static void set_note(struct tdm_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_note(struct tdm_node *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(n->el.note, sizeof(n->el.note), fmt, ap);
	va_end(ap);
}

/* Role and primary into the status file. A change of role moves `term` first, so a commit wait
 * that began before it never reports success for a position of another epoch. */
static void publish_role(struct tdm_node *n)
{
	struct tdm_status_shm *s = n->shm;
	uint8_t role = (uint8_t)(n->el.role == TDM_ROLE_CANDIDATE ? TDM_ROLE_REPLICA : n->el.role);

	if (s->role != role)
		__atomic_fetch_add(&s->term.v, 1, __ATOMIC_ACQ_REL);
	__atomic_store_n(&s->role, role, __ATOMIC_RELEASE);
	__atomic_store_n(&s->primary_id, n->el.leader, __ATOMIC_RELEASE);
	__atomic_store_n(&s->epoch, n->el.epoch, __ATOMIC_RELEASE);
	__atomic_store_n(&s->fenced, (uint8_t)n->el.fenced, __ATOMIC_RELEASE);
}

/* Writers may append only on an unfenced primary that is not handing over. */
static void update_gate(struct tdm_node *n)
{
	bool open = n->el.role == TDM_ROLE_PRIMARY && !n->el.fenced && !n->el.handoff_to;

	if (!n->log) {
		publish_role(n); /* a witness */
		return;
	}
	if (!open && n->el.role == TDM_ROLE_PRIMARY)
		snprintf(n->shm->why_not_writable, sizeof(n->shm->why_not_writable), "%.119s",
			 n->multi ? n->el.note : n->el.handoff_to ? "switching over"
			 : "fenced: it cannot reach a majority");
	tdm_log_set_writable(n->log, open);
	publish_role(n);
}

static void send_beats(struct tdm_node *n, uint64_t now)
{
	struct eng_beat b = {
		.kind = ENG_MSG_BEAT, .role = (uint8_t)n->el.role, .fenced = n->el.fenced,
		.leader = n->el.leader, .epoch = n->el.epoch, .last_epoch = log_epoch(n),
		.end = log_end(n), .durable = n->log ? tdm_log_durable(n->log) : 0,
	};

	n->el.last_beat_ns = now;
	for (int i = 0; i < n->el.n_members; i++)
		tdm_dp_send_control(n->dp, n->el.members[i].id, TDM_DP_HELLO, &b, sizeof(b));
}

/* ---- Roles ---- */

/* Stop being primary: close the log to writers, let appends in flight land, stop streaming. */
static void step_down(struct tdm_node *n)
{
	if (n->el.role != TDM_ROLE_PRIMARY)
		return;
	n->el.role = TDM_ROLE_REPLICA;
	n->el.fenced = false;
	n->el.handoff_to = 0;
	update_gate(n);
	if (tdm_log_flush_until(n->log, tdm_log_tail(n->log)) != 0)
		eng_log(n, "flushing before stepping down: %s", tdm_errmsg());
	eng_primary_fini(n);
	for (int i = 0; i < 3; i++)
		eng_store(&n->shm->quorum_pos[i].v, 0);
	eng_store(&n->shm->degraded.v, 0);
	/* No upstream yet: the new primary's heartbeat makes us follow it. */
	n->el.leader = 0;
	n->up.state = TDM_PEER_DOWN;
	publish_role(n);
}

/* Follow `leader`, primary of `epoch` (0: unknown yet). */
static void follow(struct tdm_node *n, uint16_t leader, uint32_t epoch, uint64_t now)
{
	struct eng_election *e = &n->el;
	uint16_t old = e->leader;
	uint64_t lost = e->leader_heard_ns;

	if (epoch > e->epoch) {
		e->epoch = epoch;
		tdm_dp_set_epoch(n->dp, epoch); /* the old primary's frames are refused from now */
	}
	if (e->role == TDM_ROLE_PRIMARY)
		step_down(n);
	if (e->role == TDM_ROLE_CANDIDATE)
		e->role = TDM_ROLE_REPLICA;
	e->leader = leader;
	e->leader_heard_ns = now;
	publish_role(n);
	if (leader == old)
		return;
	if (old && leader) {
		e->failover_wall_ns = eng_wall_ns();
		/* how long the cluster went without a primary; we cannot know when we were it */
		e->failover_ns = old == self_id(n) ? 0 : now - lost;
	}
	if (leader)
		set_note(n, "following node %u (epoch %u)", leader, e->epoch);
	if (old)
		eng_log(n, "node %u is the primary of epoch %u (it was node %u)", leader, epoch,
			old);
	else
		eng_log(n, "node %u is the primary of epoch %u", leader, epoch);
	if (e->role == TDM_ROLE_REPLICA && leader)
		eng_replica_follow(n, leader);
}

static void become_primary(struct tdm_node *n, uint64_t now)
{
	struct eng_election *e = &n->el;
	uint32_t epoch = e->cand_epoch;
	uint64_t lost = e->leader_heard_ns;
	uint16_t old = e->leader;
	char voters[128] = "";
	int len = 0, rc;

	eng_replica_fini(n);
	rc = tdm_log_flush_until(n->log, tdm_log_tail(n->log));
	if (!rc)
		rc = tdm_log_begin_epoch(n->log, epoch, eng_wall_ns());
	if (rc) {
		eng_log(n, "won epoch %u but cannot begin it: %s: %s; staying a replica", epoch,
			tdm_strerror(rc), tdm_errmsg());
		e->role = TDM_ROLE_REPLICA;
		e->next_try_ns = now + e->timeout_ns;
		if (e->leader)
			eng_replica_follow(n, e->leader);
		return;
	}
	for (int i = 0; i < e->n_members; i++)
		if (e->members[i].granted)
			len += snprintf(voters + len, sizeof(voters) - (size_t)len, "%s%u",
					len ? "," : "", e->members[i].id);
	e->epoch = epoch;
	e->role = TDM_ROLE_PRIMARY;
	e->leader = self_id(n);
	e->leader_heard_ns = now;
	e->fenced = false;
	e->won++;
	e->failover_wall_ns = eng_wall_ns();
	e->failover_ns = now - lost;
	for (int i = 0; i < e->n_members; i++)
		e->members[i].heard_ns = e->members[i].granted ? now : e->members[i].heard_ns;
	tdm_dp_set_epoch(n->dp, epoch);
	rc = eng_primary_init(n);
	if (rc)
		eng_log(n, "starting as primary: %s", tdm_errmsg());
	update_gate(n);
	set_note(n, "primary since epoch %u", epoch);
	eng_log(n, "elected primary of epoch %u with votes from node(s) %s; log ends at %" PRIu64
		"; %" PRIu64 " ms after the last sign of %s%u", epoch, voters[0] ? voters : "-",
		tdm_log_tail(n->log), e->failover_ns / MS, old ? "node " : "a primary, node ",
		old);
	send_beats(n, now);
}

static int count_grants(const struct tdm_node *n)
{
	int g = 1; /* our own */

	for (int i = 0; i < n->el.n_members; i++)
		g += n->el.members[i].granted;
	return g;
}

/* Ask every member that has not granted its vote for our candidacy (all of them: first). */
static void ask_votes(struct tdm_node *n, uint64_t now, bool all)
{
	struct eng_election *e = &n->el;
	struct eng_vote v = { .kind = ENG_VOTE_REQUEST, .flags = e->cand_flags,
			      .epoch = e->cand_epoch, .last_epoch = log_epoch(n),
			      .end = log_end(n) };

	e->last_ask_ns = now;
	for (int i = 0; i < e->n_members; i++)
		if (all || !e->members[i].granted)
			tdm_dp_send_control(n->dp, e->members[i].id, TDM_DP_VOTE_REQUEST, &v,
					    sizeof(v));
}

static void start_election(struct tdm_node *n, uint64_t now, uint32_t flags)
{
	struct eng_election *e = &n->el;
	uint32_t epoch = (e->epoch > e->voted_epoch ? e->epoch : e->voted_epoch);
	struct eng_vote v = { .kind = ENG_VOTE_REQUEST, .flags = flags, .epoch = epoch,
			      .last_epoch = log_epoch(n), .end = log_end(n) };

	epoch = (e->seen_epoch > epoch ? e->seen_epoch : epoch) + 1;
	if (save_vote(n, epoch, self_id(n)) != 0) {
		eng_log(n, "cannot run for epoch %u: %s", epoch, tdm_errmsg());
		e->next_try_ns = now + e->timeout_ns;
		return;
	}
	e->role = TDM_ROLE_CANDIDATE;
	e->cand_epoch = epoch;
	e->cand_flags = flags;
	e->cand_start_ns = now;
	e->elections++;
	for (int i = 0; i < e->n_members; i++)
		e->members[i].granted = false;
	eng_log(n, "%s: asking for votes for epoch %u (our log: epoch %u, end %" PRIu64 ")",
		flags & ENG_VOTE_TRANSFER ? "switchover/promote" : "no live primary", epoch,
		v.last_epoch, v.end);
	ask_votes(n, now, true);
	if (count_grants(n) >= e->majority)
		become_primary(n, now);
}

/* Should this replica run for primary now? Sets the note when it may not. */
static bool may_run(struct tdm_node *n, uint64_t now)
{
	struct eng_election *e = &n->el;
	uint32_t my_epoch = log_epoch(n);
	uint64_t my_end = log_end(n);
	int reachable = 1;

	if (!n->cfg.failover_timeout_ms || e->role != TDM_ROLE_REPLICA)
		return false;
	if (now - e->leader_heard_ns < e->timeout_ns || now < e->next_try_ns)
		return false;
	if ((n->up.flags & ENG_HELLO_NEED_RESYNC) || !n->apply) {
		set_note(n, "no failover to this node: its store is incomplete (resync)");
		return false;
	}
	for (int i = 0; i < e->n_members; i++)
		reachable += heard_within(&e->members[i], now, e->timeout_ns);
	if (reachable < e->majority) {
		if (e->voters == 2)
			set_note(n, "no failover: 2 voting members, a majority needs both; add a "
				 "witness (tandemd --witness) to fail over");
		else
			set_note(n, "no failover: %d of %d voting members reachable, a majority is "
				 "%d", reachable, e->voters, e->majority);
		return false;
	}
	for (int i = 0; i < e->n_members; i++) {
		const struct eng_member *m = &e->members[i];
		int c = log_cmp(m->beat.last_epoch, m->beat.end, my_epoch, my_end);

		if (m->witness || !heard_within(m, now, e->timeout_ns) ||
		    m->beat.role == TDM_ROLE_PRIMARY)
			continue;
		/* The most complete log runs first; after three timeouts anyone may. */
		if ((c > 0 || (c == 0 && m->id < self_id(n))) &&
		    now - e->leader_heard_ns < 3 * e->timeout_ns) {
			set_note(n, "waiting: node %u has a more complete log (or the same and a lower "
				 "id) and runs first", m->id);
			return false;
		}
	}
	if (tdm_log_durable(n->log) < my_end)
		return false; /* vote on what is on disk: the flusher catches up within a round */
	return true;
}

/* ---- Messages ---- */

void eng_election_on_beat(struct tdm_node *n, uint16_t src, const struct eng_beat *b)
{
	struct eng_election *e = &n->el;
	struct eng_member *m = find_member(n, src);
	uint64_t now = tdm_dp_now_ns();

	if (!m)
		return;
	m->heard_ns = now;
	m->beat = *b;
	if (b->role != TDM_ROLE_PRIMARY || n->multi) /* multi-primary: every node is one */
		return;
	if (b->epoch < e->epoch) {
		e->stale_frames++; /* an old primary: our beats tell it about the newer epoch */
		return;
	}
	if (b->epoch == e->epoch && e->role == TDM_ROLE_PRIMARY) {
		eng_log(n, "node %u also claims epoch %u: two nodes started as primary of a new "
			"cluster; set role = primary on one node only", src, b->epoch);
		return;
	}
	if (b->epoch > e->epoch || e->leader != src || e->role == TDM_ROLE_CANDIDATE)
		follow(n, src, b->epoch, now);
	if (!b->fenced)
		e->leader_heard_ns = now;
}

static void answer(struct tdm_node *n, uint16_t to, uint32_t kind, uint32_t epoch,
		   const char *why)
{
	/* last_epoch: the newest epoch we know of, so a candidate behind it runs above it next */
	struct eng_vote v = { .kind = kind, .epoch = epoch,
			      .last_epoch = n->el.epoch > n->el.voted_epoch ? n->el.epoch
									    : n->el.voted_epoch };

	if (why)
		snprintf(v.reason, sizeof(v.reason), "%s", why);
	tdm_dp_send_control(n->dp, to, TDM_DP_VOTE, &v, sizeof(v));
}

static void on_request(struct tdm_node *n, uint16_t src, const struct eng_vote *v, uint64_t now)
{
	struct eng_election *e = &n->el;
	char why[120];

	if (v->epoch <= e->epoch) {
		snprintf(why, sizeof(why), "epoch %u is not newer than ours (%u)", v->epoch,
			 e->epoch);
	} else if (v->epoch < e->voted_epoch ||
		   (v->epoch == e->voted_epoch && e->voted_for != src)) {
		snprintf(why, sizeof(why), "node %u already voted in epoch %u (for node %u)",
			 self_id(n), e->voted_epoch, e->voted_for);
	} else if (!(v->flags & ENG_VOTE_TRANSFER) && e->role == TDM_ROLE_PRIMARY && !e->fenced) {
		snprintf(why, sizeof(why), "node %u is the primary and alive", self_id(n));
	} else if (!(v->flags & ENG_VOTE_TRANSFER) && e->role != TDM_ROLE_PRIMARY && e->leader &&
		   now - e->leader_heard_ns < e->timeout_ns) {
		snprintf(why, sizeof(why), "node %u heard primary %u %" PRIu64 " ms ago",
			 self_id(n), e->leader, (now - e->leader_heard_ns) / MS);
	} else if (n->log && !(v->flags & ENG_VOTE_FORCE) &&
		   log_cmp(v->last_epoch, v->end, log_epoch(n), log_end(n)) < 0) {
		snprintf(why, sizeof(why), "node %u has a more complete log (epoch %u, end %" PRIu64
			 ") than the candidate (epoch %u, end %" PRIu64 ")", self_id(n),
			 log_epoch(n), log_end(n), v->last_epoch, v->end);
	} else if ((e->voted_epoch != v->epoch || e->voted_for != src) &&
		   save_vote(n, v->epoch, src) != 0) {
		snprintf(why, sizeof(why), "node %u cannot record its vote: %s", self_id(n),
			 tdm_errmsg());
	} else {
		if (e->role == TDM_ROLE_PRIMARY) {
			eng_log(n, "stepping down: node %u takes over (epoch %u)", src, v->epoch);
			step_down(n);
		}
		if (e->role == TDM_ROLE_CANDIDATE)
			e->role = TDM_ROLE_REPLICA;
		e->leader_heard_ns = now; /* give the candidate a timeout to win */
		eng_log(n, "voted for node %u in epoch %u", src, v->epoch);
		answer(n, src, ENG_VOTE_GRANT, v->epoch, NULL);
		return;
	}
	answer(n, src, ENG_VOTE_DENY, v->epoch, why);
}

void eng_election_on_vote(struct tdm_node *n, uint16_t src, unsigned type,
			  const struct eng_vote *v)
{
	struct eng_election *e = &n->el;
	struct eng_member *m = find_member(n, src);
	uint64_t now = tdm_dp_now_ns();

	if (!m || n->multi) /* multi-primary has no elections */
		return;
	if (type == TDM_DP_VOTE_REQUEST && v->kind == ENG_VOTE_REQUEST) {
		if (v->epoch > e->seen_epoch)
			e->seen_epoch = v->epoch;
		on_request(n, src, v, now);
		return;
	}
	if (type == TDM_DP_VOTE && v->last_epoch > e->seen_epoch)
		e->seen_epoch = v->last_epoch;
	if (type == TDM_DP_VOTE_REQUEST && v->kind == ENG_VOTE_HANDOFF) {
		if (n->log && e->role == TDM_ROLE_REPLICA)
			start_election(n, now, ENG_VOTE_TRANSFER);
		return;
	}
	if (type != TDM_DP_VOTE || e->role != TDM_ROLE_CANDIDATE || v->epoch != e->cand_epoch)
		return;
	if (v->kind == ENG_VOTE_GRANT) {
		m->granted = true;
		if (count_grants(n) >= e->majority)
			become_primary(n, now);
	} else {
		set_note(n, "epoch %u: %.130s", v->epoch, v->reason);
	}
}

/* ---- Every round ---- */

/* The lease: fenced while the peers we have not heard from could elect a primary without us. */
static void check_lease(struct tdm_node *n, uint64_t now)
{
	struct eng_election *e = &n->el;
	int unheard = 0;
	bool fence;

	if (!n->cfg.failover_timeout_ms)
		return;
	for (int i = 0; i < e->n_members; i++)
		unheard += !heard_within(&e->members[i], now, e->lease_ns);
	fence = unheard >= e->majority;
	if (fence == e->fenced)
		return;
	e->fenced = fence;
	update_gate(n);
	if (fence) {
		set_note(n, "fenced: %d of %d voting members silent for %" PRIu64 " ms; writes "
			 "refused", unheard, e->voters, e->lease_ns / MS);
		eng_log(n, "%s", e->note);
	} else {
		set_note(n, "primary since epoch %u", e->epoch);
		eng_log(n, "majority reachable again: taking writes");
	}
}

/* Multi-primary, write_mode = majority: refuse writes while this node and the peers it hears
 * within the timeout are no majority of the cluster. */
static void check_majority(struct tdm_node *n, uint64_t now)
{
	struct eng_election *e = &n->el;
	int heard = 1;
	bool fence;

	if (n->cfg.write_mode != TDM_WRITES_MAJORITY)
		return;
	for (int i = 0; i < e->n_members; i++)
		heard += heard_within(&e->members[i], now, e->timeout_ns);
	fence = heard < e->majority;
	if (fence == e->fenced)
		return;
	e->fenced = fence;
	if (fence)
		set_note(n, "cut off from the majority: reaches %d of %d nodes (itself included) "
			 "within %" PRIu64 " ms; write_mode = majority refuses writes", heard,
			 e->voters, e->timeout_ns / MS);
	else
		set_note(n, "multi-primary: every node takes writes");
	update_gate(n);
	eng_log(n, "%s", fence ? e->note : "majority reachable again: taking writes");
}

static void check_handoff(struct tdm_node *n, uint64_t now)
{
	struct eng_election *e = &n->el;
	struct eng_replica *r = eng_find_replica(n, e->handoff_to);
	struct tdm_dp_sender_stats ss = { 0 };
	struct eng_vote v = { .kind = ENG_VOTE_HANDOFF };
	uint16_t to = e->handoff_to;

	if (r && r->sender)
		tdm_dp_sender_stats(r->sender, &ss);
	if (ss.acked >= e->handoff_tail && tdm_log_durable(n->log) >= e->handoff_tail) {
		eng_log(n, "switchover: node %u has our whole log (%" PRIu64 "); handing over", to,
			e->handoff_tail);
		step_down(n);
		e->leader_heard_ns = now;
		set_note(n, "switched over to node %u", to);
		v.epoch = e->epoch;
		tdm_dp_send_control(n->dp, to, TDM_DP_VOTE_REQUEST, &v, sizeof(v));
		e->handed_to = to; /* sent again each beat until it is primary (frames get lost) */
		e->handed_until = now + e->timeout_ns;
		return;
	}
	if (now >= e->handoff_deadline) {
		e->handoff_to = 0;
		set_note(n, "switchover to node %u abandoned: it received %" PRIu64 " of %" PRIu64
			 " in time", to, ss.acked, e->handoff_tail);
		eng_log(n, "%s; taking writes again", e->note);
		update_gate(n);
	}
}

int eng_election_do_work(struct tdm_node *n, uint64_t now)
{
	struct eng_election *e = &n->el;
	int work = 0;

	if (now - e->last_beat_ns >= e->beat_ns) {
		send_beats(n, now);
		work++;
	}
	if (n->multi) {
		check_majority(n, now);
		return work;
	}
	switch (e->role) {
	case TDM_ROLE_PRIMARY:
		if (e->handoff_to) {
			e->handoff_tail = tdm_log_tail(n->log); /* appends in flight land too */
			check_handoff(n, now);
		} else {
			check_lease(n, now);
		}
		break;
	case TDM_ROLE_CANDIDATE:
		if (now - e->last_ask_ns >= e->beat_ns)
			ask_votes(n, now, false); /* voters that still heard the old primary, or lost
			                             frames: asked again within the same epoch */
		if (now - e->cand_start_ns >= (e->timeout_ns > CANDIDACY_MIN_NS ? e->timeout_ns
										 : CANDIDACY_MIN_NS)) {
			/* Split or refused: try again later, staggered by id so one runs first. */
			e->role = TDM_ROLE_REPLICA;
			e->next_try_ns = now + e->timeout_ns / 2 +
					 (self_id(n) % 8) * (e->timeout_ns / 8);
			eng_log(n, "election for epoch %u failed (%d of %d votes): %s",
				e->cand_epoch, count_grants(n), e->majority, e->note);
		}
		break;
	case TDM_ROLE_REPLICA:
		if (e->handed_to && !e->leader && now < e->handed_until &&
		    now - e->last_handoff_ns >= e->beat_ns) {
			struct eng_vote v = { .kind = ENG_VOTE_HANDOFF, .epoch = e->epoch };
			e->last_handoff_ns = now;
			tdm_dp_send_control(n->dp, e->handed_to, TDM_DP_VOTE_REQUEST, &v, sizeof(v));
		}
		if (e->leader)
			e->handed_to = 0;
		if (may_run(n, now)) {
			start_election(n, now, 0);
			work++;
		}
		break;
	default:
		break;
	}
	return work;
}

/* ---- Start ---- */

int eng_election_init(struct tdm_node *n)
{
	struct eng_election *e = &n->el;
	uint64_t t = n->cfg.failover_timeout_ms * MS, now = tdm_dp_now_ns();
	bool fresh = n->log && tdm_log_epoch(n->log) == 0 && tdm_log_tail(n->log) == 0;
	int rc;

	memset(e, 0, sizeof(*e));
	e->timeout_ns = t ? t : 10 * NO_FAILOVER_BEAT_NS;
	e->beat_ns = t ? (t / BEATS_PER_TIMEOUT > MS ? t / BEATS_PER_TIMEOUT : MS)
		       : NO_FAILOVER_BEAT_NS;
	e->lease_ns = t * 3 / 4;
	for (int i = 0; i < n->cfg.n_peers; i++) {
		e->members[i].id = n->cfg.peers[i].id;
		e->members[i].witness = n->cfg.peers[i].witness;
		e->members[i].heard_ns = now; /* a grace period: nobody is fenced at start */
	}
	e->n_members = n->cfg.n_peers;
	e->voters = 1 + n->cfg.n_peers;
	e->majority = e->voters / 2 + 1;
	e->leader_heard_ns = now;
	load_vote(n);
	e->epoch = log_epoch(n);
	if (n->cfg.role == TDM_ROLE_WITNESS) {
		e->role = TDM_ROLE_WITNESS;
		set_note(n, "witness: votes, keeps no data");
	} else if (n->multi || (n->cfg.role == TDM_ROLE_PRIMARY && (fresh || !t))) {
		/* A new cluster's first primary (or no failover: the configured primary). In
		 * multi-primary every node writes its own origin from the start; beats only tell
		 * who is reachable (write_mode = majority). */
		if (fresh) {
			uint32_t epoch = n->multi ? 1 : e->voted_epoch + 1;
			rc = tdm_log_begin_epoch(n->log, epoch, eng_wall_ns());
			if (rc)
				return tdm_err_append(rc, "node %u: starting epoch %u", self_id(n),
						      epoch);
		}
		e->epoch = tdm_log_epoch(n->log);
		e->role = TDM_ROLE_PRIMARY;
		e->leader = self_id(n);
		tdm_dp_set_epoch(n->dp, e->epoch);
		rc = eng_primary_init(n);
		if (rc)
			return rc;
		if (n->multi)
			set_note(n, "multi-primary: every node takes writes");
		else
			set_note(n, "primary since epoch %u", e->epoch);
	} else {
		/* Everyone else starts as a replica; a restarted primary rejoins as one. */
		e->role = TDM_ROLE_REPLICA;
		e->leader = n->cfg.role == TDM_ROLE_REPLICA ? n->cfg.primary_id : 0;
		if (n->cfg.role == TDM_ROLE_PRIMARY)
			eng_log(n, "restarting with data: joining as a replica; an election makes "
				"this node primary again if no other node is");
		rc = eng_replica_init(n);
		if (rc)
			return rc;
	}
	if (e->role == TDM_ROLE_REPLICA && e->voters == 2 && t && !n->multi)
		set_note(n, "no failover: 2 voting members, a majority needs both; add a witness "
			 "(tandemd --witness) to fail over");
	update_gate(n);
	return 0;
}

/* ---- Control requests ---- */

int eng_switchover(struct tdm_node *n, uint16_t to)
{
	struct eng_election *e = &n->el;
	struct eng_member *m = find_member(n, to);
	struct eng_replica *r = eng_find_replica(n, to);

	if (n->multi)
		return TDM_ERR(-EINVAL, "node %u is multi-primary: every node takes writes, there is "
			       "nothing to switch over", self_id(n));
	if (e->role != TDM_ROLE_PRIMARY)
		return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u is not the primary (%s%u): run "
			       "switchover on the primary", self_id(n),
			       e->leader ? "the primary is node " : "no primary known, ", e->leader);
	if (!m || m->witness)
		return TDM_ERR(-EINVAL, "node %u is not a data node of this cluster: name a "
			       "replica", to);
	if (!r || r->state != TDM_PEER_STREAMING)
		return TDM_ERR(-EAGAIN, "node %u is not streaming (%s): wait until it has caught "
			       "up", to, r ? tdm_peer_state_name(r->state) : "unknown");
	if (e->handoff_to)
		return TDM_ERR(-EBUSY, "a switchover to node %u is in progress", e->handoff_to);
	e->handoff_to = to;
	e->handoff_tail = tdm_log_tail(n->log);
	e->handoff_deadline = tdm_dp_now_ns() + (10 * e->timeout_ns > SWITCHOVER_MIN_NS ?
						 10 * e->timeout_ns : SWITCHOVER_MIN_NS);
	update_gate(n);
	eng_log(n, "switchover to node %u: writes paused, draining %" PRIu64 " bytes", to,
		e->handoff_tail);
	return 0;
}

int eng_promote(struct tdm_node *n, bool force)
{
	struct eng_election *e = &n->el;
	uint64_t now = tdm_dp_now_ns();

	if (n->multi)
		return TDM_ERR(-EINVAL, "node %u is multi-primary: every node takes writes, there is "
			       "nobody to promote", self_id(n));
	if (e->role == TDM_ROLE_PRIMARY)
		return TDM_ERR(-EALREADY, "node %u is already the primary", self_id(n));
	if (e->role == TDM_ROLE_WITNESS)
		return TDM_ERR(-EINVAL, "node %u is a witness: it keeps no data", self_id(n));
	if ((n->up.flags & ENG_HELLO_NEED_RESYNC) || !n->apply)
		return TDM_ERR(-EAGAIN, "node %u's store is incomplete (resync in progress)",
			       self_id(n));
	for (int i = 0; i < e->n_members && !force; i++) {
		const struct eng_member *m = &e->members[i];

		if (!m->witness && heard_within(m, now, e->timeout_ns) &&
		    log_cmp(m->beat.last_epoch, m->beat.end, log_epoch(n), log_end(n)) > 0)
			return TDM_ERR(-EPERM, "node %u has a more complete log (epoch %u, end %"
				       PRIu64 ") than node %u (epoch %u, end %" PRIu64 "): "
				       "promoting this node would lose its records. Promote node "
				       "%u, use switchover on the primary, or add --force",
				       m->id, m->beat.last_epoch, m->beat.end, self_id(n),
				       log_epoch(n), log_end(n), m->id);
	}
	start_election(n, now, ENG_VOTE_TRANSFER | (force ? ENG_VOTE_FORCE : 0));
	return 0;
}
