/*
 * Segment files: naming, creating, reading, checkpoints, and the directory scan that recovery,
 * `tandemctl log verify` and `log dump` share. Formats and the recovery rule: top of record.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log_pvt.h"

void tdm_seg_name(char *buf, size_t len, uint64_t start)
{
	snprintf(buf, len, "%016" PRIx64 ".seg", start);
}

int tdm_seg_path(char *buf, size_t len, const char *dir, uint64_t start)
{
	int n = snprintf(buf, len, "%s/%016" PRIx64 ".seg", dir, start);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static void hdr_fill(struct tdm_seg_hdr *h, uint64_t start, uint64_t seg_size, uint64_t cluster)
{
	memset(h, 0, sizeof(*h));
	h->magic = TDM_SEG_MAGIC;
	h->version = TDM_SEG_VERSION;
	h->header_size = TDM_SEG_HDR_SIZE;
	h->cluster_id = cluster;
	h->start = start;
	h->segment_size = seg_size;
	h->crc = tdm_crc32c(0, h, offsetof(struct tdm_seg_hdr, crc));
}

void tdm_seg_ckpt_fill(struct tdm_seg_ckpt *c, uint64_t durable)
{
	c->durable = durable;
	c->crc = tdm_crc32c(0, &c->durable, 8);
	c->reserved = 0;
}

int tdm_seg_write_ckpt_sync(int fd, uint64_t durable)
{
	struct tdm_seg_ckpt c;

	tdm_seg_ckpt_fill(&c, durable);
	if (pwrite(fd, &c, sizeof(c), TDM_SEG_CKPT_OFF) != (ssize_t)sizeof(c) || fdatasync(fd))
		return -errno;
	return 0;
}

/*
 * Create a preallocated segment: write it under a temporary name, make it durable, rename it into
 * place, sync the directory. A crash leaves either no segment or a whole one.
 * @return an O_RDWR fd of the new segment, or a negative code with the message set.
 */
int tdm_seg_create(int dir_fd, const char *dir, uint64_t start, uint64_t seg_size,
		   uint64_t cluster_id)
{
	char name[32], tmp[40];
	uint8_t page[TDM_SEG_HDR_SIZE];
	int fd, rc;

	tdm_seg_name(name, sizeof(name), start);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(dir_fd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return TDM_ERR(-errno, "cannot create segment %s/%s: %s", dir, tmp, strerror(errno));
	memset(page, 0, sizeof(page));
	hdr_fill((struct tdm_seg_hdr *)page, start, seg_size, cluster_id);
	if (pwrite(fd, page, sizeof(page), 0) != (ssize_t)sizeof(page)) {
		rc = TDM_ERR(-errno, "cannot write segment header %s/%s: %s", dir, tmp,
			     strerror(errno));
		goto err;
	}
	rc = posix_fallocate(fd, 0, (off_t)(TDM_SEG_HDR_SIZE + seg_size));
	if (rc) {
		rc = TDM_ERR(-rc, "cannot allocate %llu bytes for segment %s/%s: %s",
			     (unsigned long long)(TDM_SEG_HDR_SIZE + seg_size), dir, tmp,
			     strerror(rc));
		goto err;
	}
	if (fsync(fd) || renameat(dir_fd, tmp, dir_fd, name) || tdm_fsync_dir(dir_fd)) {
		rc = TDM_ERR(-errno, "cannot make segment %s/%s durable: %s", dir, name,
			     strerror(errno));
		goto err;
	}
	return fd;
err:
	close(fd);
	unlinkat(dir_fd, tmp, 0);
	return rc;
}

int tdm_seg_open(const char *dir, uint64_t start, int flags)
{
	char path[600];

	if (tdm_seg_path(path, sizeof(path), dir, start))
		return -ENAMETOOLONG;
	return open(path, flags | O_CLOEXEC);
}

/* Copy [pos, pos+len) from segment files. @return 0, TDM_ERR_TRIMMED, -errno. */
int tdm_seg_read(const char *dir, uint64_t seg_size, uint64_t pos, void *buf, size_t len)
{
	uint8_t *out = buf;

	while (len) {
		uint64_t start = pos & ~(seg_size - 1);
		size_t n = (size_t)(start + seg_size - pos);
		ssize_t got;
		int fd = tdm_seg_open(dir, start, O_RDONLY);

		if (fd < 0)
			return errno == ENOENT ? TDM_ERR_TRIMMED : -errno;
		if (n > len)
			n = len;
		got = pread(fd, out, n, (off_t)(TDM_SEG_HDR_SIZE + pos - start));
		close(fd);
		if (got != (ssize_t)n)
			return got < 0 ? -errno : -EIO;
		out += n;
		pos += n;
		len -= n;
	}
	return 0;
}

/* ---- Directory scan ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool parse_seg_name(const char *n, uint64_t *start)
{
	char *end;

	if (strlen(n) != 20 || strcmp(n + 16, ".seg") != 0)
		return false;
	for (int i = 0; i < 16; i++)
		if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
			return false;
	*start = strtoull(n, &end, 16);
	return end == n + 16;
}

static int list_segments(struct tdm_scan_ctx *sc)
{
	uint32_t cap = 64;
	struct dirent *d;
	DIR *dp = opendir(sc->dir);

	if (!dp)
		return TDM_ERR(-errno, "cannot read log directory %s: %s", sc->dir, strerror(errno));
	sc->starts = malloc(cap * sizeof(uint64_t));
	sc->nseg = 0;
	while (sc->starts && (d = readdir(dp))) {
		uint64_t s;
		if (!parse_seg_name(d->d_name, &s))
			continue;
		if (sc->nseg == cap) {
			uint64_t *n = realloc(sc->starts, (cap *= 2) * sizeof(uint64_t));
			if (!n) {
				free(sc->starts);
				sc->starts = NULL;
				break;
			}
			sc->starts = n;
		}
		sc->starts[sc->nseg++] = s;
	}
	closedir(dp);
	if (!sc->starts)
		return TDM_ERR(-ENOMEM, "out of memory listing %s", sc->dir);
	qsort(sc->starts, sc->nseg, sizeof(uint64_t), cmp_u64);
	return 0;
}

/* Write zeros over [off, off + len) of fd (file offsets), its first page first and synced: a
 * crash part way leaves a zero length word at off, never a record followed by zeros. */
static int zero_range(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 * 1024];
	uint64_t done = 0;

	while (done < len) {
		size_t n = done == 0 ? 4096 : sizeof(zeros);

		if (n > len - done)
			n = (size_t)(len - done);
		if (pwrite(fd, zeros, n, (off_t)(off + done)) != (ssize_t)n)
			return -errno;
		if (done == 0 && fdatasync(fd))
			return -errno;
		done += n;
	}
	return fdatasync(fd) ? -errno : 0;
}

/*
 * Cut the segment files back to pos (tdm_log_truncate, and recovery finishing one): remove every
 * segment after the one holding pos, newest first, so a crash leaves a prefix of the old log;
 * record pos as that segment's checkpoint (everything before it is durable); zero [pos, end) in
 * it, so recovery finds the log ending at pos. end is where the log ended (the bytes after it
 * are zero already). Idempotent: a crash part way is finished by doing it again.
 */
int tdm_seg_cut(int dir_fd, const char *dir, uint64_t seg_size, uint64_t pos, uint64_t end)
{
	struct tdm_scan_ctx sc = { .dir = dir };
	uint64_t start = pos & ~(seg_size - 1);
	char name[32];
	int rc, fd;

	rc = list_segments(&sc);
	if (rc)
		return rc;
	for (uint32_t i = sc.nseg; i-- > 0 && sc.starts[i] > start;) {
		tdm_seg_name(name, sizeof(name), sc.starts[i]);
		if (unlinkat(dir_fd, name, 0) != 0 && errno != ENOENT) {
			rc = TDM_ERR(-errno, "cannot remove segment %s/%s: %s", dir, name,
				     strerror(errno));
			goto out;
		}
	}
	if (tdm_fsync_dir(dir_fd)) {
		rc = TDM_ERR(-errno, "cannot sync log dir %s: %s", dir, strerror(errno));
		goto out;
	}
	tdm_seg_name(name, sizeof(name), start);
	fd = tdm_seg_open(dir, start, O_RDWR);
	if (fd < 0) {
		if (errno != ENOENT) /* no segment: nothing at or after pos to zero */
			rc = TDM_ERR(-errno, "cannot open segment %s/%s: %s", dir, name,
				     strerror(errno));
		goto out;
	}
	if (end > start + seg_size)
		end = start + seg_size;
	rc = tdm_seg_write_ckpt_sync(fd, pos);
	if (!rc && end > pos)
		rc = zero_range(fd, TDM_SEG_HDR_SIZE + pos - start, end - pos);
	if (rc)
		rc = TDM_ERR(rc, "cannot cut segment %s/%s at position %" PRIu64 ": %s", dir, name,
			     pos, strerror(-rc));
	close(fd);
out:
	free(sc.starts);
	return rc;
}

/* Record a scan error in the report and the thread's message. */
static int scan_fail(struct tdm_scan_ctx *sc, int code, uint64_t start, uint64_t file_off,
		     uint64_t pos, const char *what)
{
	struct tdm_log_scan_report *r = sc->rep;

	tdm_seg_path(r->error_file, sizeof(r->error_file), sc->dir, start);
	r->error = code;
	r->error_offset = file_off;
	r->error_position = pos;
	snprintf(r->error_text, sizeof(r->error_text), "%s", what);
	return TDM_ERR(code, "%s at byte offset %" PRIu64 " (log position %" PRIu64 "): %s",
		       r->error_file, file_off, pos, what);
}

/* Check a segment's header. Sets *ckpt to its checkpoint (0 when absent or invalid). */
static int check_header(struct tdm_scan_ctx *sc, int fd, uint64_t start, uint64_t *ckpt)
{
	struct tdm_seg_hdr h;
	struct tdm_seg_ckpt c;
	struct stat st;

	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return scan_fail(sc, TDM_ERR_CORRUPT, start, 0, start,
				 "segment shorter than its header; restore it from a replica");
	if (h.magic != TDM_SEG_MAGIC || h.crc != tdm_crc32c(0, &h, offsetof(struct tdm_seg_hdr, crc)))
		return scan_fail(sc, TDM_ERR_CORRUPT, start, 0, start,
				 "segment header is damaged (magic or checksum); restore the file "
				 "from a replica; nothing was changed");
	if (h.version != TDM_SEG_VERSION)
		return scan_fail(sc, TDM_ERR_VERSION, start, 8, start,
				 "segment of another format version; open it with the tandem "
				 "version that wrote it");
	if (h.header_size != TDM_SEG_HDR_SIZE || h.start != start)
		return scan_fail(sc, TDM_ERR_CORRUPT, start, 12, start,
				 "segment header does not match its file name");
	if (sc->cluster_id && h.cluster_id != sc->cluster_id)
		return scan_fail(sc, TDM_ERR_CLUSTER, start, 16, start,
				 "segment belongs to another cluster id; check cluster_id in the "
				 "configuration or the directory");
	if (!sc->seg_size)
		sc->seg_size = h.segment_size;
	if (h.segment_size != sc->seg_size || start % sc->seg_size)
		return scan_fail(sc, -EINVAL, start, 32, start,
				 "segment size differs from the configured or first segment's "
				 "size; segment_size cannot change for an existing log");
	if (fstat(fd, &st) || (uint64_t)st.st_size < TDM_SEG_HDR_SIZE + sc->seg_size)
		return scan_fail(sc, TDM_ERR_CORRUPT, start, 0, start,
				 "segment file is shorter than its segment size; restore it");
	*ckpt = 0;
	if (pread(fd, &c, sizeof(c), TDM_SEG_CKPT_OFF) == (ssize_t)sizeof(c) &&
	    c.crc == tdm_crc32c(0, &c.durable, 8) && c.durable >= start &&
	    c.durable <= start + sc->seg_size)
		*ckpt = c.durable;
	return 0;
}

static uint64_t last_nonzero(const uint8_t *p, uint64_t from, uint64_t to)
{
	while (to > from && p[to - 1] == 0)
		to--;
	return to;
}

/*
 * Check the records of one segment (data mapped at d). last: this is the last segment holding
 * data, where a torn tail above ckpt is allowed. Advances *pos.
 */
static int scan_records(struct tdm_scan_ctx *sc, const uint8_t *d, uint64_t start, bool last,
			uint64_t ckpt, uint64_t *pos)
{
	struct tdm_log_scan_report *r = sc->rep;
	uint64_t seg = sc->seg_size;

	while (*pos < start + seg) {
		uint64_t off = *pos - start;
		uint32_t len;
		int rc;

		memcpy(&len, d + off, 4);
		if (len & TDM_LOG_PAD_FLAG) {
			rc = tdm_rec_check_pad(d + off, seg - off, *pos, seg);
			if (rc == 0) {
				r->records++;
				*pos += tdm_rec_span_of(len);
				continue;
			}
		} else {
			rc = tdm_log_rec_check(d + off, seg - off, *pos);
			if (rc == 0) {
				const struct tdm_log_rec_hdr *h = (const void *)(d + off);
				struct tdm_log_rec rec = { h, d + off + TDM_LOG_REC_HDR_SIZE,
							   d + off + TDM_LOG_REC_HDR_SIZE + h->key_len };
				r->records++;
				*pos += tdm_rec_span_of(len);
				if (sc->fn && rec.hdr->position >= sc->from) {
					rc = sc->fn(sc->fn_ctx, &rec);
					if (rc) {
						sc->stopped = true;
						return rc;
					}
				}
				continue;
			}
		}
		/* Nothing valid at *pos: the end of the log, a torn tail, or corruption. */
		uint64_t nz = last_nonzero(d, off, seg);
		if (len == 0 && nz == off && last)
			return 0; /* clean end */
		if (!last)
			return scan_fail(sc, TDM_ERR_CORRUPT, start, TDM_SEG_HDR_SIZE + off, *pos,
					 len == 0 ? "segment ends early but a later segment has data; "
						    "restore it from a replica; nothing was changed"
						  : "record fails its checks (checksum, length, type "
						    "or position); restore the segment from a replica; "
						    "nothing was changed");
		if (*pos < ckpt)
			return scan_fail(sc, TDM_ERR_CORRUPT, start, TDM_SEG_HDR_SIZE + off, *pos,
					 "record below the durable checkpoint fails its checks; "
					 "restore the segment from a replica; nothing was changed");
		sc->torn_from = *pos;
		sc->torn_last = start + nz;
		r->torn_bytes = nz - off;
		return 0;
	}
	return 0;
}

/* Does the segment hold any data (a non-zero length word at its start)? */
static int seg_has_data(int fd, bool *has)
{
	uint32_t w = 0;

	if (pread(fd, &w, 4, TDM_SEG_HDR_SIZE) != 4)
		return -EIO;
	*has = w != 0;
	return 0;
}

int tdm_scan_dir(struct tdm_scan_ctx *sc)
{
	struct tdm_log_scan_report *r = sc->rep;
	uint64_t pos = 0, ckpt = 0;
	int64_t last_data = -1;
	int rc, *fds = NULL;

	memset(r, 0, sizeof(*r));
	sc->torn_from = sc->torn_last = 0;
	rc = list_segments(sc);
	if (rc)
		return rc;
	r->segments = sc->nseg;
	if (!sc->nseg)
		return 0;
	fds = malloc(sc->nseg * sizeof(int));
	if (!fds)
		return TDM_ERR(-ENOMEM, "out of memory");
	for (uint32_t i = 0; i < sc->nseg; i++)
		fds[i] = -1;
	for (uint32_t i = 0; i < sc->nseg; i++) {
		uint64_t s = sc->starts[i], c = 0;
		bool has;

		fds[i] = tdm_seg_open(sc->dir, s, O_RDONLY);
		if (fds[i] < 0) {
			rc = scan_fail(sc, -errno, s, 0, s, "cannot open segment");
			goto out;
		}
		rc = check_header(sc, fds[i], s, &c);
		if (rc)
			goto out;
		if (i && s != sc->starts[i - 1] + sc->seg_size) {
			char name[32];
			tdm_seg_name(name, sizeof(name), sc->starts[i - 1] + sc->seg_size);
			rc = scan_fail(sc, -ENOENT, sc->starts[i - 1] + sc->seg_size, 0,
				       sc->starts[i - 1] + sc->seg_size,
				       "segment file is missing between two others; restore it "
				       "from a replica; nothing was changed");
			goto out;
		}
		if ((rc = seg_has_data(fds[i], &has)))
			goto out;
		if (has) {
			last_data = i;
			ckpt = c;
		}
	}
	r->start = sc->starts[0];
	pos = last_data < 0 ? sc->starts[0] : sc->starts[last_data];
	r->checkpoint = ckpt;
	for (int64_t i = sc->full ? 0 : (last_data < 0 ? 0 : last_data); i <= last_data; i++) {
		uint64_t s = sc->starts[i];
		size_t mlen = TDM_SEG_HDR_SIZE + sc->seg_size;
		uint8_t *m = mmap(NULL, mlen, PROT_READ, MAP_SHARED, fds[i], 0);

		if (m == MAP_FAILED) {
			rc = scan_fail(sc, -errno, s, 0, s, "cannot map segment");
			goto out;
		}
		pos = s;
		rc = scan_records(sc, m + TDM_SEG_HDR_SIZE, s, i == last_data, ckpt, &pos);
		munmap(m, mlen);
		r->end = pos;
		if (rc)
			goto out;
	}
	r->end = pos;
out:
	for (uint32_t i = 0; i < sc->nseg; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	if (rc && !r->error && !sc->stopped)
		r->error = rc;
	return rc;
}

TDM_API int tdm_log_scan(const char *dir, uint64_t cluster_id, uint64_t from, tdm_log_scan_fn fn,
			 void *ctx, struct tdm_log_scan_report *rep)
{
	struct tdm_scan_ctx sc = {
		.dir = dir, .cluster_id = cluster_id, .from = from, .fn = fn, .fn_ctx = ctx,
		.full = true, .rep = rep,
	};
	int rc = tdm_scan_dir(&sc);

	free(sc.starts);
	return rc;
}
