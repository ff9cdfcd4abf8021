/*
 * tandem benchmarks: helpers shared by the C bodies — scratch directories on the real disk,
 * unique shared-memory names, removal of both at exit (also on SIGINT/SIGTERM), a cheap clock,
 * and percentiles.
 */
#ifndef TDM_BENCH_UTIL_H
#define TDM_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/**
 * Make this process's scratch directory: $TDM_BENCH_DIR (default /var/tmp) /tdm-bench-XXXXXX.
 * Not /dev/shm: segment files must be on a disk for fdatasync to mean anything.
 * Removed with everything in it by tdm_bench_cleanup(). Idempotent.
 * @return the directory path, or NULL (message printed to stderr).
 */
const char *tdm_bench_scratch_dir(void);

/** Write "<scratch>/<leaf>" into out. @return 0; -ENAMETOOLONG. */
int tdm_bench_scratch_path(char *out, size_t cap, const char *leaf);

/**
 * A shared-memory ring name unique to this process and call ("tdm-bench-<pid>-<n>"); the file
 * /dev/shm/<name> is removed by tdm_bench_cleanup() if the log left it behind.
 * @return 0; -ENAMETOOLONG; -ENOSPC too many names in one process.
 */
int tdm_bench_shm_name(char *out, size_t cap);

/** Remove the scratch directory tree and every /dev/shm file named by tdm_bench_shm_name().
 *  Registered with atexit() and on SIGINT/SIGTERM by tdm_bench_scratch_dir(). */
void tdm_bench_cleanup(void);

/** Remove path and everything under it (errors ignored: used for scratch data only). */
void tdm_bench_rmtree(const char *path);

/** Name of the file system type holding path ("ext4/ext3", "xfs", "tmpfs", ... or its hex magic)
 *  written into out; so a reader of the results sees when durability was measured on tmpfs. */
void tdm_bench_fs_type(const char *path, char *out, size_t cap);

/** CLOCK_MONOTONIC in nanoseconds (vDSO: no system call). */
static inline uint64_t tdm_bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/** Tell the CPU we are spinning (lets the sibling hyper-thread run, saves power). */
static inline void tdm_bench_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/** Sort v[0..n) ascending (in place). */
void tdm_bench_sort_u64(uint64_t *v, size_t n);

/** The q-quantile (0 <= q <= 1) of sorted v[0..n) by nearest rank; 0 when n is 0. */
uint64_t tdm_bench_quantile(const uint64_t *sorted, size_t n, double q);

#endif /* TDM_BENCH_UTIL_H */
