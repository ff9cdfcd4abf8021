/*
 * dp_stream_bench: streaming throughput of the dataplane between two processes, records of a
 * 16-byte key and a 64-byte value (120 bytes in the log), over the dpdk (memif) or udp backend.
 *
 * The sender fills its log first (on /dev/shm: this measures the dataplane, not the disk), then
 * streams it with a tdm_dp_sender; the receiver counts records handed to its consumer (every
 * record's CRC is checked on the way). The rate is taken on the receiver from the first record
 * to the last. Both sides busy-poll, one process per core.
 *
 * Usage: dp_stream_bench [--mode dpdk|udp] [--records N] [--json]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tdm_dp.h"
#include "tdm_log.h"

#define SENDER 1
#define RECEIVER 2
#define DEADLINE_NS (120ull * 1000000000u)

struct opts {
	enum tdm_dp_backend backend;
	uint64_t records;
	int json;
	char sock[108];
	char shm[64];
	char dir[128];
	uint16_t port;
};

struct result {
	uint64_t records;
	uint64_t ns;             /* receiver: first to last record */
	uint64_t retransmit_bytes, rewinds, timeouts, frames;
	char err[256];
};

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set); /* best effort */
}

static void config(const struct opts *o, uint16_t me, struct tdm_dp_config *c, char *eal,
		   size_t cap)
{
	uint16_t other = me == SENDER ? RECEIVER : SENDER;

	tdm_dp_config_defaults(c);
	c->transport.backend = o->backend;
	c->transport.node_id = me;
	c->transport.local_ip = htonl(0x7f000001u);
	c->transport.local_port = (uint16_t)(o->port + me);
	c->transport.n_peers = 1;
	c->transport.peers[0].node_id = other;
	c->transport.peers[0].ip = htonl(0x7f000001u);
	c->transport.peers[0].port = (uint16_t)(o->port + other);
	snprintf(eal, cap, "--no-huge --no-pci -m 512 --no-shconf --no-telemetry "
		 "--log-level=*:error -l %d --file-prefix=tdsb%d%u --vdev=net_memif0,role=%s,"
		 "socket=%s,socket-abstract=no", me - 1, (int)getppid(), me,
		 me == SENDER ? "server" : "client", o->sock);
	c->transport.eal_args = eal;
}

static int fill_log(const struct opts *o, struct tdm_log **out)
{
	struct tdm_log_config lc;
	uint8_t key[16] = { 0 }, val[64];
	struct tdm_log_entry e = {
		.type = TDM_LOG_REC_PUT, .origin = SENDER, .key = key, .key_len = 16,
		.value = val, .value_len = 64,
	};
	int rc;

	tdm_log_config_defaults(&lc);
	lc.dir = o->dir;
	lc.shm_name = o->shm;
	lc.ring_size = 1ull << 30; /* the whole run stays readable from memory */
	lc.segment_size = 256ull << 20;
	rc = tdm_log_open(&lc, out);
	if (rc)
		return rc;
	memset(val, 0xab, sizeof(val));
	for (uint64_t i = 0; i < o->records; i++) {
		memcpy(key, &i, 8);
		e.hlc = i;
		while ((rc = tdm_log_append(*out, &e, NULL, NULL)) == TDM_ERR_BACKPRESSURE)
			tdm_log_flusher_do_work(*out);
		if (rc)
			return rc;
	}
	return tdm_log_flush_until(*out, tdm_log_tail(*out));
}

static int run_sender(const struct opts *o, struct result *r)
{
	static char eal[512];
	struct tdm_dp_config c;
	struct tdm_dp_sender_config sc;
	struct tdm_dp_sender_stats ss;
	struct tdm_log *log = NULL;
	struct tdm_dp *dp = NULL;
	struct tdm_dp_sender *s;
	uint64_t t0 = tdm_dp_now_ns();
	int rc;

	pin(0);
	rc = fill_log(o, &log);
	if (!rc) {
		config(o, SENDER, &c, eal, sizeof(eal));
		rc = tdm_dp_create(&c, &dp);
	}
	tdm_dp_sender_config_defaults(&sc);
	sc.peer = RECEIVER;
	if (!rc)
		rc = tdm_dp_sender_add(dp, &sc, log, &s);
	if (rc) {
		snprintf(r->err, sizeof(r->err), "sender: %s: %s", tdm_strerror(rc), tdm_errmsg());
		goto out;
	}
	do {
		tdm_dp_do_work(dp);
		tdm_dp_sender_stats(s, &ss);
	} while (ss.acked < tdm_log_tail(log) && tdm_dp_now_ns() - t0 < DEADLINE_NS);
	r->retransmit_bytes = ss.retransmit_bytes;
	r->rewinds = ss.rewinds;
	r->timeouts = ss.timeouts;
	r->frames = ss.frames;
out:
	tdm_dp_destroy(dp);
	tdm_log_close(log);
	return rc;
}

struct counter {
	uint64_t n, first_ns, last_ns;
};

static int on_record(void *ctx, const struct tdm_log_rec *rec)
{
	struct counter *c = ctx;

	(void)rec;
	if (c->n++ == 0)
		c->first_ns = tdm_dp_now_ns();
	return 0;
}

static int run_receiver(const struct opts *o, struct result *r)
{
	static char eal[512];
	struct tdm_dp_config c;
	struct tdm_dp_receiver_config rc_cfg;
	struct counter cnt = { 0, 0, 0 };
	struct tdm_dp *dp;
	struct tdm_dp_receiver *rcv;
	struct stat st;
	uint64_t t0;
	int rc;

	pin(1);
	for (int i = 0; i < 120000 && o->backend == TDM_DP_BACKEND_DPDK && stat(o->sock, &st); i++)
		usleep(1000); /* the memif client connects once: wait for the server's socket */
	config(o, RECEIVER, &c, eal, sizeof(eal));
	rc = tdm_dp_create(&c, &dp);
	if (rc) {
		snprintf(r->err, sizeof(r->err), "receiver: %s: %s", tdm_strerror(rc), tdm_errmsg());
		return rc;
	}
	tdm_dp_receiver_config_defaults(&rc_cfg);
	rc_cfg.peer = SENDER;
	rc_cfg.on_record = on_record;
	rc_cfg.ctx = &cnt;
	rc = tdm_dp_receiver_add(dp, &rc_cfg, &rcv);
	t0 = tdm_dp_now_ns();
	while (!rc && cnt.n < o->records && tdm_dp_now_ns() - t0 < DEADLINE_NS)
		tdm_dp_do_work(dp);
	cnt.last_ns = tdm_dp_now_ns();
	for (int i = 0; i < 100000; i++)
		tdm_dp_do_work(dp); /* let the last STATUS reach the sender */
	r->records = cnt.n;
	r->ns = cnt.last_ns - cnt.first_ns;
	tdm_dp_destroy(dp);
	return cnt.n == o->records ? 0 : -ETIMEDOUT;
}

static pid_t spawn(const struct opts *o, int (*fn)(const struct opts *, struct result *),
		   struct result *shared)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(fn(o, shared) ? 1 : 0);
	}
	return pid;
}

#include <sys/mman.h>

int main(int argc, char **argv)
{
	struct opts o = { .backend = TDM_DP_BACKEND_DPDK, .records = 4000000 };
	struct result *res;
	int st_s = 0, st_r = 0;
	char cmd[320];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mode") && i + 1 < argc &&
		    tdm_dp_backend_parse(argv[i + 1], &o.backend) == 0)
			i++;
		else if (!strcmp(argv[i], "--records") && i + 1 < argc)
			o.records = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--json"))
			o.json = 1;
		else {
			fprintf(stderr, "usage: %s [--mode dpdk|udp] [--records N] [--json]\n",
				argv[0]);
			return 2;
		}
	}
	snprintf(o.sock, sizeof(o.sock), "/tmp/tdsb-%d.sock", (int)getpid());
	snprintf(o.shm, sizeof(o.shm), "tdsb-%d", (int)getpid());
	snprintf(o.dir, sizeof(o.dir), "/dev/shm/tdsb-dir-%d", (int)getpid());
	o.port = (uint16_t)(30000 + getpid() % 20000);
	res = mmap(NULL, 2 * sizeof(*res), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED)
		return 1;
	memset(res, 0, 2 * sizeof(*res));
	pid_t s = spawn(&o, run_sender, &res[0]);
	pid_t r = spawn(&o, run_receiver, &res[1]);
	waitpid(r, &st_r, 0);
	waitpid(s, &st_s, 0);
	unlink(o.sock);
	snprintf(cmd, sizeof(cmd), "rm -rf %s /dev/shm/%s", o.dir, o.shm);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", o.dir);
	if (st_s || st_r) {
		fprintf(stderr, "dp_stream_bench %s failed: %s %s\n", tdm_dp_backend_name(o.backend),
			res[0].err, res[1].err);
		return 1;
	}
	double rate = res[1].ns ? (double)res[1].records * 1e9 / (double)res[1].ns : 0;
	if (o.json)
		printf("{\"mode\":\"%s\",\"records\":%" PRIu64 ",\"records_per_s\":%.0f,"
		       "\"mb_per_s\":%.1f,\"frames\":%" PRIu64 ",\"rewinds\":%" PRIu64 ","
		       "\"timeouts\":%" PRIu64 ",\"retransmit_bytes\":%" PRIu64 "}\n",
		       tdm_dp_backend_name(o.backend), res[1].records, rate, rate * 120 / 1e6,
		       res[0].frames, res[0].rewinds, res[0].timeouts, res[0].retransmit_bytes);
	else
		printf("%-5s %" PRIu64 " records of 16 B key + 64 B value: %.2f M records/s "
		       "(%.0f MB/s of log), %" PRIu64 " frames, %" PRIu64 " rewinds, %" PRIu64
		       " timeouts, %" PRIu64 " bytes resent\n", tdm_dp_backend_name(o.backend),
		       res[1].records, rate / 1e6, rate * 120 / 1e6, res[0].frames, res[0].rewinds,
		       res[0].timeouts, res[0].retransmit_bytes);
	return 0;
}
