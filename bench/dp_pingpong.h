/*
 * dp_pingpong: what its two halves share. dp_pingpong.c runs the processes and the tandem
 * transport modes; dp_pingpong_bare.c is the raw DPDK baseline, built apart because DPDK's
 * headers need gnu11 (see dataplane/meson.build).
 */
#ifndef TDM_DP_PINGPONG_H
#define TDM_DP_PINGPONG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PP_FRAME_LEN 64u /* bare: the whole Ethernet frame; tandem modes: the UDP payload */

/** Which side a process plays. The ponger starts first (memif server, core 0). */
enum pp_role {
	PP_PONG = 0, /**< echoes every frame back until SIGTERM */
	PP_PING = 1, /**< sends one frame, waits for its echo, and times each round trip */
};

struct pp_opts {
	const char *mode;   /**< "bare-memif", "dpdk" or "udp" */
	uint64_t count;     /**< timed round trips */
	uint64_t warmup;    /**< untimed round trips first */
	bool json;
	int ncpu;           /**< online CPUs: the two sides go on cores 0 and 1 when there are 2 */
	char sock[108];     /**< memif control socket path, unique to this run */
	char prefix[48];    /**< EAL file prefix stem, unique to this run */
	uint16_t udp_port;  /**< udp mode: the ponger's port; the pinger takes the next one */
};

struct pp_endpoint;

/** One side's way of moving frames; a frame carries a sequence number. */
struct pp_endpoint_ops {
	/** Send one frame carrying seq. @return 0 or negative. */
	int (*send)(struct pp_endpoint *e, uint64_t seq);
	/** Poll once: @return 1 and *seq when a frame arrived (others in the burst are dropped),
	 *  0 when none. */
	int (*recv)(struct pp_endpoint *e, uint64_t *seq);
	/** Poll once and send back whatever arrived. @return frames echoed. */
	int (*echo)(struct pp_endpoint *e);
	bool (*link_up)(struct pp_endpoint *e);
	void (*close)(struct pp_endpoint *e);
};

struct pp_endpoint {
	const struct pp_endpoint_ops *ops;
};

/** EAL arguments for one side (no program name): no hugepages, in-memory, a unique prefix,
 *  pinned to its core, one memif port (server for the ponger). */
void pp_eal_args(const struct pp_opts *o, enum pp_role role, char *out, size_t cap);

#ifdef TDM_HAVE_DPDK
/** Open the raw DPDK side (EAL, pool, memif port). @return 0, or negative with err filled. */
int pp_bare_open(const struct pp_opts *o, enum pp_role role, struct pp_endpoint **out,
		 char *err, size_t cap);
#endif

#endif /* TDM_DP_PINGPONG_H */
