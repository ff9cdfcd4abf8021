/*
 * dp_pingpong, bare-memif mode: the baseline with no tandem code. Each process initialises its
 * own EAL and one memif port and bounces a 64-byte Ethernet frame (broadcast destination,
 * ethertype 0x88b5, the sequence number after the header) with rte_eth_tx_burst and
 * rte_eth_rx_burst, busy polling.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include "dp_pingpong.h"

#define BARE_MAX_ARGS 32
#define BARE_MBUFS 4095u
#define BARE_DESC 512u
#define BARE_BURST 32u
#define BARE_ETHERTYPE 0x88b5u /* IEEE local experimental */

struct bare {
	struct pp_endpoint ep;
	struct rte_mempool *pool;
	uint16_t port;
	struct rte_ether_addr mac;
};

static int bare_fail(char *err, size_t cap, int rc, const char *what)
{
	snprintf(err, cap, "bare-memif: %s: %s", what, rte_strerror(rc < 0 ? -rc : rte_errno));
	return rc < 0 ? rc : -ENODEV;
}

static int bare_send(struct pp_endpoint *e, uint64_t seq)
{
	struct bare *b = (struct bare *)e;
	struct rte_mbuf *m = rte_pktmbuf_alloc(b->pool);
	struct rte_ether_hdr *eth;
	uint8_t *p;

	if (!m)
		return -ENOBUFS;
	p = (uint8_t *)rte_pktmbuf_append(m, PP_FRAME_LEN);
	if (!p) {
		rte_pktmbuf_free(m);
		return -ENOBUFS;
	}
	memset(p, 0, PP_FRAME_LEN);
	eth = (struct rte_ether_hdr *)p;
	memset(&eth->dst_addr, 0xff, sizeof(eth->dst_addr));
	rte_ether_addr_copy(&b->mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(BARE_ETHERTYPE);
	memcpy(p + sizeof(*eth), &seq, sizeof(seq));
	if (rte_eth_tx_burst(b->port, 0, &m, 1) != 1) {
		rte_pktmbuf_free(m);
		return -EAGAIN;
	}
	return 0;
}

static int bare_recv(struct pp_endpoint *e, uint64_t *seq)
{
	struct bare *b = (struct bare *)e;
	struct rte_mbuf *m[BARE_BURST];
	uint16_t n = rte_eth_rx_burst(b->port, 0, m, BARE_BURST);
	int got = 0;

	for (uint16_t i = 0; i < n; i++) {
		if (!got && m[i]->data_len >= sizeof(struct rte_ether_hdr) + sizeof(*seq)) {
			memcpy(seq, rte_pktmbuf_mtod_offset(m[i], uint8_t *,
							    sizeof(struct rte_ether_hdr)),
			       sizeof(*seq));
			got = 1;
		}
		rte_pktmbuf_free(m[i]);
	}
	return got;
}

static int bare_echo(struct pp_endpoint *e)
{
	struct bare *b = (struct bare *)e;
	struct rte_mbuf *m[BARE_BURST];
	uint16_t n = rte_eth_rx_burst(b->port, 0, m, BARE_BURST);
	uint16_t sent = n ? rte_eth_tx_burst(b->port, 0, m, n) : 0;

	for (uint16_t i = sent; i < n; i++)
		rte_pktmbuf_free(m[i]);
	return sent;
}

static bool bare_link_up(struct pp_endpoint *e)
{
	struct bare *b = (struct bare *)e;
	struct rte_eth_link link;

	memset(&link, 0, sizeof(link));
	return rte_eth_link_get_nowait(b->port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

static void bare_close(struct pp_endpoint *e)
{
	struct bare *b = (struct bare *)e;

	rte_eth_dev_stop(b->port);
	rte_eth_dev_close(b->port);
	rte_mempool_free(b->pool);
	free(b);
	rte_eal_cleanup(); /* the process exits next */
}

static const struct pp_endpoint_ops bare_ops = {
	.send = bare_send,
	.recv = bare_recv,
	.echo = bare_echo,
	.link_up = bare_link_up,
	.close = bare_close,
};

static int bare_eal(const struct pp_opts *o, enum pp_role role, char *err, size_t cap)
{
	static char args[1024];   /* the EAL may keep pointers into argv */
	char *argv[BARE_MAX_ARGS];
	int argc = 0;

	pp_eal_args(o, role, args, sizeof(args));
	argv[argc++] = (char *)"dp_pingpong";
	for (char *save = NULL, *tok = strtok_r(args, " ", &save); tok && argc < BARE_MAX_ARGS - 1;
	     tok = strtok_r(NULL, " ", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	if (rte_eal_init(argc, argv) < 0)
		return bare_fail(err, cap, 0, "rte_eal_init (see the EAL's messages above)");
	rmdir(rte_eal_get_runtime_dir()); /* empty with --no-shconf --no-telemetry */
	return 0;
}

static int bare_port(struct bare *b, char *err, size_t cap)
{
	struct rte_eth_conf conf;
	uint16_t nb_rx = BARE_DESC, nb_tx = BARE_DESC;
	int rc;

	memset(&conf, 0, sizeof(conf));
	if (rte_eth_dev_count_avail() < 1)
		return bare_fail(err, cap, -ENODEV, "no memif port (is net_memif built?)");
	b->port = 0;
	rc = rte_eth_dev_configure(b->port, 1, 1, &conf);
	if (rc == 0)
		rc = rte_eth_dev_adjust_nb_rx_tx_desc(b->port, &nb_rx, &nb_tx);
	if (rc == 0)
		rc = rte_eth_rx_queue_setup(b->port, 0, nb_rx, SOCKET_ID_ANY, NULL, b->pool);
	if (rc == 0)
		rc = rte_eth_tx_queue_setup(b->port, 0, nb_tx, SOCKET_ID_ANY, NULL);
	if (rc != 0)
		return bare_fail(err, cap, rc, "port setup");
	rc = rte_eth_dev_start(b->port);
	if (rc != 0)
		return bare_fail(err, cap, rc, "port start (memif client: is the server up?)");
	rc = rte_eth_macaddr_get(b->port, &b->mac);
	return rc == 0 ? 0 : bare_fail(err, cap, rc, "MAC address");
}

int pp_bare_open(const struct pp_opts *o, enum pp_role role, struct pp_endpoint **out,
		 char *err, size_t cap)
{
	struct bare *b;
	int rc = bare_eal(o, role, err, cap);

	if (rc != 0)
		return rc;
	b = calloc(1, sizeof(*b));
	if (!b)
		return bare_fail(err, cap, -ENOMEM, "allocate");
	b->ep.ops = &bare_ops;
	b->pool = rte_pktmbuf_pool_create("pp_pool", BARE_MBUFS, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					  SOCKET_ID_ANY);
	if (!b->pool) {
		free(b);
		return bare_fail(err, cap, 0, "mbuf pool");
	}
	rc = bare_port(b, err, cap);
	if (rc != 0) {
		rte_mempool_free(b->pool);
		free(b);
		return rc;
	}
	*out = &b->ep;
	return 0;
}
