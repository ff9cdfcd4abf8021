/*
 * Agents and idle strategies: how one poll thread runs several do_work() steps (dataplane,
 * flusher, apply) and what it does when none of them found work. On a 2-core machine every
 * agent of a process runs on one thread with the yield strategy.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "dp_pvt.h"

TDM_DP_API uint64_t tdm_dp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

TDM_DP_API void tdm_dp_idle_init(struct tdm_dp_idle *idle, enum tdm_dp_idle_kind kind)
{
	memset(idle, 0, sizeof(*idle));
	idle->kind = kind;
	idle->spins = 100;
	idle->yields = 50;
	idle->max_sleep_ns = 1000000;
}

TDM_DP_API int tdm_dp_idle_parse(const char *name, enum tdm_dp_idle_kind *out)
{
	static const char *const names[] = { "spin", "yield", "backoff" };

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (name && strcmp(name, names[i]) == 0) {
			*out = (enum tdm_dp_idle_kind)i;
			return 0;
		}
	}
	return -EINVAL;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void backoff_step(struct tdm_dp_idle *idle)
{
	struct timespec ts;

	if (idle->idle_rounds < idle->spins) {
		cpu_relax();
		return;
	}
	if (idle->idle_rounds < idle->spins + idle->yields) {
		sched_yield();
		return;
	}
	idle->sleep_ns = idle->sleep_ns ? idle->sleep_ns * 2 : 1000;
	if (idle->sleep_ns > idle->max_sleep_ns)
		idle->sleep_ns = idle->max_sleep_ns;
	ts.tv_sec = (time_t)(idle->sleep_ns / 1000000000u);
	ts.tv_nsec = (long)(idle->sleep_ns % 1000000000u);
	nanosleep(&ts, NULL);
}

TDM_DP_API void tdm_dp_idle_step(struct tdm_dp_idle *idle, int work)
{
	if (work > 0) {
		idle->idle_rounds = 0;
		idle->sleep_ns = 0;
		return;
	}
	switch (idle->kind) {
	case TDM_DP_IDLE_SPIN:
		cpu_relax();
		break;
	case TDM_DP_IDLE_YIELD:
		sched_yield();
		break;
	case TDM_DP_IDLE_BACKOFF:
		backoff_step(idle);
		break;
	}
	if (idle->idle_rounds < UINT32_MAX)
		idle->idle_rounds++;
}

TDM_DP_API int tdm_dp_run_once(const struct tdm_dp_agent *agents, int n)
{
	int total = 0;

	for (int i = 0; i < n; i++) {
		int rc = agents[i].do_work(agents[i].ctx);

		if (rc < 0)
			return tdm_err_append(rc, "in agent %s", agents[i].name);
		total += rc;
	}
	return total;
}

TDM_DP_API int tdm_dp_run(const struct tdm_dp_agent *agents, int n, struct tdm_dp_idle *idle,
			  const bool *stop)
{
	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) { /* pairs with the stopper's release */
		int rc = tdm_dp_run_once(agents, n);

		if (rc < 0)
			return rc;
		tdm_dp_idle_step(idle, rc);
	}
	return 0;
}
