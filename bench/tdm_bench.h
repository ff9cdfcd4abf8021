/*
 * tandem benchmarks: Google Benchmark seen from C.
 *
 * Benchmark bodies are C; bench/gbench_wrap.cc is the only C++ file and forwards these calls to
 * benchmark::State. A body receives an opaque struct tdm_bench_state (it is the State itself, so
 * no call allocates) and runs its timed loop with tdm_bench_keep_running() (one iteration per call)
 * or tdm_bench_next_batch() (many iterations per call: use it when one iteration costs tens of
 * nanoseconds, so the call into the wrapper does not show in the figure).
 *
 * Threads: with opts.threads > 1 the body runs on that many threads at once, each with its own
 * state. opts.setup runs once on thread 0 before any thread enters the body, opts.teardown once on
 * thread 0 after every thread has left it, so shared objects are made and freed there.
 */
#ifndef TDM_BENCH_H
#define TDM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One thread's view of one benchmark run (a benchmark::State). */
struct tdm_bench_state;

/** A benchmark body; ctx is what was given to tdm_bench_register(). */
typedef void (*tdm_bench_fn)(struct tdm_bench_state *st, void *ctx);

/** Run once on thread 0 before a run; returns NULL, or a message that fails the run (every
 *  thread skips the body; the text must stay valid until the run ends). */
typedef const char *(*tdm_bench_setup_fn)(void *ctx, int threads);

/** Run once on thread 0 after every thread of a run has returned from the body. */
typedef void (*tdm_bench_teardown_fn)(void *ctx, int threads);

/** Time unit used to print a benchmark's time per iteration. */
enum tdm_bench_unit {
	TDM_BENCH_NS = 0,
	TDM_BENCH_US = 1,
	TDM_BENCH_MS = 2,
};

/** How a counter is combined and shown (flags can be or-ed). */
enum tdm_bench_counter_flags {
	TDM_BENCH_COUNTER_PLAIN = 0,            /**< the value, summed over threads */
	TDM_BENCH_COUNTER_RATE = 1 << 0,        /**< divided by the run's time: per second */
	TDM_BENCH_COUNTER_AVG_THREADS = 1 << 1, /**< averaged over threads instead of summed */
	TDM_BENCH_COUNTER_PER_ITERATION = 1 << 2, /**< divided by the iteration count */
};

/** How a benchmark is run. Zeroes mean the library's defaults. */
struct tdm_bench_opts {
	int threads;          /**< threads running the body at once (0 or 1: one) */
	int64_t iterations;   /**< fixed iterations per thread (0: the library chooses) */
	double min_time;      /**< seconds to run at least when iterations is 0 (0: default) */
	int repetitions;      /**< runs of the whole benchmark (0: default, 1) */
	bool real_time;       /**< time by the wall clock instead of the threads' CPU time */
	bool manual_time;     /**< time only what the body reports with set_iteration_time */
	enum tdm_bench_unit unit; /**< unit of the time column */
	tdm_bench_setup_fn setup;       /**< may be NULL */
	tdm_bench_teardown_fn teardown; /**< may be NULL */
};

/**
 * Register a benchmark; the library copies name. The library appends its own suffixes
 * ("/iterations:N/real_time/threads:2") to the name it reports.
 * @return 0; -EINVAL fn or name NULL, or options the library refuses (iterations with min_time).
 */
int tdm_bench_register(const char *name, tdm_bench_fn fn, void *ctx,
		       const struct tdm_bench_opts *opts);

/** Add a key: value line to the context printed before the results and put in the JSON file. */
void tdm_bench_context(const char *key, const char *value);

/**
 * Parse the library's flags (--benchmark_filter=..., --benchmark_out=...), run every registered
 * benchmark that matches, and shut the library down.
 * @return 0; 1 on an unknown flag (after printing what is accepted).
 */
int tdm_bench_main(int argc, char **argv);

/* ---- Inside a body ---- */

/** One more iteration? Starts the timer on the first call and stops it on the last. */
bool tdm_bench_keep_running(struct tdm_bench_state *st);

/**
 * How many iterations to run now, at most max (>= 1); 0 when the run is over. The count of
 * iterations run is exact (never more than the run asked for), so a body may rely on it.
 */
uint64_t tdm_bench_next_batch(struct tdm_bench_state *st, uint64_t max);

/** Iterations this thread will run in all (the fixed count, or the library's current guess). */
uint64_t tdm_bench_max_iterations(const struct tdm_bench_state *st);

/** Iterations this thread has completed so far (0 before the loop). */
uint64_t tdm_bench_iterations(const struct tdm_bench_state *st);

/** Stop / restart this thread's timer (costs a clock read each; not per iteration). */
void tdm_bench_pause(struct tdm_bench_state *st);
void tdm_bench_resume(struct tdm_bench_state *st);

/** This thread's index in the run (0 .. threads-1) and the number of threads. */
int tdm_bench_thread_index(const struct tdm_bench_state *st);
int tdm_bench_threads(const struct tdm_bench_state *st);

/** Add seconds of timed work (benchmarks registered with manual_time); may be called once per
 *  iteration or once in all, also after the loop. */
void tdm_bench_set_iteration_time(struct tdm_bench_state *st, double seconds);

/** Items (records) this thread processed: reported as items_per_second, summed over threads. */
void tdm_bench_set_items(struct tdm_bench_state *st, int64_t n);

/** Bytes this thread processed: reported as bytes_per_second. */
void tdm_bench_set_bytes(struct tdm_bench_state *st, int64_t n);

/** Set a named counter (flags: enum tdm_bench_counter_flags). Counters of the same name set on
 *  several threads are summed unless TDM_BENCH_COUNTER_AVG_THREADS is given. */
void tdm_bench_counter(struct tdm_bench_state *st, const char *name, double value,
		       unsigned flags);

/** A free-text label shown beside the result. */
void tdm_bench_label(struct tdm_bench_state *st, const char *label);

/**
 * Fail this run with msg. The body must still run its loop until keep_running / next_batch
 * return false / 0 (they do so at once), because every thread of a run meets at its start and
 * its end.
 */
void tdm_bench_skip(struct tdm_bench_state *st, const char *msg);

/** Keep the compiler from dropping the computation of what p points to. */
static inline void tdm_bench_do_not_optimize(const void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
}

#ifdef __cplusplus
}
#endif

#endif /* TDM_BENCH_H */
