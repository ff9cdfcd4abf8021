/*
 * cmocka tests of the dataplane in one process: frame checks, node-level validation and drop
 * counters, a fuzz-style run (random, truncated and mutated frames never crash the receiver
 * and never reach the consumer), bad configurations, control frames (HELLO, VOTE_REQUEST, VOTE)
 * of every payload size up to the largest, and a sender and a receiver run by one thread over
 * UDP loopback.
 *
 * Usage: test_dp [unit]
 */
#include "tdp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp_pvt.h"

/* ---- Building frames by hand ---- */

/* A record for seq at pos, written into buf (returns its span). */
static uint32_t make_record(uint8_t *buf, uint64_t seq, uint64_t pos, uint32_t vlen)
{
	struct tdm_log_rec_hdr h = {
		.position = pos, .hlc = seq, .epoch = 1, .origin = TDP_SENDER,
		.type = TDM_LOG_REC_PUT, .key_len = 8, .value_len = vlen,
	};
	uint32_t len = TDM_LOG_REC_HDR_SIZE + 8 + vlen, span = tdm_dp_span_of(len), crc;

	h.length = len;
	memset(buf, 0, span);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + TDM_LOG_REC_HDR_SIZE, &seq, 8);
	tdp_value_fill(seq, buf + TDM_LOG_REC_HDR_SIZE + 8, vlen);
	crc = tdm_crc32c(tdm_crc32c(0, buf, 4), buf + 8, len - 8);
	memcpy(buf + 4, &crc, 4);
	return span;
}

static uint32_t frame_hdr(uint8_t *f, unsigned type, uint64_t pos, uint16_t src, uint16_t dst)
{
	struct tdm_dp_hdr *h = (struct tdm_dp_hdr *)f;

	tdm_dp_hdr_fill(h, type, TDP_CLUSTER, src, dst, 1, 0);
	h->position = pos;
	return TDM_DP_HDR_SIZE;
}

/* A DATA frame holding records first..first+n-1 from pos (value length from tdp_value_len,
 * capped so they fit). @return frame length; *end = position after. */
static uint32_t make_data(uint8_t *f, uint64_t first, int n, uint64_t pos, uint64_t *end)
{
	uint32_t off = frame_hdr(f, TDM_DP_DATA, pos, TDP_SENDER, TDP_RECEIVER);

	for (int i = 0; i < n; i++) {
		uint32_t vlen = tdp_value_len(first + i) % 200;
		uint32_t span = make_record(f + off, first + i, pos, vlen);
		off += span;
		pos += span;
	}
	tdm_dp_frame_seal(f, off - TDM_DP_HDR_SIZE);
	*end = pos;
	return off;
}

/* ---- Frame checks ---- */

static void test_frame_check(void **state)
{
	static uint8_t f[2048];
	uint64_t end;
	uint32_t len;
	struct tdm_dp_status_payload sp = { 1, 2, 3, 4 };

	(void)state;
	len = make_data(f, 0, 3, 0, &end);
	assert_int_equal(tdm_dp_frame_check(f, len), 0);
	assert_int_equal(tdm_dp_frame_check(f, len - 1), -(1 + TDM_DP_DROP_SHORT));
	assert_int_equal(tdm_dp_frame_check(f, 47), -(1 + TDM_DP_DROP_SHORT));
	f[0] ^= 1;
	assert_int_equal(tdm_dp_frame_check(f, len), -(1 + TDM_DP_DROP_MAGIC));
	f[0] ^= 1;
	f[4] = 9;
	assert_int_equal(tdm_dp_frame_check(f, len), -(1 + TDM_DP_DROP_VERSION));
	f[4] = TDM_DP_FRAME_VERSION;
	f[20] ^= 1; /* epoch: covered by the header CRC */
	assert_int_equal(tdm_dp_frame_check(f, len), -(1 + TDM_DP_DROP_CHECKSUM));
	f[20] ^= 1;
	f[5] = 99;
	assert_int_equal(tdm_dp_frame_check(f, len), -(1 + TDM_DP_DROP_TYPE));
	f[5] = TDM_DP_DATA;
	/* A resealed frame whose record length runs past the payload. */
	f[TDM_DP_HDR_SIZE] = 0xff;
	tdm_dp_frame_seal(f, len - TDM_DP_HDR_SIZE);
	assert_int_equal(tdm_dp_frame_check(f, len), -(1 + TDM_DP_DROP_PAYLOAD));

	len = frame_hdr(f, TDM_DP_STATUS, 5, TDP_RECEIVER, TDP_SENDER);
	memcpy(f + len, &sp, sizeof(sp));
	tdm_dp_frame_seal(f, sizeof(sp));
	assert_int_equal(tdm_dp_frame_check(f, len + sizeof(sp)), 0);
	f[len + 3] ^= 0x10; /* control payloads are covered by the header CRC */
	assert_int_equal(tdm_dp_frame_check(f, len + sizeof(sp)), -(1 + TDM_DP_DROP_CHECKSUM));
	tdm_dp_frame_seal(f, 8); /* a STATUS of the wrong size */
	assert_int_equal(tdm_dp_frame_check(f, len + 8), -(1 + TDM_DP_DROP_PAYLOAD));

	assert_string_equal(tdm_dp_frame_type_name(TDM_DP_NAK), "NAK");
	assert_string_equal(tdm_dp_frame_type_name(200), "?");
	assert_string_equal(tdm_dp_drop_reason_name(TDM_DP_DROP_EPOCH), "stale_epoch");
}

/* ---- A receiving node fed by injection ---- */

struct fuzz_consumer {
	uint64_t next;  /* next seq expected */
	uint64_t bad;   /* records that were not the next expected one */
};

static int fuzz_on_record(void *ctx, const struct tdm_log_rec *rec)
{
	struct fuzz_consumer *c = ctx;
	uint8_t buf[512];

	/* Rebuild what record c->next must be and compare every byte. */
	uint32_t span = make_record(buf, c->next, rec->hdr->position,
				    tdp_value_len(c->next) % 200);
	if (tdm_dp_span_of(rec->hdr->length) != span || memcmp(rec->hdr, buf, rec->hdr->length))
		c->bad++;
	c->next++;
	return 0;
}

static struct tdm_dp *receiving_node(const char *tag, struct fuzz_consumer *cons,
				     struct tdm_dp_receiver **r)
{
	struct tdm_dp_config cfg;
	struct tdm_dp_receiver_config rc;
	struct tdm_dp *dp;

	tdp_transport_config(&cfg, TDM_DP_BACKEND_UDP, TDP_RECEIVER, tag);
	cfg.epoch = 1;
	assert_int_equal(tdm_dp_create(&cfg, &dp), 0);
	tdm_dp_receiver_config_defaults(&rc);
	rc.peer = TDP_SENDER;
	rc.on_record = fuzz_on_record;
	rc.ctx = cons;
	assert_int_equal(tdm_dp_receiver_add(dp, &rc, r), 0);
	return dp;
}

static void test_node_checks(void **state)
{
	static uint8_t f[2048];
	struct fuzz_consumer cons = { 0, 0 };
	struct tdm_dp_receiver *r;
	struct tdm_dp *dp = receiving_node("chk", &cons, &r);
	struct tdm_dp_hdr *h = (struct tdm_dp_hdr *)f;
	struct tdm_dp_stats st;
	uint64_t end;
	uint32_t len = make_data(f, 0, 2, 0, &end);

	(void)state;
	h->cluster_id = 7;
	tdm_dp_frame_seal(f, len - TDM_DP_HDR_SIZE);
	assert_int_equal(tdm_dp_inject(dp, f, len), -(1 + TDM_DP_DROP_CLUSTER));
	h->cluster_id = TDP_CLUSTER;
	h->dst = 9;
	tdm_dp_frame_seal(f, len - TDM_DP_HDR_SIZE);
	assert_int_equal(tdm_dp_inject(dp, f, len), -(1 + TDM_DP_DROP_DEST));
	h->dst = TDP_RECEIVER;
	h->src = 5;
	tdm_dp_frame_seal(f, len - TDM_DP_HDR_SIZE);
	assert_int_equal(tdm_dp_inject(dp, f, len), -(1 + TDM_DP_DROP_SOURCE));
	h->src = TDP_SENDER;
	h->stream = 3;
	tdm_dp_frame_seal(f, len - TDM_DP_HDR_SIZE);
	assert_int_equal(tdm_dp_inject(dp, f, len), -(1 + TDM_DP_DROP_STREAM));
	h->stream = 0;
	tdm_dp_set_epoch(dp, 2);
	tdm_dp_frame_seal(f, len - TDM_DP_HDR_SIZE);
	assert_int_equal(tdm_dp_inject(dp, f, len), -(1 + TDM_DP_DROP_EPOCH));
	assert_int_equal(cons.next, 0); /* none of them reached the consumer */
	h->epoch = 2;
	tdm_dp_frame_seal(f, len - TDM_DP_HDR_SIZE);
	assert_int_equal(tdm_dp_inject(dp, f, len), 0);
	assert_int_equal(cons.next, 2);
	assert_int_equal(cons.bad, 0);
	tdm_dp_stats(dp, &st);
	assert_int_equal(st.drops[TDM_DP_DROP_CLUSTER], 1);
	assert_int_equal(st.drops[TDM_DP_DROP_DEST], 1);
	assert_int_equal(st.drops[TDM_DP_DROP_SOURCE], 1);
	assert_int_equal(st.drops[TDM_DP_DROP_STREAM], 1);
	assert_int_equal(st.drops[TDM_DP_DROP_EPOCH], 1);
	assert_int_equal(st.rx_frames, 1);
	tdm_dp_destroy(dp);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Variants of a valid frame that must never deliver a wrong record. */
static void inject_garbage(struct tdm_dp *dp, const uint8_t *valid, uint32_t len, uint64_t *s)
{
	static uint8_t g[4096];

	for (int k = 0; k < 12; k++) {
		uint32_t glen = len;
		memcpy(g, valid, len);
		switch (k % 4) {
		case 0: /* random bytes, random length */
			glen = (uint32_t)(rnd(s) % sizeof(g));
			for (uint32_t i = 0; i < glen; i++)
				g[i] = (uint8_t)rnd(s);
			break;
		case 1: /* truncated */
			glen = (uint32_t)(rnd(s) % len);
			break;
		case 2: /* a flipped bit anywhere */
			g[rnd(s) % len] ^= (uint8_t)(1u << (rnd(s) % 8));
			break;
		case 3: /* a flipped payload bit under a valid header CRC */
			g[TDM_DP_HDR_SIZE + rnd(s) % (len - TDM_DP_HDR_SIZE)] ^=
				(uint8_t)(1u << (rnd(s) % 8));
			tdm_dp_frame_seal(g, len - TDM_DP_HDR_SIZE);
			break;
		}
		tdm_dp_inject(dp, g, glen);
	}
}

static void test_fuzz_receiver(void **state)
{
	static uint8_t f[4096];
	struct fuzz_consumer cons = { 0, 0 };
	struct tdm_dp_receiver *r;
	struct tdm_dp *dp = receiving_node("fuzz", &cons, &r);
	struct tdm_dp_receiver_stats rs;
	struct tdm_dp_stats st;
	uint64_t seed = 0x1234567, pos = 0, seq = 0;
	int frames = 3000;

	(void)state;
	for (int i = 0; i < frames; i++) {
		int n = 1 + (int)(rnd(&seed) % 5);
		uint64_t end;
		uint32_t len = make_data(f, seq, n, pos, &end);

		inject_garbage(dp, f, len, &seed);
		assert_int_equal(cons.bad, 0);
		tdm_dp_inject(dp, f, len); /* the valid frame (may be a duplicate by now) */
		assert_int_equal(cons.next, seq + (uint64_t)n);
		seq += (uint64_t)n;
		pos = end;
		if (i % 64 == 0)
			tdm_dp_do_work(dp); /* let replies go out */
	}
	tdm_dp_receiver_stats(r, &rs);
	tdm_dp_stats(dp, &st);
	assert_int_equal(cons.bad, 0);
	assert_true(rs.received == pos);
	assert_true(rs.bad_records > 0); /* mutated records were caught by their CRCs */
	assert_true(st.drops[TDM_DP_DROP_CHECKSUM] > 0);
	assert_true(st.drops[TDM_DP_DROP_SHORT] > 0);
	assert_true(st.drops[TDM_DP_DROP_MAGIC] > 0);
	printf("fuzz: %d valid frames, %" PRIu64 " records, %" PRIu64 " bad records caught\n",
	       frames, seq, rs.bad_records);
	for (unsigned i = 0; i < TDM_DP_DROP_REASONS; i++)
		printf("  dropped %-12s %" PRIu64 "\n", tdm_dp_drop_reason_name(i), st.drops[i]);
	tdm_dp_destroy(dp);
}

/* ---- Bad configurations ---- */

static void test_bad_config(void **state)
{
	struct fuzz_consumer cons = { 0, 0 };
	struct tdm_dp_receiver *r, *r2;
	struct tdm_dp *dp = receiving_node("cfg", &cons, &r);
	struct tdm_dp_receiver_config rc;
	struct tdm_dp_sender_config sc;
	struct tdm_dp_sender *s;
	uint8_t payload[8] = { 0 };

	(void)state;
	tdm_dp_receiver_config_defaults(&rc);
	rc.peer = TDP_SENDER;
	rc.on_record = fuzz_on_record;
	assert_int_equal(tdm_dp_receiver_add(dp, &rc, &r2), -EEXIST);
	rc.stream = 1;
	rc.peer = 77;
	assert_int_equal(tdm_dp_receiver_add(dp, &rc, &r2), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "77"));
	rc.peer = TDP_SENDER;
	rc.on_record = NULL;
	assert_int_equal(tdm_dp_receiver_add(dp, &rc, &r2), -EINVAL);
	tdm_dp_sender_config_defaults(&sc);
	sc.peer = 77;
	assert_int_equal(tdm_dp_sender_add(dp, &sc, NULL, &s), -EINVAL);
	assert_int_equal(tdm_dp_send_control(dp, TDP_SENDER, TDM_DP_DATA, payload, 8), -EINVAL);
	assert_int_equal(tdm_dp_send_control(dp, TDP_SENDER, TDM_DP_HELLO, payload, 8), 0);
	tdm_dp_destroy(dp);
}

/* ---- Control frames between two nodes over UDP loopback ---- */

struct got_control {
	int n;
	uint16_t src;
	unsigned type;
	uint32_t epoch, len;
	uint8_t payload[TDM_DP_MAX_MTU];
};

static void on_got_control(void *ctx, uint16_t src, unsigned type, uint32_t epoch,
			   const void *payload, uint32_t len)
{
	struct got_control *g = ctx;

	g->n++;
	g->src = src;
	g->type = type;
	g->epoch = epoch;
	g->len = len;
	memcpy(g->payload, payload, len < sizeof(g->payload) ? len : sizeof(g->payload));
}

/* Send one control frame a -> b and poll b until it arrives; check it byte for byte. */
static void control_roundtrip(struct tdm_dp *a, struct tdm_dp *b, struct got_control *g,
			      unsigned type, uint32_t len)
{
	static uint8_t payload[TDM_DP_MAX_MTU];

	for (uint32_t i = 0; i < len; i++)
		payload[i] = (uint8_t)(i * 7u + len + type);
	g->n = 0;
	assert_int_equal(tdm_dp_send_control(a, TDP_RECEIVER, type, payload, len), 0);
	for (int round = 0; g->n == 0 && round < 200000; round++)
		if (tdm_dp_do_work(b) == 0 && round > 1000)
			usleep(100);
	assert_int_equal(g->n, 1);
	assert_int_equal(g->src, TDP_SENDER);
	assert_int_equal(g->type, type);
	assert_int_equal(g->epoch, 5);
	assert_int_equal(g->len, len);
	if (len)
		assert_memory_equal(g->payload, payload, len);
}

/* The engine's handshake payload grows to about 350 bytes: every size up to the largest an MTU
 * allows goes through, a byte more is refused, and an older epoch still reaches the callback. */
static void test_control_payloads(void **state)
{
	static const uint32_t sizes[] = { 0, 1, 24, 350, 400, 401, 1000 };
	static struct got_control g;
	struct tdm_dp_config ca, cb;
	struct tdm_dp *a, *b;
	struct tdm_dp_stats st;
	uint32_t max = TDM_DP_DEFAULT_MTU - TDM_DP_LOWER_HDRS - TDM_DP_HDR_SIZE;
	uint8_t big[TDM_DP_DEFAULT_MTU] = { 0 };

	(void)state;
	tdp_transport_config(&ca, TDM_DP_BACKEND_UDP, TDP_SENDER, "ctl");
	tdp_transport_config(&cb, TDM_DP_BACKEND_UDP, TDP_RECEIVER, "ctl");
	ca.epoch = 5;
	cb.epoch = 9; /* control frames pass an older epoch: the engine judges it */
	assert_int_equal(tdm_dp_create(&ca, &a), 0);
	assert_int_equal(tdm_dp_create(&cb, &b), 0);
	tdm_dp_on_control(b, on_got_control, &g);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		control_roundtrip(a, b, &g, TDM_DP_HELLO, sizes[i]);
	control_roundtrip(a, b, &g, TDM_DP_VOTE_REQUEST, 400);
	control_roundtrip(a, b, &g, TDM_DP_VOTE, max);
	control_roundtrip(a, b, &g, TDM_DP_HELLO, max);
	assert_int_equal(tdm_dp_send_control(a, TDP_RECEIVER, TDM_DP_HELLO, big, max + 1), -EINVAL);
	assert_non_null(strstr(tdm_errmsg(), "1424"));
	tdm_dp_stats(b, &st);
	assert_int_equal(st.control_frames, sizeof(sizes) / sizeof(sizes[0]) + 3);
	for (unsigned i = 0; i < TDM_DP_DROP_REASONS; i++)
		assert_int_equal(st.drops[i], 0);
	tdm_dp_destroy(a);
	tdm_dp_destroy(b);
}

/* ---- Sender and receiver in one thread over UDP loopback ---- */

struct seq_consumer {
	uint64_t next, bad;
};

static int seq_on_record(void *ctx, const struct tdm_log_rec *rec)
{
	struct seq_consumer *c = ctx;

	c->bad += (uint64_t)tdp_rec_diff(rec, c->next);
	c->next++;
	return 0;
}

static void test_one_thread_stream(void **state)
{
	char tmp[] = "/tmp/tdp-unit-XXXXXX", dir[64], shm[64], cmd[96];
	struct tdm_log_config lc;
	struct tdm_dp_config cs, cr;
	struct tdm_dp_sender_config sc;
	struct tdm_dp_receiver_config rc;
	struct seq_consumer cons = { 0, 0 };
	struct tdm_log *log;
	struct tdm_dp *a, *b;
	struct tdm_dp_sender *s;
	struct tdm_dp_receiver *r;
	struct tdm_dp_idle idle;
	const uint64_t n = 20000;
	uint64_t appended = 0;

	(void)state;
	assert_non_null(mkdtemp(tmp));
	snprintf(dir, sizeof(dir), "%s/log", tmp);
	snprintf(shm, sizeof(shm), "tdp-unit-%d", (int)getpid());
	tdp_log_config(&lc, dir, shm, 16u << 20, 1u << 20);
	assert_int_equal(tdm_log_open(&lc, &log), 0);
	tdp_transport_config(&cs, TDM_DP_BACKEND_UDP, TDP_SENDER, "one");
	tdp_transport_config(&cr, TDM_DP_BACKEND_UDP, TDP_RECEIVER, "one");
	assert_int_equal(tdm_dp_create(&cs, &a), 0);
	assert_int_equal(tdm_dp_create(&cr, &b), 0);
	tdm_dp_sender_config_defaults(&sc);
	sc.peer = TDP_RECEIVER;
	assert_int_equal(tdm_dp_sender_add(a, &sc, log, &s), 0);
	tdm_dp_receiver_config_defaults(&rc);
	rc.peer = TDP_SENDER;
	rc.on_record = seq_on_record;
	rc.ctx = &cons;
	assert_int_equal(tdm_dp_receiver_add(b, &rc, &r), 0);

	const struct tdm_dp_agent agents[] = {
		{ "sender", tdm_dp_agent_do_work, a },
		{ "receiver", tdm_dp_agent_do_work, b },
	};
	tdm_dp_idle_init(&idle, TDM_DP_IDLE_YIELD);
	for (uint64_t round = 0; cons.next < n && round < 50000000; round++) {
		int work = 0;
		while (appended < n && tdp_append(log, appended) == 0) {
			appended++;
			work++;
		}
		work += tdm_log_flusher_do_work(log) + tdm_dp_run_once(agents, 2);
		tdm_dp_idle_step(&idle, work);
	}
	assert_int_equal(cons.next, n);
	assert_int_equal(cons.bad, 0);
	tdm_dp_destroy(a);
	tdm_dp_destroy(b);
	tdm_log_close(log);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_check),
		cmocka_unit_test(test_node_checks),
		cmocka_unit_test(test_fuzz_receiver),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_control_payloads),
		cmocka_unit_test(test_one_thread_stream),
	};

	(void)argc;
	(void)argv;
	cmocka_set_message_output(CM_OUTPUT_STDOUT);
	return cmocka_run_group_tests_name("unit", tests, NULL, NULL);
}
