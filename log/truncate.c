/*
 * Cutting the log back to a position (failover: a node whose log went past what the new primary
 * has), keeping what was cut in a side file, and reading side files back.
 *
 * SIDE FILE (at the path the caller names), little-endian
 *   off size field
 *   0   8    magic        "TNDMSIDE"
 *   8   4    version      1
 *   12  4    header_size  64
 *   16  8    cluster_id   of the log the records were cut from
 *   24  8    first        the cut position: that log was truncated to it
 *   32  8    end          where that log ended before the cut
 *   40  8    count        records after the header (>= 1: an empty cut writes no file)
 *   48  4    epoch        epoch field of the first record
 *   52  2    node_id      the node whose log it was
 *   54  6    reserved     0
 *   60  4    crc          CRC32C of bytes [0,60)
 *   64  ...  count records exactly as they were in the log (header, key, value, zero padding to
 *            8 bytes; format at the top of record.c), in position order. PADs are left out, so
 *            a record may start past the end of the one before it (at a segment start).
 *   A reader checks the header, then every record: tdm_log_rec_check at its own position field
 *   (length, type, CRC), zero padding, positions increasing inside [first, end); the file ends
 *   right after the count'th record. Anything else is TDM_ERR_CORRUPT with the byte offset.
 *   Written as PATH.tmp, fsynced, renamed to PATH, and the directory fsynced.
 *
 * TRUNCATE MARKER  DIR/truncating, little-endian, 32 bytes
 *   0   8    magic     "TNDMTRNC"
 *   8   8    pos       the cut position
 *   16  8    end       the log's end before the cut
 *   24  4    crc       CRC32C of bytes [0,24)
 *   28  4    reserved  0
 *
 * RECOVERY RULE: the marker is made durable (temporary name, fsync, rename, fsync of the
 * directory) after the side file and before anything is cut, and removed once the cut is
 * complete. tdm_log_open finds it after a crash and does the cut again (every step is idempotent)
 * before recovering, so the log ends at pos; a crash before the marker exists leaves the old log
 * (and the side file, which is then written again by a retry).
 *
 * The cut, in order: remove the segments after the one holding pos (newest first), record pos as
 * that segment's checkpoint, zero [pos, end) in it (segment.c), drop the history entries at or
 * after pos (history.c), remove the marker. Then the ring: zero its bytes of [pos, end), move the
 * gate back when it was past pos (bumping meta->truncations, so writers re-read their cached
 * gate), and set published, written, durable and the tail (keeping the gate bit) to pos.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log_pvt.h"

#define SIDE_MAGIC 0x454449534d444e54ull   /* "TNDMSIDE" */
#define SIDE_VERSION 1u
#define MARKER_MAGIC 0x434e52544d444e54ull /* "TNDMTRNC" */
#define MARKER_NAME "truncating"
#define MARKER_TMP "truncating.tmp"

struct side_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;
	uint64_t cluster_id;
	uint64_t first;
	uint64_t end;
	uint64_t count;
	uint32_t epoch;
	uint16_t node_id;
	uint8_t reserved[6];
	uint32_t crc; /* CRC32C of the 60 bytes above */
};
_Static_assert(sizeof(struct side_hdr) == 64, "side file header");
_Static_assert(offsetof(struct side_hdr, crc) == 60, "side file header crc");

struct marker {
	uint64_t magic;
	uint64_t pos;
	uint64_t end;
	uint32_t crc; /* CRC32C of the 24 bytes above */
	uint32_t reserved;
};
_Static_assert(sizeof(struct marker) == 32, "truncate marker");

static inline uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Map a whole segment file read-only; *data = its first data byte. Unmap with unmap_seg. */
static int map_seg(const struct tdm_log *log, uint64_t start, const uint8_t **data)
{
	size_t len = TDM_SEG_HDR_SIZE + log->seg_size;
	int fd = tdm_seg_open(log->dir, start, O_RDONLY);
	void *m;

	if (fd < 0)
		return TDM_ERR(-errno, "cannot open the segment of position %" PRIu64 " in %s: %s",
			       start, log->dir, strerror(errno));
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return TDM_ERR(-errno, "cannot map the segment of position %" PRIu64 " in %s: %s",
			       start, log->dir, strerror(errno));
	*data = (const uint8_t *)m + TDM_SEG_HDR_SIZE;
	return 0;
}

static void unmap_seg(const struct tdm_log *log, const uint8_t *data)
{
	munmap((void *)(data - TDM_SEG_HDR_SIZE), TDM_SEG_HDR_SIZE + log->seg_size);
}

/* fsync the directory holding path. */
static int fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int fd, rc = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		slash[slash == dir] = '\0'; /* "/x" keeps "/" */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- Checks before anything is changed ---- */

static int check_range(const struct tdm_log *log, uint64_t pos, uint64_t tail)
{
	uint64_t start = tdm_log_start(log);

	if (pos > tail)
		return TDM_ERR(-EINVAL, "cannot truncate log %s to %" PRIu64 ": beyond its end %"
			       PRIu64, log->dir, pos, tail);
	if (pos < start)
		return TDM_ERR(-EINVAL, "cannot truncate log %s to %" PRIu64 ": below its start %"
			       PRIu64 " (those records are no longer kept)", log->dir, pos, start);
	if (pos & (TDM_LOG_REC_ALIGN - 1))
		return TDM_ERR(-EINVAL, "cannot truncate log %s to %" PRIu64 ": not a record boundary "
			       "(not a multiple of %u)", log->dir, pos, TDM_LOG_REC_ALIGN);
	return 0;
}

/* Is pos where a record or PAD starts? Follows the length words of its segment (all written). */
static int check_boundary(const struct tdm_log *log, uint64_t pos, uint64_t tail)
{
	uint64_t start = pos & ~(log->seg_size - 1), at = start, prev = start;
	const uint8_t *d;
	int rc;

	if (pos == start || pos == tail) /* records never straddle a segment start */
		return 0;
	rc = map_seg(log, start, &d);
	if (rc)
		return rc;
	while (at < pos) {
		uint64_t span = tdm_rec_span_of(rd32(d + (at - start)));

		if (span < TDM_LOG_REC_ALIGN)
			break; /* cannot happen below the tail; stop rather than loop */
		prev = at;
		at += span;
	}
	unmap_seg(log, d);
	if (at != pos)
		return TDM_ERR(-EINVAL, "cannot truncate log %s to %" PRIu64 ": not a record boundary "
			       "(the record there starts at %" PRIu64 " and ends at %" PRIu64 ")",
			       log->dir, pos, prev, at);
	return 0;
}

/* ---- The side file ---- */

struct side_out {
	const char *path;
	uint64_t first, end;
	char tmp[PATH_MAX];
	FILE *f;           /**< PATH.tmp, opened at the first record */
	struct side_hdr h;
};

static int side_open(struct side_out *o, const struct tdm_log *log, uint32_t epoch)
{
	if (snprintf(o->tmp, sizeof(o->tmp), "%s.tmp", o->path) >= (int)sizeof(o->tmp))
		return TDM_ERR(-ENAMETOOLONG, "side file name %s is too long", o->path);
	o->f = fopen(o->tmp, "wbe");
	if (!o->f)
		return TDM_ERR(-errno, "cannot create side file %s: %s; nothing was changed", o->tmp,
			       strerror(errno));
	memset(&o->h, 0, sizeof(o->h));
	o->h.magic = SIDE_MAGIC;
	o->h.version = SIDE_VERSION;
	o->h.header_size = sizeof(o->h);
	o->h.cluster_id = log->meta->cluster_id;
	o->h.first = o->first;
	o->h.end = o->end;
	o->h.epoch = epoch;
	o->h.node_id = log->meta->node_id;
	/* the header is written again once count is known */
	return fwrite(&o->h, sizeof(o->h), 1, o->f) == 1 ? 0 : -EIO;
}

/* Header with the count, fsync, rename into place, fsync the directory. */
static int side_finish(struct side_out *o)
{
	int fd = fileno(o->f), rc = 0;

	o->h.crc = tdm_crc32c(0, &o->h, offsetof(struct side_hdr, crc));
	if (fflush(o->f) || pwrite(fd, &o->h, sizeof(o->h), 0) != (ssize_t)sizeof(o->h) ||
	    fsync(fd))
		rc = -errno;
	if (fclose(o->f) && !rc)
		rc = -errno;
	o->f = NULL;
	if (!rc && rename(o->tmp, o->path))
		rc = -errno;
	if (!rc)
		rc = fsync_parent(o->path);
	if (rc) {
		unlink(o->tmp);
		return TDM_ERR(rc, "cannot write side file %s: %s; nothing was changed", o->path,
			       strerror(-rc));
	}
	return 0;
}

/* Copy the records of [from, to) of one segment (data at d) to the side file. */
static int side_copy(struct side_out *o, const struct tdm_log *log, uint64_t seg,
		     const uint8_t *d, uint64_t from, uint64_t to)
{
	for (uint64_t at = from; at < to;) {
		const uint8_t *p = d + (at - seg);
		uint32_t len = rd32(p);
		uint64_t span = tdm_rec_span_of(len);
		bool pad = len & TDM_LOG_PAD_FLAG;
		int rc;

		if (span > to - at || (pad ? tdm_rec_check_pad(p, to - at, at, log->seg_size)
					   : tdm_log_rec_check(p, to - at, at))) {
			char name[32];
			tdm_seg_name(name, sizeof(name), seg);
			return TDM_ERR(TDM_ERR_CORRUPT, "cannot truncate log %s: the record at position %"
				       PRIu64 " (%s/%s, byte offset %" PRIu64 ") fails its checks; "
				       "nothing was changed", log->dir, at, log->dir, name,
				       TDM_SEG_HDR_SIZE + at - seg);
		}
		at += span;
		if (pad)
			continue;
		if (!o->f && (rc = side_open(o, log, ((const struct tdm_log_rec_hdr *)p)->epoch)))
			return rc;
		if (fwrite(p, span, 1, o->f) != 1)
			return TDM_ERR(-EIO, "cannot write side file %s: %s; nothing was changed",
				       o->tmp, strerror(errno));
		o->h.count++;
	}
	return 0;
}

/* Write the records of [pos, end) to path (no file when there are none). */
static int side_write(const struct tdm_log *log, uint64_t pos, uint64_t end, const char *path)
{
	struct side_out o = { .path = path, .first = pos, .end = end };
	int rc = 0;

	for (uint64_t seg = pos & ~(log->seg_size - 1); seg < end && !rc; seg += log->seg_size) {
		uint64_t from = pos > seg ? pos : seg, to = seg + log->seg_size;
		const uint8_t *d;

		rc = map_seg(log, seg, &d);
		if (rc)
			break;
		rc = side_copy(&o, log, seg, d, from, end < to ? end : to);
		unmap_seg(log, d);
	}
	if (!o.f)
		return rc;
	if (!rc)
		return side_finish(&o);
	fclose(o.f);
	unlink(o.tmp);
	return rc;
}

/* ---- The marker and the cut ---- */

static void marker_fill(struct marker *mk, uint64_t pos, uint64_t end)
{
	memset(mk, 0, sizeof(*mk));
	mk->magic = MARKER_MAGIC;
	mk->pos = pos;
	mk->end = end;
	mk->crc = tdm_crc32c(0, mk, offsetof(struct marker, crc));
}

static int marker_write(const struct tdm_log *log, uint64_t pos, uint64_t end)
{
	struct marker mk;
	int fd, rc = 0;

	marker_fill(&mk, pos, end);
	fd = openat(log->dir_fd, MARKER_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return TDM_ERR(-errno, "cannot write %s/%s: %s; nothing was cut", log->dir, MARKER_TMP,
			       strerror(errno));
	if (write(fd, &mk, sizeof(mk)) != (ssize_t)sizeof(mk) || fsync(fd))
		rc = -errno;
	close(fd);
	if (!rc && renameat(log->dir_fd, MARKER_TMP, log->dir_fd, MARKER_NAME))
		rc = -errno;
	if (!rc && tdm_fsync_dir(log->dir_fd)) {
		rc = -errno;
		unlinkat(log->dir_fd, MARKER_NAME, 0); /* not durable: do not let a restart cut */
	}
	if (rc) {
		unlinkat(log->dir_fd, MARKER_TMP, 0);
		return TDM_ERR(rc, "cannot write %s/%s: %s; nothing was cut", log->dir, MARKER_NAME,
			       strerror(-rc));
	}
	return 0;
}

/* The on-disk cut named by the marker; *epoch: the last epoch the history keeps. */
static int cut_files(int dir_fd, const char *dir, uint64_t seg_size, uint64_t pos, uint64_t end,
		     uint32_t *epoch)
{
	int rc = tdm_seg_cut(dir_fd, dir, seg_size, pos, end);

	if (!rc)
		rc = tdm_history_cut(dir_fd, dir, pos, epoch);
	if (rc)
		return rc;
	if ((unlinkat(dir_fd, MARKER_NAME, 0) && errno != ENOENT) || tdm_fsync_dir(dir_fd))
		return TDM_ERR(-errno, "cannot remove %s/%s: %s", dir, MARKER_NAME, strerror(errno));
	return 0;
}

/* The ring after the cut: see the top of this file. The flusher's thread; nothing in flight. */
static void cut_ring(struct tdm_log *log, uint64_t pos, uint64_t end)
{
	struct tdm_ring_meta *m = log->meta;
	uint64_t gate = m->gate.v, old;
	uint64_t from = gate > pos ? gate : pos;

	/* The ring is zero from the gate on but for [gate, end); [gate, pos) stays for readers. */
	memset(log->ring + (from & log->mask), 0, end - from);
	if (gate > pos) {
		tdm_store_release(&m->gate.v, pos);
		/* pairs with ring_room's acquire: a writer that sees it re-reads the gate */
		tdm_store_release(&m->truncations, m->truncations + 1);
		gate = pos;
	}
	tdm_store_release(&log->gate_cache, gate);
	tdm_store_release(&log->cache_gen, m->truncations);
	tdm_store_release(&m->published.v, pos);
	tdm_store_release(&m->written.v, pos);
	tdm_store_release(&m->durable.v, pos);
	old = tdm_load_acquire(&m->tail.v);
	while (!__atomic_compare_exchange_n(&m->tail.v, &old, pos | (old & TDM_TAIL_FENCED), true,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		; /* only the gate bit can change meanwhile (tdm_log_set_writable) */
}

int tdm_truncate_resume(struct tdm_log *log)
{
	struct marker mk, want;
	uint32_t epoch;
	ssize_t n;
	int fd, rc;

	fd = openat(log->dir_fd, MARKER_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : TDM_ERR(-errno, "cannot read %s/%s: %s", log->dir,
						     MARKER_NAME, strerror(errno));
	n = read(fd, &mk, sizeof(mk));
	close(fd);
	marker_fill(&want, mk.pos, mk.end);
	if (n != (ssize_t)sizeof(mk) || memcmp(&mk, &want, sizeof(mk)) != 0 ||
	    mk.pos > mk.end || mk.pos & (TDM_LOG_REC_ALIGN - 1))
		return TDM_ERR(TDM_ERR_CORRUPT, "%s/%s (a truncate cut short by a crash) is damaged, "
			       "so where to cut is unknown; restore the log from a replica; nothing "
			       "was changed", log->dir, MARKER_NAME);
	rc = cut_files(log->dir_fd, log->dir, log->seg_size, mk.pos, mk.end, &epoch);
	if (rc)
		return tdm_err_append(rc, "while finishing the truncate of %s to %" PRIu64, log->dir,
				      mk.pos);
	unlinkat(log->dir_fd, MARKER_TMP, 0);
	return 0;
}

/* Before anything changes: the caller's side of the contract, the flush, a valid pos. */
static int truncate_check(struct tdm_log *log, uint64_t pos, uint64_t *tail)
{
	int rc;

	if (!log->owner)
		return TDM_ERR(-EINVAL, "only the owner of log %s may truncate it", log->dir);
	if (log->fl.failed)
		return TDM_ERR(TDM_ERR_FAILED, "log %s stopped after an I/O error; restart the node",
			       log->dir);
	if (tdm_log_writable(log))
		return TDM_ERR(-EBUSY, "cannot truncate log %s while it accepts writes: close the "
			       "writers' gate first (tdm_log_set_writable(log, false))", log->dir);
	*tail = tdm_log_tail(log);
	rc = tdm_log_flush_until(log, *tail);
	if (rc)
		return rc;
	if (tdm_log_tail(log) != *tail)
		return TDM_ERR(-EBUSY, "cannot truncate log %s: its end moved from %" PRIu64 " to %"
			       PRIu64 " meanwhile; stop copying into it first", log->dir, *tail,
			       tdm_log_tail(log));
	rc = check_range(log, pos, *tail); /* after the flush: its retention may move the start */
	return rc ? rc : check_boundary(log, pos, *tail);
}

TDM_API int tdm_log_truncate(struct tdm_log *log, uint64_t pos, const char *aside_path)
{
	uint64_t tail = 0;
	uint32_t epoch = 0;
	int rc = truncate_check(log, pos, &tail);

	if (rc)
		return rc;
	if (pos == tail) { /* nothing to move; history entries left at the end by a crash go */
		rc = tdm_history_cut(log->dir_fd, log->dir, pos, &epoch);
		if (!rc)
			__atomic_store_n(&log->meta->epoch, epoch, __ATOMIC_RELEASE);
		return rc;
	}
	if (!aside_path || !*aside_path)
		return TDM_ERR(-EINVAL, "cannot truncate log %s to %" PRIu64 ": no side file named for "
			       "the records after it", log->dir, pos);
	rc = side_write(log, pos, tail, aside_path);
	if (!rc)
		rc = marker_write(log, pos, tail);
	if (rc)
		return rc;
	rc = cut_files(log->dir_fd, log->dir, log->seg_size, pos, tail, &epoch);
	if (!rc) {
		cut_ring(log, pos, tail);
		rc = tdm_flusher_restart(log, pos);
	}
	if (rc) {
		tdm_log_mark_failed(log);
		return tdm_err_append(TDM_ERR_FAILED, "truncating log %s to %" PRIu64 " failed part "
				      "way; writes are refused; restart the node: opening the log "
				      "finishes the cut", log->dir, pos);
	}
	__atomic_store_n(&log->meta->epoch, epoch, __ATOMIC_RELEASE);
	return 0;
}

/* ---- Reading a side file ---- */

static int side_corrupt(struct tdm_log_side_info *info, const char *path, uint64_t off,
			const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int side_corrupt(struct tdm_log_side_info *info, const char *path, uint64_t off,
			const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(info->error_text, sizeof(info->error_text), fmt, ap);
	va_end(ap);
	info->error_offset = off;
	return TDM_ERR(TDM_ERR_CORRUPT, "side file %s at byte offset %" PRIu64 ": %s", path, off,
		       info->error_text);
}

static int side_read_hdr(FILE *f, const char *path, struct tdm_log_side_info *info)
{
	struct side_hdr h;

	if (fread(&h, sizeof(h), 1, f) != 1)
		return ferror(f) ? TDM_ERR(-EIO, "cannot read side file %s", path)
				 : side_corrupt(info, path, 0, "shorter than a side file header "
						"(%zu bytes)", sizeof(h));
	if (h.magic != SIDE_MAGIC)
		return side_corrupt(info, path, 0, "not a tandem side file (bad magic)");
	if (h.version != SIDE_VERSION)
		return TDM_ERR(TDM_ERR_VERSION, "side file %s has version %u, this build reads %u",
			       path, h.version, SIDE_VERSION);
	if (h.header_size != sizeof(h) || h.crc != tdm_crc32c(0, &h, offsetof(struct side_hdr, crc)))
		return side_corrupt(info, path, 0, "the header fails its checksum");
	if (h.first > h.end || !h.count)
		return side_corrupt(info, path, 0, "the header's positions or count are not valid");
	info->cluster_id = h.cluster_id;
	info->first = h.first;
	info->end = h.end;
	info->count = h.count;
	info->epoch = h.epoch;
	info->node_id = h.node_id;
	return 0;
}

/* Read the record at file offset off into *buf. prev: the end of the record before it. */
static int side_read_rec(FILE *f, const char *path, struct tdm_log_side_info *info, uint64_t off,
			 uint64_t prev, uint8_t **buf, size_t *cap)
{
	struct tdm_log_rec_hdr h;
	uint64_t span;
	uint32_t len;

	if (fread(&h, sizeof(h), 1, f) != 1)
		goto short_read;
	len = h.length;
	if (len & TDM_LOG_PAD_FLAG || len < TDM_LOG_REC_HDR_SIZE ||
	    len > TDM_LOG_REC_HDR_SIZE + TDM_LOG_MAX_KEY + TDM_LOG_MAX_VALUE)
		return side_corrupt(info, path, off, "record %" PRIu64 " has a bad length word (%u)",
				    info->records, len);
	span = tdm_rec_span_of(len);
	if (h.position < prev || h.position & (TDM_LOG_REC_ALIGN - 1) || h.position > info->end ||
	    span > info->end - h.position)
		return side_corrupt(info, path, off, "record %" PRIu64 " has position %" PRIu64 ", "
				    "out of order or outside [%" PRIu64 ", %" PRIu64 ")",
				    info->records, h.position, info->first, info->end);
	if (span > *cap) {
		uint8_t *n = realloc(*buf, span);
		if (!n)
			return -ENOMEM;
		*buf = n;
		*cap = span;
	}
	memcpy(*buf, &h, sizeof(h));
	if (fread(*buf + sizeof(h), span - sizeof(h), 1, f) != 1)
		goto short_read;
	if (tdm_log_rec_check(*buf, len, h.position))
		return side_corrupt(info, path, off, "the record at position %" PRIu64 " fails its "
				    "checks (checksum, length or type)", h.position);
	for (uint64_t i = len; i < span; i++)
		if ((*buf)[i])
			return side_corrupt(info, path, off + i, "the padding of the record at "
					    "position %" PRIu64 " is not zero", h.position);
	return 0;
short_read:
	if (ferror(f))
		return TDM_ERR(-EIO, "cannot read side file %s at byte offset %" PRIu64, path, off);
	return side_corrupt(info, path, off, "the file ends inside record %" PRIu64 " of %" PRIu64
			    " (a partial copy?)", info->records, info->count);
}

TDM_API int tdm_log_side_read(const char *path, struct tdm_log_side_info *info,
			      tdm_log_scan_fn fn, void *ctx)
{
	uint64_t off = sizeof(struct side_hdr), prev;
	uint8_t *buf = NULL;
	size_t cap = 0;
	FILE *f;
	int rc;

	memset(info, 0, sizeof(*info));
	f = fopen(path, "rbe");
	if (!f)
		return TDM_ERR(-errno, "cannot open side file %s: %s", path, strerror(errno));
	rc = side_read_hdr(f, path, info);
	for (prev = info->first; !rc && info->records < info->count;) {
		const struct tdm_log_rec_hdr *h;

		rc = side_read_rec(f, path, info, off, prev, &buf, &cap);
		if (rc)
			break;
		h = (const struct tdm_log_rec_hdr *)buf;
		prev = h->position + tdm_rec_span_of(h->length);
		off += tdm_rec_span_of(h->length);
		info->records++;
		if (fn) {
			struct tdm_log_rec rec = { h, buf + TDM_LOG_REC_HDR_SIZE,
						   buf + TDM_LOG_REC_HDR_SIZE + h->key_len };
			rc = fn(ctx, &rec);
		}
	}
	if (!rc && fgetc(f) != EOF)
		rc = side_corrupt(info, path, off, "bytes after the last of its %" PRIu64 " records",
				  info->count);
	free(buf);
	fclose(f);
	return rc;
}
