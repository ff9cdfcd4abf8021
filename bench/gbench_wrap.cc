// tandem benchmarks: the thin C++ layer that gives C benchmark bodies Google Benchmark
// (interface and rules in tdm_bench.h). The only C++ in bench/; nothing here measures anything.
#include "tdm_bench.h"

#include <benchmark/benchmark.h>

#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace {

// The opaque C handle is the benchmark::State itself: no allocation, no indirection.
benchmark::State &S(struct tdm_bench_state *st)
{
	return *reinterpret_cast<benchmark::State *>(st);
}

const benchmark::State &S(const struct tdm_bench_state *st)
{
	return *reinterpret_cast<const benchmark::State *>(st);
}

// One registered benchmark. Lives until the process ends (the library keeps the lambda).
struct Reg {
	tdm_bench_fn fn;
	void *ctx;
	tdm_bench_setup_fn setup;
	tdm_bench_teardown_fn teardown;
	std::mutex mu;
	std::condition_variable cv;
	int arrived = 0;
	uint64_t generation = 0;
	const char *setup_err = nullptr; // written by thread 0 before the first barrier of a run
};

// Every thread of a run waits here until all `threads` have arrived.
void barrier(Reg *r, int threads)
{
	std::unique_lock<std::mutex> lk(r->mu);
	uint64_t gen = r->generation;
	if (++r->arrived == threads) {
		r->arrived = 0;
		r->generation++;
		r->cv.notify_all();
		return;
	}
	r->cv.wait(lk, [&] { return r->generation != gen; });
}

void run(Reg *r, benchmark::State &s)
{
	int threads = s.threads();
	bool multi = threads > 1;
	if (s.thread_index() == 0)
		r->setup_err = r->setup ? r->setup(r->ctx, threads) : nullptr;
	if (multi)
		barrier(r, threads);
	if (r->setup_err) {
		s.SkipWithError(r->setup_err);
		while (s.KeepRunning()) {
		}
	} else {
		r->fn(reinterpret_cast<struct tdm_bench_state *>(&s), r->ctx);
	}
	if (multi)
		barrier(r, threads);
	if (s.thread_index() == 0 && r->teardown)
		r->teardown(r->ctx, threads);
}

benchmark::TimeUnit unit_of(enum tdm_bench_unit u)
{
	switch (u) {
	case TDM_BENCH_US:
		return benchmark::kMicrosecond;
	case TDM_BENCH_MS:
		return benchmark::kMillisecond;
	case TDM_BENCH_NS:
	default:
		return benchmark::kNanosecond;
	}
}

} // namespace

extern "C" {

int tdm_bench_register(const char *name, tdm_bench_fn fn, void *ctx,
		       const struct tdm_bench_opts *opts)
{
	static const struct tdm_bench_opts defaults = {};
	if (!name || !fn)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	if (opts->iterations > 0 && opts->min_time > 0)
		return -EINVAL;
	Reg *r = new Reg;
	r->fn = fn;
	r->ctx = ctx;
	r->setup = opts->setup;
	r->teardown = opts->teardown;
	benchmark::internal::Benchmark *b =
		benchmark::RegisterBenchmark(name, [r](benchmark::State &s) { run(r, s); });
	if (opts->threads > 0)
		b->Threads(opts->threads); // also 1, so every name ends in /threads:N
	if (opts->iterations > 0)
		b->Iterations(opts->iterations);
	if (opts->min_time > 0)
		b->MinTime(opts->min_time);
	if (opts->repetitions > 0)
		b->Repetitions(opts->repetitions);
	if (opts->manual_time)
		b->UseManualTime();
	else if (opts->real_time)
		b->UseRealTime();
	b->Unit(unit_of(opts->unit));
	return 0;
}

void tdm_bench_context(const char *key, const char *value)
{
	benchmark::AddCustomContext(key, value);
}

int tdm_bench_main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}

bool tdm_bench_keep_running(struct tdm_bench_state *st)
{
	return S(st).KeepRunning();
}

uint64_t tdm_bench_next_batch(struct tdm_bench_state *st, uint64_t max)
{
	benchmark::State &s = S(st);
	// Ask for no more than is left, so KeepRunningBatch never overshoots; once nothing is left
	// a batch of 1 makes it end the run (and meet the other threads at the end barrier).
	benchmark::IterationCount left = s.max_iterations - s.iterations();
	benchmark::IterationCount n = max > static_cast<uint64_t>(INT64_MAX)
		? INT64_MAX : static_cast<benchmark::IterationCount>(max);
	if (left < n)
		n = left;
	if (n < 1)
		n = 1;
	return s.KeepRunningBatch(n) ? static_cast<uint64_t>(n) : 0;
}

uint64_t tdm_bench_max_iterations(const struct tdm_bench_state *st)
{
	return static_cast<uint64_t>(S(st).max_iterations);
}

uint64_t tdm_bench_iterations(const struct tdm_bench_state *st)
{
	return static_cast<uint64_t>(S(st).iterations());
}

void tdm_bench_pause(struct tdm_bench_state *st)
{
	S(st).PauseTiming();
}

void tdm_bench_resume(struct tdm_bench_state *st)
{
	S(st).ResumeTiming();
}

int tdm_bench_thread_index(const struct tdm_bench_state *st)
{
	return S(st).thread_index();
}

int tdm_bench_threads(const struct tdm_bench_state *st)
{
	return S(st).threads();
}

void tdm_bench_set_iteration_time(struct tdm_bench_state *st, double seconds)
{
	S(st).SetIterationTime(seconds);
}

void tdm_bench_set_items(struct tdm_bench_state *st, int64_t n)
{
	S(st).SetItemsProcessed(n);
}

void tdm_bench_set_bytes(struct tdm_bench_state *st, int64_t n)
{
	S(st).SetBytesProcessed(n);
}

void tdm_bench_counter(struct tdm_bench_state *st, const char *name, double value,
		       unsigned flags)
{
	int f = benchmark::Counter::kDefaults;
	if (flags & TDM_BENCH_COUNTER_RATE)
		f |= benchmark::Counter::kIsRate;
	if (flags & TDM_BENCH_COUNTER_AVG_THREADS)
		f |= benchmark::Counter::kAvgThreads;
	if (flags & TDM_BENCH_COUNTER_PER_ITERATION)
		f |= benchmark::Counter::kAvgIterations;
	S(st).counters[name] = benchmark::Counter(value, static_cast<benchmark::Counter::Flags>(f));
}

void tdm_bench_label(struct tdm_bench_state *st, const char *label)
{
	S(st).SetLabel(label);
}

void tdm_bench_skip(struct tdm_bench_state *st, const char *msg)
{
	S(st).SkipWithError(msg);
}

} // extern "C"
