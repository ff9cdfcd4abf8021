/*
 * A memif client that connects and disconnects over and over, for tests/test_dp_mesh.c: each
 * cycle starts the port (connect), waits for the link, receives for 0 to 2 ms, and stops it
 * (disconnect). The memif server on the other side sees a disconnect at a random moment of its
 * bursts every cycle: that is when the PMD's disconnect on the interrupt thread used to unmap
 * the shared region under a running burst (see dataplane/dpdk_memif.c).
 *
 * Raw DPDK, not the dataplane: the dataplane never stops a connected port.
 *
 * Usage: dp_memif_flap SOCKET CYCLES. Exits 0 when every cycle connected, 1 otherwise (with a
 * message), 2 on bad usage. Dies with its parent (PR_SET_PDEATHSIG).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#define WAIT_S 10 /* bound on one cycle's connect, not an assertion */
#define RETRY_S 2 /* a connect not up by then was refused by the server: try again */

static void drain(void)
{
	struct rte_mbuf *m[32];
	uint16_t n = rte_eth_rx_burst(0, 0, m, 32);

	rte_pktmbuf_free_bulk(m, n);
}

/* Start port 0 and wait for its link; a server that still had our previous connection refuses
 * the new one ("Already connected"): stop and start again after RETRY_S (never sooner: closing
 * a connection the server has not accepted yet crashes it, see dataplane/dpdk_memif.c).
 * @return 0, or -1 when WAIT_S passed. */
static int connect_once(void)
{
	uint64_t hz = rte_get_timer_hz(), deadline = rte_get_timer_cycles() + WAIT_S * hz;
	struct rte_eth_link link;

	for (;;) {
		uint64_t retry = rte_get_timer_cycles() + RETRY_S * hz;

		while (rte_eth_dev_start(0) != 0) {
			if (rte_get_timer_cycles() > deadline)
				return -1;
			usleep(1000); /* the server is not listening yet */
		}
		do {
			drain();
			memset(&link, 0, sizeof(link));
			rte_eth_link_get_nowait(0, &link);
			if (link.link_status == RTE_ETH_LINK_UP)
				return 0;
		} while (rte_get_timer_cycles() < retry);
		rte_eth_dev_stop(0);
		if (rte_get_timer_cycles() > deadline)
			return -1;
	}
}

int main(int argc, char **argv)
{
	char prefix[64], vdev[300];
	char *eal[] = { argv[0], "--no-huge", "--no-pci", "-m", "64", "--no-shconf",
			"--no-telemetry", "--log-level=*:error", prefix, vdev, NULL };
	struct rte_eth_conf conf;
	struct rte_mempool *pool;
	int cycles;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (argc != 3 || (cycles = atoi(argv[2])) <= 0) {
		fprintf(stderr, "usage: %s SOCKET CYCLES\n", argv[0]);
		return 2;
	}
	snprintf(prefix, sizeof(prefix), "--file-prefix=dpflap_%d", (int)getpid());
	snprintf(vdev, sizeof(vdev), "--vdev=net_memif0,role=client,socket=%s,socket-abstract=no",
		 argv[1]);
	if (rte_eal_init(10, eal) < 0) {
		fprintf(stderr, "dp_memif_flap: EAL init failed\n");
		return 1;
	}
	rmdir(rte_eal_get_runtime_dir()); /* empty with --no-shconf */
	pool = rte_pktmbuf_pool_create("flap", 2047, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
				       SOCKET_ID_ANY);
	memset(&conf, 0, sizeof(conf));
	if (!pool || rte_eth_dev_configure(0, 1, 1, &conf) != 0 ||
	    rte_eth_rx_queue_setup(0, 0, 1024, SOCKET_ID_ANY, NULL, pool) != 0 ||
	    rte_eth_tx_queue_setup(0, 0, 1024, SOCKET_ID_ANY, NULL) != 0) {
		fprintf(stderr, "dp_memif_flap: port setup failed\n");
		return 1;
	}
	srand((unsigned)getpid());
	for (int i = 0; i < cycles; i++) {
		uint64_t until;

		if (connect_once() != 0) {
			fprintf(stderr, "dp_memif_flap: cycle %d did not connect within %d s\n", i,
				WAIT_S);
			return 1;
		}
		until = rte_get_timer_cycles() + rte_get_timer_hz() / 10000 * (uint64_t)(rand() % 21);
		while (rte_get_timer_cycles() < until)
			drain();
		rte_eth_dev_stop(0);
	}
	printf("dp_memif_flap: %d cycles connected\n", cycles);
	return 0;
}
