/*
 * A node: opening it (lock, log recovery, store rebuild, dataplane, status file, control socket),
 * its agents and threads, and closing it. Attached handles (another local process's node) are
 * opened here too.
 *
 * DATA_DIR layout: lock (pid; flock'ed while the node runs), log/ (segments and history),
 * snapshot (the store at a position, written on resync and before retention trims what a
 * rebuild needs), status (shared status file), ctl.sock (control socket), resync/ (snapshot
 * streams being served to replicas).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine_pvt.h"

void eng_log(const struct tdm_node *n, const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char when[32], msg[1024];
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s.%03ld tandem node %u (%s): %s\n", when, ts.tv_nsec / 1000000,
		n->cfg.node_id, n->multi ? "multi-primary" :
		tdm_role_name(n->el.role ? n->el.role : n->cfg.role), msg);
}

void eng_snapshot_path(const struct tdm_node *n, char *buf, size_t len)
{
	snprintf(buf, len, "%s/snapshot", n->cfg.data_dir);
}

/* ---- Lock, log ---- */

static int lock_data_dir(struct tdm_node *n)
{
	char path[400], pid[24] = "";
	int fd;

	if (mkdir(n->cfg.data_dir, 0755) != 0 && errno != EEXIST)
		return TDM_ERR(-errno, "cannot create data_dir %s: %s", n->cfg.data_dir,
			       strerror(errno));
	snprintf(path, sizeof(path), "%s/lock", n->cfg.data_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return TDM_ERR(-errno, "cannot open %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		ssize_t r = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[r > 0 ? r : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		close(fd);
		return TDM_ERR(-EBUSY, "data_dir %s is in use by another running node (pid %s); "
			       "stop it first, or give this node its own data_dir",
			       n->cfg.data_dir, pid[0] ? pid : "?");
	}
	snprintf(pid, sizeof(pid), "%d\n", getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, strlen(pid), 0) < 0) {
		close(fd);
		return TDM_ERR(-errno, "cannot write %s: %s", path, strerror(errno));
	}
	n->lock_fd = fd;
	return 0;
}

/* The ring's name: unique per data directory, so nodes and tests on one host never collide. */
static void ring_name(const struct tdm_node *n, char *buf, size_t len)
{
	char abs[PATH_MAX];
	const char *p = realpath(n->cfg.data_dir, abs) ? abs : n->cfg.data_dir;

	snprintf(buf, len, "tandem-%u-%08x", n->cfg.node_id, tdm_crc32c(0, p, strlen(p)));
}

void eng_log_config(const struct tdm_node *n, struct tdm_log_config *lc, const char *dir,
		    const char *shm_name)
{
	tdm_log_config_defaults(lc);
	lc->dir = dir;
	lc->shm_name = shm_name;
	lc->ring_size = n->cfg.ring_size;
	lc->segment_size = n->cfg.segment_size;
	lc->cluster_id = n->cfg.cluster_id;
	lc->node_id = n->cfg.node_id;
}

int eng_open_log(struct tdm_node *n, uint64_t base)
{
	struct tdm_log_config lc;
	char dir[400], name[64];
	int rc;

	snprintf(dir, sizeof(dir), "%s/log", n->cfg.data_dir);
	ring_name(n, name, sizeof(name));
	eng_log_config(n, &lc, dir, name);
	lc.retention_cap = n->cfg.retention_cap;
	lc.base = base;
	lc.verify_all = false;
	rc = tdm_log_open(&lc, &n->log);
	if (rc)
		return tdm_err_append(rc, "opening the log of node %u in %s", n->cfg.node_id, dir);
	snprintf(n->shm->ring_name, sizeof(n->shm->ring_name), "%s", name);
	n->self_slot = -1; /* a new log: eng_retain_snapshot registers what a rebuild needs */
	return 0;
}

/* The whole history of our log (oldest first, *out malloc'ed, NULL when empty): its count. */
int eng_history(const struct tdm_node *n, struct tdm_log_epoch_start **out)
{
	char dir[400];
	int k;

	*out = malloc(TDM_LOG_HISTORY_MAX * sizeof(**out));
	if (!*out)
		return 0;
	snprintf(dir, sizeof(dir), "%s/log", n->cfg.data_dir);
	k = tdm_log_history_read(dir, *out, TDM_LOG_HISTORY_MAX);
	if (k < 0) {
		eng_log(n, "cannot read the history of our log: %s", tdm_errmsg());
		k = 0;
	}
	return k;
}

/* Keep the log from the local snapshot's position on: what a restart replays onto it. */
int eng_retain_snapshot(struct tdm_node *n)
{
	if (n->self_slot >= 0)
		tdm_log_peer_remove(n->log, n->self_slot);
	n->self_slot = tdm_log_peer_add(n->log, n->cfg.node_id, n->snapshot_pos);
	return n->self_slot < 0 ? n->self_slot : 0;
}

/* Remove every file in dir, then dir (log directories are flat). */
int eng_remove_log_dir(const char *dir)
{
	char path[700];
	struct dirent *d;
	DIR *dp = opendir(dir);

	if (!dp)
		return errno == ENOENT ? 0 : TDM_ERR(-errno, "cannot open %s: %s", dir,
						     strerror(errno));
	while ((d = readdir(dp)))
		if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
			unlink(path);
		}
	closedir(dp);
	if (rmdir(dir) != 0)
		return TDM_ERR(-errno, "cannot remove %s: %s", dir, strerror(errno));
	return 0;
}

/* ---- Apply ---- */

int eng_apply_open(struct tdm_node *n, struct tdm_log *log, uint64_t from,
		   struct tdm_apply **out)
{
	struct tdm_apply_config ac;
	int rc;

	tdm_apply_config_defaults(&ac);
	ac.log = log;
	ac.from = from;
	ac.workers = n->cfg.apply_workers;
	ac.batch = n->cfg.apply_batch;
	tdm_store_sink(n->store, &ac.sink);
	rc = tdm_apply_create(&ac, out);
	if (rc)
		return tdm_err_append(rc, "starting apply at position %" PRIu64, from);
	if (n->apply_threads) {
		rc = tdm_apply_start_threads(*out, n->cfg.idle);
		if (rc) {
			tdm_apply_destroy(*out);
			*out = NULL;
			return rc;
		}
	}
	return 0;
}

void eng_apply_close(struct tdm_node *n, struct tdm_apply **a)
{
	if (!*a)
		return;
	if (n->apply_threads)
		tdm_apply_stop_threads(*a);
	tdm_apply_destroy(*a);
	*a = NULL;
}

int eng_start_apply(struct tdm_node *n, uint64_t from)
{
	n->apply_threads = n->cfg.threads >= 2;
	return eng_apply_open(n, n->log, from, &n->apply);
}

void eng_stop_apply(struct tdm_node *n)
{
	eng_apply_close(n, &n->apply);
}

/* Apply everything dispatched so far (the dispatcher does not run meanwhile). */
int eng_drain_apply(struct tdm_node *n)
{
	while (tdm_apply_applied(n->apply) < tdm_apply_dispatched(n->apply)) {
		if (n->apply_threads) {
			sched_yield();
			continue;
		}
		for (int i = 0; i < n->cfg.apply_workers; i++) {
			int rc = tdm_apply_worker_do_work(n->apply, i);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Write DATA_DIR/snapshot at the dispatched position and let retention drop what is older. */
int eng_write_local_snapshot(struct tdm_node *n)
{
	char path[400];
	uint64_t pos;
	int rc = eng_drain_apply(n);

	if (rc)
		return rc;
	pos = tdm_apply_applied(n->apply);
	eng_snapshot_path(n, path, sizeof(path));
	rc = tdm_store_snapshot_write(n->store, pos, path);
	if (rc) {
		eng_log(n, "cannot write a local snapshot: %s", tdm_errmsg());
		return rc;
	}
	n->snapshot_pos = pos;
	return eng_retain_snapshot(n);
}

/*
 * Rebuild the store: the local snapshot (if any), then the log from the snapshot's position.
 * A log that starts after the snapshot (history trimmed, no newer snapshot) cannot rebuild it:
 * a replica then asks its primary for a full resync; a primary refuses to start.
 */
int eng_rebuild_store(struct tdm_node *n)
{
	char path[400];
	uint64_t pos = 0, start;
	int rc;

	tdm_store_clear(n->store);
	eng_snapshot_path(n, path, sizeof(path));
	rc = tdm_store_snapshot_load(n->store, path, &pos);
	if (rc && rc != -ENOENT)
		return tdm_err_append(rc, "node %u cannot load its snapshot: move %s aside; a "
				      "replica then gets a full resync", n->cfg.node_id, path);
	n->snapshot_pos = rc ? 0 : pos;
	start = tdm_log_start(n->log);
	rc = eng_retain_snapshot(n);
	if (rc || n->snapshot_pos >= start)
		return rc;
	if (n->multi)
		return TDM_ERR(TDM_ERR_TRIMMED, "node %u: its log starts at %" PRIu64 " (retention "
			       "trimmed it) and multi-primary keeps no snapshot to rebuild the store "
			       "from: set [log] retention_cap = 0, and start this node with an empty "
			       "data_dir to copy the others again", n->cfg.node_id, start);
	if (n->cfg.role == TDM_ROLE_REPLICA || n->cfg.failover_timeout_ms) {
		eng_log(n, "log starts at %" PRIu64 " but the snapshot is at %" PRIu64 ": asking "
			"the primary for a full resync", start, n->snapshot_pos);
		tdm_store_clear(n->store);
		n->up.flags |= ENG_HELLO_NEED_RESYNC;
		return 0;
	}
	return TDM_ERR(TDM_ERR_TRIMMED, "node %u: the log starts at %" PRIu64 " and the newest "
		       "snapshot covers %" PRIu64 ": the store cannot be rebuilt. Start this node "
		       "as a replica of a node that has the data (it gets a full resync)",
		       n->cfg.node_id, start, n->snapshot_pos);
}

/* ---- Agents ----
 * The agent list is fixed when the node opens. Apply and the log are replaced during a resync
 * (by the engine agent, between rounds of the others), so their agents reach them through the
 * node instead of holding pointers of their own.
 */

static int engine_agent(void *ctx);

static int flusher_agent(void *ctx)
{
	struct tdm_node *n = ctx;
	int rc = n->log ? tdm_log_flusher_do_work(n->log) : 0;

	return rc == TDM_ERR_FAILED ? rc : (rc > 0 ? rc : 0);
}

static int dispatch_agent(void *ctx)
{
	struct tdm_node *n = ctx;

	return n->apply ? tdm_apply_dispatch_do_work(n->apply) : 0;
}

static int worker_agent(void *ctx)
{
	struct eng_worker *w = ctx;
	struct tdm_node *n = w->node;

	return n->apply && !n->apply_threads ? tdm_apply_worker_do_work(n->apply, w->index) : 0;
}

/* Multi-primary: the copies of the peers' origins, their flushers and applies. */
static int origins_flush_agent(void *ctx)
{
	return eng_multi_flush(ctx);
}

static int origins_apply_agent(void *ctx)
{
	return eng_multi_apply(ctx);
}

static void init_agents(struct tdm_node *n)
{
	int k = 0;

	n->agents[k++] = (struct tdm_dp_agent){ "dataplane", tdm_dp_agent_do_work, n->dp };
	n->agents[k++] = (struct tdm_dp_agent){ "flusher", flusher_agent, n };
	if (n->multi) {
		n->agents[k++] = (struct tdm_dp_agent){ "origin-flushers", origins_flush_agent, n };
		n->agents[k++] = (struct tdm_dp_agent){ "origin-apply", origins_apply_agent, n };
	}
	n->agents[k++] = (struct tdm_dp_agent){ "engine", engine_agent, n };
	n->agents[k++] = (struct tdm_dp_agent){ "apply-dispatch", dispatch_agent, n };
	for (int i = 0; i < n->cfg.apply_workers; i++) {
		n->workers[i] = (struct eng_worker){ n, i };
		n->agents[k++] = (struct tdm_dp_agent){ "apply-worker", worker_agent,
							&n->workers[i] };
	}
	n->n_agents = k;
}

/* Run the agents on this thread until *stop (or an agent fails). */
static int run_agents(struct tdm_node *n, const bool *stop)
{
	struct tdm_dp_idle idle;

	tdm_dp_idle_init(&idle, n->cfg.idle);
	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
		int work = tdm_dp_run_once(n->agents, n->n_agents);

		if (work < 0)
			return work;
		tdm_dp_idle_step(&idle, work);
	}
	return 0;
}

#define ENG_SLOW_TICK_NS 1000000ull /* control socket, degrade and drop checks: every 1 ms */

/* Leave degraded mode once the quorum has caught up with where degrading began. */
static void check_degraded(struct tdm_node *n)
{
	uint64_t deg = eng_load(&n->shm->degrades.v);
	int lvl = n->cfg.level >= TDM_LEVEL_RECEIVED ? n->cfg.level - TDM_LEVEL_RECEIVED : 0;

	if (deg != n->degrade_logged) {
		eng_log(n, "%" PRIu64 " write(s) degraded to async: fewer than %d replica(s) "
			"reached '%s' within %" PRIu64 " ms (%" PRIu64 " in all)",
			deg - n->degrade_logged, n->cfg.quorum, tdm_level_name(n->cfg.level),
			n->cfg.timeout_ms, deg);
		n->degrade_logged = deg;
	}
	if (!eng_load(&n->shm->degraded.v)) {
		n->degraded_at = 0;
		return;
	}
	if (!n->degraded_at)
		n->degraded_at = tdm_log_tail(n->log);
	if (eng_load(&n->shm->quorum_pos[lvl].v) >= n->degraded_at) {
		eng_store(&n->shm->degraded.v, 0);
		eng_log(n, "quorum caught up: commit waits are synchronous again");
		n->degraded_at = 0;
	}
}

static void check_drops(struct tdm_node *n)
{
	struct tdm_dp_stats ds;

	tdm_dp_stats(n->dp, &ds);
	if (ds.drops[TDM_DP_DROP_CLUSTER] > n->bad_cluster_seen) {
		eng_log(n, "dropped %" PRIu64 " frame(s) of another cluster id (ours is %" PRIu64
			"): a node on this network is configured with another cluster_id; fix "
			"[node] cluster_id on it", ds.drops[TDM_DP_DROP_CLUSTER] - n->bad_cluster_seen,
			n->cfg.cluster_id);
		n->bad_cluster_seen = ds.drops[TDM_DP_DROP_CLUSTER];
	}
}

/* Keep a snapshot recent enough that retention never trims what a store rebuild needs. */
static void check_self_snapshot(struct tdm_node *n)
{
	uint64_t every = n->cfg.retention_cap / 2;

	if (!every || !n->apply)
		return;
	if (eng_applied(n) - n->snapshot_pos < every &&
	    !tdm_log_peer_needs_resync(n->log, n->self_slot))
		return;
	eng_write_local_snapshot(n);
}

static int engine_agent(void *ctx)
{
	struct tdm_node *n = ctx;
	uint64_t now = tdm_dp_now_ns();
	int work;

	work = eng_election_do_work(n, now);
	if (n->multi)
		work += eng_primary_do_work(n, now) + eng_multi_do_work(n, now);
	else if (n->el.role == TDM_ROLE_PRIMARY)
		work += eng_primary_do_work(n, now);
	else if (n->log)
		work += eng_replica_do_work(n, now);
	if (work < 0)
		return work;
	if (n->log) {
		eng_sample_tail(n, tdm_log_tail(n->log), now);
		eng_publish_positions(n, now);
	}
	eng_store(&n->shm->alive_ns.v, now);
	if (now - n->last_ctl_ns >= ENG_SLOW_TICK_NS) {
		n->last_ctl_ns = now;
		work += eng_ctl_poll(n);
		check_drops(n);
		if (n->log) {
			check_degraded(n);
			if (!n->multi) /* multi-primary rebuilds from its logs (no snapshot yet) */
				check_self_snapshot(n);
		}
		eng_publish_status(n, now);
	}
	return work;
}

/* Engine control frames: every payload starts with its kind (u32). */
static void on_control(void *ctx, uint16_t src, unsigned type, uint32_t epoch,
		       const void *payload, uint32_t len)
{
	struct tdm_node *n = ctx;
	uint32_t kind = 0;

	(void)epoch;
	if (len >= sizeof(kind))
		memcpy(&kind, payload, sizeof(kind));
	if (type == TDM_DP_HELLO && kind == ENG_MSG_BEAT && len == sizeof(struct eng_beat)) {
		struct eng_beat b;
		memcpy(&b, payload, sizeof(b));
		eng_election_on_beat(n, src, &b);
	} else if ((type == TDM_DP_VOTE_REQUEST || type == TDM_DP_VOTE) &&
		   len == sizeof(struct eng_vote)) {
		struct eng_vote v;
		memcpy(&v, payload, sizeof(v));
		v.reason[sizeof(v.reason) - 1] = 0;
		eng_election_on_vote(n, src, type, &v);
	} else if (type == TDM_DP_HELLO && len == sizeof(struct eng_hello) && n->log) {
		struct eng_hello h;
		memcpy(&h, payload, sizeof(h));
		h.reason[sizeof(h.reason) - 1] = 0;
		if (n->multi && h.kind != ENG_HELLO_REQ)
			eng_multi_on_hello(n, src, &h); /* answers about its origin */
		else if (n->el.role == TDM_ROLE_PRIMARY)
			eng_primary_on_hello(n, src, &h);
		else
			eng_replica_on_hello(n, src, &h);
	} else {
		eng_log(n, "ignored a %s frame of %u bytes (kind %u) from node %u: not a message "
			"of this version", tdm_dp_frame_type_name(type), len, kind, src);
	}
}

/* ---- Dataplane ---- */

static void dp_config(const struct tdm_node *n, struct tdm_dp_config *dc,
		      enum tdm_dp_backend backend)
{
	struct tdm_dp_transport_config *t = &dc->transport;

	tdm_dp_config_defaults(dc);
	dc->cluster_id = n->cfg.cluster_id;
	t->backend = backend;
	t->node_id = n->cfg.node_id;
	t->local_ip = n->cfg.local_ip;
	t->local_port = n->cfg.port;
	t->mtu = n->cfg.mtu;
	t->eal_args = n->cfg.eal_args;
	t->faults = n->cfg.faults;
	t->n_peers = n->cfg.n_peers;
	for (int i = 0; i < n->cfg.n_peers; i++) {
		const struct tdm_peer_config *p = &n->cfg.peers[i];

		t->peers[i].node_id = p->id;
		t->peers[i].ip = p->ip;
		t->peers[i].port = p->port;
		memcpy(t->peers[i].mac, p->mac, 6);
		t->peers[i].dpdk_port = p->dpdk_port;
	}
}

static int open_dataplane(struct tdm_node *n)
{
	struct tdm_dp_config dc;
	int rc;

	dp_config(n, &dc, n->cfg.backend);
	rc = tdm_dp_create(&dc, &n->dp);
	if (rc && n->cfg.backend == TDM_DP_BACKEND_DPDK && n->cfg.fallback_udp) {
		eng_log(n, "DPDK could not start (%s: %s); falling back to kernel UDP on the same "
			"addresses (set [dataplane] fallback = none to fail instead)",
			tdm_strerror(rc), tdm_errmsg());
		dp_config(n, &dc, TDM_DP_BACKEND_UDP);
		rc = tdm_dp_create(&dc, &n->dp);
	}
	if (rc)
		return tdm_err_append(rc, "node %u: opening the dataplane", n->cfg.node_id);
	snprintf(n->transport, sizeof(n->transport), "%s",
		 tdm_dp_transport_describe(tdm_dp_transport(n->dp)));
	tdm_dp_set_epoch(n->dp, n->log ? tdm_log_epoch(n->log) : 0);
	tdm_dp_on_control(n->dp, on_control, n);
	return 0;
}

/* ---- Open and close ---- */

static void *node_thread(void *arg)
{
	struct tdm_node *n = arg;
	int rc = run_agents(n, &n->stop);

	if (rc)
		eng_log(n, "stopped: %s: %s", tdm_strerror(rc), tdm_errmsg());
	__atomic_store_n(&n->thread_rc, rc ? rc : 1, __ATOMIC_RELEASE);
	return NULL;
}

static int init_status(struct tdm_node *n)
{
	struct tdm_status_shm *s;
	int rc = eng_status_map(n->cfg.data_dir, true, &s);

	if (rc)
		return rc;
	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	s->version = TDM_STATUS_VERSION;
	s->pid = getpid();
	s->node_id = n->cfg.node_id;
	s->role = (uint8_t)n->cfg.role;
	s->on_timeout = (uint8_t)n->cfg.on_timeout;
	s->cluster_id = n->cfg.cluster_id;
	s->timeout_ns = n->cfg.timeout_ms * 1000000ull;
	s->quorum = n->cfg.quorum;
	s->level = (uint8_t)n->cfg.level;
	s->primary_id = n->cfg.role == TDM_ROLE_PRIMARY ? n->cfg.node_id : n->cfg.primary_id;
	s->mode = (uint8_t)n->cfg.mode;
	s->clock_skew_ns = n->cfg.clock_skew_ms * 1000000ull;
	tdm_hlc_init(&s->hlc, 0);
	snprintf(s->why_not_writable, sizeof(s->why_not_writable), "it is not the primary");
	n->shm = s; /* the magic is stored once the node is open: readers wait until then */
	return 0;
}

/* Multi-primary: a merge store (last-writer-wins, tombstones, conflicts counted within the
 * maximum clock offset). */
static int create_store(struct tdm_node *n)
{
	struct tdm_store_config sc;

	tdm_store_config_defaults(&sc);
	sc.shards = n->cfg.apply_workers;
	sc.merge = n->multi;
	sc.conflict_window_ns = n->cfg.max_clock_offset_ms * 1000000ull;
	sc.on_conflict = n->cfg.on_conflict;
	sc.conflict_ctx = n->cfg.conflict_ctx;
	return tdm_store_create_cfg(&sc, &n->store);
}

/* A witness keeps no data: status, control socket, dataplane and the engine (votes) only. */
static int open_witness(struct tdm_node *n)
{
	int k = 0;
	int rc = open_dataplane(n);

	if (!rc)
		rc = eng_election_init(n);
	n->agents[k++] = (struct tdm_dp_agent){ "dataplane", tdm_dp_agent_do_work, n->dp };
	n->agents[k++] = (struct tdm_dp_agent){ "engine", engine_agent, n };
	n->n_agents = k;
	return rc ? rc : eng_ctl_open(n);
}

static int open_parts(struct tdm_node *n)
{
	uint64_t from;
	int rc;

	rc = init_status(n);
	if (!rc && n->cfg.role == TDM_ROLE_WITNESS)
		return open_witness(n);
	if (!rc)
		rc = eng_open_log(n, 0);
	if (!rc)
		rc = create_store(n);
	if (!rc)
		rc = eng_rebuild_store(n);
	if (!rc)
		rc = open_dataplane(n);
	if (!rc && n->multi)
		rc = eng_multi_open(n);
	if (rc)
		return rc;
	/* A replica whose store is stale waits for a resync before applying anything. */
	from = n->snapshot_pos;
	if (!(n->up.flags & ENG_HELLO_NEED_RESYNC)) {
		rc = eng_start_apply(n, from);
		if (rc)
			return rc;
	}
	init_agents(n);
	rc = eng_election_init(n);
	if (!rc)
		rc = eng_ctl_open(n);
	return rc;
}

TDM_API int tdm_node_open(const struct tdm_config *cfg, struct tdm_node **out)
{
	struct tdm_node *n;
	int rc;

	tdm_err_clear();
	rc = tdm_config_check(cfg);
	if (rc)
		return rc;
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->cfg = *cfg;
	n->lock_fd = n->ctl_fd = -1;
	n->self_slot = -1;
	n->origin = cfg->node_id;
	n->multi = cfg->mode == TDM_MODE_MULTI_PRIMARY;
	n->apply_threads = cfg->threads >= 2;
	n->open_ns = tdm_dp_now_ns();
	n->sample_pos = calloc(ENG_TAIL_SAMPLES, sizeof(uint64_t));
	n->sample_ns = calloc(ENG_TAIL_SAMPLES, sizeof(uint64_t));
	rc = n->sample_pos && n->sample_ns ? lock_data_dir(n) : -ENOMEM;
	if (!rc)
		rc = open_parts(n);
	if (rc)
		goto err;
	eng_publish_positions(n, tdm_dp_now_ns());
	eng_publish_status(n, tdm_dp_now_ns());
	__atomic_store_n(&n->shm->magic, TDM_STATUS_MAGIC, __ATOMIC_RELEASE); /* open for readers */
	if (cfg->threads >= 1) {
		rc = -pthread_create(&n->thread, NULL, node_thread, n);
		if (rc) {
			TDM_ERR(rc, "cannot start the node's thread: %s", strerror(-rc));
			goto err;
		}
		n->thread_running = true;
	}
	*out = n;
	return 0;
err:
	rc = rc ? rc : -EINVAL;
	{
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", tdm_errmsg());
		tdm_node_close(n);
		TDM_ERR(rc, "%s", msg);
	}
	return rc;
}

TDM_API int tdm_node_attach(const char *data_dir, struct tdm_node **out)
{
	struct tdm_node *n = calloc(1, sizeof(*n));
	int rc;

	tdm_err_clear();
	if (!n)
		return -ENOMEM;
	n->attached = true;
	n->lock_fd = n->ctl_fd = -1;
	snprintf(n->cfg.data_dir, sizeof(n->cfg.data_dir), "%s", data_dir);
	rc = eng_status_map(data_dir, false, &n->shm);
	if (!rc && !eng_status_alive(n->shm))
		rc = TDM_ERR(TDM_ERR_CLOSED, "no node is running in %s (its last pid was %d); "
			     "start tandemd first", data_dir, n->shm->pid);
	if (!rc)
		rc = tdm_log_attach(n->shm->ring_name, &n->log);
	if (rc) {
		tdm_node_close(n);
		return rc;
	}
	n->cfg.node_id = n->shm->node_id;
	n->cfg.role = n->shm->role;
	n->origin = n->shm->node_id;
	*out = n;
	return 0;
}

TDM_API void tdm_node_close(struct tdm_node *n)
{
	if (!n)
		return;
	if (n->thread_running) {
		__atomic_store_n(&n->stop, true, __ATOMIC_RELEASE);
		pthread_join(n->thread, NULL);
	}
	if (!n->attached) {
		eng_ctl_close(n);
		if (n->el.role == TDM_ROLE_PRIMARY)
			eng_primary_fini(n);
		else if (n->log)
			eng_replica_fini(n);
		eng_multi_close(n);
		eng_stop_apply(n);
		tdm_dp_destroy(n->dp);
		tdm_store_destroy(n->store);
		if (n->shm)
			n->shm->closed = 1;
	}
	if (n->log)
		tdm_log_close(n->log);
	eng_status_unmap(n->shm);
	if (n->lock_fd >= 0)
		close(n->lock_fd);
	free(n->sample_pos);
	free(n->sample_ns);
	free(n);
}

TDM_API int tdm_node_do_work(struct tdm_node *n)
{
	if (n->attached || n->thread_running)
		return 0;
	return tdm_dp_run_once(n->agents, n->n_agents);
}

TDM_API int tdm_node_run(struct tdm_node *n, const bool *stop)
{
	if (n->attached)
		return -EINVAL;
	if (n->thread_running) {
		int rc = 0;

		while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE) &&
		       !(rc = __atomic_load_n(&n->thread_rc, __ATOMIC_ACQUIRE))) {
			struct timespec ts = { 0, 10000000 };
			nanosleep(&ts, NULL);
		}
		return rc < 0 ? rc : 0;
	}
	return run_agents(n, stop);
}
