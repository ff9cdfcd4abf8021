/*
 * tandem-load: the latency-over-time SVG (see load_plot.h).
 *
 * The drawing is a fixed 960 x 540 canvas: the plot area inside margins that hold the title, the
 * axis labels and the axis titles. The y axis spans whole powers of ten from the smallest
 * latency to the largest, at least 0.1 us to at most 100 s; values outside it sit on its edge.
 */
#include "load_plot.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>

#define W 960
#define H 540
#define X0 100.0     /* plot area: left, right, top, bottom */
#define X1 (W - 24.0)
#define Y0 56.0
#define Y1 (H - 64.0)
#define DEC_MIN (-1) /* 0.1 us */
#define DEC_MAX 8    /* 10^8 us = 100 s */

/* The polylines, in the order value_of() numbers them. */
struct series {
	const char *name;
	const char *color;
};

static const struct series series[] = {
	{ "p50", "#1f77b4" },
	{ "p99", "#ff7f0e" },
	{ "max", "#d62728" },
};
#define N_SERIES (sizeof(series) / sizeof(series[0]))

/* Scales of one drawing. */
struct chart {
	double span; /* seconds on the x axis */
	int lo, hi;  /* y axis: 10^lo .. 10^hi microseconds */
};

static uint64_t value_of(const struct tdm_load_plot_point *pt, size_t s)
{
	return s == 0 ? pt->p50 : s == 1 ? pt->p99 : pt->max;
}

static double x_of(const struct chart *c, double t)
{
	double d = t / c->span;

	return X0 + (d < 0 ? 0 : d > 1 ? 1 : d) * (X1 - X0);
}

static double y_of(const struct chart *c, double us)
{
	double d = us > 0 ? (log10(us) - c->lo) / (c->hi - c->lo) : 0;

	return Y1 - (d < 0 ? 0 : d > 1 ? 1 : d) * (Y1 - Y0);
}

/* Whole powers of ten around every latency drawn; 1 us .. 1 ms when there is none. */
static void y_range(const struct tdm_load_plot *p, struct chart *c)
{
	double lo = INFINITY, hi = 0;

	for (size_t i = 0; i < p->n; i++) {
		for (size_t s = 0; s < N_SERIES; s++) {
			double us = (double)value_of(&p->pts[i], s) / 1000.0;
			if (us > 0 && us < lo)
				lo = us;
			if (us > hi)
				hi = us;
		}
	}
	if (hi <= 0) {
		c->lo = 0;
		c->hi = 3;
		return;
	}
	c->lo = (int)floor(log10(lo));
	c->hi = (int)ceil(log10(hi));
	c->lo = c->lo < DEC_MIN ? DEC_MIN : c->lo > DEC_MAX - 1 ? DEC_MAX - 1 : c->lo;
	c->hi = c->hi > DEC_MAX ? DEC_MAX : c->hi <= c->lo ? c->lo + 1 : c->hi;
}

static void put_escaped(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			putc(*s, f);
	}
}

/* 10^dec microseconds as a label: "0.1", "1", "10", ..., "100,000,000". */
static void put_decade(FILE *f, int dec)
{
	if (dec < 0) {
		fputs("0.1", f);
		return;
	}
	putc('1', f);
	for (int zeros = dec; zeros > 0; zeros--) {
		if (zeros % 3 == 0)
			putc(',', f);
		putc('0', f);
	}
}

/* 1, 2 or 5 times a power of ten, so that the axis gets about 8 steps. */
static double nice_step(double span)
{
	double raw = span / 8, p = pow(10, floor(log10(raw))), m = raw / p;

	return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static void write_x_axis(FILE *f, const struct chart *c)
{
	double step = nice_step(c->span);

	for (int i = 0; i * step <= c->span * (1 + 1e-9); i++) {
		double x = x_of(c, i * step);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n",
			x, Y0, x, Y1);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", x,
			Y1 + 18, i * step);
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">time (s)</text>\n",
		(X0 + X1) / 2, H - 20);
}

static void write_y_axis(FILE *f, const struct chart *c)
{
	for (int d = c->lo; d <= c->hi; d++) {
		double y = y_of(c, pow(10, d));
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n",
			X0, y, X1, y);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", X0 - 6, y + 4);
		put_decade(f, d);
		fputs("</text>\n", f);
		for (int k = 2; k <= 9 && d < c->hi; k++) {
			y = y_of(c, k * pow(10, d));
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
				"class=\"minor\"/>\n", X0, y, X1, y);
		}
	}
	fprintf(f, "<text transform=\"translate(24 %.1f) rotate(-90)\" text-anchor=\"middle\">"
		"latency (\xc2\xb5s, log scale)</text>\n", (Y0 + Y1) / 2);
}

static void write_series(FILE *f, const struct chart *c, const struct tdm_load_plot *p, size_t s)
{
	fprintf(f, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
		"points=\"", series[s].name, series[s].color);
	for (size_t i = 0; i < p->n; i++) {
		const struct tdm_load_plot_point *pt = &p->pts[i];
		fprintf(f, "%s%.1f,%.1f", i != 0 ? " " : "", x_of(c, pt->t),
			y_of(c, (double)value_of(pt, s) / 1000.0));
	}
	fputs("\"/>\n", f);
}

static void write_legend(FILE *f)
{
	double x = X1 - 90, y = Y0 + 10;

	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"80\" height=\"%zu\" fill=\"white\" "
		"stroke=\"#999\"/>\n", x, y, 10 + 18 * N_SERIES);
	for (size_t s = 0; s < N_SERIES; s++) {
		double ly = y + 17 + 18 * (double)s;
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			"stroke-width=\"2\"/>\n", x + 8, ly - 4, x + 32, ly - 4, series[s].color);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x + 40, ly, series[s].name);
	}
}

int tdm_load_plot_write(FILE *f, const struct tdm_load_plot *p)
{
	struct chart c = { .span = p->span > 0 ? p->span : 1 };
	double step = nice_step(c.span);

	c.span = ceil(c.span / step - 1e-9) * step; /* the axis ends on a labelled tick */
	y_range(p, &c);
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
	fputs("<style>.grid{stroke:#ccc;stroke-width:1}.minor{stroke:#eee;stroke-width:1}</style>\n",
	      f);
	fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
	fprintf(f, "<text x=\"%d\" y=\"30\" text-anchor=\"middle\" font-size=\"16\">", W / 2);
	put_escaped(f, p->title != NULL ? p->title : "");
	fputs("</text>\n", f);
	write_y_axis(f, &c);
	write_x_axis(f, &c);
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
		"stroke=\"#333\"/>\n", X0, Y0, X1 - X0, Y1 - Y0);
	for (size_t s = 0; s < N_SERIES; s++)
		write_series(f, &c, p, s);
	if (p->n == 0)
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#666\">"
			"no samples</text>\n", (X0 + X1) / 2, (Y0 + Y1) / 2);
	write_legend(f);
	fputs("</svg>\n", f);
	return ferror(f) ? -EIO : 0;
}
