/*
 * Store snapshots: a store's whole contents and the log position they belong to, in one file.
 *
 * All integers are little-endian.
 *
 * Two versions: 1, written by a plain-mode store (the only one before merge mode existed), and
 * 2, written by a merge-mode store: its header grows by the tombstone count and a flags word,
 * and its entries include the tombstones. This build reads both.
 *
 * HEADER (48 bytes in version 1, 64 in version 2; file offset 0)
 *   off size field
 *   0   8    magic        "TDMSNAP1" (54 44 4d 53 4e 41 50 31)
 *   8   4    version      1 or 2
 *   12  4    header_size  48 (version 1) or 64 (version 2)
 *   16  8    position     the log position the contents correspond to: they hold exactly the
 *                         records before it (apply resumes from here)
 *   24  8    count        live entries that follow
 *   32  8    digest       tdm_store_digest of the contents (sum of the live entries' hashes)
 *   40  8    data_bytes   sum of key + value bytes of the live entries
 *   version 2 only:
 *   48  8    tombstones   tombstone entries that follow (among the entries, in any order)
 *   56  4    flags        bit 0: merge mode (set); the other bits 0
 *   60  4    reserved     0
 *
 * ENTRY (count + tombstones times, back to back, no padding)
 *   0   4    key_len      <= TDM_LOG_MAX_KEY (64 KiB)
 *   4   4    value_len    <= TDM_LOG_MAX_VALUE (16 MiB); 0 for a tombstone
 *   8   8    hlc          timestamp of the write that set the value (or deleted the key)
 *   16  2    origin       node that accepted it
 *   18  2    flags        version 1: 0; version 2: bit 0 tombstone, the other bits 0
 *   20  ...  key bytes, then value bytes
 *
 * TRAILER (8 bytes)
 *   0   4    crc          CRC32C of every byte before the trailer (header and entries)
 *   4   4    end          "TDMZ" (54 44 4d 5a)
 *   Nothing follows it.
 *
 * WRITE RULE: the file is written as <path>.tmp, fsynced, renamed over <path>, and the directory
 * is fsynced: a crash leaves either the old snapshot or the new one, never a mix. The counters of
 * the header are taken before the entries are written and checked against what was written, so
 * a store that changed meanwhile (workers still running) fails the write instead of producing a
 * file whose header lies.
 *
 * LOAD RULE: the store is emptied, then the file is read once: magic (else TDM_ERR_CORRUPT),
 * version (else TDM_ERR_VERSION; version 2 needs a merge-mode store), header size and flags,
 * each entry's lengths and flags, the trailer's CRC and end mark, no trailing bytes, then the
 * store's count, data bytes, digest (recomputed from the inserted entries) and tombstones
 * against the header. A merge-mode store takes each entry's version as it is (no comparison,
 * no conflict counted). Any failure empties the store again and names the file and what is
 * wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply_pvt.h"

#define SNAP_MAGIC "TDMSNAP1"
#define SNAP_END "TDMZ"
#define SNAP_VERSION_PLAIN 1u
#define SNAP_VERSION_MERGE 2u
#define SNAP_HDR_SIZE_V1 48u
#define SNAP_HDR_SIZE_V2 64u
#define SNAP_MERGE 0x1u     /* header flags: merge mode */
#define SNAP_TOMBSTONE 0x1u /* entry flags: a tombstone */
#define SNAP_ENTRY_SIZE 20u
#define SNAP_TRAILER_SIZE 8u
#define IO_BUF (256u * 1024)

/* ---- Little-endian fields ---- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

struct snap_hdr {
	uint64_t position, count, digest, data_bytes;
	uint64_t tombstones; /* version 2 */
	uint32_t version;
};

static uint32_t hdr_size(uint32_t version)
{
	return version == SNAP_VERSION_PLAIN ? SNAP_HDR_SIZE_V1 : SNAP_HDR_SIZE_V2;
}

static void encode_hdr(uint8_t *p, const struct snap_hdr *h)
{
	memcpy(p, SNAP_MAGIC, 8);
	put_le(p + 8, h->version, 4);
	put_le(p + 12, hdr_size(h->version), 4);
	put_le(p + 16, h->position, 8);
	put_le(p + 24, h->count, 8);
	put_le(p + 32, h->digest, 8);
	put_le(p + 40, h->data_bytes, 8);
	if (h->version == SNAP_VERSION_PLAIN)
		return;
	put_le(p + 48, h->tombstones, 8);
	put_le(p + 56, SNAP_MERGE, 4);
	put_le(p + 60, 0, 4);
}

/* ---- Writing ---- */

struct writer {
	int fd;
	const char *path;  /* the temporary file, for messages */
	uint32_t crc;      /* of every byte put so far */
	size_t len;        /* bytes in buf */
	struct snap_hdr seen; /* count, digest, bytes and tombstones of the entries written */
	uint8_t buf[IO_BUF];
};

static int write_all(int fd, const uint8_t *p, size_t n, const char *path)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return TDM_ERR(-errno, "cannot write snapshot %s: %s", path,
				       strerror(errno));
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int w_flush(struct writer *w)
{
	int rc = write_all(w->fd, w->buf, w->len, w->path);

	w->len = 0;
	return rc;
}

static int w_put(struct writer *w, const void *data, size_t n)
{
	const uint8_t *p = data;

	w->crc = tdm_crc32c(w->crc, p, n);
	while (n) {
		size_t k = IO_BUF - w->len < n ? IO_BUF - w->len : n;
		int rc;

		memcpy(w->buf + w->len, p, k);
		w->len += k;
		p += k;
		n -= k;
		if (w->len == IO_BUF && (rc = w_flush(w)))
			return rc;
	}
	return 0;
}

static int w_version(void *ctx, const void *key, uint32_t klen,
		     const struct tdm_store_version *v)
{
	struct writer *w = ctx;
	uint8_t e[SNAP_ENTRY_SIZE];
	int rc;

	put_le(e, klen, 4);
	put_le(e + 4, v->vlen, 4);
	put_le(e + 8, v->hlc, 8);
	put_le(e + 16, v->origin, 2);
	put_le(e + 18, v->deleted ? SNAP_TOMBSTONE : 0, 2);
	if ((rc = w_put(w, e, sizeof(e))) || (rc = w_put(w, key, klen)) ||
	    (rc = w_put(w, v->val, v->vlen)))
		return rc;
	if (v->deleted) {
		w->seen.tombstones++;
		return 0;
	}
	w->seen.count++;
	w->seen.digest += tdm_store_entry_hash(tdm_apply_key_hash(key, klen), v->val, v->vlen);
	w->seen.data_bytes += (uint64_t)klen + v->vlen;
	return 0;
}

static int w_entry(void *ctx, const void *key, uint32_t klen, const void *val, uint32_t vlen,
		   uint64_t hlc, uint16_t origin)
{
	return w_version(ctx, key, klen,
			 &(struct tdm_store_version){ val, vlen, hlc, origin, false });
}

/* Header, entries, trailer into w->fd. */
static int write_contents(struct tdm_store *s, struct writer *w, const struct snap_hdr *h)
{
	uint8_t b[SNAP_HDR_SIZE_V2];
	int rc;

	encode_hdr(b, h);
	if ((rc = w_put(w, b, hdr_size(h->version))))
		return rc;
	if (h->version == SNAP_VERSION_PLAIN)
		rc = tdm_store_foreach(s, w_entry, w);
	else
		rc = tdm_store_foreach_all(s, w_version, w);
	if (rc)
		return rc;
	if (w->seen.count != h->count || w->seen.digest != h->digest ||
	    w->seen.data_bytes != h->data_bytes || w->seen.tombstones != h->tombstones)
		return TDM_ERR(-EAGAIN, "store changed while writing snapshot %s (%" PRIu64
			       " entries counted, %" PRIu64 " written): stop the apply workers "
			       "first", w->path, h->count, w->seen.count);
	put_le(b, w->crc, 4);
	memcpy(b + 4, SNAP_END, 4);
	if ((rc = w_put(w, b, SNAP_TRAILER_SIZE)) || (rc = w_flush(w)))
		return rc;
	if (fsync(w->fd))
		return TDM_ERR(-errno, "cannot fsync snapshot %s: %s", w->path, strerror(errno));
	return 0;
}

/* fsync the directory holding path, so that a rename in it is durable. */
static int fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rc = 0;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash == path ? 1 : slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd))
		rc = TDM_ERR(-errno, "cannot fsync directory %s of snapshot %s: %s", dir, path,
			     strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc;
}

TDM_API int tdm_store_snapshot_write(struct tdm_store *s, uint64_t pos, const char *path)
{
	struct snap_hdr h = { pos, tdm_store_count(s), tdm_store_digest(s),
			      tdm_store_data_bytes(s), tdm_store_tombstones(s),
			      tdm_store_is_merge(s) ? SNAP_VERSION_MERGE : SNAP_VERSION_PLAIN };
	char tmp[PATH_MAX];
	struct writer *w;
	int rc;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return TDM_ERR(-ENAMETOOLONG, "snapshot path too long: %s", path);
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->path = tmp;
	w->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		rc = TDM_ERR(-errno, "cannot create snapshot %s: %s", tmp, strerror(errno));
		goto out;
	}
	rc = write_contents(s, w, &h);
	if (close(w->fd) && !rc)
		rc = TDM_ERR(-errno, "cannot close snapshot %s: %s", tmp, strerror(errno));
	if (!rc && rename(tmp, path))
		rc = TDM_ERR(-errno, "cannot rename snapshot %s to %s: %s", tmp, path,
			     strerror(errno));
	if (!rc)
		rc = fsync_dir_of(path);
	if (rc)
		unlink(tmp);
out:
	free(w);
	return rc;
}

/* ---- Loading ---- */

struct reader {
	int fd;
	const char *path;
	uint32_t crc;     /* of every byte consumed so far */
	uint64_t off;     /* file offset of the next byte consumed */
	size_t pos, len;  /* buf[pos, len) is read but not consumed */
	uint8_t *kv;      /* key + value of the entry being loaded */
	size_t kv_cap;
	uint8_t buf[IO_BUF];
};

static int corrupt(const struct reader *r, const char *what)
{
	return TDM_ERR(TDM_ERR_CORRUPT, "snapshot %s is damaged at offset %" PRIu64 ": %s; "
		       "remove it to rebuild from the log or a peer", r->path, r->off, what);
}

/* Fill buf when it is empty. @return bytes available, 0 at end of file, or -errno. */
static ssize_t r_fill(struct reader *r)
{
	ssize_t k;

	if (r->pos < r->len)
		return (ssize_t)(r->len - r->pos);
	do
		k = read(r->fd, r->buf, IO_BUF);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return TDM_ERR(-errno, "cannot read snapshot %s: %s", r->path, strerror(errno));
	r->pos = 0;
	r->len = (size_t)k;
	return k;
}

/* Consume n bytes into dst (CRC'd). @return 0; TDM_ERR_CORRUPT when the file ends first
 * (what names the part that was cut); -errno. */
static int r_get(struct reader *r, void *dst, size_t n, const char *what)
{
	uint8_t *d = dst;

	while (n) {
		ssize_t avail = r_fill(r);
		size_t k;

		if (avail < 0)
			return (int)avail;
		if (avail == 0)
			return corrupt(r, what);
		k = (size_t)avail < n ? (size_t)avail : n;
		memcpy(d, r->buf + r->pos, k);
		r->crc = tdm_crc32c(r->crc, d, k);
		r->pos += k;
		r->off += k;
		d += k;
		n -= k;
	}
	return 0;
}

static int load_hdr(struct reader *r, struct tdm_store *s, struct snap_hdr *h)
{
	static const char cut[] = "the file is shorter than its header (truncated)";
	uint8_t b[SNAP_HDR_SIZE_V2];
	int rc = r_get(r, b, SNAP_HDR_SIZE_V1, cut);

	if (rc)
		return rc;
	if (memcmp(b, SNAP_MAGIC, 8))
		return corrupt(r, "bad magic (not a tandem snapshot)");
	h->version = (uint32_t)get_le(b + 8, 4);
	if (h->version != SNAP_VERSION_PLAIN && h->version != SNAP_VERSION_MERGE)
		return TDM_ERR(TDM_ERR_VERSION, "snapshot %s has layout version %u; this build "
			       "reads versions %u and %u", r->path, h->version, SNAP_VERSION_PLAIN,
			       SNAP_VERSION_MERGE);
	if (h->version == SNAP_VERSION_MERGE && !tdm_store_is_merge(s))
		return TDM_ERR(TDM_ERR_VERSION, "snapshot %s is of a multi-primary (merge-mode) "
			       "store, with tombstones: it loads into a merge-mode store only",
			       r->path);
	if (get_le(b + 12, 4) != hdr_size(h->version))
		return corrupt(r, "bad header size");
	h->position = get_le(b + 16, 8);
	h->count = get_le(b + 24, 8);
	h->digest = get_le(b + 32, 8);
	h->data_bytes = get_le(b + 40, 8);
	if (h->version == SNAP_VERSION_PLAIN)
		return 0;
	if ((rc = r_get(r, b + SNAP_HDR_SIZE_V1, SNAP_HDR_SIZE_V2 - SNAP_HDR_SIZE_V1, cut)))
		return rc;
	h->tombstones = get_le(b + 48, 8);
	if (get_le(b + 56, 4) != SNAP_MERGE || get_le(b + 60, 4))
		return corrupt(r, "bad header flags");
	return 0;
}

/* The entry flags of a file of this version are valid for an entry of vlen bytes. */
static bool entry_flags_ok(uint32_t version, uint32_t flags, uint32_t vlen)
{
	if (version == SNAP_VERSION_PLAIN)
		return flags == 0;
	return (flags & ~SNAP_TOMBSTONE) == 0 && (!(flags & SNAP_TOMBSTONE) || vlen == 0);
}

static int load_entry(struct reader *r, struct tdm_store *s, uint32_t version)
{
	uint8_t e[SNAP_ENTRY_SIZE];
	uint32_t klen, vlen, flags;
	int rc = r_get(r, e, sizeof(e), "an entry is cut short (truncated file)");

	if (rc)
		return rc;
	klen = (uint32_t)get_le(e, 4);
	vlen = (uint32_t)get_le(e + 4, 4);
	flags = (uint32_t)get_le(e + 18, 2);
	if (klen > TDM_LOG_MAX_KEY || vlen > TDM_LOG_MAX_VALUE ||
	    !entry_flags_ok(version, flags, vlen))
		return corrupt(r, "an entry has impossible lengths or bad flags");
	if ((size_t)klen + vlen > r->kv_cap) {
		uint8_t *n = realloc(r->kv, (size_t)klen + vlen);

		if (!n)
			return -ENOMEM;
		r->kv = n;
		r->kv_cap = (size_t)klen + vlen;
	}
	rc = r_get(r, r->kv, (size_t)klen + vlen, "an entry is cut short (truncated file)");
	if (rc)
		return rc;
	if (!tdm_store_is_merge(s))
		return tdm_store_put(s, r->kv, klen, r->kv + klen, vlen, get_le(e + 8, 8),
				     (uint16_t)get_le(e + 16, 2));
	return tdm_store_load_version(s, &(struct tdm_store_in){
		r->kv, klen, r->kv + klen, vlen, get_le(e + 8, 8), (uint16_t)get_le(e + 16, 2),
		(flags & SNAP_TOMBSTONE) != 0 });
}

static int load_trailer(struct reader *r)
{
	uint32_t crc = r->crc;
	uint8_t t[SNAP_TRAILER_SIZE];
	ssize_t more;
	int rc = r_get(r, t, sizeof(t), "the trailer is missing (truncated file)");

	if (rc)
		return rc;
	if (get_le(t, 4) != crc)
		return corrupt(r, "CRC32C mismatch (a byte of the file changed)");
	if (memcmp(t + 4, SNAP_END, 4))
		return corrupt(r, "bad end mark");
	more = r_fill(r);
	if (more < 0)
		return (int)more;
	return more ? corrupt(r, "bytes after the trailer") : 0;
}

/* The store, loaded, against the header's counters. */
static int check_totals(struct reader *r, struct tdm_store *s, const struct snap_hdr *h)
{
	if (tdm_store_count(s) != h->count || tdm_store_data_bytes(s) != h->data_bytes ||
	    tdm_store_tombstones(s) != h->tombstones)
		return corrupt(r, "the entries do not add up to the header's count, bytes and "
			       "tombstones (duplicate keys?)");
	if (tdm_store_digest(s) != h->digest)
		return corrupt(r, "the digest of the entries does not match the header's");
	return 0;
}

static int load(struct reader *r, struct tdm_store *s, uint64_t *pos)
{
	struct snap_hdr h = { 0, 0, 0, 0, 0, 0 };
	int rc = load_hdr(r, s, &h);

	for (uint64_t i = 0; !rc && i < h.count + h.tombstones; i++)
		rc = load_entry(r, s, h.version);
	if (!rc)
		rc = load_trailer(r);
	if (!rc)
		rc = check_totals(r, s, &h);
	if (!rc)
		*pos = h.position;
	return rc;
}

TDM_API int tdm_store_snapshot_load(struct tdm_store *s, const char *path, uint64_t *pos)
{
	struct reader *r;
	int rc;

	tdm_store_clear(s);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->path = path;
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		rc = TDM_ERR(-errno, "cannot open snapshot %s: %s", path, strerror(errno));
	} else {
		rc = load(r, s, pos);
		close(r->fd);
	}
	if (rc)
		tdm_store_clear(s);
	free(r->kv);
	free(r);
	return rc;
}
