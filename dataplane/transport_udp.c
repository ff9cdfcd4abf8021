/*
 * The udp backend: kernel UDP sockets with batched sendmmsg/recvmmsg. Works anywhere,
 * unprivileged, and is the baseline the DPDK figures are compared against.
 *
 * One non-blocking socket bound to cfg.local_ip:local_port carries every peer; each peer's
 * destination sockaddr is built once at open. The kernel writes the IPv4 and UDP headers, so a
 * buffer's data is the tandem frame itself and cap is mtu - 28.
 *
 * Buffers come from a pool allocated at open and never grown: udp_bufs slots of
 * TDM_DP_MAX_MTU bytes and a stack of free slots, so allocating and freeing are a push and a pop.
 * A receive burst takes its buffers from the pool first (iovecs and message headers are set up
 * at open, only the base pointers change) and gives back the ones recvmmsg did not fill.
 *
 * Errors never stop the caller's poll loop: a full socket buffer counts tx_full and drops the
 * rest of the burst (go-back-N resends), other send errors count tx_errors and skip that frame.
 * The socket does not set IP_RECVERR, so ICMP port-unreachable from a restarting peer is not
 * reported on this unconnected socket; if an ECONNREFUSED surfaces anyway it is ignored.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dp_pvt.h"

#define UDP_DEFAULT_BUFS 1024u
#define UDP_MAX_BUFS 65536u
#define UDP_DEFAULT_SOCKBUF (4u << 20)
#define UDP_MAX_SOCKBUF (1u << 30)
#define UDP_SLOT 9024u /* TDM_DP_MAX_MTU rounded up to a cache line */
#define UDP_RX_MAX (TDM_DP_MAX_MTU - TDM_DP_LOWER_HDRS) /* largest payload of any MTU we allow */
#define UDP_TX_RETRIES 4 /* EINTR or a stale ECONNREFUSED: try the same message again */

_Static_assert(UDP_SLOT >= TDM_DP_MAX_MTU && UDP_SLOT % 64 == 0, "pool slot size");

struct udp_state {
	int fd;
	uint32_t cap;                        /**< tx bytes per frame: mtu - 28 */
	uint32_t n_bufs;
	uint32_t n_free;
	uint8_t *mem;                        /**< n_bufs slots of UDP_SLOT bytes */
	struct tdm_dp_buf *bufs;             /**< one descriptor per slot */
	struct tdm_dp_buf **free_stack;      /**< free_stack[0..n_free) are free */
	struct sockaddr_in dest[TDM_DP_MAX_PEERS]; /**< by index in cfg.peers */
	struct mmsghdr tx_msg[TDM_DP_BURST];
	struct iovec tx_iov[TDM_DP_BURST];
	struct tdm_dp_buf *tx_buf[TDM_DP_BURST];
	struct mmsghdr rx_msg[TDM_DP_BURST];
	struct iovec rx_iov[TDM_DP_BURST];
	struct tdm_dp_buf *rx_buf[TDM_DP_BURST];
	char addr[32];                       /**< "ip:port" we are bound to, for messages */
};

/* ---- Buffer pool ---- */

static struct tdm_dp_buf *udp_buf_alloc(struct tdm_dp_transport *t)
{
	struct udp_state *u = t->backend;
	struct tdm_dp_buf *b;

	if (TDM_DP_UNLIKELY(u->n_free == 0))
		return NULL;
	b = u->free_stack[--u->n_free];
	b->len = 0;
	b->cap = u->cap;
	b->peer = 0;
	b->due_ns = 0;
	return b;
}

static void udp_buf_free(struct tdm_dp_transport *t, struct tdm_dp_buf *b)
{
	struct udp_state *u = t->backend;

	/* More frees than buffers means one was freed twice: a bug of ours, not of the input. */
	assert(u->n_free < u->n_bufs);
	u->free_stack[u->n_free++] = b;
}

static int udp_pool_init(struct tdm_dp_transport *t, struct udp_state *u)
{
	uint32_t n = t->cfg.udp_bufs ? t->cfg.udp_bufs : UDP_DEFAULT_BUFS;

	if (n > UDP_MAX_BUFS)
		return TDM_ERR(-EINVAL, "udp_bufs is %u: use 1..%u (0 = %u)", n, UDP_MAX_BUFS,
			       UDP_DEFAULT_BUFS);
	u->n_bufs = n;
	u->cap = t->mtu - TDM_DP_LOWER_HDRS;
	/* calloc of this size maps fresh pages: untouched slots cost no memory. */
	u->mem = calloc(n, UDP_SLOT);
	u->bufs = calloc(n, sizeof(*u->bufs));
	u->free_stack = calloc(n, sizeof(*u->free_stack));
	if (!u->mem || !u->bufs || !u->free_stack)
		return TDM_ERR(-ENOMEM, "out of memory for %u udp buffers of %u bytes: lower "
			       "udp_bufs", n, UDP_SLOT);
	for (uint32_t i = 0; i < n; i++) {
		u->bufs[i].data = u->mem + (size_t)i * UDP_SLOT;
		u->bufs[i].cap = u->cap;
		u->bufs[i].priv = u;
		/* Highest index at the bottom: the first allocation gets slot 0. */
		u->free_stack[i] = &u->bufs[n - 1 - i];
	}
	u->n_free = n;
	return 0;
}

/* ---- Socket ---- */

/*
 * Large socket buffers absorb bursts while the poll thread is busy elsewhere. As root the FORCE
 * variants pass net.core.wmem_max/rmem_max; otherwise the kernel caps the size silently, which
 * is fine: a smaller buffer only costs drops that go-back-N recovers.
 */
static void udp_set_bufs(int fd, int size)
{
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

static int udp_bind_error(const struct udp_state *u, int e)
{
	if (e == EADDRINUSE)
		return TDM_ERR(-EADDRINUSE, "udp %s is already in use (another node or program "
			       "bound it): set local_port to a free port", u->addr);
	if (e == EADDRNOTAVAIL)
		return TDM_ERR(-EADDRNOTAVAIL, "cannot bind udp %s: no interface of this host has "
			       "that address: set local_ip to one of its addresses", u->addr);
	if (e == EACCES)
		return TDM_ERR(-EACCES, "cannot bind udp %s: ports below 1024 need privileges: "
			       "use a port of 1024 or more", u->addr);
	return TDM_ERR(-e, "cannot bind udp %s: %s", u->addr, strerror(e));
}

static int udp_socket_open(struct tdm_dp_transport *t, struct udp_state *u)
{
	uint32_t sockbuf = t->cfg.socket_buf ? t->cfg.socket_buf : UDP_DEFAULT_SOCKBUF;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char ip[INET_ADDRSTRLEN] = "?";

	sa.sin_addr.s_addr = t->cfg.local_ip;
	sa.sin_port = htons(t->cfg.local_port);
	inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
	snprintf(u->addr, sizeof(u->addr), "%s:%u", ip, t->cfg.local_port);
	if (sockbuf > UDP_MAX_SOCKBUF)
		return TDM_ERR(-EINVAL, "socket_buf is %u bytes: use at most %u (0 = %u)", sockbuf,
			       UDP_MAX_SOCKBUF, UDP_DEFAULT_SOCKBUF);
	u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0)
		return TDM_ERR(-errno, "cannot create a UDP socket: %s", strerror(errno));
	udp_set_bufs(u->fd, (int)sockbuf);
	/* No SO_REUSEADDR: two nodes given the same port must fail here, not share it. */
	if (bind(u->fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0)
		return udp_bind_error(u, errno);
	return 0;
}

/* Destinations and the fixed parts of the message headers, so a burst only fills pointers. */
static void udp_msgs_init(struct tdm_dp_transport *t, struct udp_state *u)
{
	for (int i = 0; i < t->cfg.n_peers; i++) {
		u->dest[i].sin_family = AF_INET;
		u->dest[i].sin_addr.s_addr = t->cfg.peers[i].ip;
		u->dest[i].sin_port = htons(t->cfg.peers[i].port);
	}
	for (int i = 0; i < TDM_DP_BURST; i++) {
		u->tx_msg[i].msg_hdr.msg_iov = &u->tx_iov[i];
		u->tx_msg[i].msg_hdr.msg_iovlen = 1;
		u->tx_msg[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
		u->rx_msg[i].msg_hdr.msg_iov = &u->rx_iov[i];
		u->rx_msg[i].msg_hdr.msg_iovlen = 1;
		u->rx_iov[i].iov_len = UDP_RX_MAX; /* a longer datagram comes back MSG_TRUNC */
	}
}

static void udp_close(struct tdm_dp_transport *t)
{
	struct udp_state *u = t->backend;

	if (!u)
		return;
	if (u->fd >= 0)
		close(u->fd);
	free(u->mem);
	free(u->bufs);
	free(u->free_stack);
	free(u);
	t->backend = NULL;
}

static int udp_open(struct tdm_dp_transport *t)
{
	struct udp_state *u = calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return TDM_ERR(-ENOMEM, "out of memory for the udp transport");
	u->fd = -1;
	t->backend = u;
	if ((rc = udp_pool_init(t, u)) < 0 || (rc = udp_socket_open(t, u)) < 0)
		goto err;
	udp_msgs_init(t, u);
	return 0;
err:
	udp_close(t);
	return rc;
}

/* ---- Bursts ---- */

/* sendmmsg tx_msg[0..m) until all went, the socket is full, or every frame was tried.
 * @return frames the kernel took. */
static int udp_send_msgs(struct tdm_dp_transport *t, struct udp_state *u, int m)
{
	int done = 0, sent = 0, retries = 0;

	while (done < m) {
		int r = sendmmsg(u->fd, u->tx_msg + done, (unsigned)(m - done), MSG_DONTWAIT);
		int e = r < 0 ? errno : 0;
		if (r > 0) {
			for (int i = done; i < done + r; i++)
				t->st.tx_bytes += u->tx_msg[i].msg_len;
			t->st.tx_frames += (uint64_t)r;
			done += r;
			sent += r;
		} else if ((e == EINTR || e == ECONNREFUSED) && retries++ < UDP_TX_RETRIES) {
			continue;
		} else if (r == 0 || e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
			t->st.tx_full += (uint64_t)(m - done);
			break;
		} else {
			/* This frame cannot go (EMSGSIZE, ENETUNREACH): skip it, try the rest. */
			t->st.tx_errors++;
			done++;
		}
	}
	return sent;
}

/* Up to TDM_DP_BURST frames: one message each, then every buffer back to the pool. */
static int udp_tx_chunk(struct tdm_dp_transport *t, struct udp_state *u,
			struct tdm_dp_buf **bufs, int n)
{
	int m = 0, sent;

	for (int i = 0; i < n; i++) {
		struct tdm_dp_buf *b = bufs[i];
		int p = tdm_dp_peer_index(&t->cfg, b->peer);
		if (TDM_DP_UNLIKELY(p < 0 || b->len > u->cap)) {
			t->st.tx_errors++; /* a caller's bug; counted, never sent */
			udp_buf_free(t, b);
			continue;
		}
		u->tx_iov[m].iov_base = b->data;
		u->tx_iov[m].iov_len = b->len;
		u->tx_msg[m].msg_hdr.msg_name = &u->dest[p];
		u->tx_buf[m++] = b;
	}
	sent = m ? udp_send_msgs(t, u, m) : 0;
	for (int i = 0; i < m; i++)
		udp_buf_free(t, u->tx_buf[i]);
	return sent;
}

static int udp_tx_burst(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n)
{
	struct udp_state *u = t->backend;
	int sent = 0;

	for (int i = 0; i < n; i += TDM_DP_BURST)
		sent += udp_tx_chunk(t, u, bufs + i, n - i < TDM_DP_BURST ? n - i : TDM_DP_BURST);
	return sent;
}

/* Hand over the datagrams recvmmsg filled; truncated ones (longer than any MTU we allow) are
 * dropped. @return frames put in bufs. */
static int udp_rx_collect(struct tdm_dp_transport *t, struct udp_state *u, int r,
			  struct tdm_dp_buf **bufs)
{
	int got = 0;

	for (int i = 0; i < r; i++) {
		struct tdm_dp_buf *b = u->rx_buf[i];
		if (TDM_DP_UNLIKELY(u->rx_msg[i].msg_hdr.msg_flags & MSG_TRUNC)) {
			t->st.rx_bad_lower++;
			udp_buf_free(t, b);
			continue;
		}
		b->len = u->rx_msg[i].msg_len;
		b->cap = UDP_RX_MAX; /* the slot's size, so len <= cap even from a larger MTU */
		b->peer = 0;         /* the tandem header names the source */
		t->st.rx_frames++;
		t->st.rx_bytes += b->len;
		bufs[got++] = b;
	}
	return got;
}

/* Datagrams from any address pass: the frame layer checks the source node in the header. */
static int udp_rx_burst(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n)
{
	struct udp_state *u = t->backend;
	int k = n < TDM_DP_BURST ? n : TDM_DP_BURST;
	int r, got;

	if (k > (int)u->n_free)
		k = (int)u->n_free;
	if (TDM_DP_UNLIKELY(k <= 0)) {
		if (n > 0)
			t->st.no_buf++; /* the caller holds every buffer */
		return 0;
	}
	for (int i = 0; i < k; i++) {
		struct tdm_dp_buf *b = u->free_stack[--u->n_free];
		u->rx_buf[i] = b;
		u->rx_iov[i].iov_base = b->data;
	}
	/* EAGAIN is the idle case; other errors (a stale ECONNREFUSED) leave nothing to read. */
	r = recvmmsg(u->fd, u->rx_msg, (unsigned)k, MSG_DONTWAIT, NULL);
	if (r < 0)
		r = 0;
	got = udp_rx_collect(t, u, r, bufs);
	for (int i = r; i < k; i++)
		udp_buf_free(t, u->rx_buf[i]);
	return got;
}

/* ---- The rest of the table ---- */

static bool udp_link_up(struct tdm_dp_transport *t, uint16_t peer)
{
	return true; /* no link state below a kernel socket; liveness is the sender's business */
}

static const char *udp_describe(const struct tdm_dp_transport *t)
{
	return "udp";
}

const struct tdm_dp_backend_ops tdm_dp_udp_ops = {
	.name = "udp",
	.open = udp_open,
	.close = udp_close,
	.buf_alloc = udp_buf_alloc,
	.buf_free = udp_buf_free,
	.tx_burst = udp_tx_burst,
	.rx_burst = udp_rx_burst,
	.link_up = udp_link_up,
	.describe = udp_describe,
};
