/*
 * Internals shared by the two files of the dpdk backend (transport_dpdk.c, dpdk_memif.c), both
 * built with DPDK's headers. Nothing else includes this.
 */
#ifndef TDM_DP_DPDK_PVT_H
#define TDM_DP_DPDK_PVT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TDM_DP_MEMIF_PATH_MAX 108 /* sizeof(sun_path) */

/** What a port is, as far as reconnecting goes. */
enum tdm_dp_port_kind {
	TDM_DP_PORT_OTHER,        /**< not memif: the driver keeps its own link */
	TDM_DP_PORT_MEMIF_SERVER, /**< memif role=server: accepts its client again by itself */
	TDM_DP_PORT_MEMIF_CLIENT, /**< memif role=client: we restart it to reconnect */
};

/**
 * The kind of port port_id (driver is its driver name) and, for memif on a filesystem socket,
 * the socket's path in sock (else ""). Read from the port's devargs.
 */
enum tdm_dp_port_kind tdm_dp_memif_kind(uint16_t port_id, const char *driver, char *sock,
					size_t n);

/**
 * Before the EAL starts: for every memif server vdev in argv on a filesystem socket, remove the
 * socket file a killed process left behind (no socket bound to it), so the server can bind again.
 * @return 0; -EADDRINUSE a live process serves that socket (message names it).
 */
int tdm_dp_memif_clear_stale(char **argv, int argc);

/** True when path exists and is a socket (a memif server may be behind it). */
bool tdm_dp_memif_socket_exists(const char *path);

/*
 * The interrupt gate (dpdk_memif.c says why): the EAL interrupt thread parked in a callback of
 * ours while memif ports are polled. Process-wide; used by the one thread that polls memif ports.
 */

/** Register the gate's callback with the EAL (once per process). @return 0 or -errno. */
int tdm_dp_gate_init(void);

/** Park the interrupt thread, waiting up to wait_ms for it (a request not answered in time stays
 *  pending: a later call looks again). @return true when it is parked. */
bool tdm_dp_gate_hold(uint32_t wait_ms);

/** Let the interrupt thread run (its queued work: memif connects and disconnects). */
void tdm_dp_gate_release(void);

/** Whether the interrupt thread is parked (tdm_dp_gate_hold returned true since the last
 *  release). */
bool tdm_dp_gate_held(void);

#endif /* TDM_DP_DPDK_PVT_H */
