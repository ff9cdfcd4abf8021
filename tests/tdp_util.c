/*
 * Dataplane test helpers: deterministic records, configurations, and the two-process runner.
 */
#include "tdp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_DEADLINE_S 900 /* a bound, not an assertion: a hung run fails instead of hanging */

/* ---- Records ---- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint32_t tdp_value_len(uint64_t seq)
{
	uint64_t h = mix(seq * 2 + 1);
	unsigned r = (unsigned)(h % 100);
	uint32_t lo = 8, hi = 256;

	if (r == 99) {
		lo = 4096;
		hi = TDP_MAX_VALUE;
	} else if (r >= 90) {
		lo = 256;
		hi = 4096;
	}
	return lo + (uint32_t)((h >> 32) % (hi - lo + 1));
}

void tdp_value_fill(uint64_t seq, uint8_t *buf, uint32_t len)
{
	uint64_t s = mix(seq ^ 0x5eed);

	for (uint32_t i = 0; i < len; i += 8) {
		s = mix(s);
		memcpy(buf + i, &s, len - i < 8 ? len - i : 8);
	}
}

int tdp_append(struct tdm_log *log, uint64_t seq)
{
	static uint8_t val[TDP_MAX_VALUE];
	uint32_t vlen = tdp_value_len(seq);
	struct tdm_log_entry e = {
		.type = TDM_LOG_REC_PUT, .origin = TDP_SENDER, .hlc = seq,
		.key = &seq, .key_len = 8, .value = val, .value_len = vlen,
	};

	tdp_value_fill(seq, val, vlen);
	return tdm_log_append(log, &e, NULL, NULL);
}

int tdp_rec_diff(const struct tdm_log_rec *rec, uint64_t seq)
{
	static uint8_t val[TDP_MAX_VALUE];
	uint64_t key;
	uint32_t vlen = tdp_value_len(seq);

	if (tdm_log_rec_check(rec->hdr, rec->hdr->length, rec->hdr->position) != 0) {
		fprintf(stderr, "record %" PRIu64 ": checksum fails\n", seq);
		return 1;
	}
	if (rec->hdr->key_len != 8 || rec->hdr->value_len != vlen || rec->hdr->hlc != seq) {
		memcpy(&key, rec->key, 8);
		fprintf(stderr, "record %" PRIu64 ": got key_len %u value_len %u hlc %" PRIu64
			" (want 8, %u, %" PRIu64 ")\n", seq, rec->hdr->key_len, rec->hdr->value_len,
			rec->hdr->hlc, vlen, seq);
		return 1;
	}
	memcpy(&key, rec->key, 8);
	tdp_value_fill(seq, val, vlen);
	if (key != seq || memcmp(rec->value, val, vlen) != 0) {
		fprintf(stderr, "record %" PRIu64 ": key or value bytes differ\n", seq);
		return 1;
	}
	return 0;
}

/* ---- Configurations ---- */

bool tdp_have_dpdk(void)
{
#ifdef TDM_HAVE_DPDK
	return true;
#else
	return false;
#endif
}

static uint16_t base_port(const char *tag)
{
	uint32_t h = 2166136261u;

	for (const char *p = tag; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return (uint16_t)(20000 + (h ^ (uint32_t)getppid()) % 30000); /* same in both children */
}

void tdp_transport_config(struct tdm_dp_config *cfg, enum tdm_dp_backend b, uint16_t node,
			  const char *tag)
{
	static char eal[2][512];
	uint16_t other = node == TDP_SENDER ? TDP_RECEIVER : TDP_SENDER;
	uint16_t port = base_port(tag);
	struct tdm_dp_transport_config *t = &cfg->transport;

	tdm_dp_config_defaults(cfg);
	cfg->cluster_id = TDP_CLUSTER;
	t->backend = b;
	t->node_id = node;
	t->local_ip = htonl(INADDR_LOOPBACK);
	t->local_port = (uint16_t)(port + node);
	t->n_peers = 1;
	t->peers[0].node_id = other;
	t->peers[0].ip = htonl(INADDR_LOOPBACK);
	t->peers[0].port = (uint16_t)(port + other);
	t->peers[0].dpdk_port = 0;
	snprintf(eal[node & 1], sizeof(eal[0]),
		 "--no-huge --no-pci -m 256 --no-shconf --no-telemetry --log-level=*:error --file-prefix=tdp%s%u_%d "
		 "--vdev=net_memif0,role=%s,socket=/tmp/tdp-%s-%d.sock,socket-abstract=no",
		 tag, node, (int)getpid(), node == TDP_SENDER ? "server" : "client", tag,
		 (int)getppid());
	t->eal_args = eal[node & 1];
}

void tdp_log_config(struct tdm_log_config *c, const char *dir, const char *shm, uint64_t ring,
		    uint64_t seg)
{
	tdm_log_config_defaults(c);
	c->dir = dir;
	c->shm_name = shm;
	c->ring_size = ring ? ring : 64ull << 20;
	c->segment_size = seg ? seg : 64ull << 20;
	c->cluster_id = TDP_CLUSTER;
	c->node_id = TDP_SENDER;
}

/* ---- The two children ---- */

struct side {
	const struct tdp_run *run;
	struct tdp_result *res;
	int *done;            /* shared: the sender has everything acknowledged */
	char dir[300], shm[96], tag[24];
};

static uint64_t now_s(void)
{
	return tdm_dp_now_ns() / 1000000000u;
}

static int side_fail(char *msg, int rc, const char *what)
{
	snprintf(msg, 512, "%s: %s (%s)", what, tdm_strerror(rc), tdm_errmsg());
	return rc ? rc : -1;
}

/* Cut the link a third of the way through, heal after two retransmit timeouts. */
static void drive_cut(struct side *sd, struct tdm_dp *dp, struct tdm_dp_sender *s, int *phase,
		      uint64_t *t0)
{
	struct tdm_dp_sender_stats ss;

	tdm_dp_sender_stats(s, &ss);
	if (*phase == 0 && ss.acked > 0 && ss.acked >= sd->res->end / 3 &&
	    sd->res->end > 0) {
		tdm_dp_cut(tdm_dp_transport(dp), 0, true);
		*t0 = ss.timeouts;
		*phase = 1;
	} else if (*phase == 1 && ss.timeouts >= *t0 + 2) {
		tdm_dp_cut(tdm_dp_transport(dp), 0, false);
		sd->res->timeouts_in_cut = ss.timeouts - *t0;
		sd->res->acked_at_heal = ss.acked;
		*phase = 2;
	}
}

static bool sender_finished(const struct side *sd, struct tdm_dp_sender *s, uint64_t appended,
			    struct tdm_log *log)
{
	struct tdm_dp_sender_stats ss;

	if (appended < sd->run->records)
		return false;
	tdm_dp_sender_stats(s, &ss);
	return ss.acked == tdm_log_tail(log) &&
	       (!sd->run->log_mode || ss.peer_durable == tdm_log_tail(log));
}

static int sender_loop(struct side *sd, struct tdm_log *log, struct tdm_dp *dp,
		       struct tdm_dp_sender *s)
{
	struct tdm_dp_idle idle;
	uint64_t appended = 0, deadline = now_s() + RUN_DEADLINE_S, t0 = 0;
	int phase = 0;

	tdm_dp_idle_init(&idle, TDM_DP_IDLE_YIELD);
	while (!sender_finished(sd, s, appended, log)) {
		int work = 0, rc;

		for (int k = 0; k < 64 && appended < sd->run->records; k++, work++) {
			rc = tdp_append(log, appended);
			if (rc == TDM_ERR_BACKPRESSURE)
				break;
			if (rc)
				return side_fail(sd->res->sender_msg, rc, "append");
			appended++;
		}
		if (appended == sd->run->records)
			sd->res->end = tdm_log_tail(log);
		rc = tdm_log_flusher_do_work(log);
		if (rc < 0)
			return side_fail(sd->res->sender_msg, rc, "flusher");
		work += rc + tdm_dp_do_work(dp);
		if (sd->run->cut)
			drive_cut(sd, dp, s, &phase, &t0);
		tdm_dp_idle_step(&idle, work);
		if (now_s() > deadline)
			return side_fail(sd->res->sender_msg, -ETIMEDOUT, "sender");
	}
	return 0;
}

static int run_sender(struct side *sd)
{
	struct tdm_log_config lc;
	struct tdm_dp_config dc;
	struct tdm_dp_sender_config sc;
	struct tdm_log *log = NULL;
	struct tdm_dp *dp = NULL;
	struct tdm_dp_sender *s;
	int rc;

	tdp_log_config(&lc, sd->dir, sd->shm, sd->run->ring, sd->run->seg);
	rc = tdm_log_open(&lc, &log);
	if (rc)
		return side_fail(sd->res->sender_msg, rc, "sender log open");
	tdp_transport_config(&dc, sd->run->backend, TDP_SENDER, sd->tag);
	dc.transport.faults = sd->run->faults;
	rc = tdm_dp_create(&dc, &dp);
	if (rc)
		goto out_fail;
	tdm_dp_sender_config_defaults(&sc);
	sc.peer = TDP_RECEIVER;
	rc = tdm_dp_sender_add(dp, &sc, log, &s);
	if (rc)
		goto out_fail;
	rc = sender_loop(sd, log, dp, s);
	tdm_dp_sender_stats(s, &sd->res->ss);
	tdm_dp_stats(dp, &sd->res->sdp);
	sd->res->end = tdm_log_tail(log);
	__atomic_store_n(sd->done, 1, __ATOMIC_RELEASE); /* pairs with the receiver's acquire */
	tdm_dp_destroy(dp);
	tdm_log_close(log);
	return rc;
out_fail:
	side_fail(sd->res->sender_msg, rc, "sender dataplane");
	tdm_dp_destroy(dp);
	tdm_log_close(log);
	return rc;
}

struct consumer {
	uint64_t next;
	uint64_t bad;
};

static int on_record(void *ctx, const struct tdm_log_rec *rec)
{
	struct consumer *c = ctx;

	if (tdp_rec_diff(rec, c->next))
		c->bad++;
	c->next++;
	return 0;
}

static int receiver_loop(struct side *sd, struct tdm_dp *dp, struct tdm_log *log)
{
	struct tdm_dp_idle idle;
	uint64_t deadline = now_s() + RUN_DEADLINE_S;

	tdm_dp_idle_init(&idle, TDM_DP_IDLE_YIELD);
	while (!__atomic_load_n(sd->done, __ATOMIC_ACQUIRE)) { /* pairs with the sender's release */
		int work = tdm_dp_do_work(dp);

		if (log) {
			int rc = tdm_log_flusher_do_work(log);
			if (rc < 0)
				return side_fail(sd->res->receiver_msg, rc, "receiver flusher");
			work += rc;
		}
		tdm_dp_idle_step(&idle, work);
		if (now_s() > deadline)
			return side_fail(sd->res->receiver_msg, -ETIMEDOUT, "receiver");
	}
	return 0;
}

static int run_receiver(struct side *sd)
{
	struct tdm_log_config lc;
	struct tdm_dp_config dc;
	struct tdm_dp_receiver_config rc_cfg;
	struct consumer cons = { 0, 0 };
	struct tdm_log *log = NULL;
	struct tdm_dp *dp = NULL;
	struct tdm_dp_receiver *r;
	int rc = 0;

	if (sd->run->log_mode) {
		tdp_log_config(&lc, sd->dir, sd->shm, sd->run->ring, sd->run->seg);
		lc.node_id = TDP_RECEIVER;
		rc = tdm_log_open(&lc, &log);
		if (rc)
			return side_fail(sd->res->receiver_msg, rc, "receiver log open");
	}
	tdp_transport_config(&dc, sd->run->backend, TDP_RECEIVER, sd->tag);
	dc.transport.faults = sd->run->faults;
	dc.transport.faults.seed ^= 0x77;
	/* dpdk: the memif client (receiver) may open before its server; it connects later. */
	rc = tdm_dp_create(&dc, &dp);
	if (rc)
		goto out;
	tdm_dp_receiver_config_defaults(&rc_cfg);
	rc_cfg.peer = TDP_SENDER;
	rc_cfg.log = log;
	rc_cfg.on_record = log ? NULL : on_record;
	rc_cfg.ctx = &cons;
	rc = tdm_dp_receiver_add(dp, &rc_cfg, &r);
	if (rc)
		goto out;
	rc = receiver_loop(sd, dp, log);
	tdm_dp_receiver_stats(r, &sd->res->rs);
	tdm_dp_stats(dp, &sd->res->rdp);
	sd->res->delivered = cons.next;
	if (!rc && cons.bad)
		rc = side_fail(sd->res->receiver_msg, -EBADMSG, "records differ");
out:
	if (rc && !sd->res->receiver_msg[0])
		side_fail(sd->res->receiver_msg, rc, "receiver dataplane");
	tdm_dp_destroy(dp);
	tdm_log_close(log);
	return rc;
}

/* ---- The parent ---- */

static pid_t spawn(struct side *sd, int (*fn)(struct side *))
{
	pid_t pid = fork();

	if (pid == 0) {
		/* Die of a crash instead of running cmocka's handler, which would carry on with the
		 * parent's tests in this child. */
		static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT,
					    SIGTERM, SIGINT };

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a killed test */
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		_exit(fn(sd) == 0 ? 0 : 1);
	}
	return pid;
}

/* Wait for both children; kill both when one dies badly or the bound passes. */
static void wait_pair(pid_t pids[2], int status[2])
{
	uint64_t deadline = now_s() + RUN_DEADLINE_S + 60;
	int left = 2;

	status[0] = status[1] = -1;
	while (left) {
		for (int i = 0; i < 2; i++) {
			if (pids[i] > 0 && waitpid(pids[i], &status[i], WNOHANG) == pids[i]) {
				pids[i] = 0;
				left--;
				if (!WIFEXITED(status[i]) && pids[!i] > 0)
					kill(pids[!i], SIGKILL); /* a crash: do not wait for the other */
			}
		}
		if (left && now_s() > deadline)
			for (int i = 0; i < 2; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGKILL);
		if (left)
			usleep(2000);
	}
}

/* Compare two closed logs byte for byte. @return 1 equal, 0 not (message printed). */
static int logs_equal(const struct tdp_run *run, const char *a, const char *b, const char *shm)
{
	struct tdm_log_config ca, cb;
	struct tdm_log *la = NULL, *lb = NULL;
	static uint8_t ba[1 << 20], bb[1 << 20];
	char shm_b[80];
	int eq = 0;

	snprintf(shm_b, sizeof(shm_b), "%.60sb", shm);
	tdp_log_config(&ca, a, shm, run->ring, run->seg);
	tdp_log_config(&cb, b, shm_b, run->ring, run->seg);
	if (tdm_log_open(&ca, &la) || tdm_log_open(&cb, &lb)) {
		fprintf(stderr, "reopen logs: %s\n", tdm_errmsg());
		goto out;
	}
	uint64_t end = tdm_log_recovery(la)->end;
	if (end != tdm_log_recovery(lb)->end) {
		fprintf(stderr, "logs end at %" PRIu64 " and %" PRIu64 "\n", end,
			tdm_log_recovery(lb)->end);
		goto out;
	}
	for (uint64_t pos = 0; pos < end; pos += sizeof(ba)) {
		size_t n = end - pos < sizeof(ba) ? (size_t)(end - pos) : sizeof(ba);
		if (tdm_log_read(la, pos, ba, n) || tdm_log_read(lb, pos, bb, n) ||
		    memcmp(ba, bb, n) != 0) {
			fprintf(stderr, "logs differ in [%" PRIu64 ", +%zu)\n", pos, n);
			goto out;
		}
	}
	eq = 1;
out:
	tdm_log_close(la);
	tdm_log_close(lb);
	return eq;
}

static void cleanup_run(const char *tmp, const char *tag, const char *shm)
{
	char cmd[600], path[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmp);
	snprintf(path, sizeof(path), "/tmp/tdp-%s-%d.sock", tag, (int)getpid());
	unlink(path);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "/dev/shm/%s%s", shm, i == 0 ? "" : i == 1 ? "r" : "b");
		unlink(path);
	}
}

/* What a SIGTERM (meson's timeout) must clean up while a pair runs. */
static struct {
	pid_t pids[2];
	char tmp[32], tag[24], shm[96];
	volatile sig_atomic_t active;
} running;

static void on_term(int sig)
{
	if (running.active) {
		for (int i = 0; i < 2; i++)
			if (running.pids[i] > 0)
				kill(running.pids[i], SIGKILL);
		cleanup_run(running.tmp, running.tag, running.shm);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

void tdp_run_pair(const struct tdp_run *run, struct tdp_result *res)
{
	static unsigned seq;
	struct side s, r;
	char tmp[] = "/tmp/tdp-XXXXXX";
	pid_t pids[2];
	int status[2], *done;
	struct tdp_result *shared;

	assert_non_null(mkdtemp(tmp));
	shared = mmap(NULL, sizeof(*shared) + 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	assert_true(shared != MAP_FAILED);
	memset(shared, 0, sizeof(*shared) + 64);
	done = (int *)(shared + 1);
	memset(&s, 0, sizeof(s));
	s.run = run;
	s.res = shared;
	s.done = done;
	snprintf(s.tag, sizeof(s.tag), "%u%.8s", seq++ % 1000u, tdm_dp_backend_name(run->backend));
	snprintf(s.shm, sizeof(s.shm), "tdp-%d-%s", (int)getpid(), s.tag);
	r = s;
	snprintf(s.dir, sizeof(s.dir), "%s/sender", tmp);
	snprintf(r.dir, sizeof(r.dir), "%s/receiver", tmp);
	snprintf(r.shm, sizeof(r.shm), "%.60sr", s.shm);
	fflush(NULL);
	snprintf(running.tmp, sizeof(running.tmp), "%s", tmp);
	snprintf(running.tag, sizeof(running.tag), "%s", s.tag);
	snprintf(running.shm, sizeof(running.shm), "%s", s.shm);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	pids[0] = running.pids[0] = spawn(&s, run_sender);
	pids[1] = running.pids[1] = spawn(&r, run_receiver);
	running.active = 1;
	wait_pair(pids, status);
	running.active = 0;
	*res = *shared;
	res->sender_rc = WIFEXITED(status[0]) ? WEXITSTATUS(status[0]) : 128 + WTERMSIG(status[0]);
	res->receiver_rc = WIFEXITED(status[1]) ? WEXITSTATUS(status[1])
						 : 128 + WTERMSIG(status[1]);
	if (run->log_mode && !res->sender_rc && !res->receiver_rc)
		res->logs_equal = logs_equal(run, s.dir, r.dir, s.shm);
	munmap(shared, sizeof(*shared) + 64);
	cleanup_run(tmp, s.tag, s.shm);
}

void tdp_print_result(const char *name, const struct tdp_result *res)
{
	const struct tdm_dp_transport_stats *st = &res->sdp.transport, *rt = &res->rdp.transport;

	printf("[ %s ] sender rc %d \"%s\", receiver rc %d \"%s\"\n", name, res->sender_rc,
	       res->sender_msg, res->receiver_rc, res->receiver_msg);
	printf("  end %" PRIu64 ", delivered %" PRIu64 " records, acked %" PRIu64 "\n", res->end,
	       res->delivered, res->ss.acked);
	printf("  sender: frames %" PRIu64 " fragments %" PRIu64 " naks %" PRIu64 " rewinds %" PRIu64
	       " timeouts %" PRIu64 " retransmitted %" PRIu64 " B, window stalls %" PRIu64 "\n",
	       res->ss.frames, res->ss.fragments, res->ss.naks, res->ss.rewinds, res->ss.timeouts,
	       res->ss.retransmit_bytes, res->ss.window_stalls);
	printf("  receiver: frames %" PRIu64 " dups %" PRIu64 " out-of-order %" PRIu64 " naks %" PRIu64
	       " status %" PRIu64 " bad %" PRIu64 " refused %" PRIu64 "\n", res->rs.frames,
	       res->rs.duplicates, res->rs.out_of_order, res->rs.naks_sent, res->rs.status_sent,
	       res->rs.bad_records, res->rs.refused);
	printf("  faults tx: drop %" PRIu64 "/%" PRIu64 " dup %" PRIu64 "/%" PRIu64 " reorder %" PRIu64
	       "/%" PRIu64 " cut %" PRIu64 "/%" PRIu64 " (sender/receiver)\n", st->fault_drop,
	       rt->fault_drop, st->fault_duplicate, rt->fault_duplicate, st->fault_reorder,
	       rt->fault_reorder, st->fault_cut_tx, rt->fault_cut_rx);
	for (unsigned i = 0; i < TDM_DP_DROP_REASONS; i++)
		if (res->sdp.drops[i] || res->rdp.drops[i])
			printf("  dropped %-12s sender %" PRIu64 " receiver %" PRIu64 "\n",
			       tdm_dp_drop_reason_name(i), res->sdp.drops[i], res->rdp.drops[i]);
	fflush(stdout);
}
