/*
 * tandem-load: the latency-over-time plot, an SVG file written by hand (no dependencies).
 *
 * One point per interval (tandem-load uses 100 ms): p50, p99 and max latency as three
 * polylines; x axis in seconds, y axis logarithmic in microseconds with a gridline and label per
 * power of ten, lighter lines at 2..9; a legend and a title.
 */
#ifndef TDM_LOAD_PLOT_H
#define TDM_LOAD_PLOT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** Latencies of one interval. Intervals in which no write completed are left out. */
struct tdm_load_plot_point {
	double t;     /**< middle of the interval, seconds from the start of the measurement */
	uint64_t p50; /**< nanoseconds */
	uint64_t p99;
	uint64_t max;
};

struct tdm_load_plot {
	const char *title;                      /**< text; escaped for XML here */
	double span;                            /**< seconds the x axis covers (0: 1 s) */
	const struct tdm_load_plot_point *pts;  /**< in time order */
	size_t n;                               /**< may be 0: axes and "no samples" */
};

/**
 * Write the SVG document to f: it starts with "<svg" and ends with "</svg>\n".
 * @return 0; -EIO f reported a write error.
 */
int tdm_load_plot_write(FILE *f, const struct tdm_load_plot *p);

#endif /* TDM_LOAD_PLOT_H */
