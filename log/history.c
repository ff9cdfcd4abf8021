/*
 * The history file: every epoch and the position of its first record, used to find where two
 * logs diverged. Small and rewritten whole on each change (temporary file, fsync, rename, fsync
 * of the directory), so it is always either the old or the new version. Entries are added by
 * tdm_log_begin_epoch (a primary) and by tdm_log_append_at copying an EPOCH record (a replica),
 * and dropped from a position on by tdm_log_truncate.
 *
 * DIR/history, little-endian:
 *   0        8  magic "TNDMHIST"
 *   8        4  version 1
 *   12       4  count
 *   16   16*n   count entries { u32 epoch; u32 reserved (0); u64 start position }, oldest first
 *   16+16n   4  CRC32C of every byte before it
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log_pvt.h"

#define HIST_MAGIC 0x545349484d444e54ull /* "TNDMHIST" */
#define HIST_VERSION 1u

struct hist_entry {
	uint32_t epoch;
	uint32_t reserved;
	uint64_t start;
};

struct hist_head {
	uint64_t magic;
	uint32_t version;
	uint32_t count;
};

/* Read the whole file. @return entries (malloc'ed in *out, may be NULL for 0) or an error. */
static int hist_load(const char *dir, struct hist_entry **out)
{
	char path[600];
	struct hist_head h;
	uint32_t crc, want;
	size_t body;
	uint8_t *buf = NULL;
	int fd, rc;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/history", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : TDM_ERR(-errno, "cannot open %s: %s", path,
						     strerror(errno));
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || h.magic != HIST_MAGIC) {
		rc = TDM_ERR(TDM_ERR_CORRUPT, "%s is not a tandem history file (bad magic)", path);
		goto out;
	}
	if (h.version != HIST_VERSION) {
		rc = TDM_ERR(TDM_ERR_VERSION, "%s has version %u, this build reads %u", path,
			     h.version, HIST_VERSION);
		goto out;
	}
	if (h.count > TDM_LOG_HISTORY_MAX) {
		rc = TDM_ERR(TDM_ERR_CORRUPT, "%s claims %u entries", path, h.count);
		goto out;
	}
	body = sizeof(h) + (size_t)h.count * sizeof(struct hist_entry);
	buf = malloc(body + 4);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	if (pread(fd, buf, body + 4, 0) != (ssize_t)(body + 4)) {
		rc = TDM_ERR(TDM_ERR_CORRUPT, "%s is truncated", path);
		goto out;
	}
	memcpy(&want, buf + body, 4);
	crc = tdm_crc32c(0, buf, body);
	if (crc != want) {
		rc = TDM_ERR(TDM_ERR_CORRUPT, "%s fails its checksum; restore it from a replica",
			     path);
		goto out;
	}
	rc = (int)h.count;
	if (h.count) {
		*out = malloc(h.count * sizeof(struct hist_entry));
		if (!*out)
			rc = -ENOMEM;
		else
			memcpy(*out, buf + sizeof(h), h.count * sizeof(struct hist_entry));
	}
out:
	free(buf);
	close(fd);
	return rc;
}

/* Replace the history file with these n entries: temporary file, fsync, rename, fsync dir. */
static int hist_store(int dir_fd, const char *dir, const struct hist_entry *e, uint32_t n)
{
	struct hist_head h = { HIST_MAGIC, HIST_VERSION, n };
	size_t body = sizeof(h) + (size_t)n * sizeof(struct hist_entry);
	uint8_t *buf = calloc(1, body + 4);
	uint32_t crc;
	int fd, rc = 0;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, &h, sizeof(h));
	if (n)
		memcpy(buf + sizeof(h), e, n * sizeof(struct hist_entry));
	crc = tdm_crc32c(0, buf, body);
	memcpy(buf + body, &crc, 4);

	fd = openat(dir_fd, "history.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = TDM_ERR(-errno, "cannot write %s/history.tmp: %s", dir, strerror(errno));
		goto out;
	}
	if (write(fd, buf, body + 4) != (ssize_t)(body + 4) || fsync(fd))
		rc = TDM_ERR(-errno, "cannot write %s/history.tmp: %s", dir, strerror(errno));
	close(fd);
	if (!rc && (renameat(dir_fd, "history.tmp", dir_fd, "history") || tdm_fsync_dir(dir_fd)))
		rc = TDM_ERR(-errno, "cannot replace %s/history: %s", dir, strerror(errno));
out:
	free(buf);
	return rc;
}

/* Add (epoch, start). The same entry as the last one is taken without a change: a replica that
 * retries a copy after back-pressure adds its EPOCH records again. */
int tdm_history_append(int dir_fd, const char *dir, uint32_t epoch, uint64_t start)
{
	struct hist_entry *e = NULL, *more;
	int n, rc;

	n = hist_load(dir, &e);
	if (n < 0)
		return n;
	if (n && e[n - 1].epoch == epoch && e[n - 1].start == start) {
		free(e);
		return 0;
	}
	if (n && (e[n - 1].epoch >= epoch || e[n - 1].start > start)) {
		rc = TDM_ERR(-EINVAL, "%s/history: epoch %u at %llu does not follow its last entry "
			     "(epoch %u at %llu)", dir, epoch, (unsigned long long)start,
			     e[n - 1].epoch, (unsigned long long)e[n - 1].start);
		free(e);
		return rc;
	}
	if (n >= TDM_LOG_HISTORY_MAX) {
		free(e);
		return TDM_ERR(-ENOSPC, "%s/history is full (%d epochs)", dir, n);
	}
	more = realloc(e, ((size_t)n + 1) * sizeof(*e));
	if (!more) {
		free(e);
		return -ENOMEM;
	}
	more[n] = (struct hist_entry){ epoch, 0, start };
	rc = hist_store(dir_fd, dir, more, (uint32_t)n + 1);
	free(more);
	return rc;
}

/* Drop the entries that start at or after pos (a truncate). *last_epoch: the epoch of the last
 * entry left, 0 when none. The file is rewritten only when something is dropped. */
int tdm_history_cut(int dir_fd, const char *dir, uint64_t pos, uint32_t *last_epoch)
{
	struct hist_entry *e = NULL;
	int n = hist_load(dir, &e), keep = 0, rc = 0;

	if (n < 0)
		return n;
	while (keep < n && e[keep].start < pos)
		keep++;
	if (keep < n)
		rc = hist_store(dir_fd, dir, e, (uint32_t)keep);
	if (!rc)
		*last_epoch = keep ? e[keep - 1].epoch : 0;
	free(e);
	return rc;
}

/* The epoch of the last history entry (0 when the log never began one). */
int tdm_history_last_epoch(const char *dir, uint32_t *epoch)
{
	struct hist_entry *e;
	int n = hist_load(dir, &e);

	if (n < 0)
		return n;
	*epoch = n ? e[n - 1].epoch : 0;
	free(e);
	return 0;
}

TDM_API int tdm_log_history_read(const char *dir, struct tdm_log_epoch_start *out, int max)
{
	struct hist_entry *e;
	int n = hist_load(dir, &e);

	if (n < 0)
		return n;
	if (n > max)
		n = max;
	for (int i = 0; i < n; i++) {
		out[i].epoch = e[i].epoch;
		out[i].start = e[i].start;
	}
	free(e);
	return n;
}
