/*
 * cmocka tests of the dataplane transports (dataplane/transport.c, transport_udp.c): the udp
 * backend between two transports of this process on 127.0.0.1, configuration checks, the buffer
 * pool, and the fault layer (drop, duplicate, reorder, delay, cut, seeded reproducibility).
 *
 * Frames here are not real tandem frames: the transport only looks at the source node (bytes
 * 16-17 of the header, little-endian) when a link is cut. Each frame carries an id at bytes
 * 48-51 and bytes that are a function of (id, offset), so every byte can be checked.
 *
 * Waiting is bounded polling, never a clock: a test polls until it has what it expects or gives
 * up after many rounds and fails.
 *
 * Usage: test_dp_transport [unit]. Exits 77 when no UDP socket can be bound on 127.0.0.1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tassert.h"
#include "tdm_dp.h"

#define NODE_A 1
#define NODE_B 2
#define FRAME_MIN 52u       /* header (48) + id */
#define POLL_ROUNDS 200000  /* give up after this many empty polls (with short sleeps: ~20 s) */
#define MAX_RX 1100

/* ---- Fixture: two transports, A (node 1) and B (node 2), each the other's peer ---- */

struct fx {
	struct tdm_dp_transport *a, *b;
	uint16_t port_a, port_b;
	uint32_t rx_ids[MAX_RX];   /* ids received by the last recv_frames, in order */
	int n_rx;
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	tdm_dp_transport_destroy(fx->a);
	tdm_dp_transport_destroy(fx->b);
	free(fx);
	return 0;
}

/* First port to try: spread by pid so parallel runs rarely collide, below the ephemeral range. */
static uint16_t port_base(int attempt)
{
	return (uint16_t)(10000 + ((unsigned)getpid() * 2 + (unsigned)attempt * 2 * 1009) % 20000);
}

static void config(struct tdm_dp_transport_config *c, uint16_t self, uint16_t port,
		   uint16_t peer, uint16_t peer_port)
{
	tdm_dp_transport_config_defaults(c);
	c->node_id = self;
	c->local_port = port;
	c->n_peers = 1;
	c->peers[0].node_id = peer;
	c->peers[0].ip = htonl(INADDR_LOOPBACK);
	c->peers[0].port = peer_port;
}

/*
 * Open A and B on free ports (retrying on EADDRINUSE). bufs_* = 0 for the default pool, faults
 * for A (NULL: none), mtu for both (0: default).
 */
static void open_pair(struct fx *fx, uint32_t bufs_a, uint32_t bufs_b,
		      const struct tdm_dp_faults *faults, uint32_t mtu)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		struct tdm_dp_transport_config ca, cb;
		uint16_t pa = port_base(attempt), pb = (uint16_t)(pa + 1);
		config(&ca, NODE_A, pa, NODE_B, pb);
		config(&cb, NODE_B, pb, NODE_A, pa);
		ca.udp_bufs = bufs_a;
		cb.udp_bufs = bufs_b;
		ca.mtu = cb.mtu = mtu;
		if (faults)
			ca.faults = *faults;
		int rc = tdm_dp_transport_create(&ca, &fx->a);
		if (rc == -EADDRINUSE)
			continue;
		assert_rc(rc, 0);
		rc = tdm_dp_transport_create(&cb, &fx->b);
		if (rc == -EADDRINUSE) {
			tdm_dp_transport_destroy(fx->a);
			fx->a = NULL;
			continue;
		}
		assert_rc(rc, 0);
		fx->port_a = pa;
		fx->port_b = pb;
		return;
	}
	fail_msg("no free pair of UDP ports on 127.0.0.1 after 100 tries");
}

static struct tdm_dp_transport_stats stats(struct tdm_dp_transport *t)
{
	struct tdm_dp_transport_stats s;
	tdm_dp_transport_stats(t, &s);
	return s;
}

/* ---- Frames ---- */

static uint8_t pattern(uint32_t id, uint32_t i)
{
	return (uint8_t)(id * 131u + i * 7u + (i >> 8));
}

/* Bytes of frame id: the pattern, with src at 16 and id at 48 (both little-endian). */
static void frame_fill(uint8_t *p, uint32_t len, uint16_t src, uint32_t id)
{
	for (uint32_t i = 0; i < len; i++)
		p[i] = pattern(id, i);
	p[16] = (uint8_t)src;
	p[17] = (uint8_t)(src >> 8);
	for (int i = 0; i < 4; i++)
		p[48 + i] = (uint8_t)(id >> (8 * i));
}

/* A length per id between FRAME_MIN and cap, so bursts mix sizes and hit the maximum. */
static uint32_t frame_len(uint32_t id, uint32_t cap)
{
	return id % 7 == 6 ? cap : FRAME_MIN + (id * 389u) % (cap - FRAME_MIN);
}

static struct tdm_dp_buf *frame_new(struct tdm_dp_transport *t, uint16_t src, uint16_t dst,
				    uint32_t id)
{
	struct tdm_dp_buf *b = tdm_dp_buf_alloc(t);
	assert_non_null(b);
	b->len = frame_len(id, b->cap);
	b->peer = dst;
	frame_fill(b->data, b->len, src, id);
	return b;
}

/* The id of a received frame, after checking every byte against what frame_new wrote. */
static uint32_t frame_check(const struct tdm_dp_buf *b, uint16_t src, uint32_t cap)
{
	static uint8_t want[TDM_DP_MAX_MTU];
	uint32_t id;

	assert_true(b->len >= FRAME_MIN);
	id = (uint32_t)b->data[48] | (uint32_t)b->data[49] << 8 | (uint32_t)b->data[50] << 16 |
	     (uint32_t)b->data[51] << 24;
	assert_u64(b->len, frame_len(id, cap));
	frame_fill(want, b->len, src, id);
	assert_memory_equal(b->data, want, b->len);
	return id;
}

/* Send ids [first, first + n) from `from` (node src) to dst in bursts of TDM_DP_BURST.
 * @return what tdm_dp_tx_burst returned in total. */
static int send_frames(struct tdm_dp_transport *from, uint16_t src, uint16_t dst,
		       uint32_t first, int n)
{
	struct tdm_dp_buf *bufs[TDM_DP_BURST];
	int sent = 0;

	for (int i = 0; i < n; i += TDM_DP_BURST) {
		int k = n - i < TDM_DP_BURST ? n - i : TDM_DP_BURST;
		for (int j = 0; j < k; j++)
			bufs[j] = frame_new(from, src, dst, first + (uint32_t)(i + j));
		sent += tdm_dp_tx_burst(from, bufs, k);
	}
	return sent;
}

/* Take in what is there now on to (a burst), checking contents; ids go to fx->rx_ids. */
static int recv_once(struct fx *fx, struct tdm_dp_transport *to, uint16_t src, uint32_t cap)
{
	struct tdm_dp_buf *bufs[TDM_DP_BURST];
	int got = tdm_dp_rx_burst(to, bufs, TDM_DP_BURST);

	for (int i = 0; i < got; i++) {
		assert_true(fx->n_rx < MAX_RX);
		fx->rx_ids[fx->n_rx++] = frame_check(bufs[i], src, cap);
		tdm_dp_buf_free(to, bufs[i]);
	}
	return got;
}

/* Drain `other` too (a sender releases held and delayed frames when it polls), and back off
 * to short sleeps so a loaded machine is given time. */
static void poll_pause(struct tdm_dp_transport *other, int round)
{
	struct tdm_dp_buf *bufs[TDM_DP_BURST];
	int got = other ? tdm_dp_rx_burst(other, bufs, TDM_DP_BURST) : 0;

	for (int i = 0; i < got; i++)
		tdm_dp_buf_free(other, bufs[i]);
	if (round < 1000)
		sched_yield();
	else
		usleep(100);
}

/* Poll `to` until want frames (from node src) arrived; `other` is polled alongside. */
static void recv_frames(struct fx *fx, struct tdm_dp_transport *to, uint16_t src, uint32_t cap,
			struct tdm_dp_transport *other, int want)
{
	fx->n_rx = 0;
	for (int round = 0; fx->n_rx < want && round < POLL_ROUNDS; round++)
		if (recv_once(fx, to, src, cap) == 0)
			poll_pause(other, round);
	if (fx->n_rx != want)
		fail_msg("received %d frames, want %d", fx->n_rx, want);
}

/* ---- Configuration ---- */

static void test_backend_names(void **state)
{
	enum tdm_dp_backend b;

	assert_rc(tdm_dp_backend_parse("udp", &b), 0);
	assert_int_equal(b, TDM_DP_BACKEND_UDP);
	assert_rc(tdm_dp_backend_parse("dpdk", &b), 0);
	assert_int_equal(b, TDM_DP_BACKEND_DPDK);
	assert_rc(tdm_dp_backend_parse("tcp", &b), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "tcp"));
	assert_rc(tdm_dp_backend_parse(NULL, &b), -EINVAL);
	assert_string_equal(tdm_dp_backend_name(TDM_DP_BACKEND_UDP), "udp");
	assert_string_equal(tdm_dp_backend_name(TDM_DP_BACKEND_DPDK), "dpdk");
	assert_string_equal(tdm_dp_backend_name((enum tdm_dp_backend)99), "?");
}

/* create must fail with code and a message containing what. */
static void expect_bad(const struct tdm_dp_transport_config *c, int code, const char *what)
{
	struct tdm_dp_transport *t = (void *)1;

	tdm_err_clear();
	assert_rc(tdm_dp_transport_create(c, &t), code);
	assert_null(t);
	if (!strstr(tdm_errmsg(), what))
		fail_msg("errmsg '%s' does not name '%s'", tdm_errmsg(), what);
}

static void test_bad_configs(void **state)
{
	struct tdm_dp_transport_config good, c;

	config(&good, NODE_A, 40000, NODE_B, 40001);
	c = good, c.node_id = 0;
	expect_bad(&c, -EINVAL, "node_id");
	c = good, c.n_peers = 0;
	expect_bad(&c, -EINVAL, "n_peers");
	c = good, c.n_peers = TDM_DP_MAX_PEERS + 1;
	expect_bad(&c, -EINVAL, "n_peers");
	c = good, c.peers[0].node_id = 0;
	expect_bad(&c, -EINVAL, "peers[0].node_id");
	c = good, c.peers[0].node_id = NODE_A;
	expect_bad(&c, -EINVAL, "peers[0].node_id");
	c = good, c.n_peers = 2, c.peers[1] = c.peers[0];
	expect_bad(&c, -EINVAL, "peers[1]");
	c = good, c.peers[0].ip = 0;
	expect_bad(&c, -EINVAL, "ip");
	c = good, c.peers[0].port = 0;
	expect_bad(&c, -EINVAL, "port");
	c = good, c.mtu = 575;
	expect_bad(&c, -EINVAL, "mtu");
	c = good, c.mtu = TDM_DP_MAX_MTU + 1;
	expect_bad(&c, -EINVAL, "mtu");
	c = good, c.local_port = 0;
	expect_bad(&c, -EINVAL, "local_port");
	c = good, c.faults.reorder = 1001;
	expect_bad(&c, -EINVAL, "faults.reorder");
	c = good, c.backend = (enum tdm_dp_backend)9;
	expect_bad(&c, -EINVAL, "backend");
	c = good, c.udp_bufs = 1u << 20;
	expect_bad(&c, -EINVAL, "udp_bufs");
	c = good, c.socket_buf = 2u << 30;
	expect_bad(&c, -EINVAL, "socket_buf");
#ifndef TDM_HAVE_DPDK
	c = good, c.backend = TDM_DP_BACKEND_DPDK;
	expect_bad(&c, -ENOTSUP, "DPDK");
#endif
	assert_rc(tdm_dp_transport_create(NULL, NULL), -EINVAL);
}

static void test_port_in_use(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_transport_config c;
	struct tdm_dp_transport *t = NULL;
	char addr[32];

	open_pair(fx, 0, 0, NULL, 0);
	config(&c, 3, fx->port_a, NODE_B, fx->port_b);
	expect_bad(&c, -EADDRINUSE, "local_port");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", fx->port_a);
	assert_non_null(strstr(tdm_errmsg(), addr));
	/* Once the owner is gone the port is free again (no SO_REUSEADDR needed for UDP). */
	tdm_dp_transport_destroy(fx->a);
	fx->a = NULL;
	assert_rc(tdm_dp_transport_create(&c, &t), 0);
	tdm_dp_transport_destroy(t);
}

/* ---- The udp backend ---- */

static void test_burst_roundtrip(void **state)
{
	struct fx *fx = *state;
	uint64_t bytes = 0;

	open_pair(fx, 0, 0, NULL, 0);
	assert_string_equal(tdm_dp_transport_describe(fx->a), "udp");
	assert_true(tdm_dp_link_up(fx->a, NODE_B));
	assert_false(tdm_dp_link_up(fx->a, 77));
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 64), 64);
	recv_frames(fx, fx->b, NODE_A, 1472, NULL, 64);
	for (int i = 0; i < 64; i++) {
		assert_int_equal(fx->rx_ids[i], i); /* loopback keeps one socket's order */
		bytes += frame_len((uint32_t)i, 1472);
	}
	assert_u64(stats(fx->a).tx_frames, 64);
	assert_u64(stats(fx->a).tx_bytes, bytes);
	assert_u64(stats(fx->b).rx_frames, 64);
	assert_u64(stats(fx->b).rx_bytes, bytes);
	/* And back the other way. */
	assert_int_equal(send_frames(fx->b, NODE_B, NODE_A, 100, 5), 5);
	recv_frames(fx, fx->a, NODE_B, 1472, NULL, 5);
	assert_int_equal(fx->rx_ids[4], 104);
}

static void test_jumbo_mtu(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_buf *b;

	open_pair(fx, 0, 0, NULL, TDM_DP_MAX_MTU);
	b = tdm_dp_buf_alloc(fx->a);
	assert_non_null(b);
	assert_int_equal(b->cap, TDM_DP_MAX_MTU - TDM_DP_LOWER_HDRS);
	tdm_dp_buf_free(fx->a, b);
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 6, 8), 8); /* id 6, 13: full size */
	recv_frames(fx, fx->b, NODE_A, TDM_DP_MAX_MTU - TDM_DP_LOWER_HDRS, NULL, 8);
}

static void test_tx_errors(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_buf *bufs[2];

	open_pair(fx, 8, 0, NULL, 0);
	bufs[0] = frame_new(fx->a, NODE_A, 77, 0); /* not a peer */
	bufs[1] = frame_new(fx->a, NODE_A, NODE_B, 1);
	bufs[1]->len = bufs[1]->cap + 1;            /* longer than the MTU allows */
	assert_int_equal(tdm_dp_tx_burst(fx->a, bufs, 2), 0);
	assert_u64(stats(fx->a).tx_errors, 2);
	/* Both buffers went back to the pool. */
	for (int i = 0; i < 8; i++)
		assert_non_null(tdm_dp_buf_alloc(fx->a));
}

static void test_pool_exhaustion(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_buf *bufs[8], *extra[TDM_DP_BURST];

	open_pair(fx, 8, 4, NULL, 0);
	for (int i = 0; i < 8; i++) {
		bufs[i] = tdm_dp_buf_alloc(fx->a);
		assert_non_null(bufs[i]);
		for (int j = 0; j < i; j++)
			assert_ptr_not_equal(bufs[i], bufs[j]);
		assert_int_equal(bufs[i]->cap, 1472);
	}
	assert_null(tdm_dp_buf_alloc(fx->a));
	assert_u64(stats(fx->a).no_buf, 1);
	tdm_dp_buf_free(fx->a, bufs[3]);
	bufs[3] = tdm_dp_buf_alloc(fx->a);
	assert_non_null(bufs[3]);
	for (int i = 0; i < 8; i++)
		tdm_dp_buf_free(fx->a, bufs[i]);

	/* B has 4 buffers: while the caller holds them all, a receive takes nothing. */
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 4), 4);
	int got = 0;
	for (int round = 0; got < 4 && round < POLL_ROUNDS; round++) {
		int k = tdm_dp_rx_burst(fx->b, extra + got, TDM_DP_BURST - got);
		got += k;
		if (!k)
			poll_pause(NULL, round);
	}
	assert_int_equal(got, 4);
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 4, 1), 1);
	assert_int_equal(tdm_dp_rx_burst(fx->b, extra + 4, 1), 0);
	assert_true(stats(fx->b).no_buf >= 1);
	for (int i = 0; i < 4; i++)
		tdm_dp_buf_free(fx->b, extra[i]);
	recv_frames(fx, fx->b, NODE_A, 1472, NULL, 1); /* the fifth waited in the socket */
	assert_int_equal(fx->rx_ids[0], 4);
}

/* Raw datagrams from a plain socket: any source passes, oversized ones are dropped. */
static void test_raw_datagrams(void **state)
{
	struct fx *fx = *state;
	static uint8_t big[TDM_DP_MAX_MTU + 100];
	struct sockaddr_in to = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	assert_true(fd >= 0);
	open_pair(fx, 0, 0, NULL, 0);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	to.sin_port = htons(fx->port_b);
	assert_true(sendto(fd, big, sizeof(big), 0, (void *)&to, sizeof(to)) == sizeof(big));
	uint32_t len = frame_len(42, 1472);
	frame_fill(big, len, NODE_A, 42);
	assert_true(sendto(fd, big, len, 0, (void *)&to, sizeof(to)) == (ssize_t)len);
	close(fd);
	fx->n_rx = 0;
	for (int round = 0; fx->n_rx < 1 && round < POLL_ROUNDS; round++)
		if (!recv_once(fx, fx->b, NODE_A, 1472))
			poll_pause(NULL, round);
	/* The oversized datagram was sent first and one socket keeps order. */
	assert_u64(stats(fx->b).rx_bad_lower, 1);
	assert_int_equal(fx->n_rx, 1);
	assert_int_equal(fx->rx_ids[0], 42);
}

/* ---- Fault layer ---- */

static void test_fault_drop(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_faults f = { .drop = 1000 };
	struct tdm_dp_faults none = { 0 };

	open_pair(fx, 0, 0, &f, 0);
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 40), 0);
	assert_u64(stats(fx->a).fault_drop, 40);
	assert_u64(stats(fx->a).tx_frames, 0); /* nothing reached the kernel */
	/* A frame sent with faults off afterwards is the only one that arrives. */
	tdm_dp_set_faults(fx->a, &none);
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 500, 1), 1);
	recv_frames(fx, fx->b, NODE_A, 1472, fx->a, 1);
	assert_int_equal(fx->rx_ids[0], 500);
	assert_u64(stats(fx->b).rx_frames, 1);
}

static void test_fault_duplicate(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_faults f = { .duplicate = 1000 };
	int count[10] = { 0 };

	open_pair(fx, 0, 0, &f, 0);
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 10), 20);
	assert_u64(stats(fx->a).fault_duplicate, 10);
	recv_frames(fx, fx->b, NODE_A, 1472, fx->a, 20);
	for (int i = 0; i < 20; i++) {
		assert_true(fx->rx_ids[i] < 10);
		count[fx->rx_ids[i]]++;
	}
	for (int i = 0; i < 10; i++)
		assert_int_equal(count[i], 2);
}

/* With every buffer in the burst there is none to copy into: frames go once, uncounted. */
static void test_fault_duplicate_no_buf(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_faults f = { .duplicate = 1000 };

	open_pair(fx, 8, 0, &f, 0);
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 8), 8);
	assert_u64(stats(fx->a).fault_duplicate, 0);
	recv_frames(fx, fx->b, NODE_A, 1472, fx->a, 8);
}

/* Is ids[0..n) a permutation of first..first+n-1, and not in order? */
static void assert_shuffled(const uint32_t *ids, int n, uint32_t first)
{
	bool seen[64] = { false };
	bool in_order = true;

	assert_true(n <= 64);
	for (int i = 0; i < n; i++) {
		assert_true(ids[i] >= first && ids[i] < first + (uint32_t)n);
		assert_false(seen[ids[i] - first]);
		seen[ids[i] - first] = true;
		in_order = in_order && ids[i] == first + (uint32_t)i;
	}
	assert_false(in_order);
}

static void test_fault_reorder(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_faults f = { .reorder = 1000 };

	open_pair(fx, 0, 0, &f, 0);
	/* Every frame wants to be held, one at a time: pairs swap. */
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 16), 16);
	assert_u64(stats(fx->a).fault_reorder, 8);
	recv_frames(fx, fx->b, NODE_A, 1472, fx->a, 16);
	assert_shuffled(fx->rx_ids, 16, 0);
	/* An odd count leaves the last one held: it goes on A's next receive call. */
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 100, 3), 2);
	assert_u64(stats(fx->a).tx_frames, 18);
	recv_frames(fx, fx->b, NODE_A, 1472, fx->a, 3);
	assert_shuffled(fx->rx_ids, 3, 100);
	assert_int_equal(fx->rx_ids[2], 102);
	assert_u64(stats(fx->a).tx_frames, 19);
}

static void test_fault_delay(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_faults f = { .delay = 1000, .delay_ns = 20 * 1000 * 1000 };

	open_pair(fx, 0, 0, &f, 0);
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 6), 0);
	assert_u64(stats(fx->a).fault_delay, 6);
	assert_u64(stats(fx->a).tx_frames, 0);
	/* Nothing went to the kernel, so B finds nothing however often it looks. */
	for (int i = 0; i < 100; i++)
		assert_int_equal(recv_once(fx, fx->b, NODE_A, 1472), 0);
	/* A's polls release them once due, in order. */
	recv_frames(fx, fx->b, NODE_A, 1472, fx->a, 6);
	for (int i = 0; i < 6; i++)
		assert_int_equal(fx->rx_ids[i], i);
	assert_u64(stats(fx->a).tx_frames, 6);
}

/* A full delay FIFO sends at once; destroy gives held frames back (ASan checks the rest). */
static void test_fault_delay_full(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_faults f = { .delay = 1000, .delay_ns = 3600ull * 1000 * 1000 * 1000 };
	const int n = 300, held = 256; /* TDM_DP_HOLD_MAX */

	open_pair(fx, 0, 0, &f, 0);
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, n), n - held);
	assert_u64(stats(fx->a).fault_delay, held);
	recv_frames(fx, fx->b, NODE_A, 1472, fx->a, n - held);
	for (int i = 0; i < n - held; i++)
		assert_int_equal(fx->rx_ids[i], held + i);
}

static void test_fault_cut(void **state)
{
	struct fx *fx = *state;

	open_pair(fx, 0, 0, NULL, 0);
	assert_rc(tdm_dp_cut(fx->a, 77, true), -ENOENT);
	assert_rc(tdm_dp_cut(fx->a, NODE_B, true), 0);
	assert_false(tdm_dp_link_up(fx->a, NODE_B));
	assert_true(tdm_dp_link_up(fx->b, NODE_A));
	/* A -> B: dropped on A's way out. */
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 4), 0);
	assert_u64(stats(fx->a).fault_cut_tx, 4);
	assert_u64(stats(fx->a).tx_frames, 0);
	/* B -> A: B sends, A drops what names B as its source. */
	assert_int_equal(send_frames(fx->b, NODE_B, NODE_A, 10, 4), 4);
	for (int round = 0; stats(fx->a).fault_cut_rx < 4 && round < POLL_ROUNDS; round++) {
		assert_int_equal(recv_once(fx, fx->a, NODE_B, 1472), 0);
		poll_pause(NULL, round);
	}
	assert_u64(stats(fx->a).fault_cut_rx, 4);
	/* Heal: both ways work again. */
	assert_rc(tdm_dp_cut(fx->a, NODE_B, false), 0);
	assert_true(tdm_dp_link_up(fx->a, NODE_B));
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 20, 4), 4);
	recv_frames(fx, fx->b, NODE_A, 1472, NULL, 4);
	assert_int_equal(fx->rx_ids[0], 20);
	assert_int_equal(send_frames(fx->b, NODE_B, NODE_A, 30, 4), 4);
	recv_frames(fx, fx->a, NODE_B, 1472, NULL, 4);
	assert_int_equal(fx->rx_ids[0], 30);
}

static void test_fault_cut_all(void **state)
{
	struct fx *fx = *state;
	struct tdm_dp_buf *b;

	open_pair(fx, 0, 0, NULL, 0);
	assert_rc(tdm_dp_cut(fx->a, 0, true), 0);
	assert_false(tdm_dp_link_up(fx->a, NODE_B));
	assert_int_equal(send_frames(fx->a, NODE_A, NODE_B, 0, 3), 0);
	assert_u64(stats(fx->a).fault_cut_tx, 3);
	assert_rc(tdm_dp_cut(fx->a, 0, false), 0);
	assert_true(tdm_dp_link_up(fx->a, NODE_B));

	/* A frame too short for a header passes a cut of one peer (frame checks drop it). */
	assert_rc(tdm_dp_cut(fx->a, NODE_B, true), 0);
	b = tdm_dp_buf_alloc(fx->b);
	assert_non_null(b);
	memset(b->data, 0, 20);
	b->len = 20;
	b->peer = NODE_A;
	assert_int_equal(tdm_dp_tx_burst(fx->b, &b, 1), 1);
	int got = 0;
	for (int round = 0; !got && round < POLL_ROUNDS; round++) {
		got = tdm_dp_rx_burst(fx->a, &b, 1);
		if (!got)
			poll_pause(NULL, round);
	}
	assert_int_equal(got, 1);
	assert_int_equal(b->len, 20);
	tdm_dp_buf_free(fx->a, b);
	assert_u64(stats(fx->a).fault_cut_rx, 0);
}

/* Which of ids first..first+63 arrive with drop = 500 and this seed. */
static uint64_t drop_pattern(struct fx *fx, uint64_t seed, uint32_t first)
{
	struct tdm_dp_faults f = { .drop = 500, .seed = seed };
	uint64_t dropped = stats(fx->a).fault_drop, mask = 0;
	int sent;

	tdm_dp_set_faults(fx->a, &f);
	sent = send_frames(fx->a, NODE_A, NODE_B, first, 64);
	assert_u64(stats(fx->a).fault_drop - dropped, (uint64_t)(64 - sent));
	recv_frames(fx, fx->b, NODE_A, 1472, fx->a, sent);
	for (int i = 0; i < fx->n_rx; i++)
		mask |= 1ull << (fx->rx_ids[i] - first);
	return mask;
}

static void test_fault_seed(void **state)
{
	struct fx *fx = *state;
	uint64_t m1, m2, m3, z1, z2;

	open_pair(fx, 0, 0, NULL, 0);
	m1 = drop_pattern(fx, 12345, 0);
	m2 = drop_pattern(fx, 12345, 100);
	m3 = drop_pattern(fx, 777, 200);
	z1 = drop_pattern(fx, 0, 300);
	z2 = drop_pattern(fx, 0, 400);
	assert_u64(m1, m2);
	assert_u64(z1, z2);
	assert_true(m1 != m3);
	assert_true(m1 != 0 && m1 != UINT64_MAX); /* half dropped: some, not all */
}

/* ---- Groups and main ---- */

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

static int run_unit(void)
{
	const struct CMUnitTest tests[] = {
		T(test_backend_names),
		T(test_bad_configs),
		T(test_port_in_use),
		T(test_burst_roundtrip),
		T(test_jumbo_mtu),
		T(test_tx_errors),
		T(test_pool_exhaustion),
		T(test_raw_datagrams),
		T(test_fault_drop),
		T(test_fault_duplicate),
		T(test_fault_duplicate_no_buf),
		T(test_fault_reorder),
		T(test_fault_delay),
		T(test_fault_delay_full),
		T(test_fault_cut),
		T(test_fault_cut_all),
		T(test_fault_seed),
	};
	return cmocka_run_group_tests_name("dp-transport", tests, NULL, NULL);
}

/* Exit 77 (skip) when this machine cannot bind a UDP socket on 127.0.0.1. */
static void require_machine(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (void *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "SKIP: cannot bind a UDP socket on 127.0.0.1 (%s): the tests need "
			"a loopback interface\n", strerror(errno));
		exit(77);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	const char *group = argc > 1 ? argv[1] : "";

	if (*group && strcmp(group, "unit")) {
		fprintf(stderr, "usage: %s [unit]\n", argv[0]);
		return 2;
	}
	require_machine();
	return run_unit() ? 1 : 0;
}
