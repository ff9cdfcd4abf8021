/*
 * tandem benchmarks: scratch directories, shared-memory names, cleanup, percentiles
 * (see bench_util.h).
 */
#include "bench_util.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#define SHM_NAMES_MAX 64

static char scratch[512];          /* "" until made */
static char shm_names[SHM_NAMES_MAX][64];
static int shm_count;

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void tdm_bench_cleanup(void)
{
	char path[128];

	for (int i = 0; i < shm_count; i++) {
		snprintf(path, sizeof(path), "/dev/shm/%.63s", shm_names[i]);
		unlink(path);
	}
	if (scratch[0])
		tdm_bench_rmtree(scratch);
}

void tdm_bench_rmtree(const char *path)
{
	nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

void tdm_bench_fs_type(const char *path, char *out, size_t cap)
{
	static const struct {
		unsigned long magic;
		const char *name;
	} known[] = {
		{ 0xEF53, "ext4/ext3" }, { 0x58465342, "xfs" }, { 0x9123683E, "btrfs" },
		{ 0x01021994, "tmpfs" }, { 0x2FC12FC1, "zfs" }, { 0x794c7630, "overlayfs" },
		{ 0x6969, "nfs" }, { 0xF2F52010, "f2fs" },
	};
	struct statfs sf;

	if (statfs(path, &sf) != 0) {
		snprintf(out, cap, "unknown (%s)", strerror(errno));
		return;
	}
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if ((unsigned long)sf.f_type == known[i].magic) {
			snprintf(out, cap, "%s", known[i].name);
			return;
		}
	}
	snprintf(out, cap, "0x%lx", (unsigned long)sf.f_type);
}

/* Best effort on Ctrl-C: the ring files are large. nftw is not async-signal-safe; a second
 * signal (SA_RESETHAND) kills the process if it ever hangs here. */
static void on_signal(int sig)
{
	tdm_bench_cleanup();
	raise(sig);
}

static void install_cleanup(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = (int)SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	atexit(tdm_bench_cleanup);
}

const char *tdm_bench_scratch_dir(void)
{
	static int installed;
	const char *base = getenv("TDM_BENCH_DIR");

	if (scratch[0])
		return scratch;
	if (!installed) {
		install_cleanup();
		installed = 1;
	}
	if (!base || !base[0])
		base = "/var/tmp";
	int n = snprintf(scratch, sizeof(scratch), "%s/tdm-bench-XXXXXX", base);
	if (n < 0 || (size_t)n >= sizeof(scratch) - 64) {
		fprintf(stderr, "bench: TDM_BENCH_DIR too long: %s\n", base);
		scratch[0] = '\0';
		return NULL;
	}
	if (!mkdtemp(scratch)) {
		fprintf(stderr, "bench: cannot make a scratch directory under %s: %s "
				"(set TDM_BENCH_DIR to a writable directory on a real disk)\n",
			base, strerror(errno));
		scratch[0] = '\0';
		return NULL;
	}
	return scratch;
}

int tdm_bench_scratch_path(char *out, size_t cap, const char *leaf)
{
	const char *dir = tdm_bench_scratch_dir();

	if (!dir)
		return -ENOENT;
	int n = snprintf(out, cap, "%s/%s", dir, leaf);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int tdm_bench_shm_name(char *out, size_t cap)
{
	static unsigned seq;

	if (shm_count == SHM_NAMES_MAX)
		return -ENOSPC;
	/* Make sure cleanup is armed even if no scratch directory was asked for yet. */
	if (!tdm_bench_scratch_dir())
		return -ENOENT;
	int n = snprintf(out, cap, "tdm-bench-%ld-%u", (long)getpid(), seq++);
	if (n < 0 || (size_t)n >= cap || (size_t)n >= sizeof(shm_names[0]))
		return -ENAMETOOLONG;
	memcpy(shm_names[shm_count++], out, (size_t)n + 1);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void tdm_bench_sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
}

uint64_t tdm_bench_quantile(const uint64_t *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	if (q <= 0)
		return sorted[0];
	/* nearest rank: the smallest value with at least q*n values at or below it */
	double rank = q * (double)n;
	size_t k = (size_t)rank;
	if ((double)k < rank)
		k++;
	if (k == 0)
		k = 1;
	if (k > n)
		k = n;
	return sorted[k - 1];
}
