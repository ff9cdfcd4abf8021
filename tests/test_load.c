/*
 * cmocka tests of tandem-load's pieces that need no node: the latency histogram against sorted
 * reference data, the key generators (Zipf ranks and determinism, uniform coverage, --spread's
 * shared and own key ranges), and the SVG plot (a well-formed document with its three
 * polylines, for a run and for an empty run).
 *
 * Usage: test_load [unit]
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "load_hist.h"
#include "load_keys.h"
#include "load_plot.h"

/* ---- Histogram ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Log-uniform values from 0 ns to past 100 s (so some clamp), deterministic. */
static uint64_t random_latency(struct tdm_load_rng *rng)
{
	double e = tdm_load_rng_unit(rng) * 11.5; /* 10^0 .. 10^11.5 ns */

	return (uint64_t)pow(10, e) - 1;
}

/* The value of the rank tdm_load_hist_percentile uses, from sorted values. */
static uint64_t reference(const uint64_t *sorted, size_t n, double pct)
{
	uint64_t rank = (uint64_t)(pct / 100.0 * (double)n + 0.5);

	return sorted[(rank < 1 ? 1 : rank) - 1];
}

static void test_hist_buckets(void **state)
{
	unsigned last = tdm_load_hist_bucket(TDM_LOAD_HIST_MAX_NS);

	(void)state;
	assert_true(last < TDM_LOAD_HIST_BUCKETS);
	for (unsigned b = 0; b < last; b++) {
		uint64_t high = tdm_load_hist_bucket_high(b);
		uint64_t low = b == 0 ? 0 : tdm_load_hist_bucket_high(b - 1) + 1;
		assert_int_equal(tdm_load_hist_bucket(low), b);
		assert_int_equal(tdm_load_hist_bucket(high), b);
		assert_int_equal(tdm_load_hist_bucket(high + 1), b + 1);
		assert_true(high - low <= low / TDM_LOAD_HIST_SUB); /* width within 1/128 */
	}
	assert_int_equal(tdm_load_hist_bucket(TDM_LOAD_HIST_MAX_NS + 1), last);
	assert_int_equal(tdm_load_hist_bucket(UINT64_MAX), last);
	assert_true(tdm_load_hist_bucket_high(last) >= TDM_LOAD_HIST_MAX_NS);
}

static void test_hist_percentiles(void **state)
{
	static const double pcts[] = { 0, 0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100 };
	const size_t n = 200000;
	uint64_t *v = malloc(n * sizeof(*v));
	struct tdm_load_hist *h = malloc(sizeof(*h));
	struct tdm_load_rng rng;
	double sum = 0;

	(void)state;
	assert_non_null(v);
	assert_non_null(h);
	tdm_load_hist_reset(h);
	tdm_load_rng_seed(&rng, 7);
	for (size_t i = 0; i < n; i++) {
		v[i] = random_latency(&rng);
		tdm_load_hist_record(h, v[i]);
		if (v[i] > TDM_LOAD_HIST_MAX_NS)
			v[i] = TDM_LOAD_HIST_MAX_NS; /* the histogram clamps: so does the reference */
		sum += (double)v[i];
	}
	qsort(v, n, sizeof(*v), cmp_u64);
	assert_int_equal(h->count, n);
	assert_int_equal(h->min, v[0]);
	assert_int_equal(h->max, v[n - 1]);
	assert_true(h->clamped > 0);
	for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
		uint64_t want = reference(v, n, pcts[i]);
		uint64_t got = tdm_load_hist_percentile(h, pcts[i]);
		if (got < want || got - want > want / TDM_LOAD_HIST_SUB)
			fail_msg("p%g = %llu, reference %llu: off by more than 1/128", pcts[i],
				 (unsigned long long)got, (unsigned long long)want);
	}
	assert_true(fabs(tdm_load_hist_mean(h) - sum / (double)n) <= 1e-9 * sum / (double)n);
	free(v);
	free(h);
}

static void test_hist_merge(void **state)
{
	struct tdm_load_hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct tdm_load_hist *all = malloc(sizeof(*all)), *empty = malloc(sizeof(*empty));
	struct tdm_load_rng rng;

	(void)state;
	assert_true(a != NULL && b != NULL && all != NULL && empty != NULL);
	tdm_load_hist_reset(a);
	tdm_load_hist_reset(b);
	tdm_load_hist_reset(all);
	tdm_load_hist_reset(empty);
	tdm_load_rng_seed(&rng, 11);
	for (int i = 0; i < 50000; i++) {
		/* a gets small values, b large ones: merged min from a, max from b */
		uint64_t x = random_latency(&rng) % 1000000, y = 1000000 + random_latency(&rng);
		tdm_load_hist_record(a, x);
		tdm_load_hist_record(b, y);
		tdm_load_hist_record(all, x);
		tdm_load_hist_record(all, y);
	}
	tdm_load_hist_merge(a, empty);
	tdm_load_hist_merge(empty, b);
	assert_memory_equal(empty, b, sizeof(*b));
	tdm_load_hist_merge(a, b);
	assert_int_equal(a->count, all->count);
	assert_int_equal(a->min, all->min);
	assert_int_equal(a->max, all->max);
	assert_int_equal(a->clamped, all->clamped);
	assert_memory_equal(a->counts, all->counts, sizeof(a->counts));
	assert_true(fabs(a->sum - all->sum) <= 1e-12 * all->sum);
	for (double p = 0; p <= 100; p += 0.5)
		assert_int_equal(tdm_load_hist_percentile(a, p), tdm_load_hist_percentile(all, p));
	free(a);
	free(b);
	free(all);
	free(empty);
}

static void test_hist_extremes(void **state)
{
	struct tdm_load_hist *h = malloc(sizeof(*h));

	(void)state;
	assert_non_null(h);
	tdm_load_hist_reset(h);
	assert_int_equal(tdm_load_hist_percentile(h, 50), 0);
	assert_true(tdm_load_hist_mean(h) == 0);
	assert_int_equal(h->min, UINT64_MAX);

	tdm_load_hist_record(h, 0);
	assert_int_equal(tdm_load_hist_percentile(h, 0), 0);
	assert_int_equal(tdm_load_hist_percentile(h, 100), 0);
	assert_int_equal(h->min, 0);

	tdm_load_hist_record(h, TDM_LOAD_HIST_MAX_NS); /* the largest value: kept as is */
	assert_int_equal(h->clamped, 0);
	tdm_load_hist_record(h, TDM_LOAD_HIST_MAX_NS + 1);
	tdm_load_hist_record(h, UINT64_MAX);
	assert_int_equal(h->clamped, 2);
	assert_int_equal(h->count, 4);
	assert_int_equal(h->max, TDM_LOAD_HIST_MAX_NS);
	assert_int_equal(tdm_load_hist_percentile(h, 100), TDM_LOAD_HIST_MAX_NS);
	assert_int_equal(tdm_load_hist_percentile(h, 25), 0);
	assert_true(tdm_load_hist_mean(h) == 0.75 * (double)TDM_LOAD_HIST_MAX_NS);
	/* out-of-range percentiles are the ends */
	assert_int_equal(tdm_load_hist_percentile(h, -5), 0);
	assert_int_equal(tdm_load_hist_percentile(h, 500), TDM_LOAD_HIST_MAX_NS);

	/* below 128 ns every value has its own bucket: exact */
	tdm_load_hist_reset(h);
	for (uint64_t i = 1; i <= 100; i++)
		tdm_load_hist_record(h, i);
	assert_int_equal(tdm_load_hist_percentile(h, 50), 50);
	assert_int_equal(tdm_load_hist_percentile(h, 99), 99);
	assert_true(tdm_load_hist_mean(h) == 50.5);
	free(h);
}

/* ---- Keys ---- */

static void test_keys_init(void **state)
{
	struct tdm_load_keys k;
	char key[TDM_LOAD_KEY_LEN];

	(void)state;
	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_UNIFORM, 0, 0, 1), -EINVAL);
	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_UNIFORM, TDM_LOAD_KEYS_MAX + 1, 0, 1),
			 -EINVAL);
	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_ZIPF, 100, 1.0, 1), -EINVAL);
	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_ZIPF, 100, -0.5, 1), -EINVAL);
	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_ZIPF, 1, 0.99, 1), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(tdm_load_keys_next(&k), 0);

	tdm_load_key_format(42, key);
	assert_memory_equal(key, "k000000000000042", TDM_LOAD_KEY_LEN);
	tdm_load_key_format(TDM_LOAD_KEYS_MAX - 1, key);
	assert_memory_equal(key, "k999999999999999", TDM_LOAD_KEY_LEN);
}

static void zipf_counts(uint64_t n, double theta, uint64_t seed, uint64_t draws, uint64_t *counts)
{
	struct tdm_load_keys k;

	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_ZIPF, n, theta, seed), 0);
	memset(counts, 0, n * sizeof(*counts));
	for (uint64_t i = 0; i < draws; i++) {
		uint64_t id = tdm_load_keys_next(&k);
		assert_true(id < n);
		counts[id]++;
	}
}

static void test_zipf_ranks(void **state)
{
	const uint64_t n = 1000, draws = 1000000;
	uint64_t *c = calloc(n, sizeof(*c));
	double zetan = 0;

	(void)state;
	assert_non_null(c);
	zipf_counts(n, 0.99, 42, draws, c);
	for (int r = 0; r < 10; r++)
		if (c[r] <= c[r + 1])
			fail_msg("rank %d drawn %llu times, rank %d %llu: not decreasing", r,
				 (unsigned long long)c[r], r + 1, (unsigned long long)c[r + 1]);
	for (uint64_t i = 1; i <= n; i++)
		zetan += pow((double)i, -0.99);
	/* key 0 has weight 1 / zeta(n): exact in Gray's method */
	assert_true(fabs((double)c[0] / (double)draws * zetan - 1) < 0.02);
	/* roughly a power law: frequency of rank r about (r + 1)^-0.99 that of rank 0 */
	double r10 = (double)c[0] / (double)c[9], r100 = (double)c[0] / (double)c[99];
	if (r10 < 0.8 * pow(10, 0.99) || r10 > 1.25 * pow(10, 0.99) ||
	    r100 < 0.8 * pow(100, 0.99) || r100 > 1.25 * pow(100, 0.99))
		fail_msg("rank 0 / rank 9 = %.2f (want about %.2f), rank 0 / rank 99 = %.2f (want "
			 "about %.2f)", r10, pow(10, 0.99), r100, pow(100, 0.99));
	free(c);
}

static void test_zipf_deterministic(void **state)
{
	struct tdm_load_keys a, b, c;
	int same_as_other_seed = 0;

	(void)state;
	assert_int_equal(tdm_load_keys_init(&a, TDM_LOAD_DIST_ZIPF, 100000, 0.99, 5), 0);
	assert_int_equal(tdm_load_keys_init(&b, TDM_LOAD_DIST_ZIPF, 100000, 0.99, 5), 0);
	assert_int_equal(tdm_load_keys_init(&c, TDM_LOAD_DIST_ZIPF, 100000, 0.99, 6), 0);
	for (int i = 0; i < 10000; i++) {
		uint64_t x = tdm_load_keys_next(&a);
		assert_int_equal(x, tdm_load_keys_next(&b));
		same_as_other_seed += x == tdm_load_keys_next(&c);
	}
	assert_true(same_as_other_seed < 5000); /* mostly rank 0 agrees; the rest does not */

	/* xoshiro256** seeded by splitmix64(0): the reference outputs, on every machine and build */
	struct tdm_load_rng r;
	tdm_load_rng_seed(&r, 0);
	assert_int_equal(r.s[0], 0xe220a8397b1dcdafull);
	assert_int_equal(tdm_load_rng_next(&r), 0x99ec5f36cb75f2b4ull);
	assert_int_equal(tdm_load_rng_next(&r), 0xbf6e1f784956452aull);
	assert_int_equal(tdm_load_rng_next(&r), 0x1a5f849d4933e6e0ull);
}

/* A key space beyond the exactly summed terms: the Euler-Maclaurin tail keeps zeta exact
 * enough, and draws stay in range. */
static void test_zipf_large(void **state)
{
	const uint64_t n = 30000000;
	struct tdm_load_keys k;
	double zetan = 0;

	(void)state;
	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_ZIPF, n, 0.99, 3), 0);
	for (uint64_t i = n; i >= 1; i--) /* smallest terms first: the exact sum */
		zetan += pow((double)i, -0.99);
	assert_true(fabs(k.zetan / zetan - 1) < 1e-9);
	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_ZIPF, TDM_LOAD_KEYS_MAX, 0.5, 3), 0);
	for (int i = 0; i < 100000; i++)
		assert_true(tdm_load_keys_next(&k) < TDM_LOAD_KEYS_MAX);
}

static void test_uniform(void **state)
{
	const uint64_t n = 1000, draws = 1000000;
	uint64_t *c = calloc(n, sizeof(*c));
	struct tdm_load_keys k;

	(void)state;
	assert_non_null(c);
	assert_int_equal(tdm_load_keys_init(&k, TDM_LOAD_DIST_UNIFORM, n, 0, 9), 0);
	for (uint64_t i = 0; i < draws; i++) {
		uint64_t id = tdm_load_keys_next(&k);
		assert_true(id < n);
		c[id]++;
	}
	for (uint64_t i = 0; i < n; i++)
		if (c[i] < 800 || c[i] > 1200) /* 1000 expected; sigma about 32 */
			fail_msg("key %llu drawn %llu times of %llu", (unsigned long long)i,
				 (unsigned long long)c[i], (unsigned long long)draws);
	free(c);
}

/* --spread: shared draws are the same key on every node; the rest are each node's own, and no
 * two nodes (nor a node and the shared range) have one in common. Every key is reached. */
static void test_spread_keys(void **state)
{
	enum { NODES = 3 };
	const uint64_t n = 100, cases[][2] = { { 100, 0 }, { 100, 10 }, { 100, 100 }, { 1, 0 } };
	uint8_t *owner = malloc(NODES * n);

	(void)state;
	assert_non_null(owner);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint64_t kn = cases[c][0], shared = cases[c][1], total = shared + NODES * (kn - shared);
		memset(owner, 0, NODES * n);
		for (int node = 0; node < NODES; node++) {
			for (uint64_t r = 0; r < kn; r++) {
				uint64_t id = tdm_load_spread_key(r, kn, shared, node);
				assert_true(id < total);
				if (r < shared) {
					assert_int_equal(id, r);
					owner[id] = 0xff;
					continue;
				}
				assert_true(id >= shared);
				assert_int_equal(owner[id], 0); /* nobody else's */
				owner[id] = (uint8_t)(node + 1);
			}
		}
		for (uint64_t id = 0; id < total; id++)
			assert_true(owner[id] != 0);
	}
	free(owner);
}

/* ---- Plot ---- */

/* The plot as a string (caller frees), written through a real file as tandem-load does. */
static char *plot_string(const struct tdm_load_plot *p)
{
	FILE *f = tmpfile();
	long len;
	char *buf;

	assert_non_null(f);
	assert_int_equal(tdm_load_plot_write(f, p), 0);
	len = ftell(f);
	assert_true(len > 0);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	rewind(f);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = '\0';
	assert_int_equal(fclose(f), 0);
	return buf;
}

static int occurrences(const char *s, const char *what)
{
	int n = 0;

	for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

/* Tags nest and close (a stack of names), no stray '<' or '&', no nan or inf. */
static void assert_well_formed(const char *svg)
{
	const char *stack[16], *p = svg;
	size_t stack_len[16];
	int depth = 0;

	assert_true(strncmp(svg, "<svg", 4) == 0);
	assert_true(strlen(svg) > 7 && strcmp(svg + strlen(svg) - 7, "</svg>\n") == 0);
	assert_null(strstr(svg, "nan"));
	assert_null(strstr(svg, "inf"));
	while ((p = strchr(p, '<')) != NULL) {
		const char *end = strchr(p, '>');
		assert_non_null(end);
		assert_null(memchr(p + 1, '<', (size_t)(end - p - 1)));
		if (p[1] == '/') {
			assert_true(depth > 0);
			depth--;
			assert_true(strncmp(p + 2, stack[depth], stack_len[depth]) == 0);
		} else if (end[-1] != '/') {
			assert_true(depth < 16);
			stack[depth] = p + 1;
			stack_len[depth++] = strcspn(p + 1, " >");
		}
		p = end + 1;
	}
	assert_int_equal(depth, 0);
	for (p = svg; (p = strchr(p, '&')) != NULL; p++)
		assert_true(strncmp(p, "&lt;", 4) == 0 || strncmp(p, "&gt;", 4) == 0 ||
			    strncmp(p, "&amp;", 5) == 0);
}

static void test_plot_run(void **state)
{
	struct tdm_load_plot_point pts[50];
	struct tdm_load_plot p = { "level <applied> & rate 1000/s", 5.0, pts, 50 };

	(void)state;
	for (int i = 0; i < 50; i++)
		pts[i] = (struct tdm_load_plot_point){
			.t = 0.05 + 0.1 * i, .p50 = 20000 + 100 * (uint64_t)i,
			.p99 = 90000, .max = i == 30 ? 250000000 : 400000,
		};
	pts[0].p50 = 0; /* below the axis: drawn on its edge */
	char *svg = plot_string(&p);
	assert_well_formed(svg);
	assert_int_equal(occurrences(svg, "<polyline"), 3);
	assert_non_null(strstr(svg, "class=\"p50\""));
	assert_non_null(strstr(svg, "class=\"p99\""));
	assert_non_null(strstr(svg, "class=\"max\""));
	assert_non_null(strstr(svg, "level &lt;applied&gt; &amp; rate 1000/s"));
	assert_non_null(strstr(svg, "time (s)"));
	assert_non_null(strstr(svg, ">1,000</text>")); /* a decade label in microseconds */
	assert_null(strstr(svg, "no samples"));
	/* each polyline has a point per interval: 49 spaces between 50 pairs */
	const char *pl = strstr(svg, "points=\"");
	assert_non_null(pl);
	int spaces = 0;
	for (pl += 8; *pl != '"'; pl++)
		spaces += *pl == ' ';
	assert_int_equal(spaces, 49);
	free(svg);
}

static void test_plot_empty(void **state)
{
	struct tdm_load_plot p = { "empty", 0, NULL, 0 };

	(void)state;
	char *svg = plot_string(&p);
	assert_well_formed(svg);
	assert_int_equal(occurrences(svg, "<polyline"), 3);
	assert_int_equal(occurrences(svg, "points=\"\""), 3);
	assert_non_null(strstr(svg, "no samples"));
	free(svg);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_buckets),
		cmocka_unit_test(test_hist_percentiles),
		cmocka_unit_test(test_hist_merge),
		cmocka_unit_test(test_hist_extremes),
		cmocka_unit_test(test_keys_init),
		cmocka_unit_test(test_zipf_ranks),
		cmocka_unit_test(test_zipf_deterministic),
		cmocka_unit_test(test_zipf_large),
		cmocka_unit_test(test_uniform),
		cmocka_unit_test(test_spread_keys),
		cmocka_unit_test(test_plot_run),
		cmocka_unit_test(test_plot_empty),
	};

	(void)argc;
	(void)argv;
	cmocka_set_message_output(CM_OUTPUT_STDOUT);
	return cmocka_run_group_tests_name("unit", tests, NULL, NULL);
}
