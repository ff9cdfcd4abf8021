/*
 * Writing and reading through a node: appends to the primary's log, commit waits on the
 * position counters of each level (the quorum positions the engine publishes in the status
 * file), the timeout policy (fail or degrade), and point reads.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "engine_pvt.h"

/* Why this node refuses writes, naming the primary when it is known. */
static int not_primary(const struct tdm_node *n)
{
	const struct tdm_status_shm *s = n->shm;
	uint16_t p = __atomic_load_n(&s->primary_id, __ATOMIC_ACQUIRE);
	uint8_t role = __atomic_load_n(&s->role, __ATOMIC_ACQUIRE);

	if (s->mode == TDM_MODE_MULTI_PRIMARY)
		return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u refuses writes: %.120s; write to a "
			       "node that reaches the majority, or retry once this one does "
			       "(tandemctl status)", s->node_id, s->why_not_writable);
	if (role == TDM_ROLE_PRIMARY)
		return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u refuses writes: %.120s; retry, or "
			       "write to the new primary once one is elected (tandemctl status)",
			       s->node_id, s->why_not_writable);
	if (p && p != s->node_id)
		return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u is not the primary: send writes to "
			       "the primary, node %u (epoch %u)", s->node_id, p, s->epoch);
	return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u is not the primary and knows no primary "
		       "yet (an election may be running): retry shortly", s->node_id);
}

static int append(struct tdm_node *n, uint8_t type, const void *key, uint32_t klen,
		  const void *val, uint32_t vlen, uint64_t *end)
{
	struct tdm_status_shm *s = n->shm;
	struct tdm_log_entry e = {
		.type = type, .origin = n->origin, .hlc = eng_wall_ns(),
		.key = key, .key_len = klen, .value = val, .value_len = vlen,
	};
	int rc;

	/* Multi-primary: the node's hybrid logical clock orders this write after everything the
	 * node has seen (last-writer-wins compares these stamps). */
	if (s->mode == TDM_MODE_MULTI_PRIMARY)
		e.hlc = tdm_hlc_now(&s->hlc, eng_multi_clock(n));

	if (n->shm->role != TDM_ROLE_PRIMARY)
		return not_primary(n);
	/* The log's gate decides atomically: a fenced or deposed primary's log refuses. */
	rc = tdm_log_append(n->log, &e, NULL, end);
	return rc == TDM_ERR_NOT_PRIMARY ? not_primary(n) : rc;
}

/* The node stepped down since the wait began: the write may or may not survive. */
static int stepped_down(const struct tdm_node *n, uint64_t end)
{
	return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u stopped being the primary while position %"
		       PRIu64 " waited: that write is not acknowledged (it survives only if the "
		       "new primary, node %u, has it)", n->shm->node_id, end, n->shm->primary_id);
}

static uint64_t term(const struct tdm_node *n)
{
	return eng_load(&n->shm->term.v);
}

TDM_API int tdm_put(struct tdm_node *n, const void *key, uint32_t klen, const void *val,
		    uint32_t vlen, uint64_t *end)
{
	return append(n, TDM_LOG_REC_PUT, key, klen, val, vlen, end);
}

TDM_API int tdm_delete(struct tdm_node *n, const void *key, uint32_t klen, uint64_t *end)
{
	return append(n, TDM_LOG_REC_DEL, key, klen, NULL, 0, end);
}

/* Has end reached level? */
static bool reached(const struct tdm_node *n, uint64_t end, enum tdm_level level)
{
	switch (level) {
	case TDM_LEVEL_MEMORY:
		return true;
	case TDM_LEVEL_LOCAL:
		return tdm_log_durable(n->log) >= end;
	default:
		/* pairs with the release in eng_publish_positions */
		return eng_load(&n->shm->quorum_pos[level - TDM_LEVEL_RECEIVED].v) >= end;
	}
}

/* One waiting step: drive the node when nobody else does, else let other threads run. */
static int wait_step(struct tdm_node *n, uint32_t *spins)
{
	if (!n->attached && !n->thread_running) {
		int rc = tdm_node_do_work(n);
		return rc < 0 ? rc : 0;
	}
	if (++*spins < 2000)
		__builtin_ia32_pause();
	else
		sched_yield();
	return 0;
}

/* Acknowledge at `local` instead of the level asked for (counted; the engine logs it). */
static int degrade(struct tdm_node *n, uint64_t end, uint64_t t0)
{
	uint32_t spins = 0;

	__atomic_fetch_add(&n->shm->degrades.v, 1, __ATOMIC_RELAXED);
	while (!reached(n, end, TDM_LEVEL_LOCAL)) {
		int rc = wait_step(n, &spins);
		if (rc)
			return rc;
		if (term(n) != t0)
			return stepped_down(n, end);
		if (n->attached && (++spins & 0xffff) == 0 && !eng_status_alive(n->shm))
			return TDM_ERR(TDM_ERR_CLOSED, "the node in %s stopped", n->cfg.data_dir);
	}
	return term(n) == t0 ? TDM_ERR_DEGRADED : stepped_down(n, end);
}

/* The wait timed out: fail it, or degrade it and go async until the quorum catches up. */
static int on_timeout(struct tdm_node *n, uint64_t end, enum tdm_level level, uint64_t t0)
{
	if (n->shm->on_timeout != TDM_ON_TIMEOUT_DEGRADE) {
		__atomic_fetch_add(&n->shm->timeouts.v, 1, __ATOMIC_RELAXED);
		return TDM_ERR(TDM_ERR_TIMEOUT, "position %" PRIu64 " did not reach '%s' on %d "
			       "replica(s) in time (status shows each replica's positions)", end,
			       tdm_level_name(level), n->shm->quorum);
	}
	eng_store(&n->shm->degraded.v, 1);
	return degrade(n, end, t0);
}

/*
 * Positions are only meaningful within one reign of this node as primary: a wait that sees the
 * role change (`term` moves) fails with NOT_PRIMARY, whatever the counters say afterwards. A
 * level reached is checked before the term is read again (acquire order), so a success always
 * belongs to the reign the wait began in.
 */
TDM_API int tdm_wait(struct tdm_node *n, uint64_t end, enum tdm_level level,
		     uint64_t timeout_ns)
{
	uint64_t deadline = 0, now, t0 = term(n);
	uint32_t spins = 0, checks = 0;

	if (level == TDM_LEVEL_MEMORY)
		return 0;
	if (n->shm->role != TDM_ROLE_PRIMARY)
		return stepped_down(n, end);
	if (reached(n, end, level))
		return term(n) == t0 ? 0 : stepped_down(n, end);
	if (level >= TDM_LEVEL_RECEIVED && eng_load(&n->shm->degraded.v))
		return degrade(n, end, t0);
	for (;;) {
		int rc = wait_step(n, &spins);

		if (rc)
			return rc;
		if (reached(n, end, level))
			return term(n) == t0 ? 0 : stepped_down(n, end);
		if ((++checks & 63) != 0)
			continue;
		if (term(n) != t0)
			return stepped_down(n, end);
		now = tdm_dp_now_ns();
		if (!deadline)
			deadline = now + (timeout_ns ? timeout_ns : n->shm->timeout_ns);
		if (now >= deadline)
			return on_timeout(n, end, level, t0);
		if (n->attached && (checks & 0xffff) == 0 && !eng_status_alive(n->shm))
			return TDM_ERR(TDM_ERR_CLOSED, "the node in %s stopped", n->cfg.data_dir);
	}
}

/* Append (retrying while the ring is full) and wait at level. */
static int commit(struct tdm_node *n, uint8_t type, const void *key, uint32_t klen,
		  const void *val, uint32_t vlen, enum tdm_level level)
{
	uint32_t spins = 0;
	uint64_t end;
	int rc;

	while ((rc = append(n, type, key, klen, val, vlen, &end)) == TDM_ERR_BACKPRESSURE)
		if ((rc = wait_step(n, &spins)) != 0)
			return rc;
	return rc ? rc : tdm_wait(n, end, level, 0);
}

TDM_API int tdm_commit_put(struct tdm_node *n, const void *key, uint32_t klen, const void *val,
			   uint32_t vlen, enum tdm_level level)
{
	return commit(n, TDM_LOG_REC_PUT, key, klen, val, vlen, level);
}

TDM_API int tdm_commit_delete(struct tdm_node *n, const void *key, uint32_t klen,
			      enum tdm_level level)
{
	return commit(n, TDM_LOG_REC_DEL, key, klen, NULL, 0, level);
}

TDM_API int tdm_get(struct tdm_node *n, const void *key, uint32_t klen, void *buf, uint32_t cap,
		    uint32_t *vlen)
{
	if (n->attached)
		return tdm_ctl_get(n->cfg.data_dir, key, klen, buf, cap, vlen);
	return tdm_store_get(n->store, key, klen, buf, cap, vlen, NULL, NULL);
}

TDM_API int tdm_digest(struct tdm_node *n, uint64_t *digest, uint64_t *applied, uint64_t *keys)
{
	if (n->attached)
		return tdm_ctl_digest(n->cfg.data_dir, digest, applied, keys);
	*applied = eng_applied(n);
	*digest = tdm_store_digest(n->store);
	*keys = tdm_store_count(n->store);
	return 0;
}

TDM_API int tdm_primary(struct tdm_node *n, uint16_t *primary, uint32_t *epoch)
{
	*primary = __atomic_load_n(&n->shm->primary_id, __ATOMIC_ACQUIRE);
	*epoch = __atomic_load_n(&n->shm->epoch, __ATOMIC_ACQUIRE);
	if (n->attached && !eng_status_alive(n->shm))
		return TDM_ERR(TDM_ERR_CLOSED, "the node in %s stopped", n->cfg.data_dir);
	return 0;
}
