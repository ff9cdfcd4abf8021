/*
 * The status file (layout in engine_pvt.h) and what the engine agent publishes into it: the
 * quorum positions commit waits poll (every round), and the full status with rates and lag that
 * tandemctl reads (every status interval).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine_pvt.h"

#define STATUS_INTERVAL_NS 100000000ull /* full status and rates every 100 ms */
#define SAMPLE_MIN_NS 1000u             /* at most one tail sample per microsecond */

int eng_status_map(const char *data_dir, bool create, struct tdm_status_shm **out)
{
	char path[400];
	struct stat st;
	void *p;
	int fd;

	snprintf(path, sizeof(path), "%s/status", data_dir);
	fd = open(path, create ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0644);
	if (fd < 0 && !create && errno == EACCES)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return TDM_ERR(-errno, "cannot open the status file %s: %s%s", path, strerror(errno),
			       errno == ENOENT ? " (no node has run with this data_dir)" : "");
	if (create && ftruncate(fd, sizeof(struct tdm_status_shm)) != 0) {
		int e = errno;
		close(fd);
		return TDM_ERR(-e, "cannot size %s: %s", path, strerror(e));
	}
	if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct tdm_status_shm)) {
		close(fd);
		return TDM_ERR(TDM_ERR_VERSION, "%s is not a tandem status file of this version "
			       "(too short)", path);
	}
	p = mmap(NULL, sizeof(struct tdm_status_shm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return TDM_ERR(-errno, "cannot map %s: %s", path, strerror(errno));
	if (!create && __atomic_load_n(&((struct tdm_status_shm *)p)->magic, __ATOMIC_ACQUIRE) == 0 &&
	    ((struct tdm_status_shm *)p)->version == TDM_STATUS_VERSION) {
		munmap(p, sizeof(struct tdm_status_shm));
		return TDM_ERR(-EAGAIN, "the node in %s is starting (or failed to start); try again "
			       "in a moment", data_dir);
	}
	if (!create && (((struct tdm_status_shm *)p)->magic != TDM_STATUS_MAGIC ||
			((struct tdm_status_shm *)p)->version != TDM_STATUS_VERSION)) {
		munmap(p, sizeof(struct tdm_status_shm));
		return TDM_ERR(TDM_ERR_VERSION, "%s is not a tandem status file of layout version "
			       "%u", path, TDM_STATUS_VERSION);
	}
	*out = p;
	return 0;
}

void eng_status_unmap(struct tdm_status_shm *s)
{
	if (s)
		munmap(s, sizeof(*s));
}

bool eng_status_alive(const struct tdm_status_shm *s)
{
	return s->pid > 0 && !s->closed && (kill(s->pid, 0) == 0 || errno == EPERM);
}

void eng_status_copy(const struct tdm_status_shm *s, struct tdm_status *out)
{
	for (int tries = 0;; tries++) {
		uint64_t a = eng_load(&s->seq.v);

		if (!(a & 1) || tries > 1000) {
			memcpy(out, &s->status, sizeof(*out));
			/* pairs with the release in eng_status_publish */
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (eng_load(&s->seq.v) == a || tries > 1000)
				return;
		}
		sched_yield();
	}
}

void eng_status_publish(struct tdm_status_shm *s, const struct tdm_status *st)
{
	uint64_t q = s->seq.v;

	eng_store(&s->seq.v, q + 1);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(&s->status, st, sizeof(*st));
	eng_store(&s->seq.v, q + 2);
}

/* ---- Time behind ---- */

void eng_sample_tail(struct tdm_node *n, uint64_t tail, uint64_t now)
{
	uint32_t last = (n->sample_head - 1) & (ENG_TAIL_SAMPLES - 1);

	if (n->sample_count && (n->sample_pos[last] >= tail ||
				now - n->sample_ns[last] < SAMPLE_MIN_NS))
		return;
	n->sample_pos[n->sample_head] = tail;
	n->sample_ns[n->sample_head] = now;
	n->sample_head = (n->sample_head + 1) & (ENG_TAIL_SAMPLES - 1);
	if (n->sample_count < ENG_TAIL_SAMPLES)
		n->sample_count++;
}

/*
 * How long ago the data just past pos was first seen in the log: the time of the oldest sample
 * whose tail is beyond pos. 0 when pos is at the tail. Samples are increasing in both fields,
 * so a binary search finds it; past the oldest sample the answer is a lower bound.
 */
uint64_t eng_lag_ns(const struct tdm_node *n, uint64_t pos, uint64_t now)
{
	uint32_t lo = 0, hi = n->sample_count, base;

	if (!n->sample_count)
		return 0;
	base = (n->sample_head - n->sample_count) & (ENG_TAIL_SAMPLES - 1);
	if (n->sample_pos[(base + hi - 1) & (ENG_TAIL_SAMPLES - 1)] <= pos)
		return 0;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (n->sample_pos[(base + mid) & (ENG_TAIL_SAMPLES - 1)] > pos)
			hi = mid;
		else
			lo = mid + 1;
	}
	return now - n->sample_ns[(base + lo) & (ENG_TAIL_SAMPLES - 1)];
}

/* ---- Every round: quorum positions ---- */

/* The k-th highest of v[0..n) (k >= 1), or 0 when fewer than k. */
static uint64_t kth_highest(uint64_t *v, int n, int k)
{
	if (k < 1 || k > n)
		return 0;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j] > v[j - 1]; j--) {
			uint64_t t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[k - 1];
}

void eng_publish_positions(struct tdm_node *n, uint64_t now)
{
	uint64_t rcv[TDM_MAX_PEERS], dur[TDM_MAX_PEERS], app[TDM_MAX_PEERS];
	int m = 0;

	for (int i = 0; i < n->n_replicas; i++) {
		struct eng_replica *r = &n->replicas[i];
		struct tdm_dp_sender_stats ss;

		if (!r->sender || r->state != TDM_PEER_STREAMING)
			continue;
		tdm_dp_sender_stats(r->sender, &ss);
		eng_replica_positions(&ss, &rcv[m], &dur[m], &app[m]);
		m++;
	}
	if (n->el.role == TDM_ROLE_PRIMARY) {
		/* pairs with the acquire in commit waits */
		eng_store(&n->shm->quorum_pos[0].v, kth_highest(rcv, m, n->cfg.quorum));
		eng_store(&n->shm->quorum_pos[1].v, kth_highest(dur, m, n->cfg.quorum));
		eng_store(&n->shm->quorum_pos[2].v, kth_highest(app, m, n->cfg.quorum));
	}
}

/* ---- Every status interval: the whole status ---- */

static void peer_status(struct tdm_node *n, struct eng_replica *r, struct tdm_peer_status *p,
			uint64_t now, uint64_t dt)
{
	struct tdm_dp_sender_stats ss = { 0 };

	memset(p, 0, sizeof(*p));
	p->node_id = r->id;
	p->state = (uint8_t)r->state;
	p->resyncs = r->resyncs;
	if (r->sender)
		tdm_dp_sender_stats(r->sender, &ss);
	else if (r->snap_sender)
		tdm_dp_sender_stats(r->snap_sender, &ss);
	p->link_up = ss.link_up || tdm_dp_link_up(tdm_dp_transport(n->dp), r->id);
	if (r->sender) {
		p->sent = ss.sent;
		eng_replica_positions(&ss, &p->received, &p->durable, &p->applied);
		p->lag_received_ns = eng_lag_ns(n, p->received, now);
		p->lag_durable_ns = eng_lag_ns(n, p->durable, now);
		p->lag_applied_ns = eng_lag_ns(n, p->applied, now);
	}
	if (dt && r->last_received && p->received >= r->last_received)
		p->bytes_per_s = (p->received - r->last_received) * 1000000000ull / dt;
	if (dt && ss.records >= r->last_records)
		p->records_per_s = (ss.records - r->last_records) * 1000000000ull / dt;
	r->last_received = p->received;
	r->last_records = ss.records;
	p->rewinds = ss.rewinds;
	p->retransmit_bytes = ss.retransmit_bytes;
	p->naks = ss.naks;
	p->last_heard_ns = ss.last_heard_ns;
}

static void upstream_status(struct tdm_node *n, struct tdm_status *st, uint64_t now)
{
	struct tdm_peer_status *p = &st->peers[0];
	struct tdm_dp_receiver_stats rs = { 0 };

	st->replica_state = (uint8_t)n->up.state;
	st->n_peers = 1;
	memset(p, 0, sizeof(*p));
	p->node_id = n->el.leader;
	p->state = (uint8_t)n->up.state;
	p->resyncs = n->up.resyncs;
	if (n->up.receiver)
		tdm_dp_receiver_stats(n->up.receiver, &rs);
	p->link_up = tdm_dp_link_up(tdm_dp_transport(n->dp), n->el.leader) &&
		     rs.last_heard_ns && now - rs.last_heard_ns < 500000000ull;
	p->sent = rs.sender_sent;
	p->received = rs.received;
	p->durable = st->durable;
	p->applied = st->applied;
	p->last_heard_ns = rs.last_heard_ns;
}

/* What the member's heartbeats say, into its row (and a row for members that are not replicas
 * or upstream: witnesses, other replicas). */
static void member_status(const struct tdm_node *n, struct tdm_status *st, uint64_t now)
{
	for (int i = 0; i < n->el.n_members; i++) {
		const struct eng_member *m = &n->el.members[i];
		struct tdm_peer_status *p = NULL;

		for (int j = 0; j < st->n_peers; j++)
			if (st->peers[j].node_id == m->id)
				p = &st->peers[j];
		if (!p) {
			if (st->n_peers >= TDM_MAX_PEERS)
				continue;
			p = &st->peers[st->n_peers++];
			memset(p, 0, sizeof(*p));
			p->node_id = m->id;
			p->link_up = tdm_dp_link_up(tdm_dp_transport(n->dp), m->id) &&
				     m->heard_ns && now - m->heard_ns < n->el.timeout_ns;
		}
		p->witness = m->witness;
		p->role = m->beat.kind ? m->beat.role : 0;
		p->fenced = m->beat.fenced;
		p->epoch = m->beat.epoch;
		p->log_end = m->beat.end;
		p->beat_age_ns = m->beat.kind ? now - m->heard_ns : UINT64_MAX;
	}
}

static void failover_status(const struct tdm_node *n, struct tdm_status *st,
			    const struct tdm_dp_stats *ds)
{
	const struct eng_election *e = &n->el;

	st->role = (uint8_t)e->role;
	st->epoch = e->epoch;
	st->primary_id = e->leader;
	st->fenced = e->fenced;
	st->writable = n->log && tdm_log_writable(n->log);
	st->failover_timeout_ms = n->cfg.failover_timeout_ms;
	st->voted_epoch = e->voted_epoch;
	st->elections = e->elections;
	st->elections_won = e->won;
	st->last_failover_ns = e->failover_wall_ns;
	st->last_failover_duration_ns = e->failover_ns;
	st->frames_stale_epoch = ds->drops[TDM_DP_DROP_EPOCH] + e->stale_frames;
	snprintf(st->failover_note, sizeof(st->failover_note), "%s", e->note);
}

void eng_publish_status(struct tdm_node *n, uint64_t now)
{
	struct tdm_status *st = &n->st;
	struct tdm_apply_stats as;
	struct tdm_dp_stats ds;
	uint64_t tail, dt;

	if (now - n->last_status_ns < STATUS_INTERVAL_NS)
		return;
	dt = n->last_status_ns ? now - n->last_status_ns : 0;
	n->last_status_ns = now;
	st->node_id = n->cfg.node_id;
	st->degraded = eng_load(&n->shm->degraded.v) != 0;
	st->pid = getpid();
	snprintf(st->transport, sizeof(st->transport), "%s", n->transport);
	snprintf(st->ring, sizeof(st->ring), "%s", n->shm->ring_name);
	snprintf(st->level, sizeof(st->level), "%s", tdm_level_name(n->cfg.level));
	st->quorum = n->cfg.quorum;
	tdm_dp_stats(n->dp, &ds);
	failover_status(n, st, &ds);
	st->frames_bad_cluster = ds.drops[TDM_DP_DROP_CLUSTER];
	st->frames_dropped = 0;
	for (int i = 0; i < TDM_DP_DROP_REASONS; i++)
		st->frames_dropped += ds.drops[i];
	st->uptime_ns = now - n->open_ns;
	st->updated_ns = eng_wall_ns();
	st->n_peers = 0;
	if (n->log) {
		tail = tdm_log_tail(n->log);
		st->log_start = tdm_log_start(n->log);
		st->tail = tail;
		st->durable = tdm_log_durable(n->log);
		st->applied = eng_applied(n);
		memset(&as, 0, sizeof(as));
		if (n->apply)
			tdm_apply_stats(n->apply, &as);
		if (dt) {
			st->bytes_per_s = (tail - n->last_bytes_tail) * 1000000000ull / dt;
			st->writes_per_s = as.records >= n->last_records ?
				(as.records - n->last_records) * 1000000000ull / dt : 0;
		}
		n->last_bytes_tail = tail;
		n->last_records = as.records;
		st->keys = tdm_store_count(n->store);
		st->store_bytes = tdm_store_data_bytes(n->store);
		st->digest = tdm_store_digest(n->store);
		st->timeouts = __atomic_load_n(&n->shm->timeouts.v, __ATOMIC_RELAXED);
		st->degrades = __atomic_load_n(&n->shm->degrades.v, __ATOMIC_RELAXED);
		st->resyncs = n->resyncs;
		if (n->el.role == TDM_ROLE_PRIMARY) {
			st->n_peers = n->n_replicas;
			for (int i = 0; i < n->n_replicas; i++)
				peer_status(n, &n->replicas[i], &st->peers[i], now, dt);
		} else if (n->el.leader) {
			upstream_status(n, st, now);
		}
	}
	member_status(n, st, now);
	if (n->multi)
		eng_multi_status(n, st, now);
	eng_status_publish(n->shm, st);
}

/* ---- Reading a node's status from outside ---- */

TDM_API int tdm_status_read(const char *data_dir, struct tdm_status *out)
{
	struct tdm_status_shm *s;
	int rc = eng_status_map(data_dir, false, &s);

	if (rc)
		return rc;
	eng_status_copy(s, out);
	rc = eng_status_alive(s) ? 0 : TDM_ERR_CLOSED;
	if (rc)
		TDM_ERR(rc, "the node in %s is not running (status last written by pid %d)",
			data_dir, s->pid);
	eng_status_unmap(s);
	return rc;
}

TDM_API int tdm_status(struct tdm_node *n, struct tdm_status *out)
{
	eng_status_copy(n->shm, out);
	return eng_status_alive(n->shm) || !n->attached ? 0 : TDM_ERR_CLOSED;
}
