/*
 * The generic transport layer: checks a transport configuration, picks the backend, and puts the
 * fault layer between the callers and the backend.
 *
 * The fault layer injects, per frame we send and drawn from a seeded PRNG so a run can be
 * repeated: drop, duplicate (a second buffer with the same bytes), reorder (hold a frame and
 * send it right after the next one), delay (a FIFO released when due) and cut links (both ways:
 * frames to a cut peer are dropped on tx, frames whose tandem header names a cut peer as source
 * are dropped on rx). Held frames go out from tdm_dp_tx_burst and tdm_dp_rx_burst, so a poll
 * loop releases them without a timer.
 *
 * Hot paths (buffers, bursts): no allocation, no lock, no logging. Without faults, cuts or held
 * frames a burst is one check and the backend call. Every counter is a plain field of the one
 * thread that uses the transport.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dp_pvt.h"

#define MTU_MIN 576u          /* the IPv4 minimum every host must accept */
#define PERMILLE 1000u
#define SEED_DEFAULT 0x74616e64656d3031ull /* "tandem01": seed 0 still gives a fixed run */

/* The rx cut check peeks at the source node in the tandem header without frame.c's help. */
_Static_assert(offsetof(struct tdm_dp_hdr, src) == 16, "src offset in the frame header");
_Static_assert(TDM_DP_MAX_PEERS <= 32, "cut_mask has one bit per peer");

/* ---- Backends and configuration ---- */

TDM_DP_API int tdm_dp_backend_parse(const char *name, enum tdm_dp_backend *out)
{
	if (name && !strcmp(name, "udp")) {
		*out = TDM_DP_BACKEND_UDP;
		return 0;
	}
	if (name && !strcmp(name, "dpdk")) {
		*out = TDM_DP_BACKEND_DPDK;
		return 0;
	}
	return TDM_ERR(-EINVAL, "unknown transport backend '%s': use udp or dpdk",
		       name ? name : "(null)");
}

TDM_DP_API const char *tdm_dp_backend_name(enum tdm_dp_backend b)
{
	switch (b) {
	case TDM_DP_BACKEND_UDP: return "udp";
	case TDM_DP_BACKEND_DPDK: return "dpdk";
	}
	return "?";
}

TDM_DP_API void tdm_dp_transport_config_defaults(struct tdm_dp_transport_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend = TDM_DP_BACKEND_UDP;
	cfg->local_ip = htonl(INADDR_LOOPBACK);
	cfg->mtu = TDM_DP_DEFAULT_MTU;
}

/* The backend table for cfg->backend, or an error that says what to use instead. */
static int pick_ops(enum tdm_dp_backend backend, const struct tdm_dp_backend_ops **ops)
{
	switch (backend) {
	case TDM_DP_BACKEND_UDP:
		*ops = &tdm_dp_udp_ops;
		return 0;
	case TDM_DP_BACKEND_DPDK:
#ifdef TDM_HAVE_DPDK
		*ops = &tdm_dp_dpdk_ops;
		return 0;
#else
		return TDM_ERR(-ENOTSUP, "backend dpdk: this build has no DPDK (install "
			       "libdpdk-dev and rebuild) — use backend udp");
#endif
	}
	return TDM_ERR(-EINVAL, "backend %d is unknown: use udp (%d) or dpdk (%d)", (int)backend,
		       TDM_DP_BACKEND_UDP, TDM_DP_BACKEND_DPDK);
}

/* One peer entry on its own: a node id, and for udp somewhere to send to. */
static int check_peer(const struct tdm_dp_transport_config *cfg, int i)
{
	const struct tdm_dp_peer_addr *p = &cfg->peers[i];

	if (p->node_id == 0)
		return TDM_ERR(-EINVAL, "peers[%d].node_id is 0: every peer needs its non-zero "
			       "node id", i);
	if (p->node_id == cfg->node_id)
		return TDM_ERR(-EINVAL, "peers[%d].node_id %u is this node's own node_id: list "
			       "only the other nodes", i, p->node_id);
	for (int j = 0; j < i; j++)
		if (cfg->peers[j].node_id == p->node_id)
			return TDM_ERR(-EINVAL, "peers[%d] and peers[%d] both have node_id %u: "
				       "list each peer once", j, i, p->node_id);
	if (cfg->backend != TDM_DP_BACKEND_UDP)
		return 0;
	if (p->ip == 0)
		return TDM_ERR(-EINVAL, "peers[%d] (node %u) has no ip: set the IPv4 address "
			       "the udp backend sends to", i, p->node_id);
	if (p->port == 0)
		return TDM_ERR(-EINVAL, "peers[%d] (node %u) has no port: set the UDP port the "
			       "peer listens on", i, p->node_id);
	return 0;
}

static int check_faults(const struct tdm_dp_faults *f)
{
	const struct {
		const char *name;
		uint32_t v;
	} rates[] = {
		{ "drop", f->drop }, { "duplicate", f->duplicate },
		{ "reorder", f->reorder }, { "delay", f->delay },
	};

	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
		if (rates[i].v > PERMILLE)
			return TDM_ERR(-EINVAL, "faults.%s is %u: rates are per mille, use 0..1000",
				       rates[i].name, rates[i].v);
	return 0;
}

/* Everything a backend relies on; *mtu gets the effective MTU. */
static int check_config(const struct tdm_dp_transport_config *cfg, uint32_t *mtu)
{
	int rc;

	if (cfg->node_id == 0)
		return TDM_ERR(-EINVAL, "node_id is 0: give this node a non-zero id (1-65535), "
			       "unique in the cluster");
	if (cfg->n_peers <= 0 || cfg->n_peers > TDM_DP_MAX_PEERS)
		return TDM_ERR(-EINVAL, "n_peers is %d: configure 1 to %d peers", cfg->n_peers,
			       TDM_DP_MAX_PEERS);
	for (int i = 0; i < cfg->n_peers; i++)
		if ((rc = check_peer(cfg, i)) < 0)
			return rc;
	*mtu = cfg->mtu ? cfg->mtu : TDM_DP_DEFAULT_MTU;
	if (*mtu < MTU_MIN || *mtu > TDM_DP_MAX_MTU)
		return TDM_ERR(-EINVAL, "mtu %u is out of range: use %u..%u (0 = %u)", cfg->mtu,
			       MTU_MIN, TDM_DP_MAX_MTU, TDM_DP_DEFAULT_MTU);
	/* Peers send to our port; an ephemeral one would be unreachable. */
	if (cfg->backend == TDM_DP_BACKEND_UDP && cfg->local_port == 0)
		return TDM_ERR(-EINVAL, "local_port is 0: set the UDP port this node listens on "
			       "(its peers send to it)");
	return check_faults(&cfg->faults);
}

TDM_DP_API int tdm_dp_transport_create(const struct tdm_dp_transport_config *cfg,
				       struct tdm_dp_transport **out)
{
	const struct tdm_dp_backend_ops *ops = NULL;
	struct tdm_dp_transport *t;
	uint32_t mtu = 0;
	int rc;

	if (!cfg || !out)
		return TDM_ERR(-EINVAL, "transport create needs a config and an out pointer");
	*out = NULL;
	if ((rc = check_config(cfg, &mtu)) < 0 || (rc = pick_ops(cfg->backend, &ops)) < 0)
		return rc;
	t = calloc(1, sizeof(*t));
	if (!t)
		return TDM_ERR(-ENOMEM, "out of memory for a transport");
	t->cfg = *cfg;
	t->cfg.mtu = mtu; /* backends read the effective MTU from cfg too */
	t->mtu = mtu;
	t->ops = ops;
	tdm_dp_set_faults(t, &cfg->faults);
	rc = ops->open(t); /* sets the message on failure */
	if (rc < 0) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

TDM_DP_API void tdm_dp_transport_destroy(struct tdm_dp_transport *t)
{
	if (!t)
		return;
	/* Held frames belong to the backend's pool: give them back before the pool goes. */
	if (t->reorder_held)
		t->ops->buf_free(t, t->reorder_held);
	for (uint32_t i = 0; i < t->delayed_n; i++)
		t->ops->buf_free(t, t->delayed[(t->delayed_head + i) % TDM_DP_HOLD_MAX]);
	t->reorder_held = NULL;
	t->delayed_n = 0;
	t->ops->close(t);
	free(t);
}

/* ---- Buffers ---- */

TDM_DP_API struct tdm_dp_buf *tdm_dp_buf_alloc(struct tdm_dp_transport *t)
{
	struct tdm_dp_buf *b = t->ops->buf_alloc(t);

	if (TDM_DP_UNLIKELY(!b))
		t->st.no_buf++;
	return b;
}

TDM_DP_API void tdm_dp_buf_free(struct tdm_dp_transport *t, struct tdm_dp_buf *b)
{
	if (b)
		t->ops->buf_free(t, b);
}

/* ---- Fault layer: PRNG ---- */

/* splitmix64 spreads any seed (1, 2, 3...) over the whole state space of xorshift. */
static void rng_seed(struct tdm_dp_transport *t, uint64_t seed)
{
	uint64_t z = (seed ? seed : SEED_DEFAULT) + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	t->rng = z ? z : SEED_DEFAULT; /* xorshift never leaves 0 */
}

/* xorshift64*: one draw in 0..999, compared with a per mille rate. */
static uint32_t rng_permille(struct tdm_dp_transport *t)
{
	uint64_t x = t->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	t->rng = x;
	/* The high 32 bits are the good ones; scale by multiplication, not modulo. */
	return (uint32_t)((((x * 0x2545f4914f6cdd1dull) >> 32) * PERMILLE) >> 32);
}

/* Draw for a fault only when its rate is set, so the draws a seed makes depend only on the
 * rates that are on. */
static bool rng_hit(struct tdm_dp_transport *t, uint32_t rate)
{
	return rate && rng_permille(t) < rate;
}

TDM_DP_API void tdm_dp_set_faults(struct tdm_dp_transport *t, const struct tdm_dp_faults *f)
{
	t->faults = *f;
	t->faults.drop = f->drop < PERMILLE ? f->drop : PERMILLE;
	t->faults.duplicate = f->duplicate < PERMILLE ? f->duplicate : PERMILLE;
	t->faults.reorder = f->reorder < PERMILLE ? f->reorder : PERMILLE;
	t->faults.delay = f->delay < PERMILLE ? f->delay : PERMILLE;
	t->faults_on = t->faults.drop || t->faults.duplicate || t->faults.reorder ||
		       t->faults.delay;
	/* Reseed on every call: setting the same faults again repeats the same pattern. */
	rng_seed(t, f->seed);
}

/* ---- Fault layer: cut links ---- */

static bool peer_cut(const struct tdm_dp_transport *t, uint16_t peer)
{
	int i;

	if (t->cut_all)
		return true;
	i = tdm_dp_peer_index(&t->cfg, peer);
	return i >= 0 && (t->cut_mask >> i & 1u);
}

TDM_DP_API int tdm_dp_cut(struct tdm_dp_transport *t, uint16_t peer, bool cut)
{
	int i;

	if (peer == 0) {
		/* cut_all also covers sources that are not configured peers. */
		t->cut_all = cut;
		t->cut_mask = cut ? (uint32_t)((1ull << t->cfg.n_peers) - 1) : 0;
		return 0;
	}
	i = tdm_dp_peer_index(&t->cfg, peer);
	if (i < 0)
		return TDM_ERR(-ENOENT, "node %u is not a configured peer of node %u", peer,
			       t->cfg.node_id);
	if (cut) {
		t->cut_mask |= 1u << i;
	} else {
		t->cut_mask &= ~(1u << i);
		t->cut_all = false; /* one link is up again: not everything is cut any more */
	}
	return 0;
}

bool tdm_dp_link_physical(struct tdm_dp_transport *t, uint16_t peer)
{
	return tdm_dp_peer_index(&t->cfg, peer) >= 0 && t->ops->link_up(t, peer);
}

TDM_DP_API bool tdm_dp_link_up(struct tdm_dp_transport *t, uint16_t peer)
{
	return !peer_cut(t, peer) && tdm_dp_link_physical(t, peer);
}

/* ---- Fault layer: tx ---- */

/* Frames on their way to the backend during one call; flushed when full, so any number of
 * input, duplicate and released frames fits without allocation. */
struct tx_out {
	struct tdm_dp_buf *b[TDM_DP_BURST];
	int n;
	int sent; /* frames the backend took */
};

static void out_flush(struct tdm_dp_transport *t, struct tx_out *o)
{
	if (o->n)
		o->sent += t->ops->tx_burst(t, o->b, o->n);
	o->n = 0;
}

static void out_push(struct tdm_dp_transport *t, struct tx_out *o, struct tdm_dp_buf *b)
{
	if (o->n == TDM_DP_BURST)
		out_flush(t, o);
	o->b[o->n++] = b;
}

/* A frame the fault layer held goes now, unless its link was cut meanwhile. */
static void out_release(struct tdm_dp_transport *t, struct tx_out *o, struct tdm_dp_buf *b)
{
	if (peer_cut(t, b->peer)) {
		t->st.fault_cut_tx++;
		t->ops->buf_free(t, b);
		return;
	}
	out_push(t, o, b);
}

/* Send b now; a frame held back for reordering goes right after it. */
static void out_send(struct tdm_dp_transport *t, struct tx_out *o, struct tdm_dp_buf *b)
{
	struct tdm_dp_buf *held = t->reorder_held;

	out_push(t, o, b);
	if (held) {
		t->reorder_held = NULL;
		out_release(t, o, held);
	}
}

/* Release the delayed frames that are due (the FIFO is in due order while delay_ns is fixed;
 * after a change a later frame may wait behind an earlier one for one delay at most). */
static void release_due(struct tdm_dp_transport *t, struct tx_out *o, uint64_t now)
{
	while (t->delayed_n) {
		struct tdm_dp_buf *b = t->delayed[t->delayed_head];
		if (b->due_ns > now)
			return;
		t->delayed_head = (t->delayed_head + 1) % TDM_DP_HOLD_MAX;
		t->delayed_n--;
		out_release(t, o, b);
	}
}

/* Queue b until now + delay_ns. @return false when the FIFO is full (b goes now). */
static bool delay_push(struct tdm_dp_transport *t, struct tdm_dp_buf *b, uint64_t now)
{
	if (t->delayed_n == TDM_DP_HOLD_MAX)
		return false;
	b->due_ns = now + t->faults.delay_ns;
	t->delayed[(t->delayed_head + t->delayed_n) % TDM_DP_HOLD_MAX] = b;
	t->delayed_n++;
	t->st.fault_delay++;
	return true;
}

/* A copy of b in a second buffer, sent now; none when the pool is empty (not a failure: the
 * fault simply does not happen). */
static void duplicate(struct tdm_dp_transport *t, struct tx_out *o, const struct tdm_dp_buf *b)
{
	struct tdm_dp_buf *c = t->ops->buf_alloc(t);

	if (!c)
		return;
	if (b->len > c->cap) {
		t->ops->buf_free(t, c);
		return;
	}
	memcpy(c->data, b->data, b->len);
	c->len = b->len;
	c->peer = b->peer;
	t->st.fault_duplicate++;
	out_send(t, o, c);
}

/* One frame through the faults, in a fixed order of draws so a seed repeats a run. */
static void fault_tx_one(struct tdm_dp_transport *t, struct tx_out *o, struct tdm_dp_buf *b,
			 uint64_t now)
{
	if (peer_cut(t, b->peer)) {
		t->st.fault_cut_tx++;
		t->ops->buf_free(t, b);
		return;
	}
	if (rng_hit(t, t->faults.drop)) {
		t->st.fault_drop++;
		t->ops->buf_free(t, b);
		return;
	}
	if (rng_hit(t, t->faults.duplicate))
		duplicate(t, o, b);
	if (rng_hit(t, t->faults.delay) && delay_push(t, b, now))
		return;
	/* One frame held at a time: a second pick while one is held goes now, the held after it. */
	if (rng_hit(t, t->faults.reorder) && !t->reorder_held) {
		t->reorder_held = b;
		t->st.fault_reorder++;
		return;
	}
	out_send(t, o, b);
}

static int tx_faulty(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n)
{
	struct tx_out o = { .n = 0, .sent = 0 };
	/* One clock read per burst, and only when something is or may be delayed. */
	uint64_t now = (t->faults.delay || t->delayed_n) ? tdm_dp_now_ns() : 0;

	release_due(t, &o, now); /* before this burst: its own frames are never due yet */
	for (int i = 0; i < n; i++)
		fault_tx_one(t, &o, bufs[i], now);
	out_flush(t, &o);
	return o.sent;
}

TDM_DP_API int tdm_dp_tx_burst(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n)
{
	if (TDM_DP_LIKELY(!t->faults_on && !(t->cut_mask | t->cut_all) && !t->reorder_held &&
			  !t->delayed_n))
		return t->ops->tx_burst(t, bufs, n);
	return tx_faulty(t, bufs, n);
}

/* ---- Fault layer: rx ---- */

/* Frames held back with nothing sent after them go on the next receive. */
static void release_pending(struct tdm_dp_transport *t)
{
	struct tx_out o = { .n = 0, .sent = 0 };
	struct tdm_dp_buf *held = t->reorder_held;

	if (t->delayed_n)
		release_due(t, &o, tdm_dp_now_ns());
	if (held) {
		t->reorder_held = NULL;
		out_release(t, &o, held);
	}
	out_flush(t, &o);
}

/* Is b from a cut peer? Frames too short for a header pass: frame validation drops them. */
static bool rx_from_cut(const struct tdm_dp_transport *t, const struct tdm_dp_buf *b)
{
	uint16_t src;

	if (t->cut_all)
		return true;
	if (b->len < TDM_DP_HDR_SIZE)
		return false;
	memcpy(&src, b->data + offsetof(struct tdm_dp_hdr, src), sizeof(src));
	return peer_cut(t, le16toh(src));
}

static int rx_drop_cut(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		if (rx_from_cut(t, bufs[i])) {
			t->st.fault_cut_rx++;
			t->ops->buf_free(t, bufs[i]);
		} else {
			bufs[k++] = bufs[i];
		}
	}
	return k;
}

TDM_DP_API int tdm_dp_rx_burst(struct tdm_dp_transport *t, struct tdm_dp_buf **bufs, int n)
{
	int got;

	if (TDM_DP_UNLIKELY(t->reorder_held || t->delayed_n))
		release_pending(t);
	got = t->ops->rx_burst(t, bufs, n);
	if (TDM_DP_UNLIKELY((t->cut_mask | t->cut_all) && got > 0))
		got = rx_drop_cut(t, bufs, got);
	return got;
}

/* ---- Status ---- */

TDM_DP_API void tdm_dp_transport_stats(const struct tdm_dp_transport *t,
				       struct tdm_dp_transport_stats *out)
{
	*out = t->st;
}

TDM_DP_API const char *tdm_dp_transport_describe(const struct tdm_dp_transport *t)
{
	return t->ops->describe(t);
}
