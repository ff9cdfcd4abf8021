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

/* With failover every node knows every other (a full mesh); without it, over dpdk, the star of
 * memif links: the primary knows every replica, a replica its primary. */
static bool knows(const struct tc_cluster *c, int i, int p)
{
	return p != i && (c->o.failover_ms || !c->dpdk || !i || !p);
}

static void write_config(struct tc_cluster *c, int i)
{
	const struct tc_opts *o = &c->o;
	FILE *f = fopen(c->cfg[i], "w");

	if (!f)
		return;
	fprintf(f, "[node]\nid = %d\nrole = %s\ncluster_id = %" PRIu64 "\ndata_dir = %s\n"
		"threads = 1\nidle = yield\n", i + 1,
		tc_is_witness(c, i) ? "witness" : i ? "replica" : "primary", o->cluster_id,
		c->data[i]);
	if (i && !tc_is_witness(c, i))
		fprintf(f, "primary = 1\n");
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
	fprintf(f, "[replication]\nlevel = %s\nquorum = %d\ntimeout_ms = %" PRIu64 "\n"
		"on_timeout = %s\nfailover_timeout_ms = %" PRIu64 "\n[apply]\nworkers = %d\n",
		o->level, o->quorum, o->timeout_ms, o->on_timeout, o->failover_ms, o->workers);
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
		    (!wait_streaming || st.role == TDM_ROLE_PRIMARY || tc_is_witness(c, i) ||
		     st.replica_state == TDM_PEER_STREAMING))
			return 0;
		pause_ms(10);
	}
	fprintf(stderr, "node %d did not start within %d s\n", i + 1, TC_WAIT_S);
	for (int k = 0; k < c->n; k++)
		print_err(c, k);
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

int tc_wait_caught_up(struct tc_cluster *c)
{
	struct tdm_status p, r;
	struct timespec ts;
	uint64_t since;

	/* The status file is refreshed every 100 ms: use a tail published after this call began
	 * (so after the caller's last write). */
	clock_gettime(CLOCK_REALTIME, &ts);
	since = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
