/*
 * dp_netns_peer: one side of an exchange over the dpdk backend on a kernel interface (af_packet
 * or af_xdp on a veth), run in a network namespace by test_dp_netns.sh.
 *
 *   dp_netns_peer send|echo|stream-send|stream-recv --count N --vdev SPEC --prefix P
 *                 --local-ip A --peer-ip B [--peer-mac M] [--port P] [--timeout S]
 *                 [--log-dir D] [--shm NAME]
 *
 * Transport level (struct tdm_dp_transport alone):
 * send: sends frames 0..N-1, at most 16 unanswered at a time, resending any whose echo has not
 *       come back within 50 ms (the kernel may drop on a veth), and checks every echo bit for
 *       bit; then sends FIN until FIN-ACK. echo: sends back every frame it receives after
 *       checking it, answers FIN with FIN-ACK, and exits 100 ms after the last FIN once it has
 *       seen all N frames.
 *
 * Payload (UDP payload, little-endian): u32 magic "TNSP", u32 type (1 DATA, 2 FIN, 3 FIN-ACK),
 * u64 seq, u32 len, then len bytes, byte k = (seq * 131 + k) & 0xff; len = seq * 37 % 1400, so
 * sizes from 20 to 1419 bytes cross the wire.
 *
 * Stream level (struct tdm_dp: frames, go-back-N sender, receiver, fragmentation):
 * stream-send: opens a tandem log in a fresh directory under --log-dir (default /tmp) with ring
 *       --shm (default tdmns-log-<pid>), 16 MiB ring, 4 MiB segments; appends records 0..N-1
 *       while a tdm_dp_sender streams them to the peer, running the flusher and the dataplane
 *       on this one thread (yield idle strategy) until the peer has acknowledged the log's tail.
 *       Closes the log and removes its directory and ring on every exit path it controls
 *       (SIGTERM/SIGINT included); the script removes them too in case we are killed.
 * stream-recv: a tdm_dp_receiver hands each record to a consumer that checks it is the next
 *       sequence number and bit for bit the record the sender appended. Once all N have
 *       arrived it keeps polling so its last STATUS reaches the sender: until the sender has been
 *       silent for 200 ms (it exits when everything is acknowledged; alive, it sends heartbeats
 *       every 100 us), at most 3 s. It then checks that records larger than a frame did arrive
 *       as fragments (the reassembly path ran).
 * Record seq: PUT, key = seq (u64 LE), hlc = seq, origin 1, value = ns_value_len(seq) bytes of
 * a splitmix64 stream seeded by seq: 3/4 of records 8..255 B, 3/16 256..1399 B, 1/16
 * 1400..3072 B (larger than one 1500-byte frame's payload: sent as fragments).
 *
 * Exit status: 0 every frame came back intact (send) / was seen intact (echo) / every record
 * was acknowledged (stream-send) / arrived intact and in order (stream-recv); 1 a check failed,
 * time ran out or we were stopped by a signal (message on stderr); 2 usage; 3 the transport did
 * not open (the driver is not usable here: the script decides whether that is a failure); 77
 * the build has no DPDK. Counters are printed on stdout on exit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tdm_dp.h"

#define NP_MAGIC 0x50534e54u /* "TNSP" */
#define NP_DATA 1u
#define NP_FIN 2u
#define NP_FIN_ACK 3u
#define NP_HDR 20u
#define NP_MAX_LEN 1400u
#define NP_WINDOW 16u
#define NP_RTO_NS 50000000ull
#define NP_LINGER_NS 100000000ull
#define NP_LINK_NS 5000000000ull

enum np_mode {
	NP_SEND,        /**< transport level: send numbered frames, check their echoes */
	NP_ECHO,        /**< transport level: echo them back */
	NP_STREAM_SEND, /**< stream a log of N records with a tdm_dp_sender */
	NP_STREAM_RECV, /**< receive and check them with a tdm_dp_receiver */
};

static const char *const np_mode_names[] = {
	[NP_SEND] = "send", [NP_ECHO] = "echo",
	[NP_STREAM_SEND] = "stream-send", [NP_STREAM_RECV] = "stream-recv",
};

struct np_opts {
	enum np_mode mode;
	bool send;           /* node 1 (send, stream-send); else node 2 */
	uint64_t count;
	const char *vdev, *prefix, *local_ip, *peer_ip, *peer_mac;
	const char *log_dir, *shm; /* stream-send: parent of the log directory, ring name */
	uint16_t port;
	int timeout_s;
};

struct np {
	struct tdm_dp_transport *t;
	uint16_t peer;       /* the other side's node id */
	uint64_t deadline;
	uint64_t bad;        /* frames that failed the check */
};

static uint32_t np_len(uint64_t seq)
{
	return (uint32_t)(seq * 37u % NP_MAX_LEN);
}

static int np_send(struct np *np, uint32_t type, uint64_t seq)
{
	struct tdm_dp_buf *b = tdm_dp_buf_alloc(np->t);
	uint32_t magic = NP_MAGIC, len = type == NP_DATA ? np_len(seq) : 0;

	if (!b)
		return -ENOBUFS;
	memcpy(b->data, &magic, 4);
	memcpy(b->data + 4, &type, 4);
	memcpy(b->data + 8, &seq, 8);
	memcpy(b->data + 16, &len, 4);
	for (uint32_t k = 0; k < len; k++)
		b->data[NP_HDR + k] = (uint8_t)((seq * 131u + k) & 0xffu);
	b->len = NP_HDR + len;
	b->peer = np->peer;
	return tdm_dp_tx_burst(np->t, &b, 1) == 1 ? 0 : -EAGAIN;
}

/* Check a received frame. @return its type (seq in *seq), or 0 when malformed (counted). */
static uint32_t np_check(struct np *np, const struct tdm_dp_buf *b, uint64_t count,
			 uint64_t *seq)
{
	uint32_t magic, type, len;

	if (b->len < NP_HDR)
		goto bad;
	memcpy(&magic, b->data, 4);
	memcpy(&type, b->data + 4, 4);
	memcpy(seq, b->data + 8, 8);
	memcpy(&len, b->data + 16, 4);
	if (magic != NP_MAGIC || type < NP_DATA || type > NP_FIN_ACK || b->len != NP_HDR + len)
		goto bad;
	if (type != NP_DATA)
		return type;
	if (*seq >= count || len != np_len(*seq))
		goto bad;
	for (uint32_t k = 0; k < len; k++)
		if (b->data[NP_HDR + k] != (uint8_t)((*seq * 131u + k) & 0xffu))
			goto bad;
	return type;
bad:
	fprintf(stderr, "dp_netns_peer: a malformed or corrupted frame of %u bytes\n", b->len);
	np->bad++;
	return 0;
}

/* ---- send ---- */

struct np_sender {
	uint8_t *acked;      /* per seq */
	uint64_t *sent_at;   /* per seq: last send, ns */
	uint64_t base, next, acked_n, outstanding, resent;
};

/* Send new frames while the window allows, resend overdue ones. @return work done. */
static int np_sender_tx(struct np *np, struct np_sender *s, uint64_t count)
{
	uint64_t now = tdm_dp_now_ns();
	int work = 0;

	for (uint64_t i = s->base; i < s->next; i++) {
		if (!s->acked[i] && now - s->sent_at[i] > NP_RTO_NS && np_send(np, NP_DATA, i) == 0) {
			s->sent_at[i] = now;
			s->resent++;
			work++;
		}
	}
	while (s->outstanding < NP_WINDOW && s->next < count && np_send(np, NP_DATA, s->next) == 0) {
		s->sent_at[s->next++] = now;
		s->outstanding++;
		work++;
	}
	return work;
}

static int np_sender_rx(struct np *np, struct np_sender *s, uint64_t count)
{
	struct tdm_dp_buf *bufs[TDM_DP_BURST];
	int n = tdm_dp_rx_burst(np->t, bufs, TDM_DP_BURST);

	for (int i = 0; i < n; i++) {
		uint64_t seq;

		if (np_check(np, bufs[i], count, &seq) == NP_DATA && !s->acked[seq]) {
			s->acked[seq] = 1;
			s->acked_n++;
			s->outstanding--;
		}
		tdm_dp_buf_free(np->t, bufs[i]);
	}
	while (s->base < s->next && s->acked[s->base])
		s->base++;
	return n;
}

/* FIN until FIN-ACK. */
static int np_finish(struct np *np, uint64_t count)
{
	uint64_t last = 0;

	while (tdm_dp_now_ns() < np->deadline) {
		struct tdm_dp_buf *bufs[TDM_DP_BURST];
		int n = tdm_dp_rx_burst(np->t, bufs, TDM_DP_BURST), done = 0;

		for (int i = 0; i < n; i++) {
			uint64_t seq;

			done |= np_check(np, bufs[i], count, &seq) == NP_FIN_ACK;
			tdm_dp_buf_free(np->t, bufs[i]);
		}
		if (done)
			return 0;
		if (tdm_dp_now_ns() - last > NP_RTO_NS && np_send(np, NP_FIN, 0) == 0)
			last = tdm_dp_now_ns();
		sched_yield();
	}
	fprintf(stderr, "dp_netns_peer send: no FIN-ACK before the timeout\n");
	return 1;
}

static int np_run_send(struct np *np, uint64_t count)
{
	struct np_sender s = { .acked = calloc(count, 1),
			       .sent_at = calloc(count, sizeof(uint64_t)) };
	int rc = 1;

	if (!s.acked || !s.sent_at) {
		fprintf(stderr, "dp_netns_peer send: out of memory for %llu frames\n",
			(unsigned long long)count);
		goto out;
	}
	while (s.acked_n < count && tdm_dp_now_ns() < np->deadline) {
		if (np_sender_tx(np, &s, count) + np_sender_rx(np, &s, count) == 0)
			sched_yield(); /* 2-core machines: let the other side and softirqs run */
	}
	printf("send: %llu of %llu frames echoed intact, %llu resent, %llu bad\n",
	       (unsigned long long)s.acked_n, (unsigned long long)count,
	       (unsigned long long)s.resent, (unsigned long long)np->bad);
	if (s.acked_n != count)
		fprintf(stderr, "dp_netns_peer send: timed out with %llu frames unanswered\n",
			(unsigned long long)(count - s.acked_n));
	else
		rc = np_finish(np, count);
out:
	free(s.acked);
	free(s.sent_at);
	return rc == 0 && np->bad == 0 ? 0 : 1;
}

/* ---- echo ---- */

/* Send a received DATA frame back as it is (a new buffer: the received one is freed). */
static void np_echo_one(struct np *np, const struct tdm_dp_buf *in)
{
	struct tdm_dp_buf *b = tdm_dp_buf_alloc(np->t);

	if (!b)
		return;  /* the sender resends */
	memcpy(b->data, in->data, in->len);
	b->len = in->len;
	b->peer = np->peer;
	tdm_dp_tx_burst(np->t, &b, 1);
}

static int np_run_echo(struct np *np, uint64_t count)
{
	uint8_t *seen = calloc(count, 1);
	uint64_t seen_n = 0, fin_at = 0;

	if (!seen) {
		fprintf(stderr, "dp_netns_peer echo: out of memory\n");
		return 1;
	}
	while (tdm_dp_now_ns() < np->deadline &&
	       !(fin_at && tdm_dp_now_ns() - fin_at > NP_LINGER_NS)) {
		struct tdm_dp_buf *bufs[TDM_DP_BURST];
		int n = tdm_dp_rx_burst(np->t, bufs, TDM_DP_BURST);

		for (int i = 0; i < n; i++) {
			uint64_t seq;
			uint32_t type = np_check(np, bufs[i], count, &seq);

			if (type == NP_DATA) {
				seen_n += !seen[seq];
				seen[seq] = 1;
				np_echo_one(np, bufs[i]);
			} else if (type == NP_FIN) {
				fin_at = tdm_dp_now_ns();
				np_send(np, NP_FIN_ACK, 0);
			}
			tdm_dp_buf_free(np->t, bufs[i]);
		}
		if (n == 0)
			sched_yield();
	}
	free(seen);
	printf("echo: %llu of %llu frames seen intact, %llu bad, FIN %s\n",
	       (unsigned long long)seen_n, (unsigned long long)count,
	       (unsigned long long)np->bad, fin_at ? "received" : "NOT received");
	return fin_at && seen_n == count && np->bad == 0 ? 0 : 1;
}

/* ---- stream-send and stream-recv ---- */

#define NS_CLUSTER 0x736e6d646eull   /* "ndmns": both sides and the log */
#define NS_RING (16ull << 20)
#define NS_SEGMENT (4ull << 20)
#define NS_MAX_VALUE 3072u
#define NS_FRAG_VALUE 1400u          /* 40 + 8 + 1400 > 1500 - 28 - 48: one record, fragments */
#define NS_QUIET_NS 200000000ull     /* stream-recv: sender silent this long = it is gone */
#define NS_LINGER_MAX_NS 3000000000ull
#define NS_MAX_MESSAGES 5            /* bad records described on stderr, then only counted */

static volatile sig_atomic_t ns_stop; /* SIGTERM/SIGINT: leave the loop, clean up, exit 1 */

static void ns_on_signal(int sig)
{
	(void)sig;
	ns_stop = 1;
}

static uint64_t ns_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint32_t ns_value_len(uint64_t seq)
{
	uint64_t h = ns_mix(seq * 2 + 1);
	unsigned r = (unsigned)(h % 16);
	uint32_t lo = 8, hi = 255;

	if (r == 0) {
		lo = NS_FRAG_VALUE;
		hi = NS_MAX_VALUE;
	} else if (r < 4) {
		lo = 256;
		hi = NS_FRAG_VALUE - 1;
	}
	return lo + (uint32_t)((h >> 32) % (hi - lo + 1));
}

static void ns_value_fill(uint64_t seq, uint8_t *buf, uint32_t len)
{
	uint64_t s = ns_mix(seq ^ 0x5eed);

	for (uint32_t i = 0; i < len; i += 8) {
		s = ns_mix(s);
		memcpy(buf + i, &s, len - i < 8 ? len - i : 8);
	}
}

static int ns_append(struct tdm_log *log, uint64_t seq)
{
	static uint8_t val[NS_MAX_VALUE];
	uint32_t vlen = ns_value_len(seq);
	struct tdm_log_entry e = {
		.type = TDM_LOG_REC_PUT, .origin = 1, .hlc = seq,
		.key = &seq, .key_len = 8, .value = val, .value_len = vlen,
	};

	ns_value_fill(seq, val, vlen);
	return tdm_log_append(log, &e, NULL, NULL);
}

/* Remove the log directory (segments, lock, history) and everything in it. */
static int ns_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0)
		fprintf(stderr, "dp_netns_peer: remove %s: %s\n", path, strerror(errno));
	return 0;
}

static void ns_rmtree(const char *dir)
{
	nftw(dir, ns_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Node counters both stream sides print: drops by reason, then the transport's. */
static void ns_print_dp(const char *who, struct tdm_dp *dp)
{
	struct tdm_dp_stats st;
	uint64_t drops = 0;

	tdm_dp_stats(dp, &st);
	for (unsigned i = 0; i < TDM_DP_DROP_REASONS; i++)
		drops += st.drops[i];
	printf("%s: %" PRIu64 " frames passed validation, %" PRIu64 " dropped", who, st.rx_frames,
	       drops);
	for (unsigned i = 0; i < TDM_DP_DROP_REASONS; i++)
		if (st.drops[i])
			printf(", %s %" PRIu64, tdm_dp_drop_reason_name(i), st.drops[i]);
	printf("\n%s: transport tx %" PRIu64 " rx %" PRIu64 ", not ours %" PRIu64 ", bad lower %"
	       PRIu64 ", tx full %" PRIu64 ", tx errors %" PRIu64 ", no buf %" PRIu64 "\n", who,
	       st.transport.tx_frames, st.transport.rx_frames, st.transport.rx_not_ours,
	       st.transport.rx_bad_lower, st.transport.tx_full, st.transport.tx_errors,
	       st.transport.no_buf);
}

static void ns_print_sender(struct tdm_dp_sender *s, uint64_t appended, uint64_t tail)
{
	struct tdm_dp_sender_stats ss;

	tdm_dp_sender_stats(s, &ss);
	printf("stream-send: %" PRIu64 " records appended, tail %" PRIu64 ", acked %" PRIu64
	       ", link %s\n", appended, tail, ss.acked, ss.link_up ? "up" : "down");
	printf("stream-send: frames %" PRIu64 " (%" PRIu64 " B, %" PRIu64 " records, fragments %"
	       PRIu64 "), heartbeats %" PRIu64 ", naks %" PRIu64 ", rewinds %" PRIu64 ", timeouts %"
	       PRIu64 ", retransmitted %" PRIu64 " B, window stalls %" PRIu64 "\n", ss.frames,
	       ss.bytes, ss.records, ss.fragments, ss.heartbeats, ss.naks, ss.rewinds, ss.timeouts,
	       ss.retransmit_bytes, ss.window_stalls);
}

/* Append while the ring takes records, flush, stream; until everything is acknowledged. */
static int ns_send_loop(struct np *np, struct tdm_log *log, struct tdm_dp *dp,
			struct tdm_dp_sender *s, uint64_t count, uint64_t *appended)
{
	struct tdm_dp_idle idle;
	struct tdm_dp_sender_stats ss;

	tdm_dp_idle_init(&idle, TDM_DP_IDLE_YIELD);
	while (!ns_stop && tdm_dp_now_ns() < np->deadline) {
		int work = 0, rc;

		for (int k = 0; k < 64 && *appended < count; k++, work++) {
			rc = ns_append(log, *appended);
			if (rc == TDM_ERR_BACKPRESSURE)
				break;
			if (rc) {
				fprintf(stderr, "dp_netns_peer stream-send: append %" PRIu64 ": %s: %s\n",
					*appended, tdm_strerror(rc), tdm_errmsg());
				return 1;
			}
			(*appended)++;
		}
		rc = tdm_log_flusher_do_work(log);
		if (rc < 0) {
			fprintf(stderr, "dp_netns_peer stream-send: flusher: %s: %s\n",
				tdm_strerror(rc), tdm_errmsg());
			return 1;
		}
		work += rc + tdm_dp_do_work(dp);
		if (*appended == count) {
			tdm_dp_sender_stats(s, &ss);
			if (ss.acked == tdm_log_tail(log))
				return 0;
		}
		tdm_dp_idle_step(&idle, work);
	}
	tdm_dp_sender_stats(s, &ss);
	fprintf(stderr, "dp_netns_peer stream-send: %s with %" PRIu64 " of %" PRIu64 " records "
		"appended, acked %" PRIu64 " of %" PRIu64 " bytes\n",
		ns_stop ? "stopped by a signal" : "timed out", *appended, count, ss.acked,
		tdm_log_tail(log));
	return 1;
}

static int ns_run_send(const struct np_opts *o, struct np *np, struct tdm_dp *dp)
{
	struct tdm_log_config lc;
	struct tdm_dp_sender_config sc;
	struct tdm_log *log = NULL;
	struct tdm_dp_sender *s = NULL;
	char dir[PATH_MAX], shm[64];
	uint64_t appended = 0;
	int rc = 1, err;

	snprintf(dir, sizeof(dir), "%s/tdm-netns-log.XXXXXX", o->log_dir ? o->log_dir : "/tmp");
	if (o->shm)
		snprintf(shm, sizeof(shm), "%s", o->shm);
	else
		snprintf(shm, sizeof(shm), "tdmns-log-%d", (int)getpid());
	if (!mkdtemp(dir)) {
		fprintf(stderr, "dp_netns_peer stream-send: mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	tdm_log_config_defaults(&lc);
	lc.dir = dir;
	lc.shm_name = shm;
	lc.ring_size = NS_RING;
	lc.segment_size = NS_SEGMENT;
	lc.cluster_id = NS_CLUSTER;
	lc.node_id = 1;
	err = tdm_log_open(&lc, &log);
	if (err) {
		fprintf(stderr, "dp_netns_peer stream-send: log open in %s (ring %s): %s: %s\n", dir,
			shm, tdm_strerror(err), tdm_errmsg());
		goto out;
	}
	tdm_dp_sender_config_defaults(&sc);
	sc.peer = np->peer;
	err = tdm_dp_sender_add(dp, &sc, log, &s);
	if (err) {
		fprintf(stderr, "dp_netns_peer stream-send: sender: %s: %s\n", tdm_strerror(err),
			tdm_errmsg());
		goto out;
	}
	printf("stream-send: log %s, ring /dev/shm/%s, streaming %" PRIu64 " records\n", dir, shm,
	       o->count);
	rc = ns_send_loop(np, log, dp, s, o->count, &appended);
	ns_print_sender(s, appended, tdm_log_tail(log));
	tdm_dp_sender_remove(dp, s); /* before the log it reads from goes */
out:
	tdm_log_close(log);          /* the owner's close removes the ring */
	ns_rmtree(dir);
	return rc;
}

struct ns_consumer {
	uint64_t next;       /* sequence number expected next */
	uint64_t count;      /* N */
	uint64_t bad;        /* records that were not what the sender appended */
	uint64_t big;        /* records too large for one frame */
	uint8_t val[NS_MAX_VALUE];
};

/* @return NULL when rec is record seq bit for bit, else what is wrong. */
static const char *ns_rec_diff(struct ns_consumer *c, const struct tdm_log_rec *rec, uint64_t seq)
{
	const struct tdm_log_rec_hdr *h = rec->hdr;
	uint64_t key;

	if (seq >= c->count)
		return "a record past the last one";
	if (tdm_log_rec_check(h, h->length, h->position) != 0)
		return "checksum or header fails";
	if (h->type != TDM_LOG_REC_PUT || h->origin != 1 || h->hlc != seq || h->key_len != 8 ||
	    h->value_len != ns_value_len(seq))
		return "type, origin, hlc or lengths differ";
	memcpy(&key, rec->key, 8);
	if (key != seq)
		return "out of order (key is another sequence number)";
	ns_value_fill(seq, c->val, h->value_len);
	if (memcmp(rec->value, c->val, h->value_len) != 0)
		return "value bytes differ";
	return NULL;
}

static int ns_on_record(void *ctx, const struct tdm_log_rec *rec)
{
	struct ns_consumer *c = ctx;
	const char *why = ns_rec_diff(c, rec, c->next);

	if (why && c->bad++ < NS_MAX_MESSAGES)
		fprintf(stderr, "dp_netns_peer stream-recv: record %" PRIu64 " at position %" PRIu64
			": %s\n", c->next, rec->hdr->position, why);
	c->big += rec->hdr->value_len >= NS_FRAG_VALUE;
	c->next++;
	return 0;
}

/* Poll until all records arrived and the sender went quiet (or a bound passed).
 * @return 0 all arrived; 1 time ran out, a signal, or a bad record. */
static int ns_recv_loop(struct np *np, struct tdm_dp *dp, struct tdm_dp_receiver *r,
			const struct ns_consumer *c)
{
	struct tdm_dp_idle idle;
	uint64_t done_at = 0;

	tdm_dp_idle_init(&idle, TDM_DP_IDLE_YIELD);
	while (!ns_stop && tdm_dp_now_ns() < np->deadline && !c->bad) {
		int work = tdm_dp_do_work(dp);

		if (c->next >= c->count) {
			struct tdm_dp_receiver_stats rs;
			uint64_t now = tdm_dp_now_ns();

			tdm_dp_receiver_stats(r, &rs);
			done_at = done_at ? done_at : now;
			if (now - rs.last_heard_ns > NS_QUIET_NS || now - done_at > NS_LINGER_MAX_NS)
				return 0;
		}
		tdm_dp_idle_step(&idle, work);
	}
	if (c->bad)
		return 1;
	if (c->next >= c->count)
		return 0; /* everything arrived; only the linger was cut short */
	fprintf(stderr, "dp_netns_peer stream-recv: %s with %" PRIu64 " of %" PRIu64
		" records received\n", ns_stop ? "stopped by a signal" : "timed out", c->next,
		c->count);
	return 1;
}

static int ns_run_recv(const struct np_opts *o, struct np *np, struct tdm_dp *dp)
{
	static struct ns_consumer c;
	struct tdm_dp_receiver_config rc_cfg;
	struct tdm_dp_receiver_stats rs;
	struct tdm_dp_receiver *r;
	int rc, err;

	c.count = o->count;
	tdm_dp_receiver_config_defaults(&rc_cfg);
	rc_cfg.peer = np->peer;
	rc_cfg.on_record = ns_on_record;
	rc_cfg.ctx = &c;
	err = tdm_dp_receiver_add(dp, &rc_cfg, &r);
	if (err) {
		fprintf(stderr, "dp_netns_peer stream-recv: receiver: %s: %s\n", tdm_strerror(err),
			tdm_errmsg());
		return 1;
	}
	rc = ns_recv_loop(np, dp, r, &c);
	tdm_dp_receiver_stats(r, &rs);
	printf("stream-recv: %" PRIu64 " of %" PRIu64 " records in order and intact, %" PRIu64
	       " bad, %" PRIu64 " larger than a frame, received position %" PRIu64 "\n",
	       c.next - c.bad, c.count, c.bad, c.big, rs.received);
	printf("stream-recv: frames %" PRIu64 " (%" PRIu64 " B, %" PRIu64 " records, fragments %"
	       PRIu64 "), duplicates %" PRIu64 ", out of order %" PRIu64 ", naks %" PRIu64
	       ", status %" PRIu64 ", heartbeats %" PRIu64 ", bad records %" PRIu64 ", refused %"
	       PRIu64 "\n", rs.frames, rs.bytes, rs.records, rs.fragments, rs.duplicates,
	       rs.out_of_order, rs.naks_sent, rs.status_sent, rs.heartbeats, rs.bad_records,
	       rs.refused);
	if (rc == 0 && c.big && !rs.fragments) {
		fprintf(stderr, "dp_netns_peer stream-recv: %" PRIu64 " records larger than a frame "
			"arrived but no fragment was counted\n", c.big);
		rc = 1;
	}
	tdm_dp_receiver_remove(dp, r);
	return rc;
}

/* ---- setup ---- */

static int np_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];

	if (!s)
		return 0;  /* all zero: broadcast */
	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

static int np_config(const struct np_opts *o, struct tdm_dp_transport_config *cfg, char *eal,
		     size_t cap)
{
	struct in_addr a, b;

	if (inet_pton(AF_INET, o->local_ip, &a) != 1 || inet_pton(AF_INET, o->peer_ip, &b) != 1)
		return -EINVAL;
	tdm_dp_transport_config_defaults(cfg);
	cfg->backend = TDM_DP_BACKEND_DPDK;
	cfg->node_id = o->send ? 1 : 2;
	cfg->local_ip = a.s_addr;
	cfg->local_port = o->port;
	cfg->n_peers = 1;
	cfg->peers[0].node_id = o->send ? 2 : 1;
	cfg->peers[0].ip = b.s_addr;
	cfg->peers[0].port = o->port;
	cfg->peers[0].dpdk_port = 0;
	cfg->mbufs = 4095;
	snprintf(eal, cap, "--no-huge --no-pci -m 256 --no-shconf --no-telemetry "
		 "--log-level=*:warning --file-prefix=%s --vdev=%s", o->prefix, o->vdev);
	cfg->eal_args = eal;
	return np_parse_mac(o->peer_mac, cfg->peers[0].mac);
}

static int np_parse(int argc, char **argv, struct np_opts *o)
{
	static const struct option longs[] = {
		{ "count", required_argument, NULL, 'n' }, { "vdev", required_argument, NULL, 'v' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "local-ip", required_argument, NULL, 'l' },
		{ "peer-ip", required_argument, NULL, 'r' },
		{ "peer-mac", required_argument, NULL, 'm' },
		{ "port", required_argument, NULL, 'P' },
		{ "timeout", required_argument, NULL, 't' },
		{ "log-dir", required_argument, NULL, 'd' }, { "shm", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	int c, m;

	for (m = 0; argc >= 2 && m <= NP_STREAM_RECV; m++)
		if (strcmp(argv[1], np_mode_names[m]) == 0)
			break;
	if (argc < 2 || m > NP_STREAM_RECV)
		return -EINVAL;
	o->mode = (enum np_mode)m;
	o->send = o->mode == NP_SEND || o->mode == NP_STREAM_SEND;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case 'n': o->count = strtoull(optarg, NULL, 0); break;
		case 'v': o->vdev = optarg; break;
		case 'p': o->prefix = optarg; break;
		case 'l': o->local_ip = optarg; break;
		case 'r': o->peer_ip = optarg; break;
		case 'm': o->peer_mac = optarg; break;
		case 'P': o->port = (uint16_t)atoi(optarg); break;
		case 't': o->timeout_s = atoi(optarg); break;
		case 'd': o->log_dir = optarg; break;
		case 's': o->shm = optarg; break;
		default: return -EINVAL;
		}
	}
	return optind == argc && o->count && o->vdev && o->prefix && o->local_ip && o->peer_ip &&
	       o->port && o->timeout_s > 0 ? 0 : -EINVAL;
}

static void np_print_stats(const struct np_opts *o, const struct tdm_dp_transport *t)
{
	struct tdm_dp_transport_stats st;

	tdm_dp_transport_stats(t, &st);
	printf("%s: transport tx %llu rx %llu, not ours %llu, bad lower %llu, tx full %llu\n",
	       o->send ? "send" : "echo", (unsigned long long)st.tx_frames,
	       (unsigned long long)st.rx_frames, (unsigned long long)st.rx_not_ours,
	       (unsigned long long)st.rx_bad_lower, (unsigned long long)st.tx_full);
}

/* Wait (bounded) for the link to the peer, then print the line the script waits for. */
static void np_wait_link(const struct np_opts *o, struct tdm_dp_transport *t, uint16_t peer)
{
	uint64_t start = tdm_dp_now_ns();

	while (!tdm_dp_link_up(t, peer) && tdm_dp_now_ns() - start < NP_LINK_NS)
		sched_yield();
	printf("%s: %s, link %s\n", np_mode_names[o->mode], tdm_dp_transport_describe(t),
	       tdm_dp_link_up(t, peer) ? "up" : "down (trying anyway)");
}

/* stream-send / stream-recv: one node's dataplane over the same transport configuration. */
static int ns_main(const struct np_opts *o, const struct tdm_dp_transport_config *tc)
{
	const char *who = np_mode_names[o->mode];
	struct sigaction sa = { .sa_handler = ns_on_signal };
	struct tdm_dp_config dc;
	struct tdm_dp *dp = NULL;
	struct np np = { 0 };
	int rc;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	tdm_dp_config_defaults(&dc);
	dc.cluster_id = NS_CLUSTER;
	dc.transport = *tc;
	rc = tdm_dp_create(&dc, &dp);
	if (rc != 0) {
		fprintf(stderr, "dp_netns_peer %s: dataplane over %s: %s: %s\n", who, o->vdev,
			tdm_strerror(rc), tdm_errmsg());
		return rc == -ENOTSUP ? 77 : 3;
	}
	np.peer = tc->peers[0].node_id;
	np.deadline = tdm_dp_now_ns() + (uint64_t)o->timeout_s * 1000000000u;
	np_wait_link(o, tdm_dp_transport(dp), np.peer);
	rc = o->mode == NP_STREAM_SEND ? ns_run_send(o, &np, dp) : ns_run_recv(o, &np, dp);
	ns_print_dp(who, dp);
	tdm_dp_destroy(dp);
	return rc;
}

int main(int argc, char **argv)
{
	struct np_opts o = { .port = 9000, .timeout_s = 30 };
	struct tdm_dp_transport_config cfg;
	struct np np = { 0 };
	static char eal[512];
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0); /* the script waits for the "link" line in a file */
	if (np_parse(argc, argv, &o) != 0 || np_config(&o, &cfg, eal, sizeof(eal)) != 0) {
		fprintf(stderr, "usage: dp_netns_peer send|echo|stream-send|stream-recv --count N "
			"--vdev SPEC --prefix P --local-ip A --peer-ip B [--peer-mac M] [--port P] "
			"[--timeout S] [--log-dir D] [--shm NAME]\n");
		return 2;
	}
	if (o.mode == NP_STREAM_SEND || o.mode == NP_STREAM_RECV)
		return ns_main(&o, &cfg);
	rc = tdm_dp_transport_create(&cfg, &np.t);
	if (rc != 0) {
		fprintf(stderr, "dp_netns_peer: transport over %s: %s: %s\n", o.vdev,
			tdm_strerror(rc), tdm_errmsg());
		return rc == -ENOTSUP ? 77 : 3;
	}
	np.peer = cfg.peers[0].node_id;
	np.deadline = tdm_dp_now_ns() + (uint64_t)o.timeout_s * 1000000000u;
	np_wait_link(&o, np.t, np.peer);
	rc = o.send ? np_run_send(&np, o.count) : np_run_echo(&np, o.count);
	np_print_stats(&o, np.t);
	tdm_dp_transport_destroy(np.t);
	return rc;
}
