/*
 * Helpers shared by the write-log tests (tests/test_log.c, tests/test_log_fault.c).
 *
 * Every test gets a fixture (tlog_setup/tlog_teardown): its own temp directory, its own shm name,
 * and slots for the logs, child processes and buffers it creates, so teardown cleans up even when
 * an assertion fails half-way. Record contents are a pure function of (seed, index) so any record
 * can be checked bit for bit wherever it is read back.
 */
#ifndef TLOG_H
#define TLOG_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

#include "tassert.h"
#include "tdm_log.h"

#define KIB (1024u)
#define TLOG_CLUSTER 7u
#define TLOG_NODE 1u
#define TLOG_MAX_LOGS 4
#define TLOG_MAX_CHILDREN 4

/* ---- Fixture ---- */

struct tlog_snap;

struct tlog_fx {
	char tmp[256];      /* mkdtemp directory, removed by teardown */
	char dir[300];      /* tmp/log: the log directory (created by tdm_log_open) */
	char shm[64];       /* unique ring name */
	char shm_path[128]; /* /dev/shm/<shm> */
	char shm2[72];      /* a second unique ring name, also removed by teardown */
	char shm2_path[136];
	uintptr_t param;    /* the test's initial_state (e.g. a seed) */
	struct tdm_log *logs[TLOG_MAX_LOGS];       /* closed by teardown */
	struct tdm_log_cursor *cursors[TLOG_MAX_LOGS];
	pid_t children[TLOG_MAX_CHILDREN];        /* SIGKILLed and reaped by teardown */
	void *shared;                              /* MAP_SHARED page(s), unmapped by teardown */
	size_t shared_len;
	struct tlog_snap *snap;                    /* freed by teardown */
	void *mem[16];                             /* free()d by teardown */
};

int tlog_setup(void **state);
int tlog_teardown(void **state);

/** A config for fx: dir, shm name, sizes, cluster TLOG_CLUSTER, node TLOG_NODE. */
void tlog_config(const struct tlog_fx *fx, struct tdm_log_config *c, uint64_t ring,
		 uint64_t seg);

/** tdm_log_open; when io_uring is unavailable (-ENOSYS, -EPERM) cleans up and exits 77. */
int tlog_open(struct tlog_fx *fx, const struct tdm_log_config *c, struct tdm_log **out);

/** Close fx->logs slot holding log (if any) and forget it. */
void tlog_close(struct tlog_fx *fx, struct tdm_log *log);

/** Remember a child so teardown kills it; forget it after waitpid with tlog_forget_child. */
void tlog_track_child(struct tlog_fx *fx, pid_t pid);
void tlog_forget_child(struct tlog_fx *fx, pid_t pid);

/** mmap MAP_SHARED|MAP_ANONYMOUS len bytes (zeroed), unmapped by teardown. */
void *tlog_shared(struct tlog_fx *fx, size_t len);

/** calloc kept in fx->mem, freed by teardown. */
void *tlog_alloc(struct tlog_fx *fx, size_t len);

/* ---- Deterministic records ---- */

/** What a test expects at one position. */
struct xrec {
	uint64_t pos;
	uint32_t idx;
	uint32_t klen;
	uint32_t vlen;
	uint32_t epoch;
	uint8_t type;
	uint8_t flags;
	uint16_t origin;
};

uint64_t tlog_mix(uint64_t x);
/** n bytes derived from (seed, idx). */
void tlog_bytes(uint64_t seed, uint64_t idx, uint8_t *buf, size_t n);
/** Key of klen bytes: "k%08u" of idx (prefix of it when klen < 9), then bytes from seed. */
void tlog_key(uint64_t seed, uint32_t idx, uint8_t *buf, uint32_t klen);
/** Value of vlen bytes. */
void tlog_value(uint64_t seed, uint32_t idx, uint8_t *buf, uint32_t vlen);

/** Key and value buffers big enough for the records the tests write. */
#define TLOG_BUF (64u * 1024)
#define TLOG_KEY_BUF 256u
struct tlog_gen {
	uint64_t seed;
	uint8_t key[TLOG_KEY_BUF];
	uint8_t val[TLOG_BUF];
};

/** Fill e (and g's buffers) for record idx; hlc = idx. */
void tlog_entry(struct tlog_gen *g, struct tdm_log_entry *e, uint32_t idx, uint32_t klen,
		uint32_t vlen, uint8_t type, uint16_t origin);

/** Append, driving the flusher on back-pressure (single-threaded owner). Bounded retries. */
int tlog_append(struct tdm_log *log, const struct tdm_log_entry *e, uint64_t *pos,
		uint64_t *end);

/** Append record (seed, idx, klen, vlen, PUT, origin); fills x (x->epoch left 0). */
int tlog_append_rec(struct tdm_log *log, struct tlog_gen *g, uint32_t idx, uint32_t klen,
		    uint32_t vlen, uint16_t origin, struct xrec *x, uint64_t *end);

/** tdm_log_read, driving the owner's flusher while it returns TDM_ERR_EMPTY: the read serves
 *  only what the flusher has already seen published (bounded retries). */
int tlog_read(struct tdm_log *log, uint64_t pos, void *buf, size_t len);

/** Varied sizes from (seed, idx): keys 9..32 bytes, values mostly < 600, sometimes 3..12 KB. */
void tlog_rnd_sizes(uint64_t seed, uint32_t idx, uint32_t *klen, uint32_t *vlen);

/** Append records *idx, *idx+1, ... (tlog_rnd_sizes) until the tail reaches until; into xs. */
void tlog_append_until(struct tdm_log *log, struct tlog_gen *g, uint64_t until, uint32_t *idx,
		       struct xrec *xs, size_t *n, size_t cap);

/** Drive the flusher until it reports idle a few times in a row (bounded). */
int tlog_flusher_settle(struct tdm_log *log);

/** Check a record read back against x and the generator: header fields, key and value bytes.
 *  Returns NULL when equal, else a static description of the first difference. */
const char *tlog_rec_diff(const struct tdm_log_rec *r, const struct xrec *x, uint64_t seed);

/** Assert that [gap_pos, gap_end) in the stream is one valid PAD record ending at a segment
 *  boundary. Returns NULL or a description. */
const char *tlog_pad_diff(struct tdm_log *log, uint64_t gap_pos, uint64_t gap_end, uint64_t seg);

/** A cursor at from, destroyed by teardown if the test fails (asserts creation succeeds). */
struct tdm_log_cursor *tlog_cursor(struct tlog_fx *fx, struct tdm_log *log, uint64_t from);
void tlog_cursor_free(struct tlog_fx *fx, struct tdm_log_cursor *c);

/**
 * Read records from `from` with a cursor and assert they are exactly xs[0..n): positions,
 * contents, contiguity (a gap between records must be one valid PAD ending at a segment boundary),
 * then TDM_ERR_EMPTY and cursor position == tdm_log_tail() (after a trailing PAD at most).
 */
void tlog_verify(struct tlog_fx *fx, struct tdm_log *log, uint64_t from, const struct xrec *xs,
		 size_t n, uint64_t seed, uint64_t seg);

/* ---- Files ---- */

int tlog_rm_rf(const char *path);
/** Segment file names of dir (basenames), sorted by start; returns count (<= max). */
int tlog_segments(const char *dir, char names[][32], int max);
/** Read a whole file; *len set; malloc'd (caller frees); NULL on error. */
uint8_t *tlog_read_file(const char *path, size_t *len);
int tlog_pwrite_bytes(const char *path, uint64_t off, const void *buf, size_t len);
int tlog_pread_bytes(const char *path, uint64_t off, void *buf, size_t len);
/** XOR one byte of a file with mask. */
int tlog_flip(const char *path, uint64_t off, uint8_t mask);

/** Snapshot of every regular file of a directory (names, sizes, contents). */
struct tlog_snap {
	int n;
	char names[256][256];
	uint8_t *data[256];
	size_t len[256];
};
struct tlog_snap *tlog_snap_take(const char *dir);
/** NULL when dir still matches snap exactly, else a description. */
const char *tlog_snap_diff(const struct tlog_snap *s, const char *dir);
void tlog_snap_free(struct tlog_snap *s);

/* ---- Groups ---- */

int tlog_run_unit(void);
/** test_log_proc.c: its unit tests (attach, retention, refusals) into out; returns the count. */
int tlog_unit_proc_tests(struct CMUnitTest *out, int max);
/** test_log_truncate.c: the writers' gate, truncate, side files, a replica's history (unit),
 *  and damaged side files and crashes during a truncate (fault); return the count. */
int tlog_unit_truncate_tests(struct CMUnitTest *out, int max);
int tlog_fault_truncate_tests(struct CMUnitTest *out, int max);
int tlog_run_fault(void);

#endif /* TLOG_H */
