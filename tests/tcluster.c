/*
 * The cluster fault harness (see tcluster.h): configurations, tandemd processes, signals,
 * waits and cleanup.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tcluster.h"

/* What a SIGTERM (meson's timeout) must clean up. */
static struct tc_cluster *running;

static void rm_tree(const char *path)
{
	struct stat st;
	struct dirent *d;
	char sub[PATH_MAX];
	DIR *dp;

	if (lstat(path, &st) != 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		unlink(path);
		return;
	}
	dp = opendir(path);
	while (dp && (d = readdir(dp)))
		if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..")) {
			snprintf(sub, sizeof(sub), "%s/%s", path, d->d_name);
			rm_tree(sub);
		}
	if (dp)
		closedir(dp);
	rmdir(path);
}

/* Remove the shared-memory rings of node i (its log's and any resync log's), named in its
 * status file, which outlives the node. */
static void rm_rings(struct tc_cluster *c, int i)
{
	struct tdm_status st;
	char path[400];
	struct dirent *d;
	DIR *dp;
	int rc = tdm_status_read(c->data[i], &st);

	if ((rc && rc != TDM_ERR_CLOSED) || !st.ring[0])
		return;
	dp = opendir("/dev/shm");
	while (dp && (d = readdir(dp)))
		if (strncmp(d->d_name, st.ring, strlen(st.ring)) == 0) {
			snprintf(path, sizeof(path), "/dev/shm/%s", d->d_name);
			unlink(path);
		}
	if (dp)
		closedir(dp);
}

static void kill_all(struct tc_cluster *c)
{
	for (int i = 0; i < c->n; i++)
		if (c->pid[i] > 0) {
			kill(c->pid[i], SIGKILL);
			kill(c->pid[i], SIGCONT);
			waitpid(c->pid[i], NULL, 0);
			c->pid[i] = 0;
		}
}

static void on_term(int sig)
{
	if (running)
		tc_destroy(running);
	signal(sig, SIG_DFL);
	raise(sig);
}

bool tc_is_witness(const struct tc_cluster *c, int i)
{
	return c->o.witness && i == c->n - 1;
}

/* With failover or multi-primary every node knows every other (a full mesh); without them,
 * over dpdk, the star of memif links: the primary knows every replica, a replica its primary. */
static bool knows(const struct tc_cluster *c, int i, int p)
{
	return p != i && (c->o.failover_ms || c->o.multi_primary || !c->dpdk || !i || !p);
}

/* [node] without role and primary in multi-primary (every node takes writes). */
static void write_node(const struct tc_cluster *c, int i, FILE *f)
{
	const struct tc_opts *o = &c->o;

	fprintf(f, "[node]\nid = %d\n", i + 1);
	if (!o->multi_primary)
		fprintf(f, "role = %s\n",
			tc_is_witness(c, i) ? "witness" : i ? "replica" : "primary");
	fprintf(f, "cluster_id = %" PRIu64 "\ndata_dir = %s\nthreads = 1\nidle = yield\n",
		o->cluster_id, c->data[i]);
	if (!o->multi_primary && i && !tc_is_witness(c, i))
		fprintf(f, "primary = 1\n");
}

static void write_replication(const struct tc_cluster *c, FILE *f)
{
	const struct tc_opts *o = &c->o;

	fprintf(f, "[replication]\nlevel = %s\nquorum = %d\ntimeout_ms = %" PRIu64 "\n"
		"on_timeout = %s\nfailover_timeout_ms = %" PRIu64 "\n", o->level, o->quorum,
		o->timeout_ms, o->on_timeout, o->multi_primary ? 0 : o->failover_ms);
	if (o->multi_primary)
		fprintf(f, "mode = multi-primary\n");
	if (o->write_mode)
		fprintf(f, "write_mode = %s\n", o->write_mode);
	if (o->max_clock_offset_ms)
		fprintf(f, "max_clock_offset_ms = %" PRIu64 "\n", o->max_clock_offset_ms);
}

static void write_config(struct tc_cluster *c, int i)
{
	const struct tc_opts *o = &c->o;
	FILE *f = fopen(c->cfg[i], "w");

	if (!f)
		return;
	write_node(c, i, f);
	fprintf(f, "[log]\nring_size = %" PRIu64 "\nsegment_size = %" PRIu64 "\n"
		"retention_cap = %" PRIu64 "\n", o->ring_size, o->segment_size, o->retention_cap);
	fprintf(f, "[dataplane]\nbackend = %s\nfallback = none\naddress = 127.0.0.1:%u\n",
		tdm_dp_backend_name(o->backend), c->port + i + 1);
	if (c->dpdk) {
		int port = 0;

		fprintf(f, "eal_args = --no-huge --no-pci -m 128 --no-shconf --no-telemetry "
			"--log-level=*:error --file-prefix=tc%d_%d", (int)getpid(), i + 1);
		/* One memif link per pair of nodes that know each other: the lower id serves. */
		for (int p = 0; p < c->n; p++)
			if (knows(c, i, p))
				fprintf(f, "\n  --vdev=net_memif%d,role=%s,socket=%s/m%d-%d.sock,"
					"socket-abstract=no", port++, i < p ? "server" : "client",
					c->dir, (i < p ? i : p) + 1, (i < p ? p : i) + 1);
		fprintf(f, "\n");
	}
	for (int p = 0, port = 0; p < c->n; p++) {
		if (!knows(c, i, p))
			continue;
		fprintf(f, "[peer.%d]\naddress = 127.0.0.1:%u\ndpdk_port = %d\n%s", p + 1,
			c->port + p + 1, port++, tc_is_witness(c, p) ? "witness = yes\n" : "");
	}
	write_replication(c, f);
	fprintf(f, "[apply]\nworkers = %d\n", o->workers);
	fclose(f);
}

int tc_create(struct tc_cluster *c, const char *tandemd, const struct tc_opts *o,
	      const char *tag)
{
	memset(c, 0, sizeof(*c));
	c->o = *o;
	c->tandemd = tandemd;
	c->dpdk = o->backend == TDM_DP_BACKEND_DPDK;
	c->n = 1 + o->replicas;
	if (!c->o.level)
		c->o.level = "local";
	if (!c->o.quorum)
		c->o.quorum = 1;
	if (!c->o.on_timeout)
		c->o.on_timeout = "fail";
	if (!c->o.timeout_ms)
		c->o.timeout_ms = 1000;
	if (!c->o.segment_size)
		c->o.segment_size = 1u << 20;
	if (!c->o.ring_size)
		c->o.ring_size = 4u << 20;
	if (!c->o.workers)
		c->o.workers = 2;
	if (!c->o.cluster_id)
		c->o.cluster_id = 1000 + (uint64_t)getpid();
	c->port = (uint16_t)(20000 + ((uint32_t)getpid() * 7 + (uint32_t)strlen(tag) * 131 +
				      (uint32_t)tag[0] * 17) % 40000);
	snprintf(c->dir, sizeof(c->dir), "/tmp/tc-%s-XXXXXX", tag);
	if (!mkdtemp(c->dir))
		return -1;
	for (int i = 0; i < c->n; i++) {
		snprintf(c->cfg[i], sizeof(c->cfg[i]), "%s/n%d.ini", c->dir, i + 1);
		snprintf(c->data[i], sizeof(c->data[i]), "%s/n%d", c->dir, i + 1);
		snprintf(c->err[i], sizeof(c->err[i]), "%s/n%d.err", c->dir, i + 1);
		write_config(c, i);
	}
	running = c;
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	return 0;
}

void tc_config_append(struct tc_cluster *c, int i, const char *text)
{
	FILE *f = fopen(c->cfg[i], "a");

	if (f) {
		fprintf(f, "%s\n", text);
		fclose(f);
	}
}

static void print_err(struct tc_cluster *c, int i);

void tc_print_logs(struct tc_cluster *c)
{
	for (int i = 0; i < c->n; i++)
		print_err(c, i);
}

static void print_err(struct tc_cluster *c, int i)
{
	char line[512];
	FILE *f = fopen(c->err[i], "r");

	fprintf(stderr, "---- stderr of node %d ----\n", i + 1);
	while (f && fgets(line, sizeof(line), f))
		fputs(line, stderr);
	if (f)
		fclose(f);
}

static void pause_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

const struct tdm_peer_status *tc_peer_row(const struct tdm_status *st, const struct tc_cluster *c,
					  int j)
{
	(void)c;
	for (int k = 0; k < st->n_peers && k < TDM_MAX_PEERS; k++)
		if (st->peers[k].node_id == j + 1)
			return &st->peers[k];
	return NULL;
}

/* Multi-primary: node i (status st) and every running peer stream to each other, both origins
 * of each link, as both ends say. */
static bool mp_streaming(struct tc_cluster *c, int i, const struct tdm_status *st)
{
	struct tdm_status ps;

	for (int p = 0; p < c->n; p++) {
		const struct tdm_peer_status *r = tc_peer_row(st, c, p), *back;

		if (p == i || c->pid[p] <= 0)
			continue;
		if (!r || r->state != TDM_PEER_STREAMING || r->origin_state != TDM_PEER_STREAMING)
			return false;
		if (tc_status(c, p, &ps) != 0)
			return false;
		back = tc_peer_row(&ps, c, i);
		if (!back || back->state != TDM_PEER_STREAMING ||
		    back->origin_state != TDM_PEER_STREAMING)
			return false;
	}
	return true;
}

/* Is node i (status st) started as tc_start should wait for? */
static bool started(struct tc_cluster *c, int i, const struct tdm_status *st, bool streaming)
{
	if (!streaming || tc_is_witness(c, i))
		return true;
	if (c->o.multi_primary)
		return mp_streaming(c, i, st);
	return st->role == TDM_ROLE_PRIMARY || st->replica_state == TDM_PEER_STREAMING;
}

int tc_start(struct tc_cluster *c, int i, bool wait_streaming)
{
	struct tdm_status st;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(c->err[i], O_WRONLY | O_CREAT | O_APPEND, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a killed test */
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		execl(c->tandemd, c->tandemd, "--config", c->cfg[i], (char *)NULL);
		_exit(127);
	}
	c->pid[i] = pid;
	for (int t = 0; t < TC_WAIT_S * 100; t++) {
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			c->pid[i] = 0;
			fprintf(stderr, "node %d exited during start (status %d)\n", i + 1, status);
			print_err(c, i);
			return -1;
		}
		if (tdm_status_read(c->data[i], &st) == 0 && st.pid == pid &&
		    started(c, i, &st, wait_streaming))
			return 0;
		pause_ms(10);
	}
	fprintf(stderr, "node %d did not start within %d s\n", i + 1, TC_WAIT_S);
	for (int k = 0; k < c->n; k++) {
		if (c->o.multi_primary && c->pid[k] > 0)
			tc_print_status(c, k);
		print_err(c, k);
	}
	return -1;
}

int tc_start_all(struct tc_cluster *c)
{
	for (int i = 0; i < c->n; i++)
		if (tc_start(c, i, true))
			return -1;
	return 0;
}

/* Is every thread of pid stopped (state T or t in /proc/PID/task/TID/stat)? */
static bool all_stopped(pid_t pid)
{
	char path[300], buf[512];
	struct dirent *d;
	bool all = true;
	DIR *dp;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dp = opendir(path);
	if (!dp)
		return true; /* gone */
	while (all && (d = readdir(dp))) {
		char *rp = NULL;
		FILE *f;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, d->d_name);
		f = fopen(path, "r");
		if (f) {
			rp = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
			fclose(f);
		}
		all = !rp || rp[1] == 0 || rp[2] == 'T' || rp[2] == 't';
	}
	closedir(dp);
	return all;
}

void tc_signal(struct tc_cluster *c, int i, int sig)
{
	if (c->pid[i] <= 0)
		return;
	kill(c->pid[i], sig);
	if (sig == SIGSTOP) {
		/* The signal is delivered asynchronously: wait until every thread of the process
		 * is stopped, so no frame it handles afterwards makes "it stopped acking" false. */
		for (int t = 0; t < TC_WAIT_S * 1000 && !all_stopped(c->pid[i]); t++)
			pause_ms(1);
	}
	if (sig == SIGKILL || sig == SIGTERM || sig == SIGINT) {
		waitpid(c->pid[i], NULL, 0);
		c->pid[i] = 0;
	}
}

int tc_status(struct tc_cluster *c, int i, struct tdm_status *st)
{
	return tdm_status_read(c->data[i], st);
}

int tc_primary(struct tc_cluster *c, uint32_t *epoch)
{
	struct tdm_status st;
	int best = -1;
	uint32_t e = 0;

	for (int i = 0; i < c->n; i++)
		if (c->pid[i] > 0 && tc_status(c, i, &st) == 0 && st.role == TDM_ROLE_PRIMARY &&
		    !st.fenced && (best < 0 || st.epoch > e)) {
			best = i;
			e = st.epoch;
		}
	if (epoch)
		*epoch = e;
	return best;
}

int tc_wait_primary(struct tc_cluster *c, uint32_t above)
{
	for (int t = 0; t < TC_WAIT_S * 100; t++) {
		uint32_t e;
		int p = tc_primary(c, &e);

		if (p >= 0 && e > above)
			return p;
		pause_ms(10);
	}
	fprintf(stderr, "no primary above epoch %u within %d s\n", above, TC_WAIT_S);
	tc_print_logs(c);
	return -1;
}

int tc_cut(struct tc_cluster *c, int i, int j, bool cut)
{
	int rc = tdm_ctl_cut(c->data[i], j < 0 ? 0 : (uint16_t)(j + 1), cut);

	if (rc)
		fprintf(stderr, "cut on node %d: %s\n", i + 1, tdm_errmsg());
	return rc;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void tc_print_status(struct tc_cluster *c, int i)
{
	struct tdm_status st;
	int rc = tc_status(c, i, &st);

	if (rc && rc != TDM_ERR_CLOSED) {
		fprintf(stderr, "node %d: no status (%d)\n", i + 1, rc);
		return;
	}
	fprintf(stderr, "node %d%s: mode %u writable %u tail %" PRIu64 " durable %" PRIu64
		" applied %" PRIu64 " hlc %" PRIx64 " clock_refused %" PRIu64 " stale %" PRIu64
		" overwrites %" PRIu64 " tombstones %" PRIu64 " purged %" PRIu64 " purge_hlc %"
		PRIx64 " resyncs %" PRIu64 "\n", i + 1, rc ? " (not running)" : "", st.mode,
		st.writable, st.tail, st.durable, st.applied, st.hlc, st.clock_refused,
		st.conflicts_stale, st.conflicts_overwrites, st.tombstones, st.tombstones_purged,
		st.purge_hlc, st.resyncs);
	for (int k = 0; k < st.n_peers && k < TDM_MAX_PEERS; k++) {
		const struct tdm_peer_status *r = &st.peers[k];

		fprintf(stderr, "  peer %u link %u: ours %s sent %" PRIu64 " recv %" PRIu64
			" durable %" PRIu64 " applied %" PRIu64 "; its origin %s sent %" PRIu64
			" recv %" PRIu64 " durable %" PRIu64 " applied %" PRIu64 " lag %" PRIu64
			" ns offset %" PRId64 " ns clock_refused %" PRIu64 " lost %" PRIu64 " won %"
			PRIu64 "\n", r->node_id, r->link_up,
			tdm_peer_state_name((enum tdm_peer_state)r->state), r->sent, r->received,
			r->durable, r->applied,
			tdm_peer_state_name((enum tdm_peer_state)r->origin_state), r->origin_sent,
			r->origin_received, r->origin_durable, r->origin_applied, r->origin_lag_ns,
			r->clock_offset_ns, r->clock_refused, r->conflicts_lost, r->conflicts_won);
	}
}

/* Node i (status st[i]) has every origin applied and durable up to its tail in `tails`. */
static bool mp_quiet(struct tc_cluster *c, int i, const struct tdm_status *st,
		     const uint64_t *tails)
{
	const struct tdm_status *me = &st[i];

	if (me->applied < tails[i] || me->durable < tails[i])
		return false;
	for (int p = 0; p < c->n; p++) {
		const struct tdm_peer_status *r = tc_peer_row(me, c, p);

		if (p == i || c->pid[p] <= 0)
			continue;
		if (!r || r->origin_applied < tails[p] || r->origin_durable < tails[p] ||
		    r->applied < tails[i])
			return false;
	}
	return true;
}

int tc_wait_quiescent(struct tc_cluster *c, uint64_t *tails)
{
	struct tdm_status st[TC_MAX_NODES];
	uint64_t t[TC_MAX_NODES] = { 0 };
	/* The status file is refreshed every 100 ms: use statuses published after this call
	 * began (so after the caller's last write). */
	uint64_t since = realtime_ns();
	bool have = false;

	for (int k = 0; k < TC_WAIT_S * 100; k++) {
		bool all = true;

		for (int i = 0; all && i < c->n; i++)
			all = c->pid[i] <= 0 ||
			      (tc_status(c, i, &st[i]) == 0 && st[i].updated_ns > since);
		for (int i = 0; all && !have && i < c->n; i++)
			t[i] = c->pid[i] > 0 ? st[i].tail : 0;
		have = have || all;
		for (int i = 0; all && i < c->n; i++)
			all = c->pid[i] <= 0 || mp_quiet(c, i, st, t);
		if (all) {
			if (tails)
				memcpy(tails, t, sizeof(t[0]) * (size_t)c->n);
			return 0;
		}
		pause_ms(10);
	}
	fprintf(stderr, "the nodes did not become quiescent within %d s (tails %" PRIu64 " %" PRIu64
		" %" PRIu64 "...)\n", TC_WAIT_S, t[0], t[1], t[2]);
	for (int i = 0; i < c->n; i++)
		tc_print_status(c, i);
	tc_print_logs(c);
	return -1;
}

int tc_wait_caught_up(struct tc_cluster *c)
{
	struct tdm_status p, r;
	uint64_t since;

	if (c->o.multi_primary)
		return tc_wait_quiescent(c, NULL);
	/* The status file is refreshed every 100 ms: use a tail published after this call began
	 * (so after the caller's last write). */
	since = realtime_ns();
	for (int t = 0; t < TC_WAIT_S * 100; t++) {
		int pi = tc_primary(c, NULL);
		bool all = pi >= 0 && tc_status(c, pi, &p) == 0 && p.updated_ns > since;

		for (int i = 0; all && i < c->n; i++) {
			uint64_t d, applied, k;

			if (c->pid[i] <= 0 || tc_is_witness(c, i))
				continue;
			/* the live applied position, not the status file's */
			all = tc_status(c, i, &r) == 0 &&
			      (i == pi || r.replica_state == TDM_PEER_STREAMING) &&
			      tdm_ctl_digest(c->data[i], &d, &applied, &k) == 0 &&
			      applied >= p.tail;
		}
		if (all && tc_status(c, pi, &r) == 0 && r.tail == p.tail)
			return 0;
		pause_ms(10);
	}
	fprintf(stderr, "replicas did not catch up within %d s\n", TC_WAIT_S);
	tc_print_logs(c);
	return -1;
}

int tc_digest(struct tc_cluster *c, int i, uint64_t *digest, uint64_t *applied, uint64_t *keys)
{
	return tdm_ctl_digest(c->data[i], digest, applied, keys);
}

bool tc_log_has(struct tc_cluster *c, int i, const char *text)
{
	char line[1024];
	bool found = false;
	FILE *f = fopen(c->err[i], "r");

	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, text) != NULL;
	if (f)
		fclose(f);
	return found;
}

void tc_destroy(struct tc_cluster *c)
{
	char path[300];

	kill_all(c);
	for (int i = 0; i < c->n; i++)
		rm_rings(c, i);
	if (getenv("TC_KEEP")) {
		fprintf(stderr, "TC_KEEP: leaving %s\n", c->dir);
	} else {
		rm_tree(c->dir);
	}
	for (int i = 0; i < c->n; i++) {
		snprintf(path, sizeof(path), "/var/run/dpdk/tc%d_%d", (int)getpid(), i + 1);
		rm_tree(path);
	}
	if (running == c)
		running = NULL;
}

int tc_args(int argc, char **argv, const char *prog, enum tdm_dp_backend *backend,
	    const char **tandemd)
{
	if (argc < 3 || tdm_dp_backend_parse(argv[1], backend) != 0) {
		fprintf(stderr, "usage: %s udp|dpdk TANDEMD [TEST-NAME-FILTER]\n", prog);
		return 2;
	}
	*tandemd = argv[2];
#ifndef TDM_HAVE_DPDK
	if (*backend == TDM_DP_BACKEND_DPDK) {
		fprintf(stderr, "this build has no DPDK: skipped\n");
		return 77;
	}
#endif
	return 0;
}
