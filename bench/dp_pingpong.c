/*
 * dp_pingpong: round-trip latency of one small frame between two processes on this machine, to
 * compare tandem's transports with raw DPDK.
 *
 *   dp_pingpong [--mode bare-memif|dpdk|udp] [--count N] [--warmup N] [--timeout S] [--json]
 *
 * Modes:
 *   bare-memif  raw DPDK over memif, a 64-byte Ethernet frame, no tandem code (the baseline)
 *   dpdk        tdm_dp_transport, dpdk backend over memif: a 64-byte UDP payload (a 48-byte
 *               tandem header + 16 bytes) in Ethernet/IPv4/UDP built by the backend
 *   udp         tdm_dp_transport, udp backend (kernel sockets) on 127.0.0.1, same payload
 *
 * The parent picks unique names (memif socket, EAL file prefixes, UDP ports from its pid), forks
 * the ponger (memif server, core 0), waits until it is ready, then forks the pinger (core 1).
 * Both busy-poll. The pinger first handshakes (probes every 10 ms until one comes back, so a
 * link still coming up loses nothing), runs the warm-up, then times count round trips, one frame
 * in flight, and writes p50/p99/p999/mean to the parent through a pipe. The parent prints them,
 * stops the ponger with SIGTERM, and reaps both; every wait is bounded, children die with the
 * parent (PR_SET_PDEATHSIG), and the socket file is removed on every exit path.
 *
 * Exit status: 0 measured; 1 a side failed (message on stderr); 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "dp_pingpong.h"
#include "tdm_dp.h"

#define PP_PING_NODE 1
#define PP_PONG_NODE 2
#define PP_READY_MS 60000        /* EAL init loads every PMD plugin: give it time */
#define PP_LINK_NS 10000000000ull /* link up and handshake */
/* A round trip taking longer is lost: fail. Generous: on a busy 2-core VM a pinned busy-polling
 * process was seen to wait 3.6 s for its core. */
#define PP_RTT_LIMIT_NS 10000000000ull
#define PP_PROBE_NS 10000000ull
#define PP_REAP_MS 5000

/* What the pinger sends to the parent. */
struct pp_result {
	int rc;                  /* 0 measured */
	uint64_t n;
	double p50_us, p99_us, p999_us, mean_us, min_us, max_us;
	char err[512];
};

static volatile sig_atomic_t pp_stop;    /* ponger: SIGTERM */
static pid_t pp_children[2];             /* parent: for its signal handler */
static char pp_sock_path[108];
static char pp_run_dirs[2][160];         /* the EALs' runtime directories (empty: rmdir) */

/* ---- Names and EAL arguments ---- */

void pp_eal_args(const struct pp_opts *o, enum pp_role role, char *out, size_t cap)
{
	int core = o->ncpu >= 2 ? (int)role : 0;

	snprintf(out, cap,
		 "--no-huge --no-pci -m 256 --no-shconf --no-telemetry --log-level=warning "
		 "--file-prefix=%s%c -l %d --vdev=net_memif0,role=%s,socket=%s", o->prefix,
		 role == PP_PONG ? 'b' : 'a', core, role == PP_PONG ? "server" : "client",
		 o->sock);
}

/* ---- The tandem transport modes (dpdk, udp) ---- */

struct pp_tdm {
	struct pp_endpoint ep;
	struct tdm_dp_transport *t;
	uint16_t peer;
};

static int pp_tdm_send(struct pp_endpoint *e, uint64_t seq)
{
	struct pp_tdm *p = (struct pp_tdm *)e;
	struct tdm_dp_buf *b = tdm_dp_buf_alloc(p->t);

	if (!b)
		return -ENOBUFS;
	memset(b->data, 0, PP_FRAME_LEN);
	memcpy(b->data, &seq, sizeof(seq));
	b->len = PP_FRAME_LEN;
	b->peer = p->peer;
	return tdm_dp_tx_burst(p->t, &b, 1) == 1 ? 0 : -EAGAIN;
}

static int pp_tdm_recv(struct pp_endpoint *e, uint64_t *seq)
{
	struct pp_tdm *p = (struct pp_tdm *)e;
	struct tdm_dp_buf *bufs[TDM_DP_BURST];
	int n = tdm_dp_rx_burst(p->t, bufs, TDM_DP_BURST), got = 0;

	for (int i = 0; i < n; i++) {
		if (!got && bufs[i]->len >= sizeof(*seq)) {
			memcpy(seq, bufs[i]->data, sizeof(*seq));
			got = 1;
		}
		tdm_dp_buf_free(p->t, bufs[i]);
	}
	return got;
}

/* Like a tandem STATUS: a new frame per received one, not the received buffer sent back. */
static int pp_tdm_echo(struct pp_endpoint *e)
{
	struct pp_tdm *p = (struct pp_tdm *)e;
	struct tdm_dp_buf *in[TDM_DP_BURST], *out[TDM_DP_BURST];
	int n = tdm_dp_rx_burst(p->t, in, TDM_DP_BURST), k = 0;

	for (int i = 0; i < n; i++) {
		struct tdm_dp_buf *b = tdm_dp_buf_alloc(p->t);

		if (b && in[i]->len <= b->cap) {
			memcpy(b->data, in[i]->data, in[i]->len);
			b->len = in[i]->len;
			b->peer = p->peer;
			out[k++] = b;
		} else if (b) {
			tdm_dp_buf_free(p->t, b);
		}
		tdm_dp_buf_free(p->t, in[i]);
	}
	return k ? tdm_dp_tx_burst(p->t, out, k) : 0;
}

static bool pp_tdm_link_up(struct pp_endpoint *e)
{
	struct pp_tdm *p = (struct pp_tdm *)e;

	return tdm_dp_link_up(p->t, p->peer);
}

static void pp_tdm_close(struct pp_endpoint *e)
{
	struct pp_tdm *p = (struct pp_tdm *)e;

	tdm_dp_transport_destroy(p->t);
	free(p);
}

static const struct pp_endpoint_ops pp_tdm_ops = {
	.send = pp_tdm_send,
	.recv = pp_tdm_recv,
	.echo = pp_tdm_echo,
	.link_up = pp_tdm_link_up,
	.close = pp_tdm_close,
};

static void pp_tdm_config(const struct pp_opts *o, enum pp_role role,
			  struct tdm_dp_transport_config *cfg, char *eal, size_t cap)
{
	bool dpdk = strcmp(o->mode, "dpdk") == 0;
	uint16_t me = role == PP_PONG ? PP_PONG_NODE : PP_PING_NODE;
	uint16_t other = role == PP_PONG ? PP_PING_NODE : PP_PONG_NODE;

	tdm_dp_transport_config_defaults(cfg);
	cfg->backend = dpdk ? TDM_DP_BACKEND_DPDK : TDM_DP_BACKEND_UDP;
	cfg->node_id = me;
	/* udp: both on 127.0.0.1; dpdk: 10.99.0.<node>, checked by the backend on rx */
	cfg->local_ip = dpdk ? htonl(0x0a630000u | me) : htonl(0x7f000001u);
	cfg->local_port = (uint16_t)(o->udp_port + (me - 1));
	cfg->n_peers = 1;
	cfg->peers[0].node_id = other;
	cfg->peers[0].ip = dpdk ? htonl(0x0a630000u | other) : htonl(0x7f000001u);
	cfg->peers[0].port = (uint16_t)(o->udp_port + (other - 1));
	if (dpdk) {
		pp_eal_args(o, role, eal, cap);
		cfg->eal_args = eal;
		cfg->mbufs = 4095;
	}
}

static int pp_tdm_open(const struct pp_opts *o, enum pp_role role, struct pp_endpoint **out,
		       char *err, size_t cap)
{
	static char eal[1024];
	struct tdm_dp_transport_config cfg;
	struct pp_tdm *p = calloc(1, sizeof(*p));
	int rc;

	if (!p) {
		snprintf(err, cap, "out of memory");
		return -ENOMEM;
	}
	pp_tdm_config(o, role, &cfg, eal, sizeof(eal));
	rc = tdm_dp_transport_create(&cfg, &p->t);
	if (rc != 0) {
		snprintf(err, cap, "%s transport: %s: %s", o->mode, tdm_strerror(rc), tdm_errmsg());
		free(p);
		return rc;
	}
	p->ep.ops = &pp_tdm_ops;
	p->peer = cfg.peers[0].node_id;
	*out = &p->ep;
	return 0;
}

/* ---- One side ---- */

static int pp_open(const struct pp_opts *o, enum pp_role role, struct pp_endpoint **out,
		   char *err, size_t cap)
{
	if (strcmp(o->mode, "bare-memif") == 0) {
#ifdef TDM_HAVE_DPDK
		return pp_bare_open(o, role, out, err, cap);
#else
		snprintf(err, cap, "bare-memif needs DPDK: rebuild with libdpdk-dev installed");
		return -ENOTSUP;
#endif
	}
	return pp_tdm_open(o, role, out, err, cap);
}

/* Pin this process (udp mode; the EAL pins the dpdk modes with -l). */
static void pp_pin(const struct pp_opts *o, enum pp_role role)
{
	cpu_set_t set;

	if (o->ncpu < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET((int)role, &set);
	(void)sched_setaffinity(0, sizeof(set), &set);
}

/* Wait for frame seq; stale ones (late echoes of probes) are skipped. @return 0 or -ETIMEDOUT. */
static int pp_await(struct pp_endpoint *e, uint64_t want, uint64_t t0, uint64_t limit_ns)
{
	uint64_t seq;
	unsigned spins = 0;

	for (;;) {
		if (e->ops->recv(e, &seq) == 1 && seq == want)
			return 0;
		if ((++spins & 1023u) == 0 && tdm_bench_now_ns() - t0 > limit_ns)
			return -ETIMEDOUT;
	}
}

/* Probe until the first echo comes back: the link is up both ways. */
static int pp_handshake(struct pp_endpoint *e, char *err, size_t cap)
{
	uint64_t start = tdm_bench_now_ns();
	const uint64_t probe = UINT64_MAX;

	while (!e->ops->link_up(e)) {
		if (tdm_bench_now_ns() - start > PP_LINK_NS) {
			snprintf(err, cap, "link to the ponger not up after %llu s",
				 (unsigned long long)(PP_LINK_NS / 1000000000u));
			return -ETIMEDOUT;
		}
		tdm_bench_cpu_relax();
	}
	for (;;) {
		uint64_t t0 = tdm_bench_now_ns();

		if (e->ops->send(e, probe) == 0 && pp_await(e, probe, t0, PP_PROBE_NS) == 0)
			return 0;
		if (t0 - start > PP_LINK_NS) {
			snprintf(err, cap, "no echo from the ponger within %llu s",
				 (unsigned long long)(PP_LINK_NS / 1000000000u));
			return -ETIMEDOUT;
		}
	}
}

static void pp_summarise(uint64_t *rtt, uint64_t n, struct pp_result *r)
{
	double sum = 0;

	tdm_bench_sort_u64(rtt, n);
	for (uint64_t i = 0; i < n; i++)
		sum += (double)rtt[i];
	r->n = n;
	r->p50_us = (double)tdm_bench_quantile(rtt, n, 0.50) / 1e3;
	r->p99_us = (double)tdm_bench_quantile(rtt, n, 0.99) / 1e3;
	r->p999_us = (double)tdm_bench_quantile(rtt, n, 0.999) / 1e3;
	r->mean_us = n ? sum / (double)n / 1e3 : 0;
	r->min_us = n ? (double)rtt[0] / 1e3 : 0;
	r->max_us = n ? (double)rtt[n - 1] / 1e3 : 0;
}

/* Warm-up, then count timed round trips, one frame in flight. */
static int pp_measure(const struct pp_opts *o, struct pp_endpoint *e, struct pp_result *r)
{
	uint64_t total = o->warmup + o->count;
	uint64_t *rtt = malloc((o->count ? o->count : 1) * sizeof(*rtt));

	if (!rtt) {
		snprintf(r->err, sizeof(r->err), "out of memory for %llu samples",
			 (unsigned long long)o->count);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < total; i++) {
		uint64_t t0 = tdm_bench_now_ns();

		if (e->ops->send(e, i) != 0 || pp_await(e, i, t0, PP_RTT_LIMIT_NS) != 0) {
			snprintf(r->err, sizeof(r->err), "round trip %llu: frame not sent or no "
				 "echo within %llu s", (unsigned long long)i,
				 (unsigned long long)(PP_RTT_LIMIT_NS / 1000000000u));
			free(rtt);
			return -ETIMEDOUT;
		}
		if (i >= o->warmup)
			rtt[i - o->warmup] = tdm_bench_now_ns() - t0;
	}
	pp_summarise(rtt, o->count, r);
	free(rtt);
	return 0;
}

static void pp_on_term(int sig)
{
	(void)sig;
	pp_stop = 1;
}

static int pp_child_pong(const struct pp_opts *o, int ready_fd)
{
	struct pp_endpoint *e;
	char err[512];
	char one = 1;

	signal(SIGTERM, pp_on_term);
	pp_pin(o, PP_PONG);
	if (pp_open(o, PP_PONG, &e, err, sizeof(err)) != 0) {
		fprintf(stderr, "dp_pingpong: ponger: %s\n", err);
		return 1;
	}
	if (write(ready_fd, &one, 1) != 1)
		pp_stop = 1;
	while (!pp_stop)
		e->ops->echo(e);
	e->ops->close(e);
	return 0;
}

static int pp_child_ping(const struct pp_opts *o, int result_fd)
{
	struct pp_endpoint *e = NULL;
	struct pp_result r;

	memset(&r, 0, sizeof(r));
	pp_pin(o, PP_PING);
	r.rc = pp_open(o, PP_PING, &e, r.err, sizeof(r.err));
	if (r.rc == 0)
		r.rc = pp_handshake(e, r.err, sizeof(r.err));
	if (r.rc == 0)
		r.rc = pp_measure(o, e, &r);
	if (write(result_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		r.rc = -EIO;
	if (e)
		e->ops->close(e);
	return r.rc == 0 ? 0 : 1;
}

/* ---- The parent ---- */

/* fork; the child runs fn and exits, and dies with the parent. @return pid or -1. */
static pid_t pp_spawn(const struct pp_opts *o, int (*fn)(const struct pp_opts *, int), int fd,
		      int close_fd)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	close(close_fd);
	_exit(fn(o, fd));
}

/* Read exactly len bytes from fd within ms. @return 0, -ETIMEDOUT, or -EPIPE (writer gone). */
static int pp_read_within(int fd, void *buf, size_t len, int ms)
{
	uint64_t end = tdm_bench_now_ns() + (uint64_t)ms * 1000000u;
	size_t got = 0;

	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)(end - tdm_bench_now_ns()) / 1000000;
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -EPIPE : -errno;
		got += (size_t)n;
	}
	return 0;
}

/* Stop a child: wait up to ms for it to exit (after sig if sig != 0), then SIGKILL. */
static int pp_reap(pid_t pid, int sig, int ms)
{
	int status = 0;

	if (pid <= 0)
		return 0;
	if (sig)
		kill(pid, sig);
	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return status;
}

/* Names this run made: the memif socket (memif removes it unless a side was killed) and the
 * EALs' runtime directories (each side removes its own unless killed). Async-signal-safe. */
static void pp_remove_names(void)
{
	unlink(pp_sock_path);
	rmdir(pp_run_dirs[0]);
	rmdir(pp_run_dirs[1]);
}

/* Where the EAL puts its runtime directory for a file prefix (eal_create_runtime_dir). */
static void pp_names(struct pp_opts *o)
{
	const char *base = getuid() == 0 ? "/var/run" : getenv("XDG_RUNTIME_DIR");
	int pid = (int)getpid();

	snprintf(o->sock, sizeof(o->sock), "/tmp/tdm-pp-%d.sock", pid);
	snprintf(o->prefix, sizeof(o->prefix), "tdmpp%d", pid);
	o->udp_port = (uint16_t)(20000 + (pid % 20000) * 2);
	snprintf(pp_sock_path, sizeof(pp_sock_path), "%s", o->sock);
	for (int i = 0; i < 2; i++)
		snprintf(pp_run_dirs[i], sizeof(pp_run_dirs[i]), "%s/dpdk/%s%c",
			 base ? base : "/tmp", o->prefix, i == PP_PONG ? 'b' : 'a');
}

static void pp_on_parent_signal(int sig)
{
	for (int i = 0; i < 2; i++)
		if (pp_children[i] > 0)
			kill(pp_children[i], SIGKILL);
	pp_remove_names();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int pp_run(const struct pp_opts *o, int timeout_s, struct pp_result *r)
{
	int ready[2], result[2] = { -1, -1 }, rc;
	char byte;

	if (pipe(ready) != 0) {
		snprintf(r->err, sizeof(r->err), "pipe: %s", strerror(errno));
		return -errno;
	}
	pp_children[PP_PONG] = pp_spawn(o, pp_child_pong, ready[1], ready[0]);
	close(ready[1]);
	rc = pp_children[PP_PONG] < 0 ? -errno : pp_read_within(ready[0], &byte, 1, PP_READY_MS);
	if (rc != 0) {
		snprintf(r->err, sizeof(r->err), "ponger not ready: %s", rc == -EPIPE ?
			 "it failed (its message is above)" : strerror(-rc));
	} else if (pipe(result) != 0) { /* made after the ponger's fork: it holds no write end */
		rc = -errno;
		snprintf(r->err, sizeof(r->err), "pipe: %s", strerror(errno));
	} else {
		pp_children[PP_PING] = pp_spawn(o, pp_child_ping, result[1], result[0]);
		close(result[1]);
		rc = pp_children[PP_PING] < 0 ? -errno :
			pp_read_within(result[0], r, sizeof(*r), timeout_s * 1000);
		if (rc != 0)
			snprintf(r->err, sizeof(r->err), "no result from the pinger: %s",
				 rc == -EPIPE ? "it failed (its message is above)" : strerror(-rc));
		else
			rc = r->rc;
	}
	pp_reap(pp_children[PP_PING], rc == 0 ? 0 : SIGKILL, PP_REAP_MS);
	pp_reap(pp_children[PP_PONG], SIGTERM, PP_REAP_MS);
	pp_children[0] = pp_children[1] = 0;
	close(ready[0]);
	if (result[0] >= 0)
		close(result[0]);
	return rc;
}

static void pp_print(const struct pp_opts *o, const struct pp_result *r)
{
	if (o->json) {
		printf("{\"mode\": \"%s\", \"count\": %llu, \"warmup\": %llu, \"payload\": %u, "
		       "\"p50_us\": %.3f, \"p99_us\": %.3f, \"p999_us\": %.3f, \"mean_us\": %.3f, "
		       "\"min_us\": %.3f, \"max_us\": %.3f}\n", o->mode,
		       (unsigned long long)r->n, (unsigned long long)o->warmup, PP_FRAME_LEN,
		       r->p50_us, r->p99_us, r->p999_us, r->mean_us, r->min_us, r->max_us);
		return;
	}
	printf("%-10s  %llu round trips of %u bytes: p50 %.2f  p99 %.2f  p999 %.2f  mean %.2f  "
	       "min %.2f  max %.1f us\n", o->mode, (unsigned long long)r->n, PP_FRAME_LEN,
	       r->p50_us, r->p99_us, r->p999_us, r->mean_us, r->min_us, r->max_us);
}

static void pp_usage(FILE *f)
{
	fprintf(f, "usage: dp_pingpong [--mode bare-memif|dpdk|udp] [--count N] [--warmup N] "
		"[--timeout SECONDS] [--json]\n"
		"  round-trip latency of a 64-byte frame between two busy-polling processes\n");
}

static int pp_parse(int argc, char **argv, struct pp_opts *o, int *timeout_s)
{
	static const struct option longs[] = {
		{ "mode", required_argument, NULL, 'm' }, { "count", required_argument, NULL, 'n' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "timeout", required_argument, NULL, 't' }, { "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "m:n:w:t:jh", longs, NULL)) != -1) {
		switch (c) {
		case 'm': o->mode = optarg; break;
		case 'n': o->count = strtoull(optarg, NULL, 0); break;
		case 'w': o->warmup = strtoull(optarg, NULL, 0); break;
		case 't': *timeout_s = atoi(optarg); break;
		case 'j': o->json = true; break;
		case 'h': pp_usage(stdout); exit(0);
		default: return -EINVAL;
		}
	}
	if (optind != argc || o->count == 0 || *timeout_s <= 0 ||
	    (strcmp(o->mode, "bare-memif") != 0 && strcmp(o->mode, "dpdk") != 0 &&
	     strcmp(o->mode, "udp") != 0))
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct pp_opts o = { .mode = "bare-memif", .count = 100000, .warmup = 10000 };
	struct pp_result r;
	int timeout_s = 120, rc;

	if (pp_parse(argc, argv, &o, &timeout_s) != 0) {
		pp_usage(stderr);
		return 2;
	}
	o.ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	pp_names(&o);
	signal(SIGINT, pp_on_parent_signal);
	signal(SIGTERM, pp_on_parent_signal);
	memset(&r, 0, sizeof(r));
	rc = pp_run(&o, timeout_s, &r);
	pp_remove_names();
	if (rc != 0) {
		fprintf(stderr, "dp_pingpong %s: %s\n", o.mode, r.err[0] ? r.err : strerror(-rc));
		return 1;
	}
	pp_print(&o, &r);
	return 0;
}
