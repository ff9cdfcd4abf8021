/*
 * Worker threads: one pthread per apply worker, each running its worker agent with an idle
 * strategy until told to stop. Without them the caller runs the worker agents itself (one-thread
 * mode). The dispatcher always runs on the caller's side.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "apply_pvt.h"

static void *worker_main(void *arg)
{
	struct tdm_apply_worker *w = arg;
	struct tdm_apply *a = w->a;
	struct tdm_dp_idle idle;

	tdm_dp_idle_init(&idle, a->idle);
	/* Pairs with tdm_apply_stop_threads' release of stop. */
	while (!tdm_apply_load_acquire(&a->stop)) {
		int rc = tdm_apply_worker_do_work(a, w->index);

		if (rc < 0) { /* keep the message for stop_threads (read after join) */
			snprintf(w->errmsg, sizeof(w->errmsg), "%s", tdm_errmsg());
			break;
		}
		tdm_dp_idle_step(&idle, rc);
	}
	return NULL;
}

TDM_API int tdm_apply_start_threads(struct tdm_apply *a, enum tdm_dp_idle_kind idle)
{
	if (a->nthreads)
		return TDM_ERR(-EBUSY, "apply worker threads are already running");
	a->idle = idle;
	tdm_apply_store_release(&a->stop, 0);
	for (; a->nthreads < a->workers; a->nthreads++) {
		int rc = pthread_create(&a->threads[a->nthreads], NULL, worker_main,
					&a->w[a->nthreads]);

		if (rc) {
			tdm_apply_stop_threads(a);
			return TDM_ERR(-rc, "cannot start apply worker thread: %s", strerror(rc));
		}
	}
	return 0;
}

TDM_API void tdm_apply_stop_threads(struct tdm_apply *a)
{
	int failed = -1;

	if (!a->nthreads)
		return;
	tdm_apply_store_release(&a->stop, 1); /* pairs with worker_main's acquire */
	for (int i = 0; i < a->nthreads; i++) {
		pthread_join(a->threads[i], NULL);
		if (failed < 0 && a->w[i].error)
			failed = i;
	}
	a->nthreads = 0;
	if (failed >= 0) /* give the caller's thread the failed worker's message */
		TDM_ERR((int)(int64_t)a->w[failed].error, "apply worker thread %d: %s", failed,
			a->w[failed].errmsg);
}
