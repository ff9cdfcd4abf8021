/*
 * The hybrid logical clock that stamps multi-primary writes (packing: see tdm_apply.h).
 *
 * The whole clock is one 64-bit word, `last`, the greatest timestamp this node has issued or
 * observed. Treated as one integer, the packed timestamp needs no separate counter logic:
 *
 *   now:      new = max(wall & ~logical_mask, last + 1)
 *   observe:  last = max(last, remote)        (unless remote is too far ahead of wall)
 *
 * When the physical tick has moved past `last`, the new stamp is the tick with a logical count
 * of 0; otherwise it is last + 1, which counts in the logical bits (and, past 2^8 stamps within
 * one tick, carries into the physical part: the clock then runs a few ns ahead of the wall
 * clock until it catches up, which keeps every property below). So:
 *   - stamps from one clock are strictly increasing, whatever the wall clock does (it may step
 *     back: NTP, a VM migration);
 *   - every stamp issued after observing a remote stamp is greater than it (causality);
 *   - a stamp is never below the wall clock's tick, and runs ahead of it only by what the
 *     clock observed (bounded by max_offset, which observe enforces) plus the carries.
 *
 * Several threads may stamp through one clock: both steps are compare-and-swap loops on `last`
 * (acq_rel, so a stamp also orders the memory its thread wrote before it). They are not on the
 * apply hot path: the engine stamps once per local write and observes once per received batch.
 */
#include "apply_pvt.h"

#define LOGICAL_MASK ((1ull << TDM_HLC_LOGICAL_BITS) - 1)

TDM_API void tdm_hlc_init(struct tdm_hlc *c, uint64_t start)
{
	tdm_apply_store_release(&c->last, start);
}

TDM_API uint64_t tdm_hlc_last(const struct tdm_hlc *c)
{
	return tdm_apply_load_acquire(&c->last); /* pairs with the CAS of now/observe (release) */
}

TDM_API uint64_t tdm_hlc_now(struct tdm_hlc *c, uint64_t wall_ns)
{
	uint64_t tick = wall_ns & ~LOGICAL_MASK;
	uint64_t old = tdm_apply_load_acquire(&c->last), next;

	/* A CAS, not the two helpers: the read and the write must be one step, since other
	 * threads stamp through the same clock. A failed CAS reloads old (acquire). */
	do
		next = tick > old ? tick : old + 1;
	while (!__atomic_compare_exchange_n(&c->last, &old, next, false, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE));
	return next;
}

TDM_API int tdm_hlc_observe(struct tdm_hlc *c, uint64_t remote, uint64_t wall_ns,
			    uint64_t max_offset_ns)
{
	uint64_t limit = wall_ns + max_offset_ns < wall_ns ? UINT64_MAX : wall_ns + max_offset_ns;
	uint64_t old = tdm_apply_load_acquire(&c->last);

	if (TDM_APPLY_UNLIKELY(remote > limit))
		return TDM_ERR_CLOCK_AHEAD; /* bare code: the caller counts, per record */
	while (remote > old && !__atomic_compare_exchange_n(&c->last, &old, remote, false,
							    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	return 0;
}
