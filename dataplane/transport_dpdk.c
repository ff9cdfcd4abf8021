/*
 * The dpdk transport backend: tandem frames over DPDK ethdev ports (memif between processes on
 * one host, af_packet / af_xdp on kernel interfaces, PCI poll-mode drivers on dedicated NICs).
 *
 * We build the lower headers ourselves, so frames are ordinary UDP/IPv4 datagrams that cross L3
 * switches and spread over NIC RSS queues:
 *
 *   offset  size  field
 *        0     6  Ethernet destination: the peer's MAC (all zero in the config: ff:ff:ff:ff:ff:ff)
 *        6     6  Ethernet source: the port's MAC
 *       12     2  ethertype 0x0800 (rx also accepts one 802.1Q tag, 0x8100 + 2 bytes, before it)
 *       14    20  IPv4: ver/ihl 0x45, tos 0, total length (28 + frame), id (a counter), DF, ttl
 *                 64, protocol 17, header checksum (software), src cfg.local_ip, dst peer ip
 *       34     8  UDP: src cfg.local_port, dst peer port, length (8 + frame), checksum 0 (legal
 *                 in IPv4; every tandem frame carries its own CRC)
 *       42     -  the tandem frame (frame.c)
 *
 * Rx drops, counting rx_bad_lower, what is malformed (runts, multi-segment mbufs, bad IHL or
 * header checksum, lengths that disagree with the mbuf) and, counting rx_not_ours, what is well
 * formed but not for us (not IPv4, a fragment, not UDP, another destination address or port).
 *
 * Buffers: a struct tdm_dp_buf lives in each mbuf's private area (rte_mbuf_to_priv), so mapping
 * a buffer to its mbuf and back allocates nothing. A tx buffer's data starts at the end of the
 * mbuf headroom (8-byte aligned for frame.c) and tx_burst prepends the 42 header bytes into the
 * headroom.
 *
 * Process-wide rules that DPDK imposes, and what we do about them:
 *   - The EAL initialises once per process and cannot be initialised again after
 *     rte_eal_cleanup(). The first open initialises it with its eal_args; later opens reuse it
 *     (their eal_args are ignored) and we never call rte_eal_cleanup(): its few megabytes go
 *     with the process.
 *   - rte_eal_init pins the calling thread to the first lcore. Unless eal_args choose lcores
 *     (-l, -c, --lcores) we give the caller back its previous CPU set: the engine pins its own
 *     threads.
 *   - Without free hugepages, and unless eal_args say --no-huge, we add --no-huge (and -m 512
 *     if no memory size is given) so the EAL runs on ordinary pages. With --no-huge, DPDK 22.11
 *     refuses --in-memory (it implies legacy memory); we pass --no-shconf in its place, which
 *     is what it means there: no shared runtime files. With either, and unless eal_args say
 *     --telemetry, we add --no-telemetry: its socket would outlive the process. The EAL still
 *     makes a runtime directory (/var/run/dpdk/<file-prefix>); we remove it after init when it
 *     is empty. Two processes without --in-memory/--no-shconf need distinct --file-prefix.
 *   - A port serves one open transport at a time: an open takes every port no other transport
 *     of this process holds. Close closes its ports (and DPDK releases them; memif servers are
 *     only stopped, see dpdk_release_ports), so a port serves one transport per process
 *     lifetime; closing them is what lets us free the mbuf pool safely (drivers such as af_xdp
 *     keep pool mbufs in their queues until close).
 *   - The mempool's per-lcore cache only works on EAL threads: the first burst on a non-EAL
 *     thread registers it (rte_thread_register, once per thread).
 *
 * memif links that come and go. Between processes on one host every pair of nodes has its own
 * memif link, on its own socket; the node with the lower id is the server. A node thus has one
 * vdev per peer, some servers, some clients, in peer order, and each peer's dpdk_port is the
 * index of its vdev. Node 2 of nodes 1, 2, 3 (socket names are the deployment's choice):
 *     --vdev=net_memif0,role=client,socket=/run/tandem/m1-2.sock,socket-abstract=no
 *     --vdev=net_memif1,role=server,socket=/run/tandem/m2-3.sock,socket-abstract=no
 *     peer 1: dpdk_port 0; peer 3: dpdk_port 1.
 * Peers start, exit and are killed in any order; the transport keeps the links going without a
 * restart of its own process (dpdk_memif.c says what the PMD does by itself and what not):
 *   - a client port that cannot connect at open (no server yet) does not fail the open; it stays
 *     stopped and the slow path starts it again later;
 *   - the slow path restarts a client port whose link is down (rte_eth_dev_stop + start):
 *     DPDK_RETRY_MIN_MS after its link went down (the PMD has closed that connection), and
 *     while connects are refused every DPDK_RETRY_MIN_MS, backing off to DPDK_RETRY_MAX_MS (a
 *     socket file left by a killed server), never while the socket file is absent, and only
 *     after DPDK_HANDSHAKE_MS for a connect that has not come up (closing a connection the
 *     server has not accepted yet crashes the server);
 *   - a server socket file left by a killed process is removed before the EAL starts;
 *   - bursts never touch a port that is stopped or (memif) not connected: rx skips it, tx drops
 *     and counts in tx_link_down;
 *   - the EAL interrupt thread, which runs memif's connects and disconnects, is kept parked
 *     while memif ports are polled and runs only in the slow path, between bursts (the
 *     interrupt gate in dpdk_memif.c: a disconnect during a burst crashed the burst).
 * The slow path runs from the bursts and link queries once it is due: every DPDK_SLOW_UP_MS,
 * every DPDK_SLOW_DOWN_MS while a memif link is down (handshake messages advance only there).
 * With memif ports, every transport of a process must be polled by one thread: the gate is
 * process-wide.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_udp.h>

#include "dp_pvt.h"
#include "dpdk_pvt.h"

#define DPDK_HDRS 42u /* Ethernet 14 + IPv4 20 + UDP 8 */
_Static_assert(sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) +
	       sizeof(struct rte_udp_hdr) == DPDK_HDRS, "lower header size");
_Static_assert(RTE_PKTMBUF_HEADROOM >= DPDK_HDRS, "headers must fit in the mbuf headroom");

#define DPDK_DEFAULT_MBUFS 8191u /* 2^n - 1: the mempool ring's best size */
#define DPDK_DEFAULT_DESC 1024u
#define DPDK_POOL_CACHE 256u
#define DPDK_MAX_ARGS 64
#define DPDK_NOHUGE_MEM "512"    /* MB of ordinary memory when we add --no-huge */
#define DPDK_SLOW_UP_MS 10u      /* slow path period (link states, the interrupt gate) */
#define DPDK_SLOW_DOWN_MS 1u     /* ... while a memif link is down: handshakes advance */
#define DPDK_RETRY_MIN_MS 100u   /* memif client: try to connect again at most this often */
#define DPDK_RETRY_MAX_MS 1600u  /* ... backing off to this while connects are refused */
/* A memif client never closes a connection the server may not have accepted yet: that crashes
 * the server (dpdk_memif.c). A connect that has not come up is given this long. */
#define DPDK_HANDSHAKE_MS 5000u
/* How long the slow path waits for the interrupt thread to park. Not longer: the polling thread
 * also runs the node's flusher and engine, which must not stall behind a descheduled interrupt
 * thread; when it has not parked yet, memif bursts stay off and the next slow path (1 ms) looks
 * again. Closing ports waits longer: a stop must not meet a disconnect on that thread. */
#define DPDK_GATE_WAIT_MS 1u
#define DPDK_GATE_CLOSE_MS 2000u
#define DPDK_PRIV_SIZE RTE_ALIGN_CEIL(sizeof(struct tdm_dp_buf), RTE_MBUF_PRIV_ALIGN)

/* One port this transport holds. Fields are the polling thread's. */
struct dpdk_port {
	uint16_t id;                /**< ethdev port id */
	uint8_t kind;               /**< enum tdm_dp_port_kind */
	bool configured;            /**< we changed it: close it when we let go */
	bool started;
	bool link_up;               /**< link state read by the last slow path */
	bool ready;                 /**< bursts may use it: started, and memif connected with the
	                                 interrupt thread parked */
	uint64_t retry_at;          /**< memif client: no restart before (timer cycles) */
	uint64_t retry_wait;        /**< memif client: wait after a refused connect, in cycles */
	char sock[TDM_DP_MEMIF_PATH_MAX]; /**< memif client: the server's socket file, or "" */
	struct rte_ether_addr mac;
};

/* Per configured peer: its lower headers, all fields fixed but lengths, id and checksum. */
struct dpdk_peer {
	uint8_t hdr[DPDK_HDRS];
	uint16_t slot;              /**< index in dpdk_state.ports */
};

struct dpdk_state {
	struct rte_mempool *pool;
	uint16_t n_ports;
	uint16_t rx_next;           /**< slot the next rx_burst polls first (round-robin) */
	uint16_t ip_id;             /**< IPv4 id of the next frame (DF is set: only for tools) */
	uint16_t local_port_be;     /**< cfg.local_port, network order */
	bool has_memif;             /**< holds a memif port: uses the interrupt gate */
	uint64_t ms;                /**< timer cycles per millisecond */
	uint64_t slow_at;           /**< timer cycles when the slow path is next due */
	struct dpdk_port ports[RTE_MAX_ETHPORTS];
	struct dpdk_peer peers[TDM_DP_MAX_PEERS];
	char desc[64];              /**< "dpdk/<driver of the first port>" */
};

/* Process-wide state, guarded by dpdk_lock (open and close only). */
static pthread_mutex_t dpdk_lock = PTHREAD_MUTEX_INITIALIZER;
static int dpdk_eal_rc = 1;               /* 1 not tried, 0 up, < 0 failed (sticky) */
static char dpdk_eal_msg[512];            /* why it failed, repeated to later opens */
static bool dpdk_port_taken[RTE_MAX_ETHPORTS];
static unsigned dpdk_pool_seq;            /* pool names must be unique in the process */
static int dpdk_gate_users;               /* open transports with memif ports */
static _Thread_local bool dpdk_thread_tried;

/* ---- EAL ---- */

static bool dpdk_has_opt(char **argv, int argc, const char *name)
{
	size_t n = strlen(name);

	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], name, n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '=' ||
						       name[1] != '-'))
			return true;
	return false;
}

/* Free hugepages of any size: without them the EAL must run with --no-huge. */
static bool dpdk_hugepages_free(void)
{
	DIR *dir = opendir("/sys/kernel/mm/hugepages");
	struct dirent *e;
	bool any = false;

	while (dir && !any && (e = readdir(dir)) != NULL) {
		char path[512];
		unsigned long n = 0;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/%s/free_hugepages",
			 e->d_name);
		f = fopen(path, "r");
		if (f && fscanf(f, "%lu", &n) == 1 && n > 0)
			any = true;
		if (f)
			fclose(f);
	}
	if (dir)
		closedir(dir);
	return any;
}

/* Split args on whitespace into argv (argv[0] = "tandem"), adding --no-huge when needed. The
 * strings are never freed: the EAL may keep pointers into its argv. @return argc or -EINVAL. */
static int dpdk_build_argv(const char *args, char **argv)
{
	static char *kept; /* reachable for good: the EAL may keep pointers into argv */
	char *copy = kept = strdup(args ? args : "");
	bool nohuge = false;
	int argc = 0;

	if (!copy)
		return TDM_ERR(-ENOMEM, "out of memory copying eal_args");
	argv[argc++] = (char *)"tandem";
	for (char *save = NULL, *tok = strtok_r(copy, " \t\n", &save); tok;
	     tok = strtok_r(NULL, " \t\n", &save)) {
		if (argc >= DPDK_MAX_ARGS - 5)
			return TDM_ERR(-EINVAL, "eal_args has more than %d arguments; pass fewer",
				       DPDK_MAX_ARGS - 6);
		argv[argc++] = tok;
	}
	if (!dpdk_has_opt(argv, argc, "--no-huge") && !dpdk_hugepages_free()) {
		argv[argc++] = (char *)"--no-huge";
		if (!dpdk_has_opt(argv, argc, "-m") && !dpdk_has_opt(argv, argc, "--socket-mem")) {
			argv[argc++] = (char *)"-m";
			argv[argc++] = (char *)DPDK_NOHUGE_MEM;
		}
	}
	/* --no-huge implies legacy memory, which the EAL refuses with --in-memory; --no-shconf is
	 * what --in-memory means without hugepages (no shared files, no multi-process). */
	nohuge = dpdk_has_opt(argv, argc, "--no-huge");
	for (int i = 1; nohuge && i < argc; i++)
		if (strcmp(argv[i], "--in-memory") == 0)
			argv[i] = (char *)"--no-shconf";
	/* No shared files asked for: no telemetry socket either, which would outlive the process
	 * in its runtime directory. */
	if ((dpdk_has_opt(argv, argc, "--in-memory") || dpdk_has_opt(argv, argc, "--no-shconf")) &&
	    !dpdk_has_opt(argv, argc, "--telemetry") && !dpdk_has_opt(argv, argc, "--no-telemetry"))
		argv[argc++] = (char *)"--no-telemetry";
	argv[argc] = NULL;
	return argc;
}

/* Initialise the EAL once per process (dpdk_lock held). */
static int dpdk_eal_init(const char *args)
{
	char *argv[DPDK_MAX_ARGS];
	cpu_set_t cpus;
	bool keep_cpus;
	int argc, rc;

	if (dpdk_eal_rc <= 0) {
		if (dpdk_eal_rc < 0)
			TDM_ERR(dpdk_eal_rc, "%s", dpdk_eal_msg);
		return dpdk_eal_rc;
	}
	argc = dpdk_build_argv(args, argv);
	if (argc < 0)
		return argc;
	keep_cpus = !dpdk_has_opt(argv, argc, "-l") && !dpdk_has_opt(argv, argc, "-c") &&
		    !dpdk_has_opt(argv, argc, "--lcores");
	if (keep_cpus && pthread_getaffinity_np(pthread_self(), sizeof(cpus), &cpus) != 0)
		keep_cpus = false;
	rc = tdm_dp_memif_clear_stale(argv, argc); /* not sticky: a later open may try again */
	if (rc != 0)
		return rc;
	if (rte_eal_init(argc, argv) < 0) {
		snprintf(dpdk_eal_msg, sizeof(dpdk_eal_msg),
			 "DPDK EAL init failed: %s; check eal_args \"%s\" (the EAL's own messages "
			 "on stderr say which one); the EAL initialises once per process, so "
			 "restart the process to retry", rte_strerror(rte_errno), args ? args : "");
		dpdk_eal_rc = -ENODEV;
		return TDM_ERR(dpdk_eal_rc, "%s", dpdk_eal_msg);
	}
	if (keep_cpus)
		pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	rmdir(rte_eal_get_runtime_dir()); /* only if empty: nothing shared lives there */
	dpdk_eal_rc = 0;
	return 0;
}

/* ---- Open and close ---- */

static uint32_t dpdk_data_room(uint32_t mtu)
{
	uint32_t room = RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + mtu;

	/* af_packet refuses a pool whose buffers are smaller than its 2 KiB ring frames; rounding
	 * up to 1 KiB lets framesz=<n KiB> match jumbo MTUs. */
	room = RTE_ALIGN_CEIL(room, 1024u);
	if (room < RTE_MBUF_DEFAULT_DATAROOM)
		room = RTE_MBUF_DEFAULT_DATAROOM;
	return RTE_PKTMBUF_HEADROOM + room;
}

static int dpdk_pool_create(struct dpdk_state *d, const struct tdm_dp_transport_config *cfg,
			    uint32_t mtu)
{
	uint32_t n = cfg->mbufs ? cfg->mbufs : DPDK_DEFAULT_MBUFS;
	unsigned cache = n >= 2 * DPDK_POOL_CACHE ? DPDK_POOL_CACHE : 0;
	char name[RTE_MEMPOOL_NAMESIZE];

	snprintf(name, sizeof(name), "tdm_dp_%u", dpdk_pool_seq++);
	d->pool = rte_pktmbuf_pool_create(name, n, cache, DPDK_PRIV_SIZE,
					  (uint16_t)dpdk_data_room(mtu), SOCKET_ID_ANY);
	if (!d->pool)
		return TDM_ERR(-ENOMEM, "DPDK mbuf pool of %u buffers of %u bytes: %s; lower "
			       "mbufs or mtu, or give the EAL more memory (-m in eal_args)", n,
			       dpdk_data_room(mtu), rte_strerror(rte_errno));
	return 0;
}

/* Take every port no other transport of this process holds (dpdk_lock held). */
static int dpdk_claim_ports(struct dpdk_state *d)
{
	uint16_t id;

	RTE_ETH_FOREACH_DEV(id) {
		if (dpdk_port_taken[id])
			continue;
		dpdk_port_taken[id] = true;
		d->ports[d->n_ports++].id = id;
	}
	if (d->n_ports == 0)
		return TDM_ERR(-ENODEV, "no free DPDK port: add a device to eal_args (e.g. "
			       "--vdev=net_memif0,role=server,socket=/run/tandem.sock); ports of a "
			       "closed transport cannot be reused in the same process");
	return 0;
}

/*
 * Stop and close our ports (dpdk_lock held). memif's stop and close must not meet a connect or
 * disconnect on the interrupt thread: the gate is held meanwhile, and let go when no memif
 * transport is left. memif server ports are stopped but not closed, and stay taken: the PMD's
 * close frees its listener's state but leaves the listener's callback registered with the EAL,
 * which then runs on freed memory, in a loop, when a client connects (a peer retrying while we
 * shut down). Stopped, the listener may still complete a handshake nobody polls: harmless, and
 * their queues hold no mbufs of our pool (servers always copy).
 */
static void dpdk_release_ports(struct dpdk_state *d)
{
	bool gated = d->has_memif && tdm_dp_gate_hold(DPDK_GATE_CLOSE_MS);

	for (uint16_t i = 0; i < d->n_ports; i++) {
		bool keep = d->ports[i].kind == TDM_DP_PORT_MEMIF_SERVER;

		if (d->ports[i].started)
			rte_eth_dev_stop(d->ports[i].id);
		if (d->ports[i].configured && !keep)
			rte_eth_dev_close(d->ports[i].id);
		dpdk_port_taken[d->ports[i].id] = keep && d->ports[i].configured;
	}
	d->n_ports = 0;
	if (gated && dpdk_gate_users == 0)
		tdm_dp_gate_release();
}

static int dpdk_port_slot(const struct dpdk_state *d, uint16_t port_id)
{
	for (uint16_t i = 0; i < d->n_ports; i++)
		if (d->ports[i].id == port_id)
			return i;
	return -1;
}

/* Configure the queues of one port; the caller starts it. */
static int dpdk_port_queues(struct dpdk_state *d, uint16_t id, const char *drv,
			    const struct tdm_dp_transport_config *cfg, uint32_t mtu)
{
	uint16_t nb_rx = cfg->rx_desc ? cfg->rx_desc : DPDK_DEFAULT_DESC;
	uint16_t nb_tx = cfg->tx_desc ? cfg->tx_desc : DPDK_DEFAULT_DESC;
	int socket = rte_eth_dev_socket_id(id);
	struct rte_eth_conf conf;
	int rc;

	memset(&conf, 0, sizeof(conf));
	conf.rxmode.mtu = mtu;
	rc = rte_eth_dev_configure(id, 1, 1, &conf);
	if (rc != 0)
		return TDM_ERR(-ENODEV, "DPDK port %u (%s): configure with 1 rx + 1 tx queue, MTU "
			       "%u failed: %s", id, drv, mtu, rte_strerror(-rc));
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(id, &nb_rx, &nb_tx);
	if (rc != 0)
		return TDM_ERR(-ENODEV, "DPDK port %u (%s): descriptor limits: %s", id, drv,
			       rte_strerror(-rc));
	if (socket < 0)
		socket = SOCKET_ID_ANY;
	rc = rte_eth_rx_queue_setup(id, 0, nb_rx, (unsigned)socket, NULL, d->pool);
	if (rc != 0)
		return TDM_ERR(-ENODEV, "DPDK port %u (%s): rx queue of %u descriptors: %s; "
			       "check rx_desc and the driver's buffer size (mbuf data room %u)",
			       id, drv, nb_rx, rte_strerror(-rc), dpdk_data_room(mtu));
	rc = rte_eth_tx_queue_setup(id, 0, nb_tx, (unsigned)socket, NULL);
	if (rc != 0)
		return TDM_ERR(-ENODEV, "DPDK port %u (%s): tx queue of %u descriptors: %s", id,
			       drv, nb_tx, rte_strerror(-rc));
	return 0;
}

/* The largest MTU the device takes, as rte_eth_dev_configure computes it: max_mtu, and the
 * longest frame less its overhead (memif reports max_mtu 65535 but frames of 1518 bytes). */
static uint32_t dpdk_max_mtu(const struct rte_eth_dev_info *info)
{
	uint32_t overhead = RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
	uint32_t mtu;

	if (info->max_mtu != UINT16_MAX && info->max_rx_pktlen > info->max_mtu)
		overhead = info->max_rx_pktlen - info->max_mtu;
	mtu = info->max_rx_pktlen > overhead ? info->max_rx_pktlen - overhead : 0;
	return mtu < info->max_mtu ? mtu : info->max_mtu;
}

static int dpdk_port_start(struct dpdk_state *d, struct dpdk_port *p,
			   const struct tdm_dp_transport_config *cfg, uint32_t mtu)
{
	struct rte_eth_dev_info info;
	int rc = rte_eth_dev_info_get(p->id, &info);
	const char *drv = rc == 0 && info.driver_name ? info.driver_name : "?";

	if (rc != 0)
		return TDM_ERR(-ENODEV, "DPDK port %u: device info: %s", p->id, rte_strerror(-rc));
	if (d->desc[0] == '\0')
		snprintf(d->desc, sizeof(d->desc), "dpdk/%s", drv);
	if (dpdk_max_mtu(&info) < mtu)
		return TDM_ERR(-EINVAL, "DPDK port %u (%s) takes an MTU of at most %u, mtu is %u: "
			       "lower mtu or raise the device's limit", p->id, drv,
			       dpdk_max_mtu(&info), mtu);
	p->configured = true;
	rc = dpdk_port_queues(d, p->id, drv, cfg, mtu);
	if (rc != 0)
		return rc;
	rc = rte_eth_dev_set_mtu(p->id, (uint16_t)mtu);
	if (rc != 0 && rc != -ENOTSUP)
		return TDM_ERR(-EINVAL, "DPDK port %u (%s): set MTU %u: %s", p->id, drv, mtu,
			       rte_strerror(-rc));
	(void)rte_eth_promiscuous_enable(p->id); /* memif and some vdevs cannot: harmless */
	rc = rte_eth_macaddr_get(p->id, &p->mac);
	if (rc != 0)
		return TDM_ERR(-ENODEV, "DPDK port %u (%s): MAC address: %s", p->id, drv,
			       rte_strerror(-rc));
	p->kind = (uint8_t)tdm_dp_memif_kind(p->id, info.driver_name, p->sock, sizeof(p->sock));
	d->has_memif |= p->kind != TDM_DP_PORT_OTHER;
	p->retry_wait = d->ms * DPDK_RETRY_MIN_MS;
	p->retry_at = rte_get_timer_cycles() + p->retry_wait;
	/* A memif client whose server is not up yet: the slow path starts it again later. */
	if (p->kind == TDM_DP_PORT_MEMIF_CLIENT && p->sock[0] &&
	    !tdm_dp_memif_socket_exists(p->sock))
		return 0;
	rc = rte_eth_dev_start(p->id);
	if (rc != 0 && p->kind == TDM_DP_PORT_MEMIF_CLIENT)
		return 0;
	if (rc != 0)
		return TDM_ERR(-ENODEV, "DPDK port %u (%s): start failed: %s", p->id, drv,
			       rte_strerror(-rc));
	p->started = true;
	p->ready = p->kind == TDM_DP_PORT_OTHER; /* memif: once connected, in the slow path */
	if (p->kind == TDM_DP_PORT_MEMIF_CLIENT)
		p->retry_at = rte_get_timer_cycles() + d->ms * DPDK_HANDSHAKE_MS;
	return 0;
}

/* Every peer must be reached through a port of ours. Checked before any port is touched. */
static int dpdk_peers_check(const struct tdm_dp_transport_config *cfg, struct dpdk_state *d)
{
	for (int i = 0; i < cfg->n_peers; i++) {
		const struct tdm_dp_peer_addr *pa = &cfg->peers[i];
		int slot = dpdk_port_slot(d, pa->dpdk_port);

		if (slot < 0)
			return TDM_ERR(-EINVAL, "peer %d (node %u): dpdk_port %u is not a DPDK port "
				       "of this transport (%u ports, first is %u); check the peer's "
				       "dpdk_port and the --vdev/PCI devices in eal_args", i,
				       pa->node_id, pa->dpdk_port, d->n_ports, d->ports[0].id);
		d->peers[i].slot = (uint16_t)slot;
	}
	return 0;
}

/* A peer's lower headers with every field filled but lengths, id and checksum. */
static void dpdk_peer_template(const struct tdm_dp_transport_config *cfg,
			       const struct tdm_dp_peer_addr *pa, const struct rte_ether_addr *src,
			       uint8_t *hdr)
{
	static const uint8_t zero_mac[RTE_ETHER_ADDR_LEN];
	struct rte_ether_hdr eth;
	struct rte_ipv4_hdr ip;
	struct rte_udp_hdr udp;

	memset(&eth.dst_addr, 0xff, sizeof(eth.dst_addr));
	if (memcmp(pa->mac, zero_mac, sizeof(zero_mac)) != 0)
		memcpy(&eth.dst_addr, pa->mac, sizeof(pa->mac));
	rte_ether_addr_copy(src, &eth.src_addr);
	eth.ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	memset(&ip, 0, sizeof(ip));
	ip.version_ihl = RTE_IPV4_VHL_DEF;
	ip.fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip.time_to_live = 64;
	ip.next_proto_id = IPPROTO_UDP;
	ip.src_addr = cfg->local_ip;
	ip.dst_addr = pa->ip;
	udp.src_port = rte_cpu_to_be_16(cfg->local_port);
	udp.dst_port = rte_cpu_to_be_16(pa->port);
	udp.dgram_len = 0;
	udp.dgram_cksum = 0;
	memcpy(hdr, &eth, sizeof(eth));
	memcpy(hdr + sizeof(eth), &ip, sizeof(ip));
	memcpy(hdr + sizeof(eth) + sizeof(ip), &udp, sizeof(udp));
}

static int dpdk_open_locked(struct tdm_dp_transport *t, struct dpdk_state *d, uint32_t mtu)
{
	int rc = dpdk_eal_init(t->cfg.eal_args);

	if (rc != 0)
		return rc;
	d->ms = rte_get_timer_hz() / 1000u;
	rc = dpdk_claim_ports(d);
	if (rc != 0)
		return rc;
	rc = dpdk_peers_check(&t->cfg, d);
	if (rc != 0)
		return rc;
	rc = dpdk_pool_create(d, &t->cfg, mtu);
	for (uint16_t i = 0; rc == 0 && i < d->n_ports; i++)
		rc = dpdk_port_start(d, &d->ports[i], &t->cfg, mtu);
	if (rc == 0 && d->has_memif)
		rc = tdm_dp_gate_init();
	for (int i = 0; rc == 0 && i < t->cfg.n_peers; i++)
		dpdk_peer_template(&t->cfg, &t->cfg.peers[i], &d->ports[d->peers[i].slot].mac,
				   d->peers[i].hdr);
	if (rc == 0)
		dpdk_gate_users += d->has_memif;
	d->slow_at = rte_get_timer_cycles(); /* due at the first burst */
	return rc;
}

static int dpdk_open(struct tdm_dp_transport *t)
{
	uint32_t mtu = t->cfg.mtu ? t->cfg.mtu : TDM_DP_DEFAULT_MTU;
	struct dpdk_state *d;
	int rc;

	if (mtu < 576 || mtu > TDM_DP_MAX_MTU)
		return TDM_ERR(-EINVAL, "mtu %u is out of range: 576..%u", mtu, TDM_DP_MAX_MTU);
	d = calloc(1, sizeof(*d));
	if (!d)
		return TDM_ERR(-ENOMEM, "out of memory for the dpdk transport");
	d->local_port_be = rte_cpu_to_be_16(t->cfg.local_port);
	pthread_mutex_lock(&dpdk_lock);
	rc = dpdk_open_locked(t, d, mtu);
	if (rc != 0) {
		dpdk_release_ports(d);
		rte_mempool_free(d->pool);  /* NULL is ignored */
	}
	pthread_mutex_unlock(&dpdk_lock);
	if (rc != 0) {
		free(d);
		return rc;
	}
	t->mtu = mtu;
	t->backend = d;
	return 0;
}

static void dpdk_close(struct tdm_dp_transport *t)
{
	struct dpdk_state *d = t->backend;

	if (!d)
		return;
	pthread_mutex_lock(&dpdk_lock);
	dpdk_gate_users -= d->has_memif;
	dpdk_release_ports(d);   /* before the pool: queues may still hold its mbufs */
	rte_mempool_free(d->pool);
	pthread_mutex_unlock(&dpdk_lock);
	free(d);
	t->backend = NULL;
}

/* ---- Buffers ---- */

/* The mempool's per-lcore cache needs an lcore id: register a non-EAL thread, once. */
static inline void dpdk_adopt_thread(void)
{
	if (TDM_DP_UNLIKELY(!dpdk_thread_tried)) {
		dpdk_thread_tried = true;
		if (rte_lcore_id() == LCORE_ID_ANY)
			(void)rte_thread_register(); /* failing only costs the cache */
	}
}

static struct tdm_dp_buf *dpdk_buf_alloc(struct tdm_dp_transport *t)
{
	struct dpdk_state *d = t->backend;
	struct rte_mbuf *m = rte_pktmbuf_alloc(d->pool);
	struct tdm_dp_buf *b;

	if (TDM_DP_UNLIKELY(!m))
		return NULL;
	b = rte_mbuf_to_priv(m);
	b->data = rte_pktmbuf_mtod(m, uint8_t *); /* end of the headroom: headers go in front */
	b->len = 0;
	b->cap = t->mtu - TDM_DP_LOWER_HDRS;
	b->peer = 0;
	b->due_ns = 0;
	b->priv = m;
	return b;
}

static void dpdk_buf_free(struct tdm_dp_transport *t, struct tdm_dp_buf *b)
{
	(void)t;
	rte_pktmbuf_free(b->priv);
}

/* ---- Slow path: link states, memif reconnects, the interrupt gate ---- */

/* A memif client whose link is down: stop it (its connection is closed, or it did not come up in
 * DPDK_HANDSHAKE_MS) and start it again, which connects to the server. Runs with the interrupt
 * gate held. */
static void dpdk_port_restart(struct tdm_dp_transport *t, struct dpdk_state *d,
			      struct dpdk_port *p, uint64_t now)
{
	p->retry_at = now + p->retry_wait;
	if (p->started) {
		rte_eth_dev_stop(p->id);
		p->started = false;
	}
	/* No socket file, no server: do not make the PMD log a failed connect every time. */
	if (p->sock[0] && !tdm_dp_memif_socket_exists(p->sock))
		return;
	t->st.link_restarts++;
	p->started = rte_eth_dev_start(p->id) == 0;
	if (p->started) {
		/* Connected (maybe only queued at the server): give the handshake its time. */
		p->retry_at = now + d->ms * DPDK_HANDSHAKE_MS;
	} else if (p->retry_wait < d->ms * DPDK_RETRY_MAX_MS) {
		/* Refused (a socket file left by a killed server; the PMD logs it): back off. */
		p->retry_wait *= 2;
	}
}

/* Read one port's link and decide whether bursts may use it. @return its link is up. */
static bool dpdk_port_check(struct tdm_dp_transport *t, struct dpdk_state *d,
			    struct dpdk_port *p, bool gated, uint64_t now)
{
	struct rte_eth_link link;
	bool was_up = p->link_up;

	memset(&link, 0, sizeof(link));
	p->link_up = p->started && rte_eth_link_get_nowait(p->id, &link) == 0 &&
		     link.link_status == RTE_ETH_LINK_UP;
	if (p->kind == TDM_DP_PORT_MEMIF_CLIENT && gated) {
		if (p->link_up) {
			p->retry_wait = d->ms * DPDK_RETRY_MIN_MS;
		} else {
			if (was_up) /* the server went away: give it time to come back */
				p->retry_at = now + p->retry_wait;
			if ((int64_t)(now - p->retry_at) >= 0)
				dpdk_port_restart(t, d, p, now);
		}
	}
	/* A memif port whose interrupt thread did not park in time still bursts: stopping the
	 * traffic of a loaded machine for that cost commit timeouts (repl-dpdk under load), while
	 * the race the gate closes needs a disconnect in that very window. Best effort. */
	p->ready = p->started && (p->kind == TDM_DP_PORT_OTHER || p->link_up);
	return p->link_up;
}

/*
 * Let the interrupt thread run memif's queued connects and disconnects and park it again (two
 * thread hand-offs: about 10 us on an idle machine, up to milliseconds when every core is busy),
 * then read every port's link state and restart memif clients that are down. Never in the middle
 * of a burst: called from the top of bursts and link queries once d->slow_at has passed.
 */
static void dpdk_slow_path(struct tdm_dp_transport *t, struct dpdk_state *d, uint64_t now)
{
	bool gated = false, all_up = true;

	if (d->has_memif) {
		tdm_dp_gate_release();
		gated = tdm_dp_gate_hold(DPDK_GATE_WAIT_MS);
	}
	for (uint16_t i = 0; i < d->n_ports; i++)
		all_up &= dpdk_port_check(t, d, &d->ports[i], gated, now) ||
			  d->ports[i].kind == TDM_DP_PORT_OTHER;
	d->slow_at = now + d->ms * (all_up && (gated || !d->has_memif) ? DPDK_SLOW_UP_MS
								 : DPDK_SLOW_DOWN_MS);
}

static inline void dpdk_maybe_slow(struct tdm_dp_transport *t, struct dpdk_state *d)
{
	uint64_t now = rte_get_timer_cycles();

	if (TDM_DP_UNLIKELY((int64_t)(now - d->slow_at) >= 0))
		dpdk_slow_path(t, d, now);
}

/* ---- Tx ---- */

/* Put the lower headers in front of b's frame. @return the port slot, or -1 (unknown peer or
 * a frame larger than its buffer: a bug of the caller, counted in tx_errors). */
static inline int dpdk_tx_frame(struct tdm_dp_transport *t, struct dpdk_state *d,
				struct tdm_dp_buf *b)
{
	struct rte_mbuf *m = b->priv;
	int i = tdm_dp_peer_index(&t->cfg, b->peer);
	struct rte_ipv4_hdr *ip;
	struct rte_udp_hdr *udp;
	uint8_t *h;

	if (TDM_DP_UNLIKELY(i < 0 || b->len > b->cap))
		return -1;
	/* From b->data, not the headroom: a received buffer sent on works too. */
	m->data_off = (uint16_t)(b->data - (uint8_t *)m->buf_addr);
	m->data_len = (uint16_t)b->len;
	m->pkt_len = b->len;
	h = (uint8_t *)rte_pktmbuf_prepend(m, DPDK_HDRS);
	memcpy(h, d->peers[i].hdr, DPDK_HDRS);
	ip = (struct rte_ipv4_hdr *)(h + RTE_ETHER_HDR_LEN);
	ip->total_length = rte_cpu_to_be_16((uint16_t)(b->len + TDM_DP_LOWER_HDRS));
	ip->packet_id = rte_cpu_to_be_16(d->ip_id++);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp = (struct rte_udp_hdr *)(ip + 1);
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(b->len + sizeof(*udp)));
	return d->peers[i].slot;
}

/* Send n mbufs on one port; free and count what the queue did not take, and everything when
 * the port is down (stopped, or a memif link not connected). */
static int dpdk_tx_port(struct tdm_dp_transport *t, struct dpdk_port *p,
			struct rte_mbuf **m, uint16_t n)
{
	uint64_t bytes = 0;
	uint16_t done;

	if (TDM_DP_UNLIKELY(!p->ready)) {
		rte_pktmbuf_free_bulk(m, n);
		t->st.tx_link_down += n;
		return 0;
	}

	for (uint16_t i = 0; i < n; i++)
		bytes += m[i]->pkt_len - DPDK_HDRS; /* before the send: the driver frees them */
	done = rte_eth_tx_burst(p->id, 0, m, n);
	for (uint16_t i = done; i < n; i++) {
		bytes -= m[i]->pkt_len - DPDK_HDRS;
		rte_pktmbuf_free(m[i]);
	}
	t->st.tx_full += n - done;
	t->st.tx_frames += done;
	t->st.tx_bytes += bytes;
	return done;
}

/* Up to TDM_DP_BURST frames: headers, then one tx burst per port. */
static int dpdk_tx_chunk(struct tdm_dp_transport *t, struct dpdk_state *d,
			 struct tdm_dp_buf **bufs, int n)
{
	struct rte_mbuf *m[TDM_DP_BURST], *group[TDM_DP_BURST];
	uint16_t slot[TDM_DP_BURST];
	int k = 0, sent = 0;

	for (int i = 0; i < n; i++) {
		int s = dpdk_tx_frame(t, d, bufs[i]);

		if (TDM_DP_UNLIKELY(s < 0)) {
			rte_pktmbuf_free(bufs[i]->priv);
			t->st.tx_errors++;
			continue;
		}
		m[k] = bufs[i]->priv;
		slot[k++] = (uint16_t)s;
	}
	while (k > 0) {  /* one pass per port present: one pass with a single port */
		uint16_t s = slot[0], gn = 0;
		int rest = 0;

		for (int i = 0; i < k; i++) {
			if (slot[i] == s) {
				group[gn++] = m[i];
			} else {
				m[rest] = m[i];
				slot[rest++] = slot[i];
			}
		}
		k = rest;
		sent += dpdk_tx_port(t, &d->ports[s], group, gn);
	}
	return sent;
}

static int dpdk_tx_burst(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n)
{
	struct dpdk_state *d = t->backend;
	int sent = 0;

	dpdk_adopt_thread();
	dpdk_maybe_slow(t, d);
	for (int i = 0; i < n; i += TDM_DP_BURST)
		sent += dpdk_tx_chunk(t, d, bufs + i, n - i < TDM_DP_BURST ? n - i : TDM_DP_BURST);
	return sent;
}

/* ---- Rx ---- */

enum dpdk_rx_verdict {
	DPDK_RX_OK,
	DPDK_RX_NOT_OURS, /* well formed, for someone else: rx_not_ours */
	DPDK_RX_BAD,      /* malformed: rx_bad_lower */
};

static inline bool dpdk_ip_cksum_ok(const struct rte_mbuf *m, const struct rte_ipv4_hdr *ip)
{
	uint64_t f = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;

	if (f == RTE_MBUF_F_RX_IP_CKSUM_GOOD)
		return true;
	if (f == RTE_MBUF_F_RX_IP_CKSUM_BAD)
		return false;
	return rte_ipv4_cksum(ip) == 0; /* the sum over a valid header, checksum included */
}

/* IPv4 and UDP at p (avail bytes up to the end of the mbuf data). */
static inline enum dpdk_rx_verdict dpdk_rx_ipv4(const struct tdm_dp_transport *t,
						const struct dpdk_state *d,
						const struct rte_mbuf *m, uint8_t *p,
						uint32_t avail, struct tdm_dp_buf *b)
{
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)p;
	const struct rte_udp_hdr *udp;
	uint32_t ihl, total, ulen;

	if (avail < sizeof(*ip) || (ip->version_ihl >> 4) != 4)
		return DPDK_RX_BAD;
	ihl = (ip->version_ihl & 0xfu) * 4u;
	total = rte_be_to_cpu_16(ip->total_length);
	if (ihl < sizeof(*ip) || ihl > avail || total < ihl || total > avail ||
	    !dpdk_ip_cksum_ok(m, ip))
		return DPDK_RX_BAD;
	if ((ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG |
						    RTE_IPV4_HDR_OFFSET_MASK)) != 0 ||
	    ip->next_proto_id != IPPROTO_UDP ||
	    (t->cfg.local_ip != 0 && ip->dst_addr != t->cfg.local_ip))
		return DPDK_RX_NOT_OURS;
	if (total < ihl + sizeof(*udp))
		return DPDK_RX_BAD;
	udp = (const struct rte_udp_hdr *)(p + ihl);
	if (udp->dst_port != d->local_port_be)
		return DPDK_RX_NOT_OURS;
	ulen = rte_be_to_cpu_16(udp->dgram_len);
	if (ulen < sizeof(*udp) || ulen > total - ihl)
		return DPDK_RX_BAD;
	b->data = p + ihl + sizeof(*udp);
	b->len = ulen - (uint32_t)sizeof(*udp);
	return DPDK_RX_OK;
}

static inline enum dpdk_rx_verdict dpdk_rx_check(const struct tdm_dp_transport *t,
						 const struct dpdk_state *d,
						 struct rte_mbuf *m, struct tdm_dp_buf *b)
{
	uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
	uint32_t len = m->data_len, off = RTE_ETHER_HDR_LEN;
	uint16_t type;

	if (m->nb_segs != 1 || len < off)
		return DPDK_RX_BAD;
	memcpy(&type, p + 12, sizeof(type));
	if (type == rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN)) {
		if (len < off + RTE_VLAN_HLEN)
			return DPDK_RX_BAD;
		memcpy(&type, p + 16, sizeof(type));
		off += RTE_VLAN_HLEN;
	}
	if (type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return DPDK_RX_NOT_OURS;
	return dpdk_rx_ipv4(t, d, m, p + off, len - off, b);
}

static int dpdk_rx_burst(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n)
{
	struct dpdk_state *d = t->backend;
	struct rte_mbuf *m[TDM_DP_BURST];
	int got = 0;

	dpdk_adopt_thread();
	dpdk_maybe_slow(t, d);
	for (uint16_t k = 0; k < d->n_ports && got < n; k++) {
		const struct dpdk_port *p = &d->ports[d->rx_next];
		uint16_t want = n - got < TDM_DP_BURST ? (uint16_t)(n - got) : TDM_DP_BURST;
		uint16_t nb = p->ready ? rte_eth_rx_burst(p->id, 0, m, want) : 0;

		d->rx_next = (uint16_t)(d->rx_next + 1 == d->n_ports ? 0 : d->rx_next + 1);
		for (uint16_t i = 0; i < nb; i++) {
			struct tdm_dp_buf *b = rte_mbuf_to_priv(m[i]);
			enum dpdk_rx_verdict v = dpdk_rx_check(t, d, m[i], b);

			if (TDM_DP_UNLIKELY(v != DPDK_RX_OK)) {
				t->st.rx_not_ours += v == DPDK_RX_NOT_OURS;
				t->st.rx_bad_lower += v == DPDK_RX_BAD;
				rte_pktmbuf_free(m[i]);
				continue;
			}
			b->cap = b->len;
			b->peer = 0;
			b->due_ns = 0;
			b->priv = m[i];
			t->st.rx_frames++;
			t->st.rx_bytes += b->len;
			bufs[got++] = b;
		}
	}
	return got;
}

/* ---- Link state and name ---- */

/* The link as the last slow path read it (at most DPDK_SLOW_UP_MS old). */
static bool dpdk_link_up(struct tdm_dp_transport *t, uint16_t peer)
{
	struct dpdk_state *d = t->backend;
	int i = tdm_dp_peer_index(&t->cfg, peer);

	if (i < 0)
		return false;
	dpdk_maybe_slow(t, d);
	return d->ports[d->peers[i].slot].link_up;
}

static const char *dpdk_describe(const struct tdm_dp_transport *t)
{
	const struct dpdk_state *d = t->backend;

	return d && d->desc[0] ? d->desc : "dpdk";
}

const struct tdm_dp_backend_ops tdm_dp_dpdk_ops = {
	.name = "dpdk",
	.open = dpdk_open,
	.close = dpdk_close,
	.buf_alloc = dpdk_buf_alloc,
	.buf_free = dpdk_buf_free,
	.tx_burst = dpdk_tx_burst,
	.rx_burst = dpdk_rx_burst,
	.link_up = dpdk_link_up,
	.describe = dpdk_describe,
};
