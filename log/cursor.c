/*
 * Reading the log by position: from the ring while the bytes are still there, from segment files
 * once the flusher has zeroed them in the ring. Readers never hold ring memory, so a slow reader
 * never blocks writers; it falls back to the files instead.
 *
 * Ring reads are validated like a seqlock: copy, then (acquire fence) re-load the gate. A gate
 * still at or below the position means no writer of the next lap can have touched those bytes
 * (writers stay below gate + ring size), so the copy is of this lap's record.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log_pvt.h"

#define WINDOW (256u * 1024) /* segment read-ahead */

struct tdm_log_cursor {
	struct tdm_log *log;
	uint64_t pos;       /**< next record */
	uint8_t *buf;       /**< copy of a record read from the ring, or a large one from a file */
	size_t buf_cap;
	int seg_fd;         /**< segment file being read, -1 none */
	uint64_t seg_start;
	uint8_t *win;       /**< read-ahead window of segment bytes [win_pos, win_pos + win_len) */
	uint64_t win_pos;
	size_t win_len;
};

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *n;

	if (need <= *cap)
		return 0;
	n = realloc(*buf, need);
	if (!n)
		return -ENOMEM;
	*buf = n;
	*cap = need;
	return 0;
}

TDM_API int tdm_log_cursor_create(struct tdm_log *log, uint64_t from, struct tdm_log_cursor **out)
{
	struct tdm_log_cursor *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->log = log;
	c->pos = from;
	c->seg_fd = -1;
	c->win = malloc(WINDOW);
	if (!c->win || grow(&c->buf, &c->buf_cap, 4096)) {
		tdm_log_cursor_destroy(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

TDM_API void tdm_log_cursor_destroy(struct tdm_log_cursor *c)
{
	if (!c)
		return;
	if (c->seg_fd >= 0)
		close(c->seg_fd);
	free(c->win);
	free(c->buf);
	free(c);
}

TDM_API uint64_t tdm_log_cursor_position(const struct tdm_log_cursor *c)
{
	return c->pos;
}

TDM_API void tdm_log_cursor_seek(struct tdm_log_cursor *c, uint64_t pos)
{
	c->pos = pos; /* the read-ahead window stays: it is checked by range on every read */
}

/* After copying ring bytes at pos: has the gate passed pos meanwhile (bytes maybe reused)? */
static bool gate_passed(const struct tdm_ring_meta *m, uint64_t pos)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE); /* the copy happens before the gate re-check */
	return __atomic_load_n(&m->gate.v, __ATOMIC_RELAXED) > pos;
}

static void rec_view(struct tdm_log_rec *rec, const uint8_t *p)
{
	rec->hdr = (const struct tdm_log_rec_hdr *)p;
	rec->key = p + TDM_LOG_REC_HDR_SIZE;
	rec->value = rec->key + rec->hdr->key_len;
}

static int corrupt(struct tdm_log_cursor *c, const char *where, const uint8_t *p)
{
	struct tdm_log_rec_hdr h;

	memcpy(&h, p, sizeof(h));
	return TDM_ERR(TDM_ERR_CORRUPT, "record at log position %" PRIu64 " (%s, log %s) fails "
		       "its checks (checksum, length, type or position): length %u, position "
		       "field %" PRIu64 ", type %u; log gate %" PRIu64 ", tail %" PRIu64, c->pos,
		       where, c->log->dir, h.length, h.position, h.type,
		       tdm_load_acquire(&c->log->meta->gate.v),
		       tdm_tail_pos(tdm_load_acquire(&c->log->meta->tail.v)));
}

/* Make the window hold [pos, pos + len) of the segment containing pos. */
static int window_fill(struct tdm_log_cursor *c, uint64_t pos, size_t len, uint64_t limit)
{
	struct tdm_log *log = c->log;
	uint64_t start = pos & ~(log->seg_size - 1);
	uint64_t avail = start + log->seg_size;
	ssize_t got;

	if (pos >= c->win_pos && pos + len <= c->win_pos + c->win_len)
		return 0;
	if (c->seg_fd < 0 || c->seg_start != start) {
		if (c->seg_fd >= 0)
			close(c->seg_fd);
		c->seg_fd = tdm_seg_open(log->dir, start, O_RDONLY);
		if (c->seg_fd < 0)
			return errno == ENOENT ? TDM_ERR_TRIMMED
					       : TDM_ERR(-errno, "cannot open segment of position "
							 "%" PRIu64 " in %s", pos, log->dir);
		c->seg_start = start;
	}
	if (avail > limit)
		avail = limit;
	if (avail - pos > WINDOW)
		avail = pos + WINDOW;
	if (pos + len > avail)
		return len > WINDOW ? -E2BIG : TDM_ERR_EMPTY;
	got = pread(c->seg_fd, c->win, (size_t)(avail - pos), (off_t)(TDM_SEG_HDR_SIZE + pos - start));
	if (got < (ssize_t)len)
		return got < 0 ? -errno : -EIO;
	c->win_pos = pos;
	c->win_len = (size_t)got;
	return 0;
}

/* Next record from segment files (pos is below the gate, so it is in a file). */
static int next_from_segment(struct tdm_log_cursor *c, struct tdm_log_rec *rec, bool *skip)
{
	struct tdm_log *log = c->log;
	uint64_t limit = tdm_load_acquire(&log->meta->written.v);
	const uint8_t *p;
	uint32_t len;
	int rc;

	rc = window_fill(c, c->pos, 8, limit);
	if (rc)
		return rc;
	memcpy(&len, c->win + (c->pos - c->win_pos), 4);
	if (len & TDM_LOG_PAD_FLAG) {
		uint64_t n = len & ~TDM_LOG_PAD_FLAG;
		if (n > TDM_LOG_REC_HDR_SIZE) /* the zero check needs the bytes a header would hold */
			n = TDM_LOG_REC_HDR_SIZE;
		rc = window_fill(c, c->pos, (size_t)n, limit);
		if (rc)
			return rc;
		if (tdm_rec_check_pad(c->win + (c->pos - c->win_pos),
				      c->win_len - (size_t)(c->pos - c->win_pos), c->pos, log->seg_size))
			return corrupt(c, "segment file", c->win + (c->pos - c->win_pos));
		c->pos += tdm_rec_span_of(len);
		*skip = true;
		return 0;
	}
	if (len < TDM_LOG_REC_HDR_SIZE || len > log->max_span)
		return corrupt(c, "segment file", c->win + (c->pos - c->win_pos));
	rc = window_fill(c, c->pos, len, limit);
	if (rc == -E2BIG) { /* larger than the window: read it whole into buf */
		if (grow(&c->buf, &c->buf_cap, len))
			return -ENOMEM;
		rc = tdm_seg_read(log->dir, log->seg_size, c->pos, c->buf, len);
		p = c->buf;
	} else {
		p = c->win + (c->pos - c->win_pos);
	}
	if (rc)
		return rc;
	if (tdm_log_rec_check(p, len, c->pos))
		return corrupt(c, "segment file", p);
	rec_view(rec, p);
	c->pos += tdm_rec_span_of(len);
	return 0;
}

/* Next record from the ring. *moved: the gate passed pos meanwhile; read from a file instead. */
static int next_from_ring(struct tdm_log_cursor *c, struct tdm_log_rec *rec, bool *skip,
			  bool *moved)
{
	struct tdm_log *log = c->log;
	struct tdm_ring_meta *m = log->meta;
	const uint8_t *p = log->ring + (c->pos & log->mask);
	uint32_t len = tdm_load32_acquire((const uint32_t *)p); /* pairs with the writer's publish */

	if (len == 0 || (!(len & TDM_LOG_PAD_FLAG) &&
			 (len < TDM_LOG_REC_HDR_SIZE || len > log->max_span))) {
		if (gate_passed(m, c->pos))
			*moved = true;
		else if (len)
			return corrupt(c, "ring", p);
		return len ? 0 : TDM_ERR_EMPTY;
	}
	if (len & TDM_LOG_PAD_FLAG) {
		if (tdm_rec_check_pad(p, tdm_rec_span_of(len), c->pos, log->seg_size)) {
			if (gate_passed(m, c->pos)) {
				*moved = true; /* the bytes were reused meanwhile */
				return 0;
			}
			return corrupt(c, "ring", p);
		}
		c->pos += tdm_rec_span_of(len);
		*skip = true;
		return 0;
	}
	if (grow(&c->buf, &c->buf_cap, len))
		return -ENOMEM;
	memcpy(c->buf, p, len);
	if (gate_passed(m, c->pos)) {
		*moved = true;
		return 0;
	}
	if (tdm_log_rec_check(c->buf, len, c->pos))
		return corrupt(c, "ring", c->buf);
	rec_view(rec, c->buf);
	c->pos += tdm_rec_span_of(len);
	return 0;
}

TDM_API int tdm_log_cursor_next(struct tdm_log_cursor *c, struct tdm_log_rec *rec)
{
	struct tdm_ring_meta *m = c->log->meta;

	for (;;) {
		bool skip = false, moved = false;
		int rc;

		if (c->pos < tdm_load_acquire(&m->start.v))
			return TDM_ERR_TRIMMED;
		if (c->pos >= tdm_load_acquire(&m->gate.v))
			rc = next_from_ring(c, rec, &skip, &moved);
		else
			rc = next_from_segment(c, rec, &skip);
		if (rc == TDM_ERR_TRIMMED && c->pos >= tdm_load_acquire(&m->start.v))
			return TDM_ERR(-ENOENT, "segment of position %" PRIu64 " is missing from %s",
				       c->pos, c->log->dir);
		if (rc || !(skip || moved))
			return rc;
	}
}

TDM_API int tdm_log_read(struct tdm_log *log, uint64_t pos, void *buf, size_t len)
{
	struct tdm_ring_meta *m = log->meta;
	uint8_t *out = buf;
	uint64_t end = pos + len;

	if (end > tdm_load_acquire(&m->published.v))
		return TDM_ERR_EMPTY;
	while (pos < end) {
		uint64_t gate = tdm_load_acquire(&m->gate.v);
		int rc;

		if (pos < tdm_load_acquire(&m->start.v))
			return TDM_ERR_TRIMMED;
		if (pos < gate) { /* the part below the gate is in segment files */
			uint64_t to = end < gate ? end : gate;
			rc = tdm_seg_read(log->dir, log->seg_size, pos, out, (size_t)(to - pos));
			if (rc)
				return rc;
			out += to - pos;
			pos = to;
			continue;
		}
		memcpy(out, log->ring + (pos & log->mask), (size_t)(end - pos));
		if (!gate_passed(m, pos))
			return 0;
		/* the gate moved into the range while copying: read that part again */
	}
	return 0;
}
