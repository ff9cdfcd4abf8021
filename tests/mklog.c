/*
 * mklog: write a small log with deterministic records, for the tandemctl CLI test
 * (tests/test_tandemctl.sh).
 *
 *   mklog DIR COUNT SEGMENT_SIZE [CUT SIDE_FILE]
 *
 * Opens (creates) the log in DIR as its owner with cluster id 7 and the ring /dev/shm/
 * tdm-mklog-<pid>, appends COUNT records, flushes them and closes cleanly (the ring file is
 * removed). Record i (0-based): key "k%08u" of i; type DEL when i % 7 == 3 (no value), NOOP
 * when i % 11 == 5 (no key), PUT otherwise; hlc i + 1; origin 1; value of 64 + (i * 37) % 500
 * bytes derived from i. Records do not fill segments exactly, so the log holds PAD records.
 *
 * With CUT (a record index below COUNT): then closes the writers' gate and truncates the log at
 * record CUT's position, moving the records from CUT on to SIDE_FILE (tdm_log_truncate).
 *
 * stdout: one line "rec POSITION TYPE" per record in order, with CUT a line "cut POSITION N"
 * (N records moved), then one summary line
 *   "count=N pads=P end=E segment_size=S"
 * where P is the number of PAD records the log put between them (a gap between one record's
 * end and the next record's position is one PAD) and E the end of the last record.
 * Exit status: 0 done; 1 error (message on stderr); 2 usage; 77 io_uring is unavailable.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tdm_log.h"

#define MKLOG_CLUSTER 7u
#define MKLOG_ORIGIN 1u
#define MKLOG_VAL_MAX 600u

static int usage(const char *what)
{
	fprintf(stderr, "mklog: %s\nUsage: mklog DIR COUNT SEGMENT_SIZE [CUT SIDE_FILE]\n", what);
	return 2;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* Append, driving the flusher while the ring is full (this process is the only thread). */
static int append(struct tdm_log *log, const struct tdm_log_entry *e, uint64_t *pos,
		  uint64_t *end)
{
	for (unsigned idle = 0;;) {
		int rc = tdm_log_append(log, e, pos, end);
		if (rc != TDM_ERR_BACKPRESSURE)
			return rc;
		int w = tdm_log_flusher_do_work(log);
		if (w < 0)
			return w;
		if (w > 0) {
			idle = 0;
		} else if (++idle > 1000000) {
			return TDM_ERR_BACKPRESSURE; /* the flusher is stuck */
		} else if (idle % 8 == 0 && (w = tdm_log_flusher_idle(log)) < 0) {
			return w;
		}
	}
}

int main(int argc, char **argv)
{
	uint64_t count, seg, cut = UINT64_MAX, cut_pos = 0;

	if (argc != 4 && argc != 6)
		return usage("expected 3 or 5 arguments");
	if (parse_u64(argv[2], &count) != 0 || count > UINT32_MAX)
		return usage("COUNT is not a number below 2^32");
	if (parse_u64(argv[3], &seg) != 0)
		return usage("SEGMENT_SIZE is not a number");
	if (argc == 6 && (parse_u64(argv[4], &cut) != 0 || cut >= count))
		return usage("CUT is not a record index below COUNT");

	char shm[64];
	snprintf(shm, sizeof(shm), "tdm-mklog-%ld", (long)getpid());

	struct tdm_log_config cfg;
	tdm_log_config_defaults(&cfg);
	cfg.dir = argv[1];
	cfg.shm_name = shm;
	cfg.ring_size = 256u * 1024;
	cfg.segment_size = seg;
	cfg.cluster_id = MKLOG_CLUSTER;
	cfg.node_id = MKLOG_ORIGIN;

	struct tdm_log *log = NULL;
	int rc = tdm_log_open(&cfg, &log);
	if (rc == -ENOSYS || rc == -EPERM) {
		fprintf(stderr, "mklog: SKIP: io_uring is not available (tdm_log_open = %d, %s): %s\n",
			rc, tdm_strerror(rc), tdm_errmsg());
		return 77;
	}
	if (rc != 0) {
		fprintf(stderr, "mklog: tdm_log_open(%s) = %d (%s): %s\n", argv[1], rc,
			tdm_strerror(rc), tdm_errmsg());
		return 1;
	}

	uint8_t val[MKLOG_VAL_MAX];
	char key[16];
	uint64_t prev_end = tdm_log_tail(log), pads = 0, pos = 0, end = prev_end;

	for (uint32_t i = 0; i < count; i++) {
		struct tdm_log_entry e = { .type = TDM_LOG_REC_PUT, .origin = MKLOG_ORIGIN,
					   .hlc = (uint64_t)i + 1 };
		uint32_t vlen = 64u + (i * 37u) % 500u;

		snprintf(key, sizeof(key), "k%08u", i % 100000000u);
		for (uint32_t j = 0; j < vlen; j++)
			val[j] = (uint8_t)(i * 131u + j * 7u);
		e.key = key;
		e.key_len = 9;
		e.value = val;
		e.value_len = vlen;
		if (i % 7 == 3) {
			e.type = TDM_LOG_REC_DEL;
			e.value = NULL;
			e.value_len = 0;
		} else if (i % 11 == 5) {
			e.type = TDM_LOG_REC_NOOP;
			e.key = NULL;
			e.key_len = 0;
		}
		rc = append(log, &e, &pos, &end);
		if (rc != 0) {
			fprintf(stderr, "mklog: append of record %u = %d (%s): %s\n", i, rc,
				tdm_strerror(rc), tdm_errmsg());
			tdm_log_close(log);
			return 1;
		}
		if (pos != prev_end)
			pads++;
		if (i == cut)
			cut_pos = pos;
		prev_end = end;
		printf("rec %" PRIu64 " %s\n", pos, tdm_log_rec_type_name(e.type));
	}
	rc = tdm_log_flush_until(log, end);
	if (rc != 0) {
		fprintf(stderr, "mklog: flush to %" PRIu64 " = %d (%s): %s\n", end, rc,
			tdm_strerror(rc), tdm_errmsg());
		tdm_log_close(log);
		return 1;
	}
	if (cut != UINT64_MAX) {
		tdm_log_set_writable(log, false);
		rc = tdm_log_truncate(log, cut_pos, argv[5]);
		if (rc != 0) {
			fprintf(stderr, "mklog: truncate to %" PRIu64 " = %d (%s): %s\n", cut_pos, rc,
				tdm_strerror(rc), tdm_errmsg());
			tdm_log_close(log);
			return 1;
		}
		printf("cut %" PRIu64 " %" PRIu64 "\n", cut_pos, count - cut);
	}
	tdm_log_close(log);
	printf("count=%" PRIu64 " pads=%" PRIu64 " end=%" PRIu64 " segment_size=%" PRIu64 "\n", count,
	       pads, end, seg);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		perror("mklog: writing stdout");
		return 1;
	}
	return 0;
}
