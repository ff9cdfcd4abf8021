/*
 * tandem-load: one writer's run (tandem_load.c) as load_spread.c drives several at once, one
 * per node, and the report's figures that both print (load_report.c).
 */
#ifndef TDM_LOAD_RUN_H
#define TDM_LOAD_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "load_hist.h"
#include "load_opts.h"

/** Outcomes of writes, for one second or the whole run. */
struct tdm_load_counts {
	uint64_t writes;       /**< sent and waited for */
	uint64_t deletes;      /**< of which deletes */
	uint64_t bytes;        /**< of keys and values */
	uint64_t failed;       /**< waits that timed out (policy fail) */
	uint64_t degraded;     /**< acknowledged at local instead (policy degrade) */
	uint64_t backpressure; /**< writes that met a full ring and were retried */
	uint64_t no_primary;   /**< --follow: failed, the node was not (or no longer) the primary
	                            or gone; not in writes, bytes or the latencies */
};

/** What a report says of a run: one writer's, or (--spread) the total of several. */
struct tdm_load_figures {
	double secs;                /**< measured time */
	struct tdm_load_counts n;   /**< measured writes */
	uint64_t unsent;            /**< fixed rate: writes still due when the time was up */
	struct tdm_load_hist hist;  /**< their latencies */
};

/** Print f as the report's lines (writes, throughput, latency, outcomes), each line starting
 *  with indent; follow: the outcomes name the writes that found no primary. */
void tdm_load_figures_table(const struct tdm_load_figures *f, const char *indent, bool follow);

/** Print f as JSON members ("writes":...,"clamped":N: no braces, no comma around). */
void tdm_load_figures_json(const struct tdm_load_figures *f);

/** "850 ns", "12.3 µs", "1.20 ms", "2.00 s" (with a real micro sign). @return buf. */
const char *tdm_load_fmt_ns(char buf[24], uint64_t ns);

/** CLOCK_MONOTONIC in nanoseconds. */
uint64_t tdm_load_now_ns(void);

/** Print s as a JSON string: quotes, backslashes and control characters escaped. */
void tdm_load_json_str(const char *s);

/* ---- A writer of --spread: one node of o->attach_dirs, run in a thread of its own ---- */

struct tdm_load_run;

/**
 * Set up the writer of node `index` (o->attach_dirs[index]): attach to it (it must be a
 * multi-primary node), its buffers, and its keys: seed o->seed + index, the first
 * o->shared_pct % of the key space shared, the rest its own (tdm_load_spread_key). Prints why
 * it cannot. @return 0 (*out set), or exit status 1.
 */
int tdm_load_writer_create(const struct tdm_load_opts *o, int index, struct tdm_load_run **out);

/** Run it from now until --duration or --count (or a signal); progress lines name its node.
 *  @return 0, or exit status 1 after saying why. */
int tdm_load_writer_run(struct tdm_load_run *r);

/** The writer's node id. */
uint16_t tdm_load_writer_node(const struct tdm_load_run *r);

/** Its figures, after tdm_load_writer_run. */
void tdm_load_writer_figures(const struct tdm_load_run *r, struct tdm_load_figures *f);

/** The JSON object's opening and the load's setup: `{"target":...,"stopped":"..."`. */
void tdm_load_writer_json_setup(const struct tdm_load_run *r);

/** "level local, rate 1000/s, 64 B values": the load, for the report's first line. */
void tdm_load_writer_describe(const struct tdm_load_run *r, char *buf, size_t cap);

/** Why the writer stopped: "duration", "count", "interrupted", "error". */
const char *tdm_load_writer_stopped(const struct tdm_load_run *r);

/** Detach and free (NULL: nothing). */
void tdm_load_writer_destroy(struct tdm_load_run *r);

/** --spread (load_spread.c): the run with a writer per attached node, its report and
 *  --verify. @return the exit status. */
int tdm_load_spread_main(const struct tdm_load_opts *o);

#endif /* TDM_LOAD_RUN_H */
