/* Helpers of the write-log tests: fixture, deterministic records, file utilities. */
#include "tlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- Fixture ---- */

static unsigned tlog_counter;

int tlog_setup(void **state)
{
	struct tlog_fx *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	snprintf(fx->tmp, sizeof(fx->tmp), "/tmp/tdm-test-XXXXXX");
	if (!mkdtemp(fx->tmp)) {
		free(fx);
		return -1;
	}
	snprintf(fx->dir, sizeof(fx->dir), "%s/log", fx->tmp);
	snprintf(fx->shm, sizeof(fx->shm), "tdm-test-%ld-%u", (long)getpid(), tlog_counter++);
	snprintf(fx->shm_path, sizeof(fx->shm_path), "/dev/shm/%s", fx->shm);
	snprintf(fx->shm2, sizeof(fx->shm2), "%s-b", fx->shm);
	snprintf(fx->shm2_path, sizeof(fx->shm2_path), "/dev/shm/%s", fx->shm2);
	fx->param = (uintptr_t)*state;
	unlink(fx->shm_path);
	unlink(fx->shm2_path);
	tdm_err_clear();
	*state = fx;
	return 0;
}

static void tlog_cleanup(struct tlog_fx *fx)
{
	for (int i = 0; i < TLOG_MAX_CHILDREN; i++) {
		if (fx->children[i] > 0) {
			kill(fx->children[i], SIGKILL);
			waitpid(fx->children[i], NULL, 0);
			fx->children[i] = 0;
		}
	}
	for (int i = 0; i < TLOG_MAX_LOGS; i++) {
		if (fx->cursors[i]) {
			tdm_log_cursor_destroy(fx->cursors[i]);
			fx->cursors[i] = NULL;
		}
	}
	for (int i = 0; i < TLOG_MAX_LOGS; i++) {
		if (fx->logs[i]) {
			tdm_log_close(fx->logs[i]);
			fx->logs[i] = NULL;
		}
	}
	if (fx->shared) {
		munmap(fx->shared, fx->shared_len);
		fx->shared = NULL;
	}
	tlog_snap_free(fx->snap);
	fx->snap = NULL;
	for (int i = 0; i < 16; i++) {
		free(fx->mem[i]);
		fx->mem[i] = NULL;
	}
	tlog_rm_rf(fx->tmp);
	unlink(fx->shm_path);
	unlink(fx->shm2_path);
}

int tlog_teardown(void **state)
{
	struct tlog_fx *fx = *state;
	if (!fx)
		return 0;
	tlog_cleanup(fx);
	free(fx);
	*state = NULL;
	return 0;
}

void tlog_config(const struct tlog_fx *fx, struct tdm_log_config *c, uint64_t ring, uint64_t seg)
{
	tdm_log_config_defaults(c);
	c->dir = fx->dir;
	c->shm_name = fx->shm;
	c->ring_size = ring;
	c->segment_size = seg;
	c->cluster_id = TLOG_CLUSTER;
	c->node_id = TLOG_NODE;
}

int tlog_open(struct tlog_fx *fx, const struct tdm_log_config *c, struct tdm_log **out)
{
	*out = NULL;
	int rc = tdm_log_open(c, out);
	if (rc == -ENOSYS || rc == -EPERM) {
		fprintf(stderr,
			"SKIP: tdm_log_open returned %d (%s): io_uring is not available on this "
			"machine (kernel without io_uring, or kernel.io_uring_disabled / seccomp). "
			"errmsg: %s\n",
			rc, tdm_strerror(rc), tdm_errmsg());
		tlog_cleanup(fx);
		exit(77);
	}
	if (rc == 0) {
		for (int i = 0; i < TLOG_MAX_LOGS; i++) {
			if (!fx->logs[i]) {
				fx->logs[i] = *out;
				break;
			}
		}
	}
	return rc;
}

void tlog_close(struct tlog_fx *fx, struct tdm_log *log)
{
	for (int i = 0; i < TLOG_MAX_LOGS; i++)
		if (fx->logs[i] == log)
			fx->logs[i] = NULL;
	tdm_log_close(log);
}

void tlog_track_child(struct tlog_fx *fx, pid_t pid)
{
	for (int i = 0; i < TLOG_MAX_CHILDREN; i++) {
		if (fx->children[i] <= 0) {
			fx->children[i] = pid;
			return;
		}
	}
}

void tlog_forget_child(struct tlog_fx *fx, pid_t pid)
{
	for (int i = 0; i < TLOG_MAX_CHILDREN; i++)
		if (fx->children[i] == pid)
			fx->children[i] = 0;
}

void *tlog_shared(struct tlog_fx *fx, size_t len)
{
	if (fx->shared)
		return NULL;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	fx->shared = p;
	fx->shared_len = len;
	return p;
}

void *tlog_alloc(struct tlog_fx *fx, size_t len)
{
	for (int i = 0; i < 16; i++) {
		if (!fx->mem[i]) {
			fx->mem[i] = calloc(1, len ? len : 1);
			return fx->mem[i];
		}
	}
	return NULL;
}

/* ---- Deterministic records ---- */

uint64_t tlog_mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

void tlog_bytes(uint64_t seed, uint64_t idx, uint8_t *buf, size_t n)
{
	uint64_t s = tlog_mix(seed ^ (idx * 0xD1B54A32D192ED03ull)) | 1;
	size_t i = 0;
	while (i < n) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		size_t k = n - i < 8 ? n - i : 8;
		memcpy(buf + i, &s, k);
		i += k;
	}
}

void tlog_key(uint64_t seed, uint32_t idx, uint8_t *buf, uint32_t klen)
{
	char k[16];
	snprintf(k, sizeof(k), "k%08u", idx % 100000000u);
	uint32_t n = klen < 9 ? klen : 9;
	memcpy(buf, k, n);
	if (klen > 9)
		tlog_bytes(seed ^ 0x6B6579ull, idx, buf + 9, klen - 9);
}

void tlog_value(uint64_t seed, uint32_t idx, uint8_t *buf, uint32_t vlen)
{
	tlog_bytes(seed, idx, buf, vlen);
}

void tlog_entry(struct tlog_gen *g, struct tdm_log_entry *e, uint32_t idx, uint32_t klen,
		uint32_t vlen, uint8_t type, uint16_t origin)
{
	memset(e, 0, sizeof(*e));
	if (klen > TLOG_KEY_BUF)
		klen = TLOG_KEY_BUF;
	if (vlen > TLOG_BUF)
		vlen = TLOG_BUF;
	tlog_key(g->seed, idx, g->key, klen);
	tlog_value(g->seed, idx, g->val, vlen);
	e->type = type;
	e->origin = origin;
	e->hlc = idx;
	e->key = klen ? g->key : NULL;
	e->key_len = klen;
	e->value = vlen ? g->val : NULL;
	e->value_len = vlen;
}

int tlog_append(struct tdm_log *log, const struct tdm_log_entry *e, uint64_t *pos, uint64_t *end)
{
	unsigned idle = 0, sleeps = 0;
	for (;;) {
		int rc = tdm_log_append(log, e, pos, end);
		if (rc != TDM_ERR_BACKPRESSURE)
			return rc;
		int w = tdm_log_flusher_do_work(log);
		if (w < 0)
			return w;
		if (w > 0) {
			idle = 0;
			continue;
		}
		if (++idle % 8 == 0) {
			if (++sleeps > 200000) /* far beyond any fdatasync; the flusher is stuck */
				return TDM_ERR_BACKPRESSURE;
			usleep(50);
		}
	}
}

int tlog_append_rec(struct tdm_log *log, struct tlog_gen *g, uint32_t idx, uint32_t klen,
		    uint32_t vlen, uint16_t origin, struct xrec *x, uint64_t *end)
{
	struct tdm_log_entry e;
	uint64_t pos = UINT64_MAX, e_end = UINT64_MAX;
	tlog_entry(g, &e, idx, klen, vlen, TDM_LOG_REC_PUT, origin);
	int rc = tlog_append(log, &e, &pos, &e_end);
	if (x) {
		memset(x, 0, sizeof(*x));
		x->pos = pos;
		x->idx = idx;
		x->klen = klen;
		x->vlen = vlen;
		x->type = TDM_LOG_REC_PUT;
		x->origin = origin;
		x->epoch = tdm_log_epoch(log);
	}
	if (end)
		*end = e_end;
	return rc;
}

/* Varied key and value sizes: keys 9..32 bytes, values mostly < 600 bytes, sometimes 3..12 KB. */
void tlog_rnd_sizes(uint64_t seed, uint32_t idx, uint32_t *klen, uint32_t *vlen)
{
	uint64_t h = tlog_mix(seed * 0x100000001B3ull + idx);
	*klen = 9 + (uint32_t)(h % 24);
	*vlen = (uint32_t)((h >> 8) % 600);
	if ((h >> 40) % 97 == 0)
		*vlen = 3000 + (uint32_t)((h >> 20) % 9000);
}

/* Append records idx = *idx.. until the tail reaches at least `until`; records go to xs. */
void tlog_append_until(struct tdm_log *log, struct tlog_gen *g, uint64_t until, uint32_t *idx,
			 struct xrec *xs, size_t *n, size_t cap)
{
	while (tdm_log_tail(log) < until) {
		assert_true(*n < cap);
		uint32_t k, v;
		tlog_rnd_sizes(g->seed, *idx, &k, &v);
		assert_ok(tlog_append_rec(log, g, *idx, k, v, TLOG_NODE, &xs[*n], NULL));
		(*idx)++;
		(*n)++;
	}
}

int tlog_flusher_settle(struct tdm_log *log)
{
	int rc = tdm_log_flush_until(log, tdm_log_tail(log));
	if (rc)
		return rc;
	/* Retention runs on some steps only (every 256th in flusher.c): give it several chances. */
	int zeros = 0;
	for (int i = 0; i < 100000 && (i < 2048 || zeros < 600); i++) {
		int w = tdm_log_flusher_do_work(log);
		if (w < 0)
			return w;
		if (w == 0) {
			zeros++;
			if (zeros % 64 == 0)
				usleep(50);
		} else {
			zeros = 0;
		}
	}
	return 0;
}

int tlog_read(struct tdm_log *log, uint64_t pos, void *buf, size_t len)
{
	int rc = tdm_log_read(log, pos, buf, len);
	for (int i = 0; rc == TDM_ERR_EMPTY && i < 10000; i++) {
		/* tdm_log_read serves what the flusher has seen published (cursor.c) */
		int w = tdm_log_flusher_do_work(log);
		if (w < 0)
			return rc;
		if (w == 0 && i % 16 == 15)
			usleep(20);
		rc = tdm_log_read(log, pos, buf, len);
	}
	return rc;
}

static char diff_msg[1400];
static uint8_t diff_buf[TLOG_BUF];

#define DIFF(...) (snprintf(diff_msg, sizeof(diff_msg), __VA_ARGS__), diff_msg)

const char *tlog_rec_diff(const struct tdm_log_rec *r, const struct xrec *x, uint64_t seed)
{
	const struct tdm_log_rec_hdr *h = r->hdr;
	if (!h)
		return DIFF("record %u: hdr is NULL", x->idx);
	if (h->position != x->pos)
		return DIFF("record %u: position %" PRIu64 ", want %" PRIu64, x->idx, h->position,
			    x->pos);
	if (h->type != x->type)
		return DIFF("record %u at %" PRIu64 ": type %u, want %u", x->idx, x->pos, h->type,
			    x->type);
	if (h->length != TDM_LOG_REC_HDR_SIZE + x->klen + x->vlen)
		return DIFF("record %u at %" PRIu64 ": length %u, want %u", x->idx, x->pos,
			    h->length, TDM_LOG_REC_HDR_SIZE + x->klen + x->vlen);
	if (h->key_len != x->klen || h->value_len != x->vlen)
		return DIFF("record %u at %" PRIu64 ": key_len/value_len %u/%u, want %u/%u",
			    x->idx, x->pos, h->key_len, h->value_len, x->klen, x->vlen);
	if (h->hlc != x->idx)
		return DIFF("record %u at %" PRIu64 ": hlc %" PRIu64 ", want %u", x->idx, x->pos,
			    h->hlc, x->idx);
	if (h->origin != x->origin)
		return DIFF("record %u at %" PRIu64 ": origin %u, want %u", x->idx, x->pos,
			    h->origin, x->origin);
	if (h->epoch != x->epoch)
		return DIFF("record %u at %" PRIu64 ": epoch %u, want %u", x->idx, x->pos,
			    h->epoch, x->epoch);
	if (h->flags != x->flags)
		return DIFF("record %u at %" PRIu64 ": flags %u, want %u", x->idx, x->pos,
			    h->flags, x->flags);
	if (x->klen) {
		tlog_key(seed, x->idx, diff_buf, x->klen);
		if (!r->key || memcmp(r->key, diff_buf, x->klen) != 0)
			return DIFF("record %u at %" PRIu64 ": key bytes differ", x->idx, x->pos);
	}
	if (x->vlen) {
		if (x->vlen > sizeof(diff_buf))
			return DIFF("record %u: value too large for the test buffer", x->idx);
		tlog_value(seed, x->idx, diff_buf, x->vlen);
		if (!r->value)
			return DIFF("record %u at %" PRIu64 ": value is NULL", x->idx, x->pos);
		for (uint32_t i = 0; i < x->vlen; i++)
			if (r->value[i] != diff_buf[i])
				return DIFF("record %u at %" PRIu64 ": value byte %u is 0x%02x, "
					    "want 0x%02x",
					    x->idx, x->pos, i, r->value[i], diff_buf[i]);
	}
	return NULL;
}

const char *tlog_pad_diff(struct tdm_log *log, uint64_t gap_pos, uint64_t gap_end, uint64_t seg)
{
	uint64_t len = gap_end - gap_pos;
	if (gap_end % seg != 0)
		return DIFF("gap [%" PRIu64 ", %" PRIu64 ") between records does not end at a "
			    "segment boundary",
			    gap_pos, gap_end);
	if (len < TDM_LOG_REC_ALIGN || len > sizeof(diff_buf))
		return DIFF("gap [%" PRIu64 ", %" PRIu64 ") of %" PRIu64 " bytes cannot be a PAD",
			    gap_pos, gap_end, len);
	int rc = tlog_read(log, gap_pos, diff_buf, len);
	if (rc)
		return DIFF("tdm_log_read(%" PRIu64 ", %" PRIu64 ") of the PAD gap = %d (%s)",
			    gap_pos, len, rc, tdm_strerror(rc));
	/* record.c: a PAD is a length word 0x80000000 | span, then zeros. */
	uint32_t word;
	memcpy(&word, diff_buf, 4);
	if (word != (0x80000000u | (uint32_t)len))
		return DIFF("gap at %" PRIu64 ": length word 0x%08x, want a PAD of %" PRIu64
			    " bytes (0x%08x)",
			    gap_pos, word, len, 0x80000000u | (uint32_t)len);
	for (uint64_t i = 4; i < len; i++)
		if (diff_buf[i])
			return DIFF("PAD at %" PRIu64 ": byte %" PRIu64 " is 0x%02x, want 0", gap_pos,
				    i, diff_buf[i]);
	rc = tdm_log_rec_check(diff_buf, len, gap_pos);
	if (rc)
		return DIFF("PAD at %" PRIu64 ": tdm_log_rec_check = %d", gap_pos, rc);
	return NULL;
}

struct tdm_log_cursor *tlog_cursor(struct tlog_fx *fx, struct tdm_log *log, uint64_t from)
{
	struct tdm_log_cursor *c = NULL;
	int rc = tdm_log_cursor_create(log, from, &c);
	if (rc)
		fail_msg("tdm_log_cursor_create(%" PRIu64 ") = %d (%s): %s", from, rc,
			 tdm_strerror(rc), tdm_errmsg());
	assert_non_null(c);
	for (int i = 0; i < TLOG_MAX_LOGS; i++) {
		if (!fx->cursors[i]) {
			fx->cursors[i] = c;
			break;
		}
	}
	return c;
}

void tlog_cursor_free(struct tlog_fx *fx, struct tdm_log_cursor *c)
{
	for (int i = 0; i < TLOG_MAX_LOGS; i++)
		if (fx->cursors[i] == c)
			fx->cursors[i] = NULL;
	tdm_log_cursor_destroy(c);
}

void tlog_verify(struct tlog_fx *fx, struct tdm_log *log, uint64_t from, const struct xrec *xs,
		 size_t n, uint64_t seed, uint64_t seg)
{
	struct tdm_log_cursor *c = tlog_cursor(fx, log, from);
	uint64_t prev = from;
	for (size_t i = 0; i < n; i++) {
		struct tdm_log_rec r;
		memset(&r, 0, sizeof(r));
		if (tdm_log_cursor_position(c) != prev && tdm_log_cursor_position(c) != xs[i].pos)
			fail_msg("cursor position %" PRIu64 " before record %zu, want %" PRIu64
				 " (or the record's position %" PRIu64 ")",
				 tdm_log_cursor_position(c), i, prev, xs[i].pos);
		int rc = tdm_log_cursor_next(c, &r);
		if (rc)
			fail_msg("cursor_next for record %zu/%zu (idx %u, expected at %" PRIu64
				 ") = %d (%s): %s",
				 i, n, xs[i].idx, xs[i].pos, rc, tdm_strerror(rc), tdm_errmsg());
		assert_nodiff(tlog_rec_diff(&r, &xs[i], seed));
		if (xs[i].pos != prev) {
			if (xs[i].pos < prev)
				fail_msg("record %zu at %" PRIu64 " overlaps the previous one ending "
					 "at %" PRIu64,
					 i, xs[i].pos, prev);
			assert_nodiff(tlog_pad_diff(log, prev, xs[i].pos, seg));
		}
		prev = xs[i].pos + tdm_log_rec_span(xs[i].klen, xs[i].vlen);
	}
	struct tdm_log_rec r;
	int rc = tdm_log_cursor_next(c, &r);
	if (rc != TDM_ERR_EMPTY)
		fail_msg("cursor_next past the last record (end %" PRIu64 ") = %d (%s), want "
			 "TDM_ERR_EMPTY; position %" PRIu64,
			 prev, rc, tdm_strerror(rc), rc == 0 ? r.hdr->position : 0);
	/* The stream may end with a PAD whose record never became durable (a crash). */
	uint64_t at = tdm_log_cursor_position(c);
	if (at != prev) {
		if (at < prev)
			fail_msg("cursor position %" PRIu64 " at the end, below the end of the last "
				 "record %" PRIu64,
				 at, prev);
		assert_nodiff(tlog_pad_diff(log, prev, at, seg));
	}
	assert_u64(tdm_log_tail(log), at);
	tlog_cursor_free(fx, c);
}

/* ---- Files ---- */

int tlog_rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (d) {
			struct dirent *de;
			while ((de = readdir(d))) {
				if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
					continue;
				char sub[1024];
				snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
				tlog_rm_rf(sub);
			}
			closedir(d);
		}
		return rmdir(path) ? -errno : 0;
	}
	return unlink(path) ? -errno : 0;
}

static int cmp_name32(const void *a, const void *b)
{
	return strcmp(a, b);
}

int tlog_segments(const char *dir, char names[][32], int max)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < max) {
		size_t l = strlen(de->d_name);
		if (l != 20 || strcmp(de->d_name + 16, ".seg") != 0)
			continue;
		memcpy(names[n++], de->d_name, l + 1); /* l == 20 */
	}
	closedir(d);
	qsort(names, (size_t)n, 32, cmp_name32);
	return n;
}

uint8_t *tlog_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return NULL;
	}
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t r = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (buf && got != (size_t)st.st_size) {
		free(buf);
		return NULL;
	}
	*len = got;
	return buf;
}

int tlog_pwrite_bytes(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t w = pwrite(fd, buf, len, (off_t)off);
	int rc = w == (ssize_t)len ? 0 : -EIO;
	close(fd);
	return rc;
}

int tlog_pread_bytes(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	ssize_t r = pread(fd, buf, len, (off_t)off);
	int rc = r == (ssize_t)len ? 0 : -EIO;
	close(fd);
	return rc;
}

int tlog_flip(const char *path, uint64_t off, uint8_t mask)
{
	uint8_t b;
	int rc = tlog_pread_bytes(path, off, &b, 1);
	if (rc)
		return rc;
	b ^= mask;
	return tlog_pwrite_bytes(path, off, &b, 1);
}

static int cmp_name64(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int snap_names(const char *dir, char names[][256], int max)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == max) {
			n = -1;
			break;
		}
		snprintf(names[n++], 256, "%s", de->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(names, (size_t)n, 256, cmp_name64);
	return n;
}

struct tlog_snap *tlog_snap_take(const char *dir)
{
	struct tlog_snap *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->n = snap_names(dir, s->names, 256);
	if (s->n < 0) {
		free(s);
		return NULL;
	}
	for (int i = 0; i < s->n; i++) {
		char p[1024];
		snprintf(p, sizeof(p), "%s/%s", dir, s->names[i]);
		s->data[i] = tlog_read_file(p, &s->len[i]); /* NULL for directories */
	}
	return s;
}

const char *tlog_snap_diff(const struct tlog_snap *s, const char *dir)
{
	static char names[256][256];
	int n = snap_names(dir, names, 256);
	if (n != s->n)
		return DIFF("%s: %d entries, was %d", dir, n, s->n);
	for (int i = 0; i < n; i++) {
		if (strcmp(names[i], s->names[i]) != 0)
			return DIFF("%s: entry %s, was %s", dir, names[i], s->names[i]);
		char p[1024];
		size_t len = 0;
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		uint8_t *d = tlog_read_file(p, &len);
		if (!d != !s->data[i]) {
			free(d);
			return DIFF("%s: became unreadable or changed type", p);
		}
		if (d && (len != s->len[i] || memcmp(d, s->data[i], len) != 0)) {
			size_t at = 0;
			while (at < len && at < s->len[i] && d[at] == s->data[i][at])
				at++;
			free(d);
			return DIFF("%s changed: size %zu (was %zu), first difference at byte %zu", p,
				    len, s->len[i], at);
		}
		free(d);
	}
	return NULL;
}

void tlog_snap_free(struct tlog_snap *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++)
		free(s->data[i]);
	free(s);
}
