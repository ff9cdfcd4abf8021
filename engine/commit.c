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

static int not_primary(const struct tdm_node *n)
{
	uint16_t p = n->shm->primary_id;

	if (p && p != n->shm->node_id)
		return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u is a replica: send writes to the "
			       "primary, node %u", n->shm->node_id, p);
	return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u is a replica and does not know the "
		       "primary yet", n->shm->node_id);
}

static int append(struct tdm_node *n, uint8_t type, const void *key, uint32_t klen,
		  const void *val, uint32_t vlen, uint64_t *end)
{
	struct tdm_log_entry e = {
		.type = type, .origin = n->origin, .hlc = eng_wall_ns(),
		.key = key, .key_len = klen, .value = val, .value_len = vlen,
	};

	if (n->shm->role != TDM_ROLE_PRIMARY)
		return not_primary(n);
	return tdm_log_append(n->log, &e, NULL, end);
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
static int degrade(struct tdm_node *n, uint64_t end)
{
	uint32_t spins = 0;

	__atomic_fetch_add(&n->shm->degrades.v, 1, __ATOMIC_RELAXED);
	while (!reached(n, end, TDM_LEVEL_LOCAL)) {
		int rc = wait_step(n, &spins);
		if (rc)
			return rc;
	}
	return TDM_ERR_DEGRADED;
}

/* The wait timed out: fail it, or degrade it and go async until the quorum catches up. */
static int on_timeout(struct tdm_node *n, uint64_t end, enum tdm_level level)
{
	if (n->shm->on_timeout != TDM_ON_TIMEOUT_DEGRADE) {
		__atomic_fetch_add(&n->shm->timeouts.v, 1, __ATOMIC_RELAXED);
		return TDM_ERR(TDM_ERR_TIMEOUT, "position %" PRIu64 " did not reach '%s' on %d "
			       "replica(s) in time (status shows each replica's positions)", end,
			       tdm_level_name(level), n->shm->quorum);
	}
	eng_store(&n->shm->degraded.v, 1);
	return degrade(n, end);
}

TDM_API int tdm_wait(struct tdm_node *n, uint64_t end, enum tdm_level level,
		     uint64_t timeout_ns)
{
	uint64_t deadline = 0, now;
	uint32_t spins = 0, checks = 0;

	if (reached(n, end, level))
		return 0;
	if (level >= TDM_LEVEL_RECEIVED && eng_load(&n->shm->degraded.v))
		return degrade(n, end);
	for (;;) {
		int rc = wait_step(n, &spins);

		if (rc)
			return rc;
		if (reached(n, end, level))
			return 0;
		if ((++checks & 63) != 0)
			continue;
		now = tdm_dp_now_ns();
		if (!deadline)
			deadline = now + (timeout_ns ? timeout_ns : n->shm->timeout_ns);
		if (now >= deadline)
			return on_timeout(n, end, level);
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
