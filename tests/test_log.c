/*
 * cmocka tests of the write log (log/): the "unit" group. The "fault" group (crashes, corrupted
 * files) is in test_log_fault.c; helpers in tlog_util.c.
 *
 * Usage: test_log [unit|fault]   (no argument: both). Exits 77 when io_uring is unavailable.
 */
#include "tlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- Sizes of the generated records ---- */

/*
 * Append filler records until the tail is exactly target, never letting a record cross a
 * segment boundary (so no PAD is needed) and never leaving less than a header before one.
 * Fails the test when the target cannot be reached that way.
 */
static void fill_to(struct tdm_log *log, struct tlog_gen *g, uint64_t target, uint64_t seg,
		    uint32_t *idx, struct xrec *xs, size_t *n, size_t cap)
{
	for (;;) {
		uint64_t tail = tdm_log_tail(log);
		if (tail == target)
			return;
		if (tail > target)
			fail_msg("fill_to: tail %" PRIu64 " passed target %" PRIu64, tail, target);
		uint64_t b = (tail / seg + 1) * seg;
		uint64_t lim = target < b ? target : b;
		uint64_t gap = lim - tail;
		if (gap < TDM_LOG_REC_HDR_SIZE)
			fail_msg("fill_to: gap of %" PRIu64 " bytes at %" PRIu64, gap, tail);
		uint64_t s = gap <= 4096 ? gap : 4096;
		if (gap - s != 0 && gap - s < TDM_LOG_REC_HDR_SIZE)
			s = gap - TDM_LOG_REC_HDR_SIZE;
		uint32_t k = s >= 56 ? 9 : 0;
		uint32_t v = (uint32_t)s - TDM_LOG_REC_HDR_SIZE - k;
		assert_u64(tdm_log_rec_span(k, v), s);
		assert_true(*n < cap);
		uint64_t end = 0;
		assert_ok(tlog_append_rec(log, g, *idx, k, v, TLOG_NODE, &xs[*n], &end));
		assert_u64(xs[*n].pos, tail);
		assert_u64(end, tail + s);
		(*idx)++;
		(*n)++;
	}
}

/* Read the record x with tdm_log_read and check it bytewise against what a cursor returns. */
static void check_read_rec(struct tlog_fx *fx, struct tdm_log *log, const struct xrec *x,
			   uint64_t seed)
{
	static uint8_t buf[128 * 1024];
	uint64_t span = tdm_log_rec_span(x->klen, x->vlen);
	assert_true(span <= sizeof(buf));
	assert_ok(tlog_read(log, x->pos, buf, span));
	assert_ok(tdm_log_rec_check(buf, span, x->pos));
	struct tdm_log_rec r = {
		.hdr = (const void *)buf,
		.key = buf + TDM_LOG_REC_HDR_SIZE,
		.value = buf + TDM_LOG_REC_HDR_SIZE + x->klen,
	};
	assert_nodiff(tlog_rec_diff(&r, x, seed));
	struct tdm_log_cursor *c = tlog_cursor(fx, log, x->pos);
	struct tdm_log_rec cr;
	assert_ok(tdm_log_cursor_next(c, &cr));
	assert_nodiff(tlog_rec_diff(&cr, x, seed));
	assert_memory_equal(cr.hdr, buf, TDM_LOG_REC_HDR_SIZE);
	tlog_cursor_free(fx, c);
}

/* ---- Record format, CRC, names, errors ---- */

static uint32_t crc32c_ref(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;
	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
	}
	return ~c;
}

static void test_format_crc_names(void **state)
{
	(void)state;
	assert_u64(tdm_log_rec_span(0, 0), 40);
	assert_u64(tdm_log_rec_span(1, 0), 48);
	assert_u64(tdm_log_rec_span(0, 8), 48);
	assert_u64(tdm_log_rec_span(9, 7), 56);
	assert_u64(tdm_log_rec_span(9, 8), 64);
	assert_u64(tdm_log_rec_span(TDM_LOG_MAX_KEY, TDM_LOG_MAX_VALUE),
		   40 + TDM_LOG_MAX_KEY + TDM_LOG_MAX_VALUE);
	assert_u64(tdm_log_rec_span(UINT32_MAX, UINT32_MAX), 40 + 2 * (uint64_t)UINT32_MAX + 2);

	/* Known vectors (RFC 3720 B.4 and the "123456789" check value). */
	assert_u64(tdm_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_u64(tdm_crc32c(0, "", 0), 0);
	assert_u64(tdm_crc32c(tdm_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
	uint8_t v[32];
	memset(v, 0, sizeof(v));
	assert_u64(tdm_crc32c(0, v, 32), 0x8A9136AAu);
	memset(v, 0xff, sizeof(v));
	assert_u64(tdm_crc32c(0, v, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		v[i] = (uint8_t)i;
	assert_u64(tdm_crc32c(0, v, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		v[i] = (uint8_t)(31 - i);
	assert_u64(tdm_crc32c(0, v, 32), 0x113FDB5Cu);

	/* Every length and alignment against a bitwise reference, and every split point. */
	static uint8_t buf[1100];
	tlog_bytes(1, 2, buf, sizeof(buf));
	for (size_t off = 0; off < 16; off++)
		for (size_t len = 0; len <= 300; len++)
			if (tdm_crc32c(0, buf + off, len) != crc32c_ref(0, buf + off, len))
				fail_msg("tdm_crc32c(0, buf+%zu, %zu) = 0x%08x, reference 0x%08x",
					 off, len, tdm_crc32c(0, buf + off, len),
					 crc32c_ref(0, buf + off, len));
	uint32_t whole = crc32c_ref(0, buf + 3, 1000);
	assert_u64(tdm_crc32c(0, buf + 3, 1000), whole);
	for (size_t cut = 0; cut <= 1000; cut += 7)
		assert_u64(tdm_crc32c(tdm_crc32c(0, buf + 3, cut), buf + 3 + cut, 1000 - cut), whole);
	assert_u64(tdm_crc32c(0x12345678u, buf, 77), crc32c_ref(0x12345678u, buf, 77));

	assert_string_equal(tdm_log_rec_type_name(TDM_LOG_REC_PUT), "PUT");
	assert_string_equal(tdm_log_rec_type_name(TDM_LOG_REC_DEL), "DEL");
	assert_string_equal(tdm_log_rec_type_name(0), "?");
	assert_string_equal(tdm_log_rec_type_name(200), "?");
	for (uint8_t t = TDM_LOG_REC_PUT; t <= TDM_LOG_REC_PAD; t++) {
		assert_non_null(tdm_log_rec_type_name(t));
		assert_string_not_equal(tdm_log_rec_type_name(t), "?");
	}

	const int codes[] = {TDM_ERR_BACKPRESSURE, TDM_ERR_EMPTY,  TDM_ERR_TRIMMED,
			     TDM_ERR_CORRUPT,      TDM_ERR_VERSION, TDM_ERR_CLUSTER,
			     TDM_ERR_FAILED,       TDM_ERR_CLOSED,  -EINVAL,
			     -30999,               0};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		assert_non_null(tdm_strerror(codes[i]));
		assert_true(tdm_strerror(codes[i])[0] != '\0');
	}
	assert_string_equal(tdm_strerror(-ENOENT), strerror(ENOENT));
	assert_string_not_equal(tdm_strerror(TDM_ERR_EMPTY), tdm_strerror(TDM_ERR_TRIMMED));

	tdm_err_clear();
	assert_string_equal(tdm_errmsg(), "");
	assert_int_equal(TDM_ERR(-EINVAL, "bad thing %d", 42), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "bad thing 42"));
	assert_non_null(strstr(tdm_errmsg(), __func__));
	assert_int_equal(tdm_err_append(TDM_ERR_CORRUPT, "while reading %s", "x.seg"),
			 TDM_ERR_CORRUPT);
	assert_non_null(strstr(tdm_errmsg(), "bad thing 42"));
	assert_non_null(strstr(tdm_errmsg(), "while reading x.seg"));
	tdm_err_clear();
	assert_string_equal(tdm_errmsg(), "");

	struct tdm_log_config c;
	memset(&c, 0xa5, sizeof(c));
	tdm_log_config_defaults(&c);
	assert_u64(c.ring_size, 64u * 1024 * 1024);
	assert_u64(c.segment_size, 64u * 1024 * 1024);
	assert_u64(c.retention_cap, 0);
	assert_u64(c.max_batch, 1024u * 1024);
}

/* ---- Append and read back; record checks ---- */

static void test_record_roundtrip(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	tlog_config(fx, &cfg, 64 * KIB, 64 * KIB);
	assert_ok(tlog_open(fx, &cfg, &log));

	/* A fresh log. */
	assert_u64(tdm_log_tail(log), 0);
	assert_u64(tdm_log_durable(log), 0);
	assert_u64(tdm_log_written(log), 0);
	assert_u64(tdm_log_start(log), 0);
	assert_int_equal(tdm_log_epoch(log), 0);
	const struct tdm_log_recovery *rv = tdm_log_recovery(log);
	assert_non_null(rv);
	assert_u64(rv->start, 0);
	assert_u64(rv->end, 0);
	assert_u64(rv->bytes_cut, 0);
	assert_string_equal(rv->cut_file, "");
	struct tdm_log_cursor *c = tlog_cursor(fx, log, 0);
	struct tdm_log_rec r;
	assert_rc(tdm_log_cursor_next(c, &r), TDM_ERR_EMPTY);
	assert_u64(tdm_log_cursor_position(c), 0);
	uint8_t small[64];
	assert_rc(tdm_log_read(log, 0, small, 8), TDM_ERR_EMPTY);
	assert_ok(tdm_log_flush_until(log, 0));
	assert_rc(tdm_log_flush_until(log, 8), -EINVAL);

	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	g->seed = 11;
	struct {
		uint8_t type, flags;
		uint32_t k, v;
	} shapes[] = {
		{TDM_LOG_REC_PUT, 0, 9, 100},   {TDM_LOG_REC_DEL, 0, 9, 0},
		{TDM_LOG_REC_NOOP, 0, 0, 33},   {TDM_LOG_REC_PUT, 0, 1, 0},
		{TDM_LOG_REC_PUT, 0, 200, 5000}, {TDM_LOG_REC_PUT, 0x5a, 12, 7},
		{TDM_LOG_REC_NOOP, 0, 0, 0},    {TDM_LOG_REC_PUT, 0, 9, 8},
		{TDM_LOG_REC_PUT, 0, 9, 7},
	};
	enum { NS = sizeof(shapes) / sizeof(shapes[0]) };
	struct xrec xs[NS];
	uint64_t prev = 0;
	for (uint32_t i = 0; i < NS; i++) {
		struct tdm_log_entry e;
		uint64_t pos = 1, end = 1;
		tlog_entry(g, &e, i, shapes[i].k, shapes[i].v, shapes[i].type, TLOG_NODE);
		e.flags = shapes[i].flags;
		assert_ok(tdm_log_append(log, &e, &pos, &end));
		assert_u64(pos, prev);
		assert_u64(end, pos + tdm_log_rec_span(shapes[i].k, shapes[i].v));
		assert_u64(tdm_log_tail(log), end);
		xs[i] = (struct xrec){.pos = pos, .idx = i, .klen = shapes[i].k,
				      .vlen = shapes[i].v, .type = shapes[i].type,
				      .flags = shapes[i].flags, .origin = TLOG_NODE};
		prev = end;
	}
	/* NULL out-pointers are allowed. */
	struct tdm_log_entry e;
	tlog_entry(g, &e, NS, 9, 3, TDM_LOG_REC_PUT, TLOG_NODE);
	assert_ok(tdm_log_append(log, &e, NULL, NULL));
	assert_u64(tdm_log_tail(log), prev + tdm_log_rec_span(9, 3));

	/* The cursor created on the empty log now sees every record. */
	for (uint32_t i = 0; i < NS; i++) {
		assert_ok(tdm_log_cursor_next(c, &r));
		assert_nodiff(tlog_rec_diff(&r, &xs[i], g->seed));
		assert_u64(tdm_log_cursor_position(c), xs[i].pos + tdm_log_rec_span(xs[i].klen,
										   xs[i].vlen));
	}
	tlog_cursor_free(fx, c);
	for (uint32_t i = 0; i < NS; i++)
		check_read_rec(fx, log, &xs[i], g->seed);
	uint8_t big[8192];
	assert_rc(tdm_log_read(log, 0, big, tdm_log_tail(log) + 8), TDM_ERR_EMPTY);
	assert_rc(tdm_log_flush_until(log, tdm_log_tail(log) + 8), -EINVAL);

	/* tdm_log_rec_check: every flipped byte, wrong positions, short buffers, zeroes. */
	const struct xrec *x = &xs[0];
	uint64_t span = tdm_log_rec_span(x->klen, x->vlen);
	uint32_t len = TDM_LOG_REC_HDR_SIZE + x->klen + x->vlen;
	uint8_t rec[256], tmp[256];
	assert_true(span <= sizeof(rec));
	assert_ok(tlog_read(log, x->pos, rec, span));
	assert_ok(tdm_log_rec_check(rec, span, x->pos));
	assert_ok(tdm_log_rec_check(rec, sizeof(rec), x->pos));
	for (uint32_t i = 0; i < len; i++) {
		const uint8_t masks[] = {0x01, 0x80, 0xff};
		for (int m = 0; m < 3; m++) {
			memcpy(tmp, rec, span);
			tmp[i] ^= masks[m];
			int rc = tdm_log_rec_check(tmp, span, x->pos);
			if (rc != TDM_ERR_CORRUPT)
				fail_msg("tdm_log_rec_check with byte %u ^ 0x%02x = %d (%s), "
					 "want TDM_ERR_CORRUPT",
					 i, masks[m], rc, tdm_strerror(rc));
		}
	}
	assert_rc(tdm_log_rec_check(rec, span, x->pos + 8), TDM_ERR_CORRUPT);
	assert_rc(tdm_log_rec_check(rec, span, x->pos + 1), TDM_ERR_CORRUPT);
	assert_rc(tdm_log_rec_check(rec, span, 1u << 20), TDM_ERR_CORRUPT);
	assert_rc(tdm_log_rec_check(rec, len - 1, x->pos), TDM_ERR_CORRUPT);
	memset(big, 0, sizeof(big));
	assert_rc(tdm_log_rec_check(big, sizeof(big), 0), TDM_ERR_EMPTY);
	assert_rc(tdm_log_rec_check(big, sizeof(big), 4096), TDM_ERR_EMPTY);
	assert_rc(tdm_log_rec_check(big, TDM_LOG_REC_HDR_SIZE, 123456 * 8), TDM_ERR_EMPTY);
	/* Another record's bytes at this position are rejected. */
	assert_ok(tdm_log_read(log, xs[1].pos, tmp, tdm_log_rec_span(9, 0)));
	assert_rc(tdm_log_rec_check(tmp, tdm_log_rec_span(9, 0), x->pos), TDM_ERR_CORRUPT);

	/* Everything becomes durable. */
	uint64_t tail = tdm_log_tail(log);
	assert_ok(tdm_log_flush_until(log, tail));
	assert_true(tdm_log_durable(log) >= tail);
	assert_true(tdm_log_written(log) >= tail);
	struct tdm_log_stats st;
	tdm_log_stats(log, &st);
	assert_true(st.batches >= 1);
	assert_u64(st.bytes_flushed, tdm_log_durable(log));
	assert_u64(st.io_errors, 0);
	tdm_log_close(NULL);

	/* A record whose length is a multiple of 8 (k 9, v 7: 56): flips of its length word's top
	 * bit must not turn it into something valid (a PAD is 0x80000000 | span, then zeros). */
	{
		uint8_t tmp2[64];
		const struct xrec *y = &xs[NS - 1];
		uint64_t ys = tdm_log_rec_span(y->klen, y->vlen);
		assert_u64(TDM_LOG_REC_HDR_SIZE + y->klen + y->vlen, ys);
		assert_ok(tdm_log_read(log, y->pos, tmp2, ys));
		assert_ok(tdm_log_rec_check(tmp2, ys, y->pos));
		tmp2[3] ^= 0x80;
		int rc = tdm_log_rec_check(tmp2, ys, y->pos);
		if (rc != TDM_ERR_CORRUPT)
			fail_msg("tdm_log_rec_check of a %" PRIu64 "-byte PUT whose length word got bit "
				 "31 flipped = %d (%s), want TDM_ERR_CORRUPT",
				 ys, rc, tdm_strerror(rc));
	}
}

/* ---- Wrap-around of the ring at every 8-byte alignment ---- */

#define WRAP_MAX_ALIGN 1024u
#define WRAP_CAP 20000u

static void test_ring_wrap_alignments(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	const uint64_t ring = 64 * KIB, seg = 256 * KIB;
	tlog_config(fx, &cfg, ring, seg);
	cfg.max_batch = 16 * KIB;
	assert_ok(tlog_open(fx, &cfg, &log));
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	struct xrec *xs = tlog_alloc(fx, WRAP_CAP * sizeof(*xs));
	g->seed = 0x77;
	uint32_t idx = 0;
	size_t n = 0;
	uint64_t ring_end = ring;

	/* a = bytes of the record before the ring end; 0: the record starts the ring. Then a few
	 * large straddles, up to the largest record (span ring/4, record.c). */
	uint32_t extra[] = {1536, 2048, 4000, 4096, 8192, 12344, 16000, 16328};
	uint32_t ncases = WRAP_MAX_ALIGN / 8 + 1 + sizeof(extra) / sizeof(extra[0]);
	for (uint32_t ci = 0; ci < ncases; ci++) {
		uint32_t a = ci <= WRAP_MAX_ALIGN / 8 ? ci * 8 : extra[ci - WRAP_MAX_ALIGN / 8 - 1];
		/* Next ring end that is not a segment boundary and leaves room for fillers. */
		uint64_t tail = tdm_log_tail(log);
		for (;;) {
			if (ring_end % seg != 0 && ring_end - a >= tail &&
			    (ring_end - a - tail == 0 || ring_end - a - tail >= 2 * 4096))
				break;
			ring_end += ring;
		}
		fill_to(log, g, ring_end - a, seg, &idx, xs, &n, WRAP_CAP);
		uint64_t h = tlog_mix(ci);
		uint32_t k = 9 + (uint32_t)(h % 40);
		uint32_t v = a + (uint32_t)((h >> 8) % 512);
		if (a > 64)
			v = a - k; /* also: header and key on one side, value split */
		if (tdm_log_rec_span(k, v) > ring / 4)
			v = (uint32_t)(ring / 4) - TDM_LOG_REC_HDR_SIZE - k;
		uint64_t end = 0;
		assert_true(n < WRAP_CAP);
		assert_ok(tlog_append_rec(log, g, idx++, k, v, TLOG_NODE, &xs[n], &end));
		if (xs[n].pos != ring_end - a)
			fail_msg("case a=%u: record at %" PRIu64 ", want %" PRIu64, a, xs[n].pos,
				 ring_end - a);
		assert_u64(end, xs[n].pos + tdm_log_rec_span(k, v));
		/* Read it while it is still in the ring (it straddles the ring end when a > 0). */
		check_read_rec(fx, log, &xs[n], g->seed);
		n++;
		ring_end += ring;
	}
	/* And everything again, now mostly from the segment files. */
	assert_ok(tdm_log_flush_until(log, tdm_log_tail(log)));
	tlog_verify(fx, log, 0, xs, n, g->seed, seg);
	for (size_t i = 0; i < n; i += 13)
		check_read_rec(fx, log, &xs[i], g->seed);
}

/* ---- PAD records at segment ends ---- */

#define PAD_CAP 20000u

static void segment_pad_body(struct tlog_fx *fx, uint64_t ring, uint64_t seg)
{
	struct tdm_log_config cfg;
	struct tdm_log *log;
	tlog_config(fx, &cfg, ring, seg);
	assert_ok(tlog_open(fx, &cfg, &log));
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	struct xrec *xs = tlog_alloc(fx, PAD_CAP * sizeof(*xs));
	g->seed = 0x9ad + ring;
	uint32_t idx = 0;
	size_t n = 0;
	uint32_t pads = 0;

	/* x = free bytes left in the segment; the next record is larger, so a PAD of x bytes fills
	 * the segment and the record starts the next one. x == span: exact fit, no PAD. */
	uint32_t xvals[] = {8,  16,  24,  32,  40,   48,   56,   64,   72,
			    80, 96, 128, 136, 200, 504, 1000, 4096, 4104, 10000};
	for (size_t ci = 0; ci < 2 * sizeof(xvals) / sizeof(xvals[0]); ci++) {
		uint32_t x = xvals[ci / 2];
		bool exact = ci % 2;
		if (exact && x < TDM_LOG_REC_HDR_SIZE)
			continue; /* no record is that small; PADs can be (record.c) */
		uint64_t tail = tdm_log_tail(log);
		uint64_t b = (tail / seg + 1) * seg;
		if (b - x < tail + 4096)
			b += seg;
		fill_to(log, g, b - x, seg, &idx, xs, &n, PAD_CAP);
		uint32_t k = 9, v;
		if (exact)
			v = x - TDM_LOG_REC_HDR_SIZE - k; /* x is a multiple of 8 >= 56 ... */
		else if (ci % 3 == 0) /* the largest record: span ring/4 (record.c) */
			v = (uint32_t)(ring / 4) - TDM_LOG_REC_HDR_SIZE - k;
		else
			v = x + 1 + (uint32_t)(tlog_mix(ci) % 700);
		if (exact && x < TDM_LOG_REC_HDR_SIZE + 9 + 7) {
			k = 0;
			v = x - TDM_LOG_REC_HDR_SIZE;
		}
		uint64_t end = 0;
		assert_true(n < PAD_CAP);
		assert_ok(tlog_append_rec(log, g, idx++, k, v, TLOG_NODE, &xs[n], &end));
		if (exact) {
			assert_u64(xs[n].pos, b - x);
			assert_u64(end, b);
		} else {
			if (xs[n].pos != b)
				fail_msg("x=%u: record of span %" PRIu64 " at %" PRIu64
					 ", want the next segment start %" PRIu64,
					 x, tdm_log_rec_span(k, v), xs[n].pos, b);
			assert_u64(end, b + tdm_log_rec_span(k, v));
			assert_nodiff(tlog_pad_diff(log, b - x, b, seg));
			pads++;
		}
		check_read_rec(fx, log, &xs[n], g->seed);
		n++;
	}
	/* Random traffic over several more segments (PADs wherever they fall). */
	tlog_append_until(log, g, tdm_log_tail(log) + 5 * seg + 123, &idx, xs, &n, PAD_CAP);
	assert_true(pads > 0);
	tlog_verify(fx, log, 0, xs, n, g->seed, seg);
	assert_ok(tdm_log_flush_until(log, tdm_log_tail(log)));
	tlog_verify(fx, log, 0, xs, n, g->seed, seg);
	/* A cursor can start at the first record of every segment. */
	for (size_t i = 1; i < n; i++)
		if (xs[i].pos % seg == 0)
			tlog_verify(fx, log, xs[i].pos, xs + i, n - i, g->seed, seg);
}

static void test_segment_pad_ring_eq_seg(void **state)
{
	segment_pad_body(*state, 64 * KIB, 64 * KIB);
}

static void test_segment_pad_ring_gt_seg(void **state)
{
	segment_pad_body(*state, 256 * KIB, 64 * KIB);
}

/* ---- Concurrent producers ---- */

#define PROD_RECORDS 50000u

struct producer {
	pthread_t tid;
	struct tdm_log *log;
	uint64_t seed;
	uint32_t id;
	uint32_t n;
	uint64_t *pos;
	atomic_bool *stop;
	atomic_int *done;
	int err;
	uint32_t err_at;
};

static void prod_sizes(uint64_t seed, uint32_t idx, uint32_t *k, uint32_t *v)
{
	uint64_t h = tlog_mix(seed ^ ((uint64_t)idx << 7));
	*k = 9 + (uint32_t)(h & 15);
	*v = (uint32_t)((h >> 8) % 200);
	if ((h >> 32) % 1000 == 0)
		*v = 4000 + (uint32_t)((h >> 16) % 4000);
}

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	struct tlog_gen *g = malloc(sizeof(*g));
	if (!g) {
		p->err = -ENOMEM;
		atomic_fetch_add(p->done, 1);
		return NULL;
	}
	g->seed = p->seed;
	for (uint32_t s = 0; s < p->n && !p->err; s++) {
		uint32_t idx = (p->id << 24) | s, k, v;
		struct tdm_log_entry e;
		prod_sizes(p->seed, idx, &k, &v);
		tlog_entry(g, &e, idx, k, v, TDM_LOG_REC_PUT, TLOG_NODE);
		uint64_t spins = 0;
		for (;;) {
			int rc = tdm_log_append(p->log, &e, &p->pos[s], NULL);
			if (rc == 0)
				break;
			if (rc != TDM_ERR_BACKPRESSURE || ++spins > 20000000 ||
			    atomic_load(p->stop)) {
				p->err = rc;
				p->err_at = s;
				break;
			}
			sched_yield();
		}
	}
	free(g);
	atomic_fetch_add(p->done, 1);
	return NULL;
}

struct posidx {
	uint64_t pos;
	uint32_t idx;
};

static int cmp_posidx(const void *a, const void *b)
{
	const struct posidx *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void producers_body(struct tlog_fx *fx, uint32_t np)
{
	struct tdm_log_config cfg;
	struct tdm_log *log;
	const uint64_t seg = 256 * KIB;
	tlog_config(fx, &cfg, 256 * KIB, seg);
	assert_ok(tlog_open(fx, &cfg, &log));
	uint64_t seed = 0x5000 + np;
	struct producer p[4];
	atomic_bool stop = false;
	atomic_int done = 0;
	uint64_t *posv = tlog_alloc(fx, (size_t)np * PROD_RECORDS * sizeof(uint64_t));
	assert_non_null(posv);
	memset(p, 0, sizeof(p));
	uint32_t started = 0;
	for (uint32_t i = 0; i < np; i++) {
		p[i] = (struct producer){.log = log, .seed = seed, .id = i, .n = PROD_RECORDS,
					 .pos = posv + (size_t)i * PROD_RECORDS, .stop = &stop,
					 .done = &done};
		if (pthread_create(&p[i].tid, NULL, producer_main, &p[i]) != 0)
			break;
		started++;
	}
	int ferr = 0;
	if (started == np) {
		uint64_t idle = 0;
		while (atomic_load(&done) < (int)np) {
			int w = tdm_log_flusher_do_work(log);
			if (w < 0) {
				ferr = w;
				break;
			}
			if (w == 0 && ++idle % 16 == 0)
				sched_yield();
		}
	}
	atomic_store(&stop, true);
	for (uint32_t i = 0; i < started; i++)
		pthread_join(p[i].tid, NULL);
	assert_int_equal(started, np);
	assert_rc(ferr, 0);
	for (uint32_t i = 0; i < np; i++)
		if (p[i].err)
			fail_msg("producer %u: append of record %u = %d (%s)", i, p[i].err_at,
				 p[i].err, tdm_strerror(p[i].err));
	assert_ok(tdm_log_flush_until(log, tdm_log_tail(log)));
	assert_true(tdm_log_durable(log) >= tdm_log_tail(log));

	/* Each producer's records are in its own order; all positions together are unique. */
	size_t total = (size_t)np * PROD_RECORDS;
	struct posidx *pi = tlog_alloc(fx, total * sizeof(*pi));
	struct xrec *xs = tlog_alloc(fx, total * sizeof(*xs));
	assert_non_null(pi);
	assert_non_null(xs);
	for (uint32_t i = 0; i < np; i++) {
		for (uint32_t s = 0; s < PROD_RECORDS; s++) {
			uint64_t pos = p[i].pos[s];
			if (s > 0 && pos <= p[i].pos[s - 1])
				fail_msg("producer %u: record %u at %" PRIu64 " not after record %u "
					 "at %" PRIu64,
					 i, s, pos, s - 1, p[i].pos[s - 1]);
			pi[(size_t)i * PROD_RECORDS + s] = (struct posidx){pos, (i << 24) | s};
		}
	}
	qsort(pi, total, sizeof(*pi), cmp_posidx);
	for (size_t j = 0; j < total; j++) {
		uint32_t k, v;
		prod_sizes(seed, pi[j].idx, &k, &v);
		xs[j] = (struct xrec){.pos = pi[j].pos, .idx = pi[j].idx, .klen = k, .vlen = v,
				      .type = TDM_LOG_REC_PUT, .origin = TLOG_NODE};
	}
	/* A cursor from 0 sees every record exactly once, contiguous, in position order. */
	tlog_verify(fx, log, 0, xs, total, seed, seg);
	struct tdm_log_stats st;
	tdm_log_stats(log, &st);
	assert_u64(st.io_errors, 0);
	assert_true(st.batches >= 1);
}

static void test_producers_2(void **state)
{
	producers_body(*state, 2);
}

static void test_producers_4(void **state)
{
	producers_body(*state, 4);
}

/* ---- The same bytes from the ring and from segment files; reopen ---- */

#define RS_CAP 40000u

static void test_ring_and_segment_reads(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	const uint64_t seg = 64 * KIB;
	tlog_config(fx, &cfg, 64 * KIB, seg);
	assert_ok(tlog_open(fx, &cfg, &log));
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	struct xrec *xs = tlog_alloc(fx, RS_CAP * sizeof(*xs));
	g->seed = 0x4242;
	uint32_t idx = 0;
	size_t n = 0;
	tlog_append_until(log, g, 1024 * KIB, &idx, xs, &n, RS_CAP);

	/* The newest ~24 KiB are still in the ring: keep a copy read from there. */
	uint64_t tail1 = tdm_log_tail(log);
	size_t a_i = n;
	while (a_i > 0 && xs[a_i - 1].pos >= tail1 - 24 * KIB)
		a_i--;
	uint64_t a = xs[a_i].pos;
	uint8_t *ring_copy = tlog_alloc(fx, tail1 - a);
	assert_ok(tlog_read(log, a, ring_copy, tail1 - a));

	/* One read of the whole stream, then reads of odd sizes and places must agree with it. */
	uint8_t *img = tlog_alloc(fx, 4 * 1024 * KIB);
	assert_non_null(img);
	assert_ok(tdm_log_read(log, 0, img, tail1));
	assert_memory_equal(img + a, ring_copy, tail1 - a);
	for (size_t i = 0; i < n; i++) {
		uint64_t span = tdm_log_rec_span(xs[i].klen, xs[i].vlen);
		assert_ok(tdm_log_rec_check(img + xs[i].pos, span, xs[i].pos));
		struct tdm_log_rec r = {.hdr = (const void *)(img + xs[i].pos),
					.key = img + xs[i].pos + TDM_LOG_REC_HDR_SIZE,
					.value = img + xs[i].pos + TDM_LOG_REC_HDR_SIZE + xs[i].klen};
		assert_nodiff(tlog_rec_diff(&r, &xs[i], g->seed));
	}
	uint8_t *chunk = tlog_alloc(fx, 256 * KIB);
	assert_non_null(chunk);
	const uint64_t steps[] = {1, 7, 4093, 65536, 65537, 100003, 8, 40};
	uint64_t off = 3;
	for (int s = 0; off < tail1; s++) {
		uint64_t len = steps[s % 8];
		if (len > tail1 - off)
			len = tail1 - off;
		assert_ok(tdm_log_read(log, off, chunk, len));
		if (memcmp(chunk, img + off, len) != 0)
			fail_msg("tdm_log_read(%" PRIu64 ", %" PRIu64 ") differs from the whole-stream "
				 "read",
				 off, len);
		off += len + (uint64_t)(s % 5) * 1000;
	}
	for (uint64_t b = seg; b + 100 < tail1; b += seg) {
		assert_ok(tdm_log_read(log, b - 100, chunk, 200));
		assert_memory_equal(chunk, img + b - 100, 200);
	}
	tlog_verify(fx, log, 0, xs, n, g->seed, seg);

	/* Move on so [a, tail1) is only in segment files: same bytes. */
	tlog_append_until(log, g, tail1 + 200 * KIB, &idx, xs, &n, RS_CAP);
	assert_ok(tdm_log_flush_until(log, tdm_log_tail(log)));
	assert_ok(tdm_log_read(log, a, chunk, tail1 - a));
	assert_memory_equal(chunk, ring_copy, tail1 - a);
	uint64_t tail2 = tdm_log_tail(log);
	assert_true(tail2 <= 4 * 1024 * KIB);
	assert_ok(tdm_log_read(log, 0, img, tail2));

	/* Close and reopen: everything now comes from segment files. */
	tlog_close(fx, log);
	assert_ok(tlog_open(fx, &cfg, &log));
	assert_u64(tdm_log_recovery(log)->end, tail2);
	uint8_t *img2 = chunk;
	for (uint64_t o = 0; o < tail2; o += 256 * KIB) {
		uint64_t len = tail2 - o < 256 * KIB ? tail2 - o : 256 * KIB;
		assert_ok(tdm_log_read(log, o, img2, len));
		if (memcmp(img2, img + o, len) != 0)
			fail_msg("after reopen, bytes [%" PRIu64 ", +%" PRIu64 ") differ", o, len);
	}
	tlog_verify(fx, log, 0, xs, n, g->seed, seg);
	for (size_t i = 0; i < n; i += 37)
		check_read_rec(fx, log, &xs[i], g->seed);
}

/* ---- Close, reopen, epochs ---- */

#define RO_CAP 4000u

/* Scan with a cursor from 0 and give every record's epoch to xs (EPOCH records too). */
static void test_reopen_and_epochs(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config cfg;
	struct tdm_log *log;
	const uint64_t seg = 64 * KIB;
	tlog_config(fx, &cfg, 64 * KIB, seg);
	assert_ok(tlog_open(fx, &cfg, &log));
	struct tlog_gen *g = tlog_alloc(fx, sizeof(*g));
	struct xrec *xs = tlog_alloc(fx, RO_CAP * sizeof(*xs));
	g->seed = 0xe90c;
	uint32_t idx = 0;
	size_t n = 0;
	struct tdm_log_epoch_start hist[8];
	assert_int_equal(tdm_log_epoch(log), 0);
	assert_int_equal(tdm_log_history_read(fx->dir, hist, 8), 0);

	tlog_append_until(log, g, 100 * KIB, &idx, xs, &n, RO_CAP);
	/* Epoch 1, then 5; refusals in between. */
	uint64_t p1 = tdm_log_tail(log);
	assert_ok(tdm_log_begin_epoch(log, 1, 1000));
	assert_int_equal(tdm_log_epoch(log), 1);
	assert_true(tdm_log_tail(log) > p1);
	tlog_append_until(log, g, tdm_log_tail(log) + 30 * KIB, &idx, xs, &n, RO_CAP);
	assert_rc(tdm_log_begin_epoch(log, 1, 1001), -EINVAL);
	assert_rc(tdm_log_begin_epoch(log, 0, 1001), -EINVAL);
	assert_int_equal(tdm_log_epoch(log), 1);
	uint64_t p5 = tdm_log_tail(log);
	assert_ok(tdm_log_begin_epoch(log, 5, 2000));
	assert_int_equal(tdm_log_epoch(log), 5);
	tlog_append_until(log, g, tdm_log_tail(log) + 20 * KIB, &idx, xs, &n, RO_CAP);

	assert_int_equal(tdm_log_history_read(fx->dir, hist, 8), 2);
	assert_int_equal(hist[0].epoch, 1);
	assert_int_equal(hist[1].epoch, 5);
	/* The EPOCH records are where the history says (after a PAD at most). */
	assert_true(hist[0].start >= p1 && hist[0].start < p1 + seg);
	assert_true(hist[1].start >= p5 && hist[1].start < p5 + seg);
	uint64_t starts[2] = {hist[0].start, hist[1].start};
	uint32_t prevs[2] = {0, 1}, eps[2] = {1, 5};
	uint64_t hlcs[2] = {1000, 2000};
	for (int k = 0; k < 2; k++) {
		struct tdm_log_cursor *c = tlog_cursor(fx, log, starts[k]);
		struct tdm_log_rec r;
		assert_ok(tdm_log_cursor_next(c, &r));
		assert_int_equal(r.hdr->type, TDM_LOG_REC_EPOCH);
		assert_u64(r.hdr->position, starts[k]);
		assert_int_equal(r.hdr->epoch, eps[k]);
		assert_u64(r.hdr->hlc, hlcs[k]);
		assert_int_equal(r.hdr->value_len, 8);
		uint64_t prev;
		memcpy(&prev, r.value, 8);
		assert_u64(prev, prevs[k]);
		tlog_cursor_free(fx, c);
	}
	/* Records after an epoch carry it. */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(xs[i].epoch, xs[i].pos > starts[1] ? 5 : xs[i].pos > starts[0] ? 1 : 0);

	uint64_t tail = tdm_log_tail(log);
	assert_ok(tdm_log_flush_until(log, tail));
	tlog_close(fx, log);
	char names[64][32];
	int nseg = tlog_segments(fx->dir, names, 64);
	assert_true(nseg >= 2);

	assert_ok(tlog_open(fx, &cfg, &log));
	const struct tdm_log_recovery *rv = tdm_log_recovery(log);
	assert_u64(rv->end, tail);
	assert_u64(rv->start, 0);
	assert_u64(rv->bytes_cut, 0);
	assert_string_equal(rv->cut_file, "");
	assert_int_equal(rv->segments, nseg);
	assert_u64(tdm_log_tail(log), tail);
	assert_u64(tdm_log_durable(log), tail);
	assert_u64(tdm_log_written(log), tail);
	assert_u64(tdm_log_start(log), 0);
	assert_int_equal(tdm_log_epoch(log), 5);
	assert_int_equal(tdm_log_history_read(fx->dir, hist, 8), 2);

	/* Appends continue at the old tail. */
	uint64_t end = 0;
	assert_true(n < RO_CAP);
	assert_ok(tlog_append_rec(log, g, idx++, 9, 100, TLOG_NODE, &xs[n], &end));
	if (xs[n].pos != tail) {
		assert_u64(xs[n].pos % seg, 0);
		assert_nodiff(tlog_pad_diff(log, tail, xs[n].pos, seg));
	}
	assert_int_equal(xs[n].epoch, 5);
	n++;
	assert_ok(tdm_log_begin_epoch(log, 6, 3000));
	assert_int_equal(tdm_log_history_read(fx->dir, hist, 8), 3);
	assert_int_equal(hist[2].epoch, 6);
	assert_true(hist[2].start >= end);
	tlog_append_until(log, g, tdm_log_tail(log) + 5 * KIB, &idx, xs, &n, RO_CAP);

	/* A cursor from 0 sees both sessions (EPOCH records interleaved: skip them by
	 * verifying the stretches between them). */
	uint64_t cuts[3] = {hist[0].start, hist[1].start, hist[2].start};
	size_t from_i = 0;
	for (int k = 0; k <= 3; k++) {
		uint64_t lim = k < 3 ? cuts[k] : UINT64_MAX;
		size_t to_i = from_i;
		while (to_i < n && xs[to_i].pos < lim)
			to_i++;
		uint64_t from = from_i == 0 ? 0 : xs[from_i].pos;
		struct tdm_log_cursor *c = tlog_cursor(fx, log, from);
		for (size_t i = from_i; i < to_i; i++) {
			struct tdm_log_rec r;
			assert_ok(tdm_log_cursor_next(c, &r));
			assert_nodiff(tlog_rec_diff(&r, &xs[i], g->seed));
		}
		if (k < 3) {
			struct tdm_log_rec r;
			assert_ok(tdm_log_cursor_next(c, &r));
			assert_int_equal(r.hdr->type, TDM_LOG_REC_EPOCH);
			assert_u64(r.hdr->position, cuts[k]);
		}
		tlog_cursor_free(fx, c);
		from_i = to_i;
	}
	assert_int_equal(from_i, n);
	uint64_t tail2 = tdm_log_tail(log);
	tlog_close(fx, log);
	assert_ok(tlog_open(fx, &cfg, &log));
	assert_u64(tdm_log_recovery(log)->end, tail2);
	assert_int_equal(tdm_log_epoch(log), 6);
}

/* ---- Replica side: copying records at the same positions ---- */

/* Copy log a into log b with tdm_log_append_at / tdm_log_pad_at, as a receiver does. */
static void copy_log(struct tlog_fx *fx, struct tdm_log *a, struct tdm_log *b, uint64_t end)
{
	static uint8_t buf[TLOG_BUF + 512];
	struct tdm_log_cursor *c = tlog_cursor(fx, a, 0);
	struct tdm_log_rec r;

	while (tdm_log_tail(b) < end) {
		assert_ok(tdm_log_cursor_next(c, &r));
		uint64_t pos = r.hdr->position, tail = tdm_log_tail(b);
		if (pos > tail) /* a PAD in a */
			assert_ok(tdm_log_pad_at(b, tail, pos - tail));
		uint64_t span = tdm_log_rec_span(r.hdr->key_len, r.hdr->value_len);
		memset(buf, 0, span);
		memcpy(buf, r.hdr, r.hdr->length);
		assert_int_equal(tdm_log_append_at(b, pos + 8, buf, span), -EINVAL);
		assert_int_equal(tdm_log_append_at(b, pos, buf, span - 8), -EINVAL);
		int rc;
		while ((rc = tdm_log_append_at(b, pos, buf, span)) == TDM_ERR_BACKPRESSURE)
			assert_true(tdm_log_flusher_do_work(b) >= 0);
		assert_ok(rc);
		assert_true(tdm_log_flusher_do_work(b) >= 0);
	}
	tlog_cursor_free(fx, c);
}

static void test_append_at(void **state)
{
	struct tlog_fx *fx = *state;
	struct tdm_log_config ca, cb;
	struct tdm_log *a, *b;
	struct tlog_gen g = { .seed = 77 };
	static struct xrec xs[4096];
	static uint8_t ba[64 * KIB], bb[64 * KIB];
	char dir_b[320];
	uint32_t idx = 0;
	size_t n = 0;

	tlog_config(fx, &ca, 256 * KIB, 64 * KIB);
	assert_ok(tlog_open(fx, &ca, &a));
	tlog_append_until(a, &g, 600 * KIB, &idx, xs, &n, 4096);
	uint64_t end = tdm_log_tail(a);
	assert_ok(tdm_log_flush_until(a, end));

	snprintf(dir_b, sizeof(dir_b), "%s/copy", fx->tmp);
	cb = ca;
	cb.dir = dir_b;
	cb.shm_name = fx->shm2;
	assert_ok(tlog_open(fx, &cb, &b));
	assert_int_equal(tdm_log_append_at(b, 8, xs, 64), -EINVAL); /* not records */
	assert_int_equal(tdm_log_pad_at(b, 0, 64), -EINVAL);        /* not to a segment end */
	copy_log(fx, a, b, end);
	/* The tail is past 0 now: a valid record at an old position is refused. */
	uint64_t span0 = tdm_log_rec_span(xs[0].klen, xs[0].vlen);
	assert_ok(tlog_read(a, 0, ba, span0));
	assert_int_equal(tdm_log_append_at(b, 0, ba, span0), -ESPIPE);
	assert_ok(tdm_log_flush_until(b, end));
	for (uint64_t pos = 0; pos < end; pos += sizeof(ba)) {
		size_t len = end - pos < sizeof(ba) ? (size_t)(end - pos) : sizeof(ba);
		assert_ok(tlog_read(a, pos, ba, len));
		assert_ok(tlog_read(b, pos, bb, len));
		assert_memory_equal(ba, bb, len);
	}
	for (size_t i = 0; i < n; i += 97)
		check_read_rec(fx, b, &xs[i], g.seed);
	tlog_close(fx, b);
	assert_ok(tlog_open(fx, &cb, &b));
	assert_u64(tdm_log_recovery(b)->end, end);
}

/* ---- Groups and main ---- */

#define T(f) cmocka_unit_test_setup_teardown(f, tlog_setup, tlog_teardown)

int tlog_run_unit(void)
{
	struct CMUnitTest tests[48] = {
		T(test_format_crc_names),
		T(test_record_roundtrip),
		T(test_ring_wrap_alignments),
		T(test_segment_pad_ring_eq_seg),
		T(test_segment_pad_ring_gt_seg),
		T(test_producers_2),
		T(test_producers_4),
		T(test_ring_and_segment_reads),
		T(test_reopen_and_epochs),
		T(test_append_at),
	};
	int n = 0;
	while (tests[n].name)
		n++;
	n += tlog_unit_proc_tests(tests + n, 48 - n);
	n += tlog_unit_truncate_tests(tests + n, 48 - n);
	return _cmocka_run_group_tests("log-unit", tests, (size_t)n, NULL, NULL);
}

/* Exit 77 (skip) when this machine cannot run the log at all. */
static void require_machine(void)
{
	struct io_uring ring;
	int rc = io_uring_queue_init(4, &ring, 0);
	if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES) {
		fprintf(stderr,
			"SKIP: io_uring_queue_init failed with %d (%s): io_uring is not available "
			"(old kernel, kernel.io_uring_disabled or a seccomp filter)\n",
			rc, strerror(-rc));
		exit(77);
	}
	if (rc == 0)
		io_uring_queue_exit(&ring);
	if (access("/dev/shm", W_OK) != 0) {
		fprintf(stderr, "SKIP: /dev/shm is missing or not writable: the ring lives there\n");
		exit(77);
	}
}

int main(int argc, char **argv)
{
	const char *group = argc > 1 ? argv[1] : "";
	bool unit = !*group || !strcmp(group, "unit");
	bool fault = !*group || !strcmp(group, "fault");
	if (!unit && !fault) {
		fprintf(stderr, "usage: %s [unit|fault]\n", argv[0]);
		return 2;
	}
	require_machine();
	int failed = 0;
	if (unit)
		failed += tlog_run_unit();
	if (fault)
		failed += tlog_run_fault();
	return failed ? 1 : 0;
}
