/*
 * memif specifics of the dpdk backend: which ports are memif clients and servers, stale server
 * sockets, and the interrupt gate.
 *
 * What DPDK 22.11's memif PMD does on its own (drivers/net/memif), and what it does not:
 *   - A server port listens on its socket from probe on and accepts a client whenever none is
 *     connected, again after one went away. Nothing to do for us.
 *   - A client connects once, in rte_eth_dev_start (memif_connect_client: one connect(), no
 *     retry). With no server listening the start fails. When the server goes away (its process
 *     exits or is killed) the control channel reads end-of-file and memif_disconnect() runs; the
 *     port stays "started" with its link down, and nothing ever connects it again. Reconnecting
 *     is rte_eth_dev_stop + rte_eth_dev_start: transport_dpdk.c does that in its slow path.
 *   - A server killed with SIGKILL leaves its socket file behind (memif removes it only on a
 *     clean close), and a new server cannot bind it: tdm_dp_memif_clear_stale removes it before
 *     the EAL starts, when no socket is bound to it.
 *   - A client that closes its connection before the server has accepted it crashes the server:
 *     memif_listener_handler accepts, registers the new channel's callback with the EAL, fails
 *     to send HELLO (EPIPE), then closes the socket and frees the channel without unregistering
 *     the callback. The EAL's next rebuild of its epoll set panics ("Error adding fd N
 *     epoll_ctl, Bad file descriptor", abort), or, if the fd number was reused first, the stale
 *     callback runs on freed memory. Reproduced here with and without the gate below (a client
 *     that connects and closes at once; our own client did it once when it gave up on a
 *     handshake after 100 ms, while the server was still starting). We cannot unregister a
 *     callback of the PMD, so we never do that to a server: no probing connects (stale sockets
 *     are found in /proc/net/unix), and a client restarts a port whose connect has not come up
 *     only after 5 s (transport_dpdk.c). A peer process killed between its connect and our
 *     accept (a window of one slow path, 10 ms at most) can still crash us.
 *   - The control channel (handshake, disconnect) runs on the EAL interrupt thread. Its
 *     memif_disconnect() unmaps the shared region and frees the region records, while
 *     eth_memif_rx/tx on the polling thread read those records and write into the region with no
 *     synchronisation at all (they test the CONNECTED flag once, on entry). When the peer exits
 *     during a burst, the burst touches unmapped memory: SIGSEGV. This is the crash seen in a
 *     memif peer right when the other side exited; without the gate, a server sending without
 *     pause dies in eth_memif_tx within a few of a client's disconnects (the last test of
 *     tests/test_dp_mesh.c). We cannot fix the PMD, so we keep the two from ever running at the
 *     same time: the gate below.
 *
 * The interrupt gate. A callback of ours, registered with the EAL on an eventfd, parks the
 * interrupt thread (a futex wait) while memif ports are being polled. The polling thread lets it
 * go only from the transport's slow path, between bursts: release, then ask it to park again
 * (eventfd) and wait until it has. Meanwhile the thread runs whatever became ready while it was
 * parked (memif messages ahead of our eventfd; anything later waits for the next slow path).
 * Cost: two thread hand-offs per slow path (about 10 us idle, up to milliseconds when every core
 * is busy), every 10 ms, every 1 ms while a memif link is down so handshakes advance; nothing
 * per burst. A peer's disconnect is seen up to 10 ms late (meanwhile its ring just fills).
 * While parked the interrupt thread runs nothing else either; memif and the vdev/af_packet/
 * af_xdp drivers need nothing else from it (PCI drivers that wait for interrupts or alarms
 * would: the gate is used only by transports with memif ports).
 *
 * Gate protocol (release and parked are 32-bit counters; each has one writer):
 *   poll thread, hold:    write the eventfd (once per request), then wait until
 *                         parked == release + 1 (acquire; pairs with the callback's release
 *                         store): from then on the interrupt thread runs nothing until released.
 *   interrupt thread:     read the eventfd; r = release (acquire); parked = r + 1 (release);
 *                         futex-wait while release == r.
 *   poll thread, release: release = release + 1 (release: our bursts happen before anything the
 *                         interrupt thread does next; pairs with its acquire), futex wake.
 * A stale parked value never matches: each hold waits for release + 1 of the current release.
 */
#define ALLOW_EXPERIMENTAL_API /* rte_intr_instance_alloc, rte_intr_fd_set, rte_intr_type_set */

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_ethdev.h>
#include <rte_interrupts.h>

#include "dp_pvt.h"
#include "dpdk_pvt.h"

#define MEMIF_DEFAULT_SOCKET "/run/memif.sock" /* the PMD's default */

_Static_assert(TDM_DP_MEMIF_PATH_MAX == sizeof(((struct sockaddr_un *)0)->sun_path),
	       "memif socket path size");

/* ---- memif devargs ---- */

/* The value of key in a devargs string "k=v,k=v" (NULL args: none). @return true if present. */
static bool kv_get(const char *args, const char *key, char *out, size_t n)
{
	size_t klen = strlen(key);

	for (const char *p = args; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			const char *v = p + klen + 1, *end = strchr(v, ',');
			size_t len = end ? (size_t)(end - v) : strlen(v);

			if (len >= n)
				len = n - 1;
			memcpy(out, v, len);
			out[len] = '\0';
			return true;
		}
	}
	return false;
}

/* From memif devargs: is it a server, and its socket path when on the filesystem ("" when
 * abstract, the PMD's default). */
static bool memif_parse(const char *args, char *sock, size_t n)
{
	char role[16] = "client", abstract[8] = "yes"; /* the PMD's defaults */

	kv_get(args, "role", role, sizeof(role));
	kv_get(args, "socket-abstract", abstract, sizeof(abstract));
	sock[0] = '\0';
	if (strcmp(abstract, "no") == 0 && !kv_get(args, "socket", sock, n))
		snprintf(sock, n, "%s", MEMIF_DEFAULT_SOCKET);
	return strstr(role, "server") || strstr(role, "master");
}

enum tdm_dp_port_kind tdm_dp_memif_kind(uint16_t port_id, const char *driver, char *sock,
					size_t n)
{
	struct rte_eth_dev_info info;
	const struct rte_devargs *da;

	sock[0] = '\0';
	if (!driver || strcmp(driver, "net_memif") != 0)
		return TDM_DP_PORT_OTHER;
	if (rte_eth_dev_info_get(port_id, &info) != 0 || !info.device)
		return TDM_DP_PORT_MEMIF_CLIENT;
	da = rte_dev_devargs(info.device);
	return memif_parse(da ? da->args : NULL, sock, n) ? TDM_DP_PORT_MEMIF_SERVER
							  : TDM_DP_PORT_MEMIF_CLIENT;
}

bool tdm_dp_memif_socket_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Is a socket of this network namespace bound to path? /proc/net/unix ends each line with the
 * bound path. Not a probing connect: a connection closed unaccepted crashes a memif server. */
static bool unix_path_bound(const char *path)
{
	FILE *f = fopen("/proc/net/unix", "r");
	size_t n = strlen(path);
	char line[512];
	bool bound = false;

	if (!f)
		return true; /* cannot tell: leave the file alone, the PMD reports a failed bind */
	while (!bound && fgets(line, sizeof(line), f)) {
		size_t len = strlen(line);

		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		bound = len > n && line[len - n - 1] == ' ' && strcmp(line + len - n, path) == 0;
	}
	fclose(f);
	return bound;
}

/* A server socket file: remove it when no socket is bound to it. (A server in another network
 * namespace sharing the file system is not seen: give such servers their own directories.) */
static int clear_one(const char *path)
{
	if (!tdm_dp_memif_socket_exists(path))
		return 0;
	if (unix_path_bound(path))
		return TDM_ERR(-EADDRINUSE, "memif server socket %s is bound by a live process: "
			       "give every memif link its own socket (one per pair of nodes)", path);
	unlink(path); /* left by a process killed before it could remove it */
	return 0;
}

int tdm_dp_memif_clear_stale(char **argv, int argc)
{
	for (int i = 1; i < argc; i++) {
		const char *dev = NULL, *args;
		char sock[TDM_DP_MEMIF_PATH_MAX];
		int rc;

		if (strncmp(argv[i], "--vdev=", 7) == 0)
			dev = argv[i] + 7;
		else if (strcmp(argv[i], "--vdev") == 0 && i + 1 < argc)
			dev = argv[++i];
		if (!dev || strncmp(dev, "net_memif", 9) != 0)
			continue;
		args = strchr(dev, ',');
		if (!memif_parse(args ? args + 1 : NULL, sock, sizeof(sock)) || !sock[0])
			continue;
		rc = clear_one(sock);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- The interrupt gate ---- */

static struct {
	int efd;                    /* eventfd our callback is registered on; -1 before init */
	struct rte_intr_handle *ih;
	uint32_t release;           /* writer: the poll thread; bumped to let the thread go */
	uint32_t parked;            /* writer: the interrupt thread; release + 1 while parked */
	bool asked;                 /* poll thread: the eventfd was written, the park is pending */
	bool held;                  /* poll thread: parked == release + 1 was seen */
} gate = { .efd = -1 };

static long futex(uint32_t *addr, int op, uint32_t val)
{
	return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

/* Runs on the EAL interrupt thread: park until the poll thread releases us. */
static void gate_cb(void *arg)
{
	uint64_t v;
	uint32_t r;

	(void)arg;
	if (read(gate.efd, &v, sizeof(v)) < 0)
		return; /* nothing to read: not a request of ours */
	r = __atomic_load_n(&gate.release, __ATOMIC_ACQUIRE); /* pairs with the release bump */
	__atomic_store_n(&gate.parked, r + 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&gate.release, __ATOMIC_ACQUIRE) == r)
		futex(&gate.release, FUTEX_WAIT_PRIVATE, r);
}

int tdm_dp_gate_init(void)
{
	int rc;

	if (gate.efd >= 0)
		return 0;
	gate.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (gate.efd < 0)
		return TDM_ERR(-errno, "eventfd for the memif interrupt gate: %s", strerror(errno));
	gate.ih = rte_intr_instance_alloc(RTE_INTR_INSTANCE_F_PRIVATE);
	if (!gate.ih || rte_intr_fd_set(gate.ih, gate.efd) != 0 ||
	    rte_intr_type_set(gate.ih, RTE_INTR_HANDLE_EXT) != 0) {
		rc = TDM_ERR(-ENOMEM, "interrupt handle for the memif interrupt gate");
		goto err;
	}
	rc = rte_intr_callback_register(gate.ih, gate_cb, NULL);
	if (rc < 0) {
		rc = TDM_ERR(rc, "registering the memif interrupt gate with the EAL: %s",
			     rte_strerror(-rc));
		goto err;
	}
	return 0;
err:
	rte_intr_instance_free(gate.ih); /* NULL is ignored */
	gate.ih = NULL;
	close(gate.efd);
	gate.efd = -1;
	return rc;
}

bool tdm_dp_gate_hold(uint32_t wait_ms)
{
	uint32_t want = __atomic_load_n(&gate.release, __ATOMIC_RELAXED) + 1; /* we write it */
	uint64_t one = 1, deadline;

	if (gate.held || gate.efd < 0)
		return gate.held;
	if (!gate.asked) {
		if (write(gate.efd, &one, sizeof(one)) != sizeof(one))
			return false;
		gate.asked = true;
	}
	deadline = rte_get_timer_cycles() + rte_get_timer_hz() / 1000u * wait_ms;
	/* Pairs with the callback's release store of parked. */
	while (__atomic_load_n(&gate.parked, __ATOMIC_ACQUIRE) != want) {
		if (rte_get_timer_cycles() > deadline)
			return false; /* still asked: a later hold picks it up */
		sched_yield();
	}
	gate.asked = false;
	gate.held = true;
	return true;
}

void tdm_dp_gate_release(void)
{
	if (!gate.held)
		return;
	gate.held = false;
	__atomic_store_n(&gate.release, gate.release + 1, __ATOMIC_RELEASE);
	futex(&gate.release, FUTEX_WAKE_PRIVATE, 1);
}

bool tdm_dp_gate_held(void)
{
	return gate.held;
}
