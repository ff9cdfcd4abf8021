/*
 * dp_netns_peer: one side of a transport-level exchange over the dpdk backend on a kernel
 * interface (af_packet or af_xdp on a veth), run in a network namespace by test_dp_netns.sh.
 *
 *   dp_netns_peer send|echo --count N --vdev SPEC --prefix P --local-ip A --peer-ip B
 *                 [--peer-mac M] [--port P] [--timeout S]
 *
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
 * Exit status: 0 every frame came back intact (send) / was seen intact (echo); 1 a check failed
 * or time ran out (message on stderr); 2 usage; 3 the transport did not open (the driver is not
 * usable here: the script decides whether that is a failure); 77 the build has no DPDK.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct np_opts {
	bool send;
	uint64_t count;
	const char *vdev, *prefix, *local_ip, *peer_ip, *peer_mac;
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
		{ "timeout", required_argument, NULL, 't' }, { NULL, 0, NULL, 0 },
	};
	int c;

	if (argc < 2 || (strcmp(argv[1], "send") != 0 && strcmp(argv[1], "echo") != 0))
		return -EINVAL;
	o->send = strcmp(argv[1], "send") == 0;
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

int main(int argc, char **argv)
{
	struct np_opts o = { .port = 9000, .timeout_s = 30 };
	struct tdm_dp_transport_config cfg;
	struct np np = { 0 };
	static char eal[512];
	uint64_t start;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0); /* the script waits for the "link" line in a file */
	if (np_parse(argc, argv, &o) != 0 || np_config(&o, &cfg, eal, sizeof(eal)) != 0) {
		fprintf(stderr, "usage: dp_netns_peer send|echo --count N --vdev SPEC --prefix P "
			"--local-ip A --peer-ip B [--peer-mac M] [--port P] [--timeout S]\n");
		return 2;
	}
	rc = tdm_dp_transport_create(&cfg, &np.t);
	if (rc != 0) {
		fprintf(stderr, "dp_netns_peer: transport over %s: %s: %s\n", o.vdev,
			tdm_strerror(rc), tdm_errmsg());
		return rc == -ENOTSUP ? 77 : 3;
	}
	np.peer = cfg.peers[0].node_id;
	start = tdm_dp_now_ns();
	np.deadline = start + (uint64_t)o.timeout_s * 1000000000u;
	while (!tdm_dp_link_up(np.t, np.peer) && tdm_dp_now_ns() - start < NP_LINK_NS)
		sched_yield();
	printf("%s: %s, link %s\n", o.send ? "send" : "echo", tdm_dp_transport_describe(np.t),
	       tdm_dp_link_up(np.t, np.peer) ? "up" : "down (trying anyway)");
	rc = o.send ? np_run_send(&np, o.count) : np_run_echo(&np, o.count);
	np_print_stats(&o, np.t);
	tdm_dp_transport_destroy(np.t);
	return rc;
}
