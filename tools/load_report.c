/*
 * tandem-load: a run's figures as the report prints them, as table lines and as JSON members:
 * a single run's (tandem_load.c), and with --spread each node's and the total (load_spread.c).
 */
#include <stdio.h>

#include "load_run.h"

const char *tdm_load_fmt_ns(char buf[24], uint64_t ns)
{
	if (ns < 1000)
		snprintf(buf, 24, "%llu ns", (unsigned long long)ns);
	else if (ns < 1000000)
		snprintf(buf, 24, "%.1f \xc2\xb5s", (double)ns / 1e3);
	else if (ns < 1000000000)
		snprintf(buf, 24, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(buf, 24, "%.2f s", (double)ns / 1e9);
	return buf;
}

/* Rates and percentiles of figures, computed once for the table and the JSON. */
struct load_rates {
	double wps, mbps;
	uint64_t ok;
	uint64_t lat[6];    /**< p50 p90 p99 p99.9 p99.99 max, ns */
	double mean;        /**< ns */
};

static const double report_pcts[5] = { 50, 90, 99, 99.9, 99.99 };
static const char *const report_names[6] = { "p50", "p90", "p99", "p99.9", "p99.99", "max" };
static const char *const report_json_names[6] = {
	"p50", "p90", "p99", "p99_9", "p99_99", "max",
};

static void compute_rates(const struct tdm_load_figures *f, struct load_rates *x)
{
	x->wps = f->secs > 0 ? (double)f->n.writes / f->secs : 0;
	x->mbps = f->secs > 0 ? (double)f->n.bytes / f->secs / 1e6 : 0;
	x->ok = f->n.writes - f->n.failed - f->n.degraded;
	for (int i = 0; i < 5; i++)
		x->lat[i] = tdm_load_hist_percentile(&f->hist, report_pcts[i]);
	x->lat[5] = f->hist.max;
	x->mean = tdm_load_hist_mean(&f->hist);
}

void tdm_load_figures_table(const struct tdm_load_figures *f, const char *indent, bool follow)
{
	const struct tdm_load_counts *t = &f->n;
	struct load_rates x;
	char buf[24];

	compute_rates(f, &x);
	printf("%swrites      %llu (%llu puts, %llu deletes) in %.3f s\n", indent,
	       (unsigned long long)t->writes, (unsigned long long)(t->writes - t->deletes),
	       (unsigned long long)t->deletes, f->secs);
	printf("%sthroughput  %.0f writes/s, %.2f MB/s of keys and values\n", indent, x.wps,
	       x.mbps);
	printf("%slatency    ", indent);
	for (int i = 0; i < 6; i++)
		printf(" %s %s ", report_names[i], tdm_load_fmt_ns(buf, x.lat[i]));
	printf(" mean %s\n", tdm_load_fmt_ns(buf, (uint64_t)x.mean));
	printf("%soutcomes    ok %llu, degraded %llu, failed (timed out) %llu, back-pressure %llu, "
	       "unsent %llu", indent, (unsigned long long)x.ok, (unsigned long long)t->degraded,
	       (unsigned long long)t->failed, (unsigned long long)t->backpressure,
	       (unsigned long long)f->unsent);
	if (follow)
		printf(", failed (no primary) %llu", (unsigned long long)t->no_primary);
	putchar('\n');
}

void tdm_load_figures_json(const struct tdm_load_figures *f)
{
	const struct tdm_load_counts *t = &f->n;
	struct load_rates x;

	compute_rates(f, &x);
	printf("\"writes\":%llu,\"puts\":%llu,\"deletes\":%llu,\"bytes\":%llu,\"duration_s\":%.6f,"
	       "\"writes_per_s\":%.1f,\"mb_per_s\":%.3f,\"latency_us\":{",
	       (unsigned long long)t->writes, (unsigned long long)(t->writes - t->deletes),
	       (unsigned long long)t->deletes, (unsigned long long)t->bytes, f->secs, x.wps,
	       x.mbps);
	printf("\"min\":%.3f", f->hist.count != 0 ? (double)f->hist.min / 1e3 : 0.0);
	for (int i = 0; i < 6; i++)
		printf(",\"%s\":%.3f", report_json_names[i], (double)x.lat[i] / 1e3);
	printf(",\"mean\":%.3f},\"ok\":%llu,\"degraded\":%llu,\"failed\":%llu,\"backpressure\":%llu,"
	       "\"unsent\":%llu,\"clamped\":%llu", x.mean / 1e3, (unsigned long long)x.ok,
	       (unsigned long long)t->degraded, (unsigned long long)t->failed,
	       (unsigned long long)t->backpressure, (unsigned long long)f->unsent,
	       (unsigned long long)f->hist.clamped);
}

/* A JSON string: quotes, backslashes and control characters escaped. */
void tdm_load_json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}
