/*
 * The flusher agent: makes the ring durable in segment files with io_uring.
 *
 * Group commit: each step finds every record published since the last batch (up to max_batch
 * bytes or the segment end) and submits them as one linked chain: write, optionally a checkpoint
 * write into the segment header, then fdatasync. One batch is in flight at a time, so while the
 * disk syncs one batch the next accumulates; under load batches grow, when idle one record goes
 * out alone. When the chain completes, written and durable move to the batch end (release).
 *
 * Ring space: after bytes are written to a segment the flusher zeroes them in the ring and moves
 * the gate past them, keeping up to half the ring of recent history readable from memory.
 *
 * Only the flusher thread touches struct tdm_flusher and writes gate, published, written,
 * durable, start and the flusher counters in the ring metadata.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log_pvt.h"

enum { TAG_WRITE = 1, TAG_CKPT = 2, TAG_SYNC = 3 };

#define STALL_NS (1000ull * 1000 * 1000) /* an unpublished record blocking this long is a stall */

/* Stop the log after an I/O error: writes are refused from now on (appenders see the state). */
void tdm_log_mark_failed(struct tdm_log *log)
{
	log->fl.failed = true;
	log->meta->io_errors++;
	tdm_store32_release(&log->meta->state, TDM_RING_FAILED);
}

static int flusher_fail(struct tdm_log *log, int err, const char *what)
{
	struct tdm_flusher *fl = &log->fl;
	char seg[32];

	tdm_log_mark_failed(log);
	tdm_seg_name(seg, sizeof(seg), fl->seg_start);
	return TDM_ERR(TDM_ERR_FAILED, "%s of segment %s/%s failed: %s; the durable position stays "
		       "at %" PRIu64 "; writes are refused; check the disk and restart the node",
		       what, log->dir, seg, strerror(-err), log->meta->durable.v);
}

/* Open the segment that holds position `end` (creating it when it does not exist yet). */
static int open_segment(struct tdm_log *log, uint64_t start)
{
	int fd = tdm_seg_open(log->dir, start, O_RDWR);

	if (fd >= 0)
		return fd;
	if (errno != ENOENT)
		return TDM_ERR(-errno, "cannot open segment at %" PRIu64 " in %s: %s", start,
			       log->dir, strerror(errno));
	fd = tdm_seg_create(log->dir_fd, log->dir, start, log->seg_size, log->cfg.cluster_id);
	if (fd >= 0)
		log->meta->segments_created++;
	return fd;
}

/* Open the segment holding end and make what is before end durable: the flusher starts there. */
static int start_at(struct tdm_log *log, uint64_t end)
{
	struct tdm_flusher *fl = &log->fl;

	fl->scan = fl->submitted = end;
	fl->seg_start = end & ~(log->seg_size - 1);
	fl->seg_fd = open_segment(log, fl->seg_start);
	if (fl->seg_fd < 0)
		return fl->seg_fd;
	/* What recovery found may be only in the page cache (the last owner was killed): make it
	 * durable before calling it durable, and record it as the checkpoint. */
	if (tdm_seg_write_ckpt_sync(fl->seg_fd, end))
		return TDM_ERR(-errno, "cannot sync segment in %s: %s", log->dir, strerror(errno));
	fl->ckpt_disk = end;
	return 0;
}

int tdm_flusher_init(struct tdm_log *log, uint64_t end)
{
	struct tdm_flusher *fl = &log->fl;
	int rc;

	memset(fl, 0, sizeof(*fl));
	fl->seg_fd = fl->next_fd = -1;
	rc = io_uring_queue_init(32, &fl->uring, 0);
	if (rc)
		return TDM_ERR(rc, "io_uring is not available: %s (the flusher needs io_uring: "
			       "Linux 5.6 or later, and not disabled by kernel.io_uring_disabled or a "
			       "seccomp policy)", strerror(-rc));
	fl->uring_ready = true;
	return start_at(log, end);
}

/* After tdm_log_truncate: start over at end. Everything was flushed, so nothing is in flight. */
int tdm_flusher_restart(struct tdm_log *log, uint64_t end)
{
	struct tdm_flusher *fl = &log->fl;

	if (fl->seg_fd >= 0)
		close(fl->seg_fd);
	if (fl->next_fd >= 0)
		close(fl->next_fd);
	fl->seg_fd = fl->next_fd = -1;
	fl->inflight = false;
	fl->inflight_left = fl->inflight_err = 0;
	memset(&fl->ckpt_buf, 0, sizeof(fl->ckpt_buf));
	fl->stall_pos = fl->stall_since_ns = 0;
	fl->stall_reported = false;
	return start_at(log, end);
}

void tdm_flusher_fini(struct tdm_log *log)
{
	struct tdm_flusher *fl = &log->fl;

	if (fl->uring_ready)
		io_uring_queue_exit(&fl->uring);
	fl->uring_ready = false;
	if (fl->seg_fd >= 0)
		close(fl->seg_fd);
	if (fl->next_fd >= 0)
		close(fl->next_fd);
	fl->seg_fd = fl->next_fd = -1;
}

/* Reap completions; when the batch's chain is complete publish written/durable. */
static int reap(struct tdm_log *log)
{
	struct tdm_flusher *fl = &log->fl;
	struct tdm_ring_meta *m = log->meta;
	struct io_uring_cqe *cqe;
	int n = 0;

	while (fl->inflight && io_uring_peek_cqe(&fl->uring, &cqe) == 0) {
		uint64_t tag = cqe->user_data;
		int res = cqe->res;

		io_uring_cqe_seen(&fl->uring, cqe);
		n++;
		if (res < 0 && !fl->inflight_err)
			fl->inflight_err = res;
		if (tag == TAG_WRITE && res >= 0 &&
		    (uint64_t)res != fl->inflight_end - fl->inflight_from && !fl->inflight_err)
			fl->inflight_err = -EIO; /* short write: the linked fdatasync is cancelled */
		if (tag == TAG_WRITE && !fl->inflight_err)
			tdm_store_release(&m->written.v, fl->inflight_end);
		if (--fl->inflight_left > 0)
			continue;
		fl->inflight = false;
		if (fl->inflight_err)
			return flusher_fail(log, fl->inflight_err,
					    "write+fdatasync");
		m->batches++;
		m->bytes_flushed += fl->inflight_end - tdm_load_acquire(&m->durable.v);
		tdm_store_release(&m->durable.v, fl->inflight_end); /* pairs with waiters */
		if (fl->ckpt_buf.durable > fl->ckpt_disk)
			fl->ckpt_disk = fl->ckpt_buf.durable;
	}
	return n;
}

/*
 * Follow the length words from fl->scan to find published records. Stops at an unpublished
 * record, after max_batch bytes past the last batch, or at the end of the segment the next batch
 * starts in (a batch never spans two files; records never straddle a boundary, so the scan lands
 * on it exactly).
 */
static int scan_published(struct tdm_log *log)
{
	struct tdm_flusher *fl = &log->fl;
	struct tdm_ring_meta *m = log->meta;
	uint64_t tail = tdm_tail_pos(tdm_load_acquire(&m->tail.v));
	uint64_t start = fl->scan;
	/* the next batch starts at submitted and ends in the same segment */
	uint64_t limit = (fl->submitted & ~(log->seg_size - 1)) + log->seg_size;

	if (limit > fl->submitted + log->cfg.max_batch)
		limit = fl->submitted + log->cfg.max_batch;
	if (tail > limit)
		tail = limit;
	while (fl->scan < tail) {
		uint32_t len = tdm_load32_acquire((uint32_t *)(log->ring + (fl->scan & log->mask)));
		uint64_t span;

		if (len == 0) {
			uint64_t now = tdm_now_ns();
			if (fl->stall_pos != fl->scan) {
				fl->stall_pos = fl->scan;
				fl->stall_since_ns = now;
				fl->stall_reported = false;
			} else if (!fl->stall_reported && now - fl->stall_since_ns > STALL_NS) {
				m->stalls++; /* a writer reserved space and never published it */
				fl->stall_reported = true;
			}
			break;
		}
		span = tdm_rec_span_of(len);
		if (span < 8 || span % 8 || span > log->max_span + log->seg_size ||
		    (!(len & TDM_LOG_PAD_FLAG) && len < TDM_LOG_REC_HDR_SIZE))
			return flusher_fail(log, -EBADMSG, "ring record framing");
		fl->scan += span;
	}
	if (fl->scan != start)
		tdm_store_release(&m->published.v, fl->scan);
	return fl->scan != start;
}

/* Move to the next segment file when the current one is full. */
static int next_segment(struct tdm_log *log)
{
	struct tdm_flusher *fl = &log->fl;
	uint64_t next = fl->seg_start + log->seg_size;
	int fd;

	if (fl->next_fd >= 0 && fl->next_start == next) {
		fd = fl->next_fd;
		fl->next_fd = -1;
	} else {
		fd = open_segment(log, next);
		if (fd < 0)
			return flusher_fail(log, fd, "creating the next segment");
	}
	close(fl->seg_fd);
	fl->seg_fd = fd;
	fl->seg_start = next;
	return 0;
}

static int submit_batch(struct tdm_log *log)
{
	struct tdm_flusher *fl = &log->fl;
	uint64_t from = fl->submitted, end = fl->scan, durable = log->meta->durable.v;
	struct io_uring_sqe *sqe;
	int rc, ops = 2;

	if (from == fl->seg_start + log->seg_size && (rc = next_segment(log)))
		return rc;
	sqe = io_uring_get_sqe(&fl->uring);
	io_uring_prep_write(sqe, fl->seg_fd, log->ring + (from & log->mask), (unsigned)(end - from),
			    TDM_SEG_HDR_SIZE + (from - fl->seg_start));
	sqe->flags |= IOSQE_IO_LINK;
	sqe->user_data = TAG_WRITE;
	/* Record a checkpoint now and then: a position already durable, in this segment. */
	if (durable > fl->seg_start && durable >= fl->ckpt_disk + log->cfg.checkpoint_bytes) {
		tdm_seg_ckpt_fill(&fl->ckpt_buf, durable);
		sqe = io_uring_get_sqe(&fl->uring);
		io_uring_prep_write(sqe, fl->seg_fd, &fl->ckpt_buf, sizeof(fl->ckpt_buf),
				    TDM_SEG_CKPT_OFF);
		sqe->flags |= IOSQE_IO_LINK;
		sqe->user_data = TAG_CKPT;
		ops++;
	}
	sqe = io_uring_get_sqe(&fl->uring);
	io_uring_prep_fsync(sqe, fl->seg_fd, IORING_FSYNC_DATASYNC);
	sqe->user_data = TAG_SYNC;
	rc = io_uring_submit(&fl->uring);
	if (rc < 0)
		return flusher_fail(log, rc, "io_uring submit");
	fl->inflight = true;
	fl->inflight_from = from;
	fl->inflight_end = end;
	fl->inflight_left = ops;
	fl->inflight_err = 0;
	fl->submitted = end;
	return 1;
}

/*
 * Zero written ring bytes and move the gate. Normally up to half the ring keeps recent history
 * readable from memory; once a writer has been refused for back-pressure, every written byte is
 * freed, so a burst can use the whole ring and only unwritten data ever holds writers back.
 */
static int free_ring(struct tdm_log *log)
{
	struct tdm_ring_meta *m = log->meta;
	uint64_t gate = m->gate.v, written = m->written.v;
	uint64_t tail = tdm_tail_pos(tdm_load_acquire(&m->tail.v));
	uint64_t want = tail > log->cap / 2 ? tail - log->cap / 2 : 0;
	uint64_t bp = __atomic_load_n(&m->backpressure.v, __ATOMIC_RELAXED);
	uint64_t to;

	if (bp != log->fl.backpressure_seen) {
		log->fl.backpressure_seen = bp;
		want = written;
	}
	to = want < written ? want : written;

	if (to <= gate)
		return 0;
	memset(log->ring + (gate & log->mask), 0, to - gate); /* contiguous: the ring is mirrored */
	tdm_store_release(&m->gate.v, to); /* pairs with the writers' and cursors' acquire */
	return 1;
}

/* Create the next segment ahead of time, once the current one is half written. */
static int prepare_next(struct tdm_log *log)
{
	struct tdm_flusher *fl = &log->fl;
	uint64_t next = fl->seg_start + log->seg_size;

	if (fl->next_fd >= 0 || fl->submitted - fl->seg_start < log->seg_size / 2)
		return 0;
	fl->next_fd = open_segment(log, next);
	if (fl->next_fd < 0) {
		fl->next_fd = -1;
		return 0; /* retried at the switch, where a failure stops the flusher */
	}
	fl->next_start = next;
	return 1;
}

/*
 * Drop the oldest segments that every peer has acknowledged, or that exceed the retention cap.
 * Dropping for the cap marks the peers that still needed them as needing a full resync.
 */
static int retain(struct tdm_log *log)
{
	struct tdm_ring_meta *m = log->meta;
	uint64_t need = UINT64_MAX, durable = m->durable.v, start = m->start.v;
	bool any = false;
	int removed = 0;

	for (int i = 0; i < TDM_LOG_MAX_PEERS; i++) {
		struct tdm_peer_slot *p = &m->peers[i];
		if (__atomic_load_n(&p->active, __ATOMIC_ACQUIRE) == 1 && !p->needs_resync) {
			uint64_t ack = tdm_load_acquire(&p->ack);
			need = ack < need ? ack : need;
			any = true;
		}
	}
	for (;;) {
		uint64_t end = start + log->seg_size;
		bool over = log->cfg.retention_cap &&
			    log->fl.seg_start + log->seg_size - start > log->cfg.retention_cap;
		char path[600];

		if (end > log->fl.seg_start || end > durable || !((any && need >= end) || over))
			break;
		for (int i = 0; over && i < TDM_LOG_MAX_PEERS; i++) {
			struct tdm_peer_slot *p = &m->peers[i];
			if (p->active == 1 && !p->needs_resync && tdm_load_acquire(&p->ack) < end) {
				__atomic_store_n(&p->needs_resync, 1, __ATOMIC_RELEASE);
				m->resyncs_forced++;
				TDM_ERR(TDM_ERR_TRIMMED, "retention cap %" PRIu64 " reached: peer %u "
					"(acknowledged %" PRIu64 ") needs a full resync",
					log->cfg.retention_cap, p->node_id, p->ack);
			}
		}
		tdm_seg_path(path, sizeof(path), log->dir, start);
		if (unlink(path) != 0 && errno != ENOENT)
			break;
		m->segments_removed++;
		start = end;
		tdm_store_release(&m->start.v, start); /* cursors below it get TDM_ERR_TRIMMED */
		removed++;
	}
	if (removed)
		tdm_fsync_dir(log->dir_fd);
	return removed;
}

TDM_API int tdm_log_flusher_do_work(struct tdm_log *log)
{
	struct tdm_flusher *fl = &log->fl;
	int rc, work = 0;

	if (!log->owner)
		return -EINVAL;
	if (fl->failed)
		return TDM_ERR_FAILED;
	if (fl->inflight) {
		rc = reap(log);
		if (rc < 0)
			return rc;
		work += rc;
	}
	rc = scan_published(log);
	if (rc < 0)
		return rc;
	work += rc;
	if (!fl->inflight && fl->scan > fl->submitted) {
		rc = submit_batch(log);
		if (rc < 0)
			return rc;
		work += rc;
	}
	work += free_ring(log);
	work += prepare_next(log);
	if (++fl->retention_tick % 256 == 0)
		work += retain(log);
	return work;
}

TDM_API int tdm_log_flusher_idle(struct tdm_log *log)
{
	struct io_uring_cqe *cqe;

	if (!log->owner)
		return -EINVAL;
	if (log->fl.inflight)
		return io_uring_wait_cqe(&log->fl.uring, &cqe); /* reaped by the next step */
	sched_yield();
	return 0;
}

TDM_API int tdm_log_flush_until(struct tdm_log *log, uint64_t pos)
{
	if (!log->owner)
		return -EINVAL;
	if (pos > tdm_tail_pos(tdm_load_acquire(&log->meta->tail.v)))
		return TDM_ERR(-EINVAL, "position %" PRIu64 " is beyond the tail", pos);
	while (tdm_load_acquire(&log->meta->durable.v) < pos) {
		int rc = tdm_log_flusher_do_work(log);
		if (rc < 0)
			return rc;
		if (rc == 0)
			tdm_log_flusher_idle(log); /* a batch in flight, or a writer still copying */
	}
	return 0;
}
