/*
 * tandem-load: the load generator.
 *
 * Writes to a primary, waits for each write's commit level, and reports latency percentiles,
 * throughput and outcomes: a progress line every second, a final report (a table, or one JSON
 * object), and optionally an SVG plot of latency over time.
 *
 * Fixed rate is an open loop: write i is due at start + i / rate and its latency runs from that
 * intended time, not from when it was sent, so a stall that delays the sends after it shows in
 * their latencies instead of hiding (coordinated omission). Behind schedule, up to --pipeline
 * writes already due go out before one wait. Maximum rate is a closed loop: --pipeline writes,
 * one wait for the last, each write's latency from its own send.
 *
 * The node is attached (a tandemd on this machine, --attach DATA_DIR) or runs in this process
 * (--config FILE) with threads = 0: this thread drives it while it waits and paces. Several
 * --attach name the nodes of one cluster: writes go to the one that is primary. With --follow,
 * a write that fails because its node stopped being the primary (or stopped) is counted as
 * failed for want of a primary, never as a latency; the run then asks the attached nodes every
 * PROBE_NS which one is primary (attaching restarted ones again), writes there, and measures
 * each outage from the send of the first failed write to the next acknowledged one.
 *
 * Figures: a write counts when its wait returns. Writes sent before the end of --warmup are
 * left out of every figure; the plot and the percentiles come from histograms of 100 ms
 * intervals (load_hist.h), merged into each second and into the whole run.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "load_hist.h"
#include "load_keys.h"
#include "load_opts.h"
#include "load_verify.h"
#include "load_plot.h"
#include "load_run.h"
#include "tandem.h"

#define TICK_NS 100000000ull     /**< plot interval: 100 ms */
#define TICKS_PER_SECOND 10
#define PACE_SLEEP_NS 2000000ull /**< farther than this from the next send: sleep, not yield */
#define PROBE_NS 10000000ull      /**< --follow: ask the attached nodes who is primary */
#define REATTACH_NS 250000000ull  /**< --follow: try again to attach a node that is gone */
#define START_WAIT_NS 10000000000ull /**< --follow: wait this long for a primary at the start */
#define GIVE_UP_NS 60000000000ull /**< --follow: no write acknowledged this long: stop */

static volatile sig_atomic_t stop_requested;

/* ---- The run ---- */

/** One write of a batch, until its wait returns. */
struct load_slot {
	uint64_t start;    /**< intended send time (fixed rate) or send time (max), ns */
	uint32_t bytes;
	bool del;
	bool met_full;     /**< the ring was full at least once */
	uint64_t key, seq; /**< --verify: the key and the sequence stamped into the value */
};

/** One --attach node. */
struct load_target {
	const char *dir;
	struct tdm_node *node;     /**< NULL: not attached (gone, or not up yet) */
	uint16_t id;               /**< its node id (0: never attached) */
	int32_t pid;               /**< of the process attached to: another one is a restart */
	uint64_t next_attach;      /**< when to try attaching it again */
};

struct tdm_load_run {
	const struct tdm_load_opts *o;
	struct tdm_node *node;     /**< written to; NULL while there is no primary (--follow) */
	struct load_target targets[TDM_LOAD_MAX_ATTACH];
	int n_targets;             /**< --attach nodes; 0 with --config */
	int cur;                   /**< --attach: the target written to, its node id and epoch */
	uint16_t primary_id;
	uint32_t epoch;
	bool drive;                /**< the node runs in this process: pacing drives it */
	enum tdm_level level;
	struct tdm_load_keys keys;
	struct tdm_load_rng ops;   /**< put or delete */
	uint8_t *value;
	uint64_t value_seq;        /**< stamped into each value so that values differ */
	struct load_slot *batch;   /**< pipeline slots */
	bool verify_keys;          /**< --verify (not --spread): track each key's writes */
	struct tdm_load_verify verify; /**< --verify */
	/* --spread (load_spread.c): this writer is one of several, one per attached node */
	int spread_index;          /**< its node's --attach position; -1: not spread */
	uint64_t shared_keys;      /**< draws below this are the same key on every node */
	char label[24];            /**< "node 2: " before its progress lines; "" */
	/* Times (CLOCK_MONOTONIC ns) and progress of the schedule. */
	uint64_t t0;               /**< start, warmup included */
	uint64_t measure_start;    /**< t0 + warmup */
	uint64_t run_end;          /**< measure_start + duration; UINT64_MAX with --count */
	uint64_t stopped_at;
	uint64_t sent;             /**< writes sent since t0 */
	uint64_t measured_sent;    /**< of which after the warmup */
	bool measuring;            /**< past measure_start: intervals count */
	const char *stop_reason;   /**< "duration", "count", "interrupted" */
	/* Intervals: a 100 ms tick, merged into its second and (measuring) into the run. */
	uint64_t tick_start, sec_start;
	int ticks;                 /**< ticks closed in this second */
	struct tdm_load_counts sec, total;
	struct tdm_load_hist tick_h, sec_h, total_h;
	struct tdm_load_plot_point *pts;
	size_t n_pts, cap_pts;
	bool pts_short;            /**< a point could not be stored (out of memory) */
	/* --follow: looking for the primary, and the outages (each from the send of the first
	 * write that failed for want of a primary to the next acknowledged write). */
	bool lost;                 /**< no primary to write to: asking every PROBE_NS */
	uint64_t next_probe;
	uint64_t retry_same;       /**< the primary that just failed a write: not before then */
	uint64_t unavail_since;    /**< the outage going on began then; 0: none */
	uint64_t failovers;        /**< changes of primary (node or epoch) followed */
	uint64_t unavail_total, unavail_max; /**< of the outages that ended */
	uint64_t *outages;         /**< each one's length, ns (grows per outage) */
	size_t n_outages, cap_outages;
};

uint64_t tdm_load_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Intended send time of write i at a fixed rate: t0 + floor(i * 1e9 / rate), in 64 bits. */
static uint64_t intended(const struct tdm_load_run *r, uint64_t i)
{
	uint64_t rate = r->o->rate;

	return r->t0 + i / rate * 1000000000ull + i % rate * 1000000000ull / rate;
}

/* How many writes are due before time t at a fixed rate (intended(i) < t). */
static uint64_t due_before(const struct tdm_load_run *r, uint64_t t)
{
	uint64_t d = t - r->t0, rate = r->o->rate;

	return d / 1000000000ull * rate + (d % 1000000000ull * rate + 999999999ull) / 1000000000ull;
}

/* One line on stderr, in one write: --spread's writers print theirs from several threads. */
static void print_progress(const struct tdm_load_run *r, uint64_t t_end)
{
	double secs = t_end > r->sec_start ? (double)(t_end - r->sec_start) / 1e9 : 1e-9;
	char p50[24], p99[24], max[24], total[24], line[320];
	int n;

	n = snprintf(line, sizeof(line), "%s%8.1fs%s %10.0f writes/s %9.2f MB/s  p50 %10s  p99 "
		     "%10s  max %10s  failed %llu  degraded %llu", r->label,
		     (double)(t_end - r->t0) / 1e9, r->measuring ? "" : " warmup",
		     (double)r->sec.writes / secs, (double)r->sec.bytes / secs / 1e6,
		     tdm_load_fmt_ns(p50, tdm_load_hist_percentile(&r->sec_h, 50)),
		     tdm_load_fmt_ns(p99, tdm_load_hist_percentile(&r->sec_h, 99)),
		     tdm_load_fmt_ns(max, r->sec_h.max), (unsigned long long)r->sec.failed,
		     (unsigned long long)r->sec.degraded);
	if (r->o->follow && n > 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, "  no-primary %llu  failovers %llu  "
			 "unavailable %s (max %s)%s", (unsigned long long)r->sec.no_primary,
			 (unsigned long long)r->failovers, tdm_load_fmt_ns(total, r->unavail_total),
			 tdm_load_fmt_ns(max, r->unavail_max), r->lost ? "  NO PRIMARY" : "");
	fprintf(stderr, "%s\n", line);
}

/* Keep the latencies of a measured tick for the plot. Grows per tick, never per write. */
static void add_point(struct tdm_load_run *r, uint64_t t_end)
{
	if (r->n_pts == r->cap_pts) {
		size_t cap = r->cap_pts != 0 ? 2 * r->cap_pts : 1024;
		struct tdm_load_plot_point *p = realloc(r->pts, cap * sizeof(*p));
		if (p == NULL) {
			r->pts_short = true;
			return;
		}
		r->pts = p;
		r->cap_pts = cap;
	}
	r->pts[r->n_pts++] = (struct tdm_load_plot_point){
		.t = ((double)(r->tick_start + t_end) / 2 - (double)r->measure_start) / 1e9,
		.p50 = tdm_load_hist_percentile(&r->tick_h, 50),
		.p99 = tdm_load_hist_percentile(&r->tick_h, 99),
		.max = r->tick_h.max,
	};
}

/* Close the tick that ends at t_end, and its second when it is the tenth or when `partial`
 * (the warmup or the run ends inside it). */
static void close_interval(struct tdm_load_run *r, uint64_t t_end, bool partial)
{
	if (r->tick_h.count != 0) {
		if (r->measuring) {
			add_point(r, t_end);
			tdm_load_hist_merge(&r->total_h, &r->tick_h);
		}
		tdm_load_hist_merge(&r->sec_h, &r->tick_h);
		tdm_load_hist_reset(&r->tick_h);
	}
	r->tick_start = t_end;
	if (!partial && ++r->ticks < TICKS_PER_SECOND)
		return;
	if (!r->o->quiet && t_end - r->sec_start >= TICK_NS) /* not a sliver at the end */
		print_progress(r, t_end);
	r->sec = (struct tdm_load_counts){ 0 };
	tdm_load_hist_reset(&r->sec_h);
	r->sec_start = t_end;
	r->ticks = 0;
}

/* Close every interval that ended by now, and start measuring at measure_start. */
static void flush_intervals(struct tdm_load_run *r, uint64_t now)
{
	if (!r->measuring && now >= r->measure_start) {
		while (r->tick_start + TICK_NS <= r->measure_start)
			close_interval(r, r->tick_start + TICK_NS, false);
		close_interval(r, r->measure_start, true);
		r->measuring = true;
	}
	while (now >= r->tick_start + TICK_NS)
		close_interval(r, r->tick_start + TICK_NS, false);
}

/* The write failed for want of a primary: its node is not (or no longer) the primary, or gone. */
static bool no_primary(int rc)
{
	return rc == TDM_ERR_NOT_PRIMARY || rc == TDM_ERR_CLOSED;
}

static void count_write(struct tdm_load_counts *c, const struct load_slot *s, int rc)
{
	if (no_primary(rc)) {
		c->no_primary++;
		return;
	}
	c->writes++;
	c->deletes += s->del;
	c->bytes += s->bytes;
	c->failed += rc == TDM_ERR_TIMEOUT;
	c->degraded += rc == TDM_ERR_DEGRADED;
	c->backpressure += s->met_full;
}

/* One write's outcome rc at done (intervals flushed up to done). */
static void record_one(struct tdm_load_run *r, const struct load_slot *s, uint64_t done, int rc)
{
	bool measured = s->start >= r->measure_start;

	if (r->measuring && !measured)
		return; /* sent in the warmup, done after it: in no figure */
	if (!no_primary(rc)) /* a write that failed so has no latency */
		tdm_load_hist_record(&r->tick_h, done > s->start ? done - s->start : 0);
	count_write(&r->sec, s, rc);
	if (measured)
		count_write(&r->total, s, rc);
}

/* An acknowledged write at done ends the outage going on, if any. */
static void end_outage(struct tdm_load_run *r, uint64_t done)
{
	uint64_t ns = done > r->unavail_since ? done - r->unavail_since : 0;

	if (r->unavail_since == 0)
		return;
	r->unavail_since = 0;
	r->unavail_total += ns;
	if (ns > r->unavail_max)
		r->unavail_max = ns;
	if (r->n_outages == r->cap_outages) {
		size_t cap = r->cap_outages != 0 ? 2 * r->cap_outages : 16;
		uint64_t *o = realloc(r->outages, cap * sizeof(*o));
		if (o == NULL)
			return; /* the list stops; total and max go on */
		r->outages = o;
		r->cap_outages = cap;
	}
	r->outages[r->n_outages++] = ns;
	if (!r->o->quiet)
		fprintf(stderr, "tandem-load: node %u acknowledges writes again, after %.1f ms "
			"unavailable\n", (unsigned)r->primary_id, (double)ns / 1e6);
}

/* The batch's wait returned rc at done: every write of it shares the outcome. */
static void record_batch(struct tdm_load_run *r, uint32_t n, uint64_t done, int rc)
{
	flush_intervals(r, done);
	if (rc == 0 || rc == TDM_ERR_DEGRADED)
		end_outage(r, done);
	for (uint32_t i = 0; i < n; i++) {
		record_one(r, &r->batch[i], done, rc);
		if (r->verify_keys && (rc == 0 || rc == TDM_ERR_DEGRADED))
			tdm_load_verify_acked(&r->verify, r->batch[i].key, r->batch[i].seq);
	}
}

/* ---- Writing ---- */

/* A call failed in a way the run cannot go on from: say so. @return exit status 1. */
static int fail(struct tdm_load_run *r, const char *what, int rc)
{
	char msg[512], who[48];
	struct tdm_status st;
	uint16_t p = 0;
	uint32_t e = 0;

	snprintf(msg, sizeof(msg), "%s", tdm_ctl_errmsg() != NULL ? tdm_ctl_errmsg() : "");
	if (rc == TDM_ERR_NOT_PRIMARY && r->spread_index >= 0) {
		fprintf(stderr, "tandem-load: %s: node %u (%s) refuses writes\n", what,
			(unsigned)r->primary_id, r->targets[0].dir);
	} else if (rc == TDM_ERR_NOT_PRIMARY && r->node != NULL && tdm_status(r->node, &st) == 0 &&
	    tdm_primary(r->node, &p, &e) == 0) {
		if (p == st.node_id)
			snprintf(who, sizeof(who), "it is the primary but refuses writes");
		else if (p != 0)
			snprintf(who, sizeof(who), "the primary is node %u", (unsigned)p);
		else
			snprintf(who, sizeof(who), "it knows no primary");
		fprintf(stderr, "tandem-load: %s: node %u does not take writes (%s); point "
			"tandem-load at the primary, or --attach every node of the cluster with "
			"--follow to follow failovers\n", what, (unsigned)st.node_id, who);
	} else {
		fprintf(stderr, "tandem-load: %s: %s\n", what, tdm_strerror(rc));
	}
	if (msg[0] != '\0')
		fprintf(stderr, "  %s\n", msg);
	return EXIT_FAILURE;
}

/* Nothing to do until later: let the node work (it runs here) or give up the CPU. */
static int idle_step(struct tdm_load_run *r)
{
	if (!r->drive) {
		sched_yield();
		return 0;
	}
	int rc = tdm_node_do_work(r->node);
	return rc < 0 ? rc : 0;
}

/* Wait until time `until` (or a signal), driving the node or sleeping when it is far. */
static int pace(struct tdm_load_run *r, uint64_t until)
{
	for (;;) {
		uint64_t now = tdm_load_now_ns();
		if (now >= until || stop_requested)
			return 0;
		if (!r->drive && until - now > PACE_SLEEP_NS) {
			uint64_t ns = until - now - PACE_SLEEP_NS / 2;
			struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
			nanosleep(&ts, NULL);
			continue;
		}
		int rc = idle_step(r);
		if (rc < 0)
			return rc;
	}
}

/* Append one write (retrying while the ring is full). @return 0 with *end; a put/delete
 * error; TDM_ERR_BACKPRESSURE when a signal came while the ring was full (not sent). */
static int send_one(struct tdm_load_run *r, struct load_slot *s, uint64_t *end)
{
	const struct tdm_load_opts *o = r->o;
	char key[TDM_LOAD_KEY_LEN];
	int rc;

	s->del = o->delete_permille != 0 && tdm_load_rng_next(&r->ops) % 1000 < o->delete_permille;
	s->bytes = TDM_LOAD_KEY_LEN + (s->del ? 0 : o->value_size);
	s->met_full = false;
	s->key = tdm_load_keys_next(&r->keys);
	if (r->spread_index >= 0)
		s->key = tdm_load_spread_key(s->key, o->keys, r->shared_keys, r->spread_index);
	tdm_load_key_format(s->key, key);
	if (!s->del) {
		r->value_seq++;
		memcpy(r->value, &r->value_seq, o->value_size < 8 ? o->value_size : 8);
		s->seq = r->value_seq;
		if (r->verify_keys)
			tdm_load_verify_tried(&r->verify, s->key, s->seq);
	}
	for (uint32_t tries = 1;; tries++) {
		uint16_t primary;
		uint32_t epoch;

		rc = s->del ? tdm_delete(r->node, key, sizeof(key), end)
			    : tdm_put(r->node, key, sizeof(key), r->value, o->value_size, end);
		if (rc != TDM_ERR_BACKPRESSURE || stop_requested)
			return rc;
		s->met_full = true;
		/* An attached node that died leaves its ring full for good: TDM_ERR_CLOSED. */
		if ((tries & 4095) == 0 && (rc = tdm_primary(r->node, &primary, &epoch)) != 0)
			return rc;
		rc = idle_step(r);
		if (rc < 0)
			return rc;
	}
}

/* Whether a write that would start at t is part of the run. */
static bool wanted(const struct tdm_load_run *r, uint64_t t)
{
	if (r->o->count != 0)
		return t < r->measure_start || r->measured_sent < r->o->count;
	return t < r->run_end;
}

/* ---- Following the primary (--follow) ---- */

/* Attach t (again) and learn its id and pid. @return 0 or the attach error. */
static int attach_target(struct load_target *t, uint64_t now)
{
	struct tdm_status st;
	int rc;

	t->next_attach = now + REATTACH_NS;
	tdm_err_clear();
	if ((rc = tdm_node_attach(t->dir, &t->node)) != 0) {
		t->node = NULL;
		return rc;
	}
	if ((rc = tdm_status(t->node, &st)) != 0) {
		tdm_node_close(t->node);
		t->node = NULL;
		return rc;
	}
	t->id = st.node_id;
	t->pid = st.pid;
	return 0;
}

/* Whether t is attached to the live process it was attached to; a node that stopped or was
 * restarted (its ring is another one) is detached and attached again, at most every
 * REATTACH_NS. */
static bool target_alive(struct load_target *t, uint64_t now)
{
	struct tdm_status st;

	if (t->node != NULL && (tdm_status(t->node, &st) != 0 || st.pid != t->pid)) {
		tdm_node_close(t->node);
		t->node = NULL;
		t->next_attach = now;
	}
	return t->node != NULL || (now >= t->next_attach && attach_target(t, now) == 0);
}

/* The attached node that is primary: the live one that says so, with the highest epoch.
 * @return its index (*epoch its epoch), or -1. */
static int find_primary(struct tdm_load_run *r, uint64_t now, uint32_t *epoch)
{
	int best = -1;

	for (int i = 0; i < r->n_targets; i++) {
		struct load_target *t = &r->targets[i];
		uint16_t p;
		uint32_t e;

		if (!target_alive(t, now) || tdm_primary(t->node, &p, &e) != 0 || p != t->id)
			continue;
		if (best < 0 || e > *epoch) {
			best = i;
			*epoch = e;
		}
	}
	return best;
}

/* Write to the primary among the attached nodes, if there is one. @return whether there is. */
static bool retarget(struct tdm_load_run *r, uint64_t now)
{
	uint32_t epoch = 0;
	int i = find_primary(r, now, &epoch);
	const struct load_target *t;

	if (i < 0)
		return false;
	t = &r->targets[i];
	if (t->id == r->primary_id && epoch == r->epoch && now < r->retry_same)
		return false; /* it just refused (fenced, handing over): not again at once */
	if (r->primary_id != 0 && (t->id != r->primary_id || epoch != r->epoch)) {
		r->failovers++;
		if (!r->o->quiet)
			fprintf(stderr, "tandem-load: following node %u, primary of epoch %u (was "
				"node %u, epoch %u)\n", (unsigned)t->id, (unsigned)epoch,
				(unsigned)r->primary_id, (unsigned)r->epoch);
	}
	r->cur = i;
	r->node = t->node;
	r->primary_id = t->id;
	r->epoch = epoch;
	r->lost = false;
	return true;
}

/* What each attached node says, after no primary was found. */
static void describe_targets(const struct tdm_load_run *r)
{
	for (int i = 0; i < r->n_targets; i++) {
		const struct load_target *t = &r->targets[i];
		struct tdm_status st;

		if (t->node == NULL || tdm_status(t->node, &st) != 0)
			fprintf(stderr, "  %s: no node running\n", t->dir);
		else
			fprintf(stderr, "  %s: node %u, %s%s, epoch %u, primary %u\n", t->dir,
				(unsigned)st.node_id, tdm_role_name((enum tdm_role)st.role),
				st.fenced ? " (fenced)" : "", (unsigned)st.epoch,
				(unsigned)st.primary_id);
	}
}

/* A write failed for want of a primary: look for it (the outage began with that write). */
static void lose_primary(struct tdm_load_run *r)
{
	r->lost = true;
	r->node = NULL; /* find_primary may close it */
	r->next_probe = 0;
	r->retry_same = tdm_load_now_ns() + PROBE_NS;
}

/* Fixed rate, no primary: the writes that come due fail at once (not sent). */
static void fail_due(struct tdm_load_run *r, uint64_t now)
{
	struct load_slot s = { 0 };

	for (;;) {
		s.start = intended(r, r->sent);
		if (s.start > now || !wanted(r, s.start))
			return;
		record_one(r, &s, now, TDM_ERR_NOT_PRIMARY);
		r->sent++;
		r->measured_sent += s.start >= r->measure_start;
	}
}

/* No primary to write to: ask the nodes every PROBE_NS, pace meanwhile; give up when nothing
 * was acknowledged for GIVE_UP_NS. @return 0, or exit status 1. */
static int follow_step(struct tdm_load_run *r, uint64_t now)
{
	uint64_t tick_end = r->tick_start + TICK_NS;

	if (r->o->rate != 0)
		fail_due(r, now);
	if (now >= r->next_probe) {
		r->next_probe = now + PROBE_NS;
		if (retarget(r, now))
			return 0;
	}
	if (now - r->unavail_since >= GIVE_UP_NS) {
		fprintf(stderr, "tandem-load: no write acknowledged for %llu s and no attached "
			"node takes writes; stopping\n", GIVE_UP_NS / 1000000000ull);
		describe_targets(r);
		return EXIT_FAILURE;
	}
	int rc = pace(r, r->next_probe < tick_end ? r->next_probe : tick_end);
	return rc < 0 ? fail(r, "running the node", rc) : 0;
}

/* A wait timed out (rc): was it for want of a primary? The node died or stepped down while it
 * waited, or does not know yet that another node was elected (it is cut off, or dying: a
 * killed tandemd can take a second or more to exit). @return rc, or TDM_ERR_CLOSED /
 * TDM_ERR_NOT_PRIMARY. */
static int still_primary(struct tdm_load_run *r, int rc)
{
	uint16_t p;
	uint32_t e, newest = 0;
	int alive = tdm_primary(r->node, &p, &e), i;

	if (alive != 0)
		return alive;
	if (p != r->primary_id || e != r->epoch)
		return TDM_ERR_NOT_PRIMARY;
	i = find_primary(r, tdm_load_now_ns(), &newest);
	if (r->targets[r->cur].node != r->node)
		return TDM_ERR_CLOSED; /* find_primary found it gone (restarted) and detached it */
	return i >= 0 && newest > r->epoch ? TDM_ERR_NOT_PRIMARY : rc;
}

/* ---- Batches ---- */

/* Send up to --pipeline writes (at a fixed rate: those already due), wait for the last. A write
 * that fails for want of a primary (--follow) ends the batch; the ones before it are waited
 * for. */
static int run_batch(struct tdm_load_run *r, uint64_t now)
{
	uint64_t end = 0, put_failed_at = 0;
	uint32_t n = 0;
	int rc, put_rc = 0;

	while (n < r->o->pipeline) {
		struct load_slot *s = &r->batch[n];
		s->start = r->o->rate != 0 ? intended(r, r->sent) : tdm_load_now_ns();
		if (r->o->rate != 0 && n != 0 && s->start > now)
			break; /* on schedule: the next write is not due yet */
		if (!wanted(r, s->start))
			break;
		rc = send_one(r, s, &end);
		if (rc == TDM_ERR_BACKPRESSURE)
			break;
		if (rc < 0 && !(r->o->follow && no_primary(rc)))
			return fail(r, s->del ? "delete" : "put", rc);
		r->sent++;
		r->measured_sent += s->start >= r->measure_start;
		if (rc < 0) {
			put_rc = rc; /* batch[n]: not appended */
			put_failed_at = tdm_load_now_ns();
			break;
		}
		n++;
	}
	if (n == 0 && put_rc == 0)
		return 0;
	rc = n != 0 ? tdm_wait(r->node, end, r->level, 0) : put_rc;
	if (rc == TDM_ERR_TIMEOUT && r->o->follow)
		rc = still_primary(r, rc);
	if (rc != 0 && rc != TDM_ERR_TIMEOUT && rc != TDM_ERR_DEGRADED &&
	    !(r->o->follow && no_primary(rc)))
		return fail(r, "wait", rc);
	record_batch(r, n, tdm_load_now_ns(), rc);
	if (put_rc != 0)
		record_one(r, &r->batch[n], tdm_load_now_ns(), put_rc);
	/* --follow: an outage begins with the first write that fails, timed out or not taken */
	if (r->o->follow && r->unavail_since == 0 && (rc == TDM_ERR_TIMEOUT || no_primary(rc)))
		r->unavail_since = now;
	else if (r->o->follow && r->unavail_since == 0 && put_rc != 0)
		r->unavail_since = put_failed_at;
	if (put_rc != 0 || no_primary(rc)) {
		lose_primary(r);
		return 0;
	}
	/* A wait that returns at once (memory level) did not drive the node: one round here keeps
	 * its flusher and its replicas' streams going between batches. */
	rc = r->drive ? tdm_node_do_work(r->node) : 0;
	return rc < 0 ? fail(r, "running the node", rc) : 0;
}

static int run(struct tdm_load_run *r)
{
	int rc;

	for (;;) {
		uint64_t now = tdm_load_now_ns(), next = r->o->rate != 0 ? intended(r, r->sent) : now;
		flush_intervals(r, now);
		if (stop_requested) {
			r->stop_reason = "interrupted";
			break;
		}
		if (!wanted(r, next) || now >= r->run_end) {
			r->stop_reason = r->o->count != 0 ? "count" : "duration";
			break;
		}
		if (r->lost) {
			rc = follow_step(r, now);
			if (rc != 0)
				return rc;
			continue;
		}
		if (next > now) {
			uint64_t tick_end = r->tick_start + TICK_NS;
			rc = pace(r, next < tick_end ? next : tick_end);
			if (rc < 0)
				return fail(r, "running the node", rc);
			continue;
		}
		rc = run_batch(r, now);
		if (rc != 0)
			return rc;
	}
	r->stopped_at = tdm_load_now_ns();
	flush_intervals(r, r->stopped_at);
	close_interval(r, r->stopped_at, true);
	return 0;
}

/* ---- Setting up ---- */

static int config_error(int rc, const char *what)
{
	const char *msg = tdm_errmsg();

	if (msg[0] != '\0')
		fprintf(stderr, "tandem-load: %s\n", msg);
	else
		fprintf(stderr, "tandem-load: %s: %s\n", what, tdm_strerror(rc));
	return EXIT_FAILURE;
}

/* --config: load, override, check, force threads = 0, open. */
static int open_config(struct tdm_load_run *r, struct tdm_load_opts *o)
{
	struct tdm_config cfg;
	int rc;

	tdm_config_defaults(&cfg);
	rc = tdm_config_load(&cfg, o->config_path);
	if (rc != 0)
		return config_error(rc, o->config_path);
	for (int i = 0; i < o->n_sets; i++) {
		char *eq = strchr(o->sets[i], '=');
		*eq = '\0';
		rc = tdm_config_set(&cfg, o->sets[i], eq + 1);
		*eq = '=';
		if (rc != 0) {
			config_error(rc, o->sets[i]);
			return TDM_LOAD_EXIT_USAGE;
		}
	}
	rc = tdm_config_check(&cfg);
	if (rc != 0)
		return config_error(rc, o->config_path);
	if (cfg.role != TDM_ROLE_PRIMARY) {
		fprintf(stderr, "tandem-load: %s: node %u is a replica; point tandem-load at the "
			"primary's configuration\n", o->config_path, (unsigned)cfg.node_id);
		return EXIT_FAILURE;
	}
	cfg.threads = 0;
	if (!o->level_set)
		o->level = cfg.level;
	rc = tdm_node_open(&cfg, &r->node);
	if (rc != 0)
		return config_error(rc, "opening the node");
	r->drive = true;
	return 0;
}

/* --attach: join the running nodes and pick the primary among them (with --follow, wait up to
 * START_WAIT_NS for one, and for nodes not up yet); refuse to start without one. */
static int open_attach(struct tdm_load_run *r, const struct tdm_load_opts *o)
{
	uint64_t now = tdm_load_now_ns(), deadline = now + START_WAIT_NS;
	int rc;

	r->n_targets = o->n_attach;
	for (int i = 0; i < o->n_attach; i++) {
		struct load_target *t = &r->targets[i];
		t->dir = o->attach_dirs[i];
		if ((rc = attach_target(t, now)) == 0)
			continue;
		fprintf(stderr, "tandem-load: --attach %s: %s%s\n", t->dir, tdm_strerror(rc),
			o->follow ? " (attaching again every 250 ms)" : "");
		if (tdm_ctl_errmsg() != NULL)
			fprintf(stderr, "  %s\n", tdm_ctl_errmsg());
		if (!o->follow)
			return EXIT_FAILURE;
	}
	while (!retarget(r, now)) {
		if (!o->follow || now >= deadline || stop_requested) {
			if (o->n_attach == 1 && r->targets[0].node != NULL) {
				r->node = r->targets[0].node;
				tdm_err_clear();
				return fail(r, "attach", TDM_ERR_NOT_PRIMARY);
			}
			fprintf(stderr, "tandem-load: none of the attached nodes is the primary\n");
			describe_targets(r);
			return EXIT_FAILURE;
		}
		struct timespec ts = { 0, (long)PROBE_NS };
		nanosleep(&ts, NULL);
		now = tdm_load_now_ns();
	}
	return 0;
}

/* Buffers, key generator and schedule; the histograms are in r (zeroed by calloc). */
static int prepare(struct tdm_load_run *r, const struct tdm_load_opts *o, int spread_index)
{
	uint64_t seed = o->seed + (uint64_t)(spread_index > 0 ? spread_index : 0);
	struct tdm_load_rng fill;

	r->o = o;
	r->spread_index = spread_index;
	r->shared_keys = o->keys * o->shared_pct / 100;
	r->verify_keys = o->verify && spread_index < 0;
	if (tdm_load_keys_init(&r->keys, o->dist, o->keys, o->theta, seed) != 0)
		return EXIT_FAILURE; /* not reached: the options were checked */
	tdm_load_rng_seed(&r->ops, seed ^ 0x6f70735f6c6f6164ull);
	tdm_load_rng_seed(&fill, seed ^ 0x76616c75655f6c64ull);
	if (r->verify_keys && tdm_load_verify_init(&r->verify, o->keys) != 0) {
		fprintf(stderr, "tandem-load: --verify: out of memory for %" PRIu64 " keys\n",
			o->keys);
		return EXIT_FAILURE;
	}
	r->value = malloc(o->value_size + 8u);
	r->batch = calloc(o->pipeline, sizeof(*r->batch));
	if (r->value == NULL || r->batch == NULL) {
		fprintf(stderr, "tandem-load: out of memory for %u-byte values\n", o->value_size);
		return EXIT_FAILURE;
	}
	for (uint32_t i = 0; i < o->value_size; i++)
		r->value[i] = (uint8_t)tdm_load_rng_next(&fill);
	tdm_load_hist_reset(&r->tick_h);
	tdm_load_hist_reset(&r->sec_h);
	tdm_load_hist_reset(&r->total_h);
	return 0;
}

static void start_clock(struct tdm_load_run *r)
{
	const struct tdm_load_opts *o = r->o;

	r->t0 = r->tick_start = r->sec_start = tdm_load_now_ns();
	r->measure_start = r->t0 + (uint64_t)(o->warmup * 1e9);
	r->measuring = r->measure_start == r->t0;
	r->run_end = o->count != 0 ? UINT64_MAX : r->measure_start + (uint64_t)(o->duration * 1e9);
}

/* ---- Reporting ---- */

void tdm_load_writer_describe(const struct tdm_load_run *r, char *buf, size_t cap)
{
	const struct tdm_load_opts *o = r->o;
	char rate[32];

	if (o->rate != 0)
		snprintf(rate, sizeof(rate), "%llu/s", (unsigned long long)o->rate);
	else
		snprintf(rate, sizeof(rate), "max");
	snprintf(buf, cap, "level %s, rate %s, %u B values", tdm_level_name(r->level), rate,
		 o->value_size);
}

static void print_start(const struct tdm_load_run *r)
{
	const struct tdm_load_opts *o = r->o;
	char load[96];

	tdm_load_writer_describe(r, load, sizeof(load));
	if (o->n_attach > 1 || o->follow)
		fprintf(stderr, "tandem-load: attached to %d node(s), writing to node %u (epoch %u)"
			"%s: %s, %llu keys %s", o->n_attach, (unsigned)r->primary_id,
			(unsigned)r->epoch, o->follow ? ", following failovers" : "", load,
			(unsigned long long)o->keys,
			o->dist == TDM_LOAD_DIST_ZIPF ? "zipf" : "uniform");
	else
		fprintf(stderr, "tandem-load: %s %s: %s, %llu keys %s", o->attach_dir ?
			"attached to" : "node in this process from", o->attach_dir ? o->attach_dir :
			o->config_path, load, (unsigned long long)o->keys,
			o->dist == TDM_LOAD_DIST_ZIPF ? "zipf" : "uniform");
	if (o->dist == TDM_LOAD_DIST_ZIPF)
		fprintf(stderr, " (theta %g)", o->theta);
	fprintf(stderr, ", pipeline %u, ", o->pipeline);
	if (o->count != 0)
		fprintf(stderr, "%llu writes", (unsigned long long)o->count);
	else
		fprintf(stderr, "%g s", o->duration);
	if (o->warmup > 0)
		fprintf(stderr, " after %g s warmup", o->warmup);
	fputs("\n", stderr);
}

/* The single run's report: its figures and --follow's outage still going on. */
struct load_report {
	struct tdm_load_figures f;
	uint64_t unavail_open; /**< --follow: the outage still going on when the run stopped, ns */
};

void tdm_load_writer_figures(const struct tdm_load_run *r, struct tdm_load_figures *f)
{
	uint64_t end = r->stopped_at > r->measure_start ? r->stopped_at : r->measure_start;

	f->secs = (double)(end - r->measure_start) / 1e9;
	f->n = r->total;
	f->unsent = 0;
	if (r->o->rate != 0 && r->o->count == 0 && strcmp(r->stop_reason, "duration") == 0)
		f->unsent = due_before(r, r->run_end) - r->sent;
	f->hist = r->total_h;
}

static void compute_report(const struct tdm_load_run *r, struct load_report *rep)
{
	tdm_load_writer_figures(r, &rep->f);
	rep->unavail_open = r->unavail_since != 0 && r->stopped_at > r->unavail_since ?
			    r->stopped_at - r->unavail_since : 0;
}

/* --follow: failovers followed and each outage. */
static void print_failovers(const struct tdm_load_run *r, const struct load_report *rep)
{
	char buf[24], max[24];

	printf("  failover    %llu followed; writes unavailable %s in total, %s at most",
	       (unsigned long long)r->failovers, tdm_load_fmt_ns(buf, r->unavail_total),
	       tdm_load_fmt_ns(max, r->unavail_max));
	if (r->n_outages != 0) {
		printf(" (");
		for (size_t i = 0; i < r->n_outages && i < 10; i++)
			printf("%s%s", i != 0 ? ", " : "", tdm_load_fmt_ns(buf, r->outages[i]));
		printf("%s)", r->n_outages > 10 ? ", ..." : "");
	}
	putchar('\n');
	if (rep->unavail_open != 0)
		printf("  no primary for the last %s of the run: that outage had not ended\n",
		       tdm_load_fmt_ns(buf, rep->unavail_open));
}

static void print_table(const struct tdm_load_run *r, const struct load_report *rep)
{
	char load[96];

	tdm_load_writer_describe(r, load, sizeof(load));
	printf("tandem-load: %s; stopped by %s\n", load, r->stop_reason);
	tdm_load_figures_table(&rep->f, "  ", r->o->follow);
	if (r->o->follow)
		print_failovers(r, rep);
	if (rep->f.unsent != 0)
		printf("  the node did not keep up with %llu writes/s: %llu writes were still due "
		       "when the time was up\n", (unsigned long long)r->o->rate,
		       (unsigned long long)rep->f.unsent);
	if (r->total_h.clamped != 0)
		printf("  %llu latencies above 100 s were counted as 100 s\n",
		       (unsigned long long)r->total_h.clamped);
}

void tdm_load_writer_json_setup(const struct tdm_load_run *r)
{
	const struct tdm_load_opts *o = r->o;

	printf("{\"target\":");
	tdm_load_json_str(o->attach_dir != NULL ? "attach" : "config");
	printf(",\"path\":");
	tdm_load_json_str(o->attach_dir != NULL ? o->attach_dir : o->config_path);
	printf(",\"level\":\"%s\",\"rate\":", tdm_level_name(r->level));
	if (o->rate != 0)
		printf("%llu", (unsigned long long)o->rate);
	else
		printf("\"max\"");
	printf(",\"pipeline\":%u,\"value_size\":%u,\"keys\":%llu,\"dist\":\"%s\"", o->pipeline,
	       o->value_size, (unsigned long long)o->keys,
	       o->dist == TDM_LOAD_DIST_ZIPF ? "zipf" : "uniform");
	if (o->dist == TDM_LOAD_DIST_ZIPF)
		printf(",\"zipf_theta\":%g", o->theta);
	printf(",\"delete_permille\":%u,\"seed\":%llu,\"warmup_s\":%g,\"stopped\":\"%s\"",
	       o->delete_permille, (unsigned long long)o->seed, o->warmup, r->stop_reason);
}

/* --follow's figures (present without it too: no failovers, no outages). */
static void print_json_follow(const struct tdm_load_run *r, const struct load_report *rep)
{
	printf(",\"follow\":%s,\"attach\":[", r->o->follow ? "true" : "false");
	for (int i = 0; i < r->o->n_attach; i++) {
		if (i != 0)
			putchar(',');
		tdm_load_json_str(r->o->attach_dirs[i]);
	}
	printf("],\"no_primary\":%llu,\"failovers\":%llu,\"unavailable_ms\":[",
	       (unsigned long long)r->total.no_primary, (unsigned long long)r->failovers);
	for (size_t i = 0; i < r->n_outages; i++)
		printf("%s%.3f", i != 0 ? "," : "", (double)r->outages[i] / 1e6);
	printf("],\"unavailable_max_ms\":%.3f,\"unavailable_total_ms\":%.3f,"
	       "\"unavailable_open_ms\":%.3f", (double)r->unavail_max / 1e6,
	       (double)r->unavail_total / 1e6, (double)rep->unavail_open / 1e6);
}

static void print_json(const struct tdm_load_run *r, const struct load_report *rep)
{
	tdm_load_writer_json_setup(r);
	print_json_follow(r, rep);
	putchar(',');
	tdm_load_figures_json(&rep->f);
	fputs("}\n", stdout);
}

static int write_plot(const struct tdm_load_run *r, FILE *f, const struct load_report *rep)
{
	char load[96], title[160];
	struct tdm_load_plot p = {
		.title = title, .span = rep->f.secs, .pts = r->pts, .n = r->n_pts,
	};

	tdm_load_writer_describe(r, load, sizeof(load));
	snprintf(title, sizeof(title), "tandem-load: %s (p50/p99/max per 100 ms)", load);
	if (r->pts_short)
		fprintf(stderr, "tandem-load: --plot: out of memory, the plot stops early\n");
	if (tdm_load_plot_write(f, &p) != 0 || fclose(f) != 0) {
		fprintf(stderr, "tandem-load: --plot %s: %s\n", r->o->plot_path, strerror(errno));
		return EXIT_FAILURE;
	}
	return 0;
}

/* ---- --spread's writers (load_spread.c) ---- */

int tdm_load_writer_create(const struct tdm_load_opts *o, int index, struct tdm_load_run **out)
{
	struct tdm_load_run *r = calloc(1, sizeof(*r));
	struct load_target *t;
	struct tdm_status st;
	int rc;

	if ((*out = r) == NULL) {
		fprintf(stderr, "tandem-load: out of memory\n");
		return EXIT_FAILURE;
	}
	if ((rc = prepare(r, o, index)) != 0)
		return rc;
	r->level = o->level;
	r->n_targets = 1;
	t = &r->targets[0];
	t->dir = o->attach_dirs[index];
	if ((rc = attach_target(t, tdm_load_now_ns())) != 0 || (rc = tdm_status(t->node, &st)) != 0) {
		fprintf(stderr, "tandem-load: --attach %s: %s\n", t->dir, tdm_strerror(rc));
		if (tdm_ctl_errmsg() != NULL)
			fprintf(stderr, "  %s\n", tdm_ctl_errmsg());
		return EXIT_FAILURE;
	}
	if (st.mode != TDM_MODE_MULTI_PRIMARY) {
		fprintf(stderr, "tandem-load: --spread: node %u (%s) runs primary-replica, where "
			"only the primary takes writes; --spread is for multi-primary nodes\n",
			(unsigned)t->id, t->dir);
		return EXIT_FAILURE;
	}
	r->node = t->node;
	r->primary_id = t->id;
	snprintf(r->label, sizeof(r->label), "node %u: ", (unsigned)t->id);
	return 0;
}

int tdm_load_writer_run(struct tdm_load_run *r)
{
	int rc;

	start_clock(r);
	if ((rc = run(r)) != 0) { /* its figures run to here */
		r->stopped_at = tdm_load_now_ns();
		r->stop_reason = "error";
	}
	return rc;
}

uint16_t tdm_load_writer_node(const struct tdm_load_run *r)
{
	return r->primary_id;
}

const char *tdm_load_writer_stopped(const struct tdm_load_run *r)
{
	return r->stop_reason;
}

void tdm_load_writer_destroy(struct tdm_load_run *r)
{
	if (r == NULL)
		return;
	if (r->n_targets == 0)
		tdm_node_close(r->node); /* --config; attached nodes are targets */
	for (int i = 0; i < r->n_targets; i++)
		tdm_node_close(r->targets[i].node);
	free(r->pts);
	free(r->outages);
	free(r->batch);
	free(r->value);
	tdm_load_verify_free(&r->verify);
	free(r);
}

/* ---- main ---- */

/* --verify: read every acknowledged key back from the node that is primary now. */
static int verify_writes(struct tdm_load_run *r)
{
	FILE *out = r->o->json ? stderr : stdout;
	const char *dir = r->o->config_path != NULL ? NULL : r->o->attach_dir;
	uint64_t checked = 0;
	uint32_t epoch = 0;
	long lost;

	if (r->n_targets != 0) {
		int p = find_primary(r, tdm_load_now_ns(), &epoch);
		dir = p >= 0 ? r->targets[p].dir : dir;
	}
	if (dir == NULL) {
		fprintf(stderr, "tandem-load: --verify needs --attach (the node in this process is "
			"closed)\n");
		return EXIT_FAILURE;
	}
	lost = tdm_load_verify_run(&r->verify, dir, out, &checked);
	if (lost < 0) {
		fprintf(stderr, "tandem-load: --verify: reading keys back from %s: %s\n", dir,
			tdm_errmsg());
		return EXIT_FAILURE;
	}
	fprintf(out, "verify: %" PRIu64 " keys read back from %s: %s\n", checked, dir,
		lost ? "ACKNOWLEDGED WRITES LOST" : "every acknowledged write is there");
	return lost ? EXIT_FAILURE : 0;
}

static int load_main(struct tdm_load_opts *o, struct tdm_load_run *r, FILE *plot)
{
	struct load_report rep;
	int rc = prepare(r, o, -1);

	if (rc == 0)
		rc = o->attach_dir != NULL ? open_attach(r, o) : open_config(r, o);
	if (rc != 0)
		return rc;
	r->level = o->level;
	if (!o->quiet)
		print_start(r);
	start_clock(r);
	rc = run(r);
	if (rc != 0)
		return rc;
	compute_report(r, &rep);
	if (o->json)
		print_json(r, &rep);
	else
		print_table(r, &rep);
	rc = plot != NULL ? write_plot(r, plot, &rep) : 0;
	return rc != 0 ? rc : (o->verify ? verify_writes(r) : 0);
}

int main(int argc, char **argv)
{
	struct tdm_load_opts o;
	struct sigaction sa = { .sa_handler = on_signal };
	FILE *plot = NULL;
	struct tdm_load_run *r;
	int rc = tdm_load_opts_parse(argc, argv, &o);

	if (rc != 0) {
		free(o.sets);
		return rc < 0 ? EXIT_SUCCESS : rc;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (o.spread) {
		rc = tdm_load_spread_main(&o);
		free(o.sets);
		return rc;
	}
	if (o.plot_path != NULL && (plot = fopen(o.plot_path, "w")) == NULL) {
		fprintf(stderr, "tandem-load: --plot %s: %s\n", o.plot_path, strerror(errno));
		return EXIT_FAILURE;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		fprintf(stderr, "tandem-load: out of memory\n");
		free(o.sets);
		return EXIT_FAILURE;
	}
	rc = load_main(&o, r, plot);
	if (rc != 0 && plot != NULL)
		fclose(plot);
	if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
		perror("tandem-load: writing the report");
		rc = EXIT_FAILURE;
	}
	tdm_load_writer_destroy(r);
	free(o.sets);
	return rc;
}
