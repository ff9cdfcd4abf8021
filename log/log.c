/*
 * Opening, recovering, attaching to and closing a log; epochs, peers and counters.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log_pvt.h"

uint64_t tdm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int tdm_fsync_dir(int dir_fd)
{
	return fsync(dir_fd) ? -errno : 0;
}

TDM_API void tdm_log_config_defaults(struct tdm_log_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->ring_size = 64ull << 20;
	cfg->segment_size = 64ull << 20;
	cfg->max_batch = 1u << 20;
	cfg->checkpoint_bytes = 1ull << 20;
	cfg->verify_all = true;
}

static bool pow2_at_least(uint64_t v, uint64_t min)
{
	return v >= min && v <= (1ull << 40) && (v & (v - 1)) == 0;
}

static int check_config(const struct tdm_log_config *c)
{
	if (!c->dir || !*c->dir)
		return TDM_ERR(-EINVAL, "log dir is not set");
	if (strlen(c->dir) > 400)
		return TDM_ERR(-ENAMETOOLONG, "log dir '%s' is longer than 400 bytes", c->dir);
	if (!pow2_at_least(c->ring_size, TDM_LOG_MIN_SIZE))
		return TDM_ERR(-EINVAL, "ring_size %" PRIu64 " must be a power of two from 64 KiB "
			       "to 1 TiB", c->ring_size);
	if (!pow2_at_least(c->segment_size, TDM_LOG_MIN_SIZE))
		return TDM_ERR(-EINVAL, "segment_size %" PRIu64 " must be a power of two from "
			       "64 KiB to 1 TiB", c->segment_size);
	if (c->max_batch < 4096)
		return TDM_ERR(-EINVAL, "max_batch %u must be at least 4096", c->max_batch);
	if (c->retention_cap && c->retention_cap < 2 * c->segment_size)
		return TDM_ERR(-EINVAL, "retention_cap %" PRIu64 " must be 0 (no cap) or at least "
			       "two segments (%" PRIu64 ")", c->retention_cap, 2 * c->segment_size);
	if (c->base & (c->segment_size - 1))
		return TDM_ERR(-EINVAL, "base %" PRIu64 " must be a multiple of segment_size %"
			       PRIu64, c->base, c->segment_size);
	return 0;
}

/* Create (if needed) and lock the directory; nothing else is written before recovery. */
static int lock_dir(struct tdm_log *log)
{
	char pid[24];
	struct stat st;
	int n;

	if (mkdir(log->dir, 0755) != 0 && errno != EEXIST)
		return TDM_ERR(-errno, "cannot create log dir %s: %s", log->dir, strerror(errno));
	if (stat(log->dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return TDM_ERR(-ENOTDIR, "log dir %s is not a directory", log->dir);
	log->dir_fd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (log->dir_fd < 0)
		return TDM_ERR(-errno, "cannot open log dir %s: %s", log->dir, strerror(errno));
	log->lock_fd = openat(log->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (log->lock_fd < 0)
		return TDM_ERR(-errno, "log dir %s is not writable (%s): fix its permissions or "
			       "choose another dir", log->dir, strerror(errno));
	if (flock(log->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		n = (int)pread(log->lock_fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		return TDM_ERR(-EBUSY, "log dir %s is in use by process %s: stop that node first "
			       "(two nodes must never share a log)", log->dir, n > 0 ? pid : "?");
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(log->lock_fd, 0) || pwrite(log->lock_fd, pid, (size_t)n, 0) != n)
		return TDM_ERR(-errno, "cannot write %s/LOCK: %s", log->dir, strerror(errno));
	return 0;
}

/* Save the torn tail [from, last) to DIR/cut-<from>.bin, then zero it in its segment. */
static int cut_tail(struct tdm_log *log, uint64_t from, uint64_t last)
{
	struct tdm_log_recovery *r = &log->recovery;
	uint64_t start = from & ~(log->seg_size - 1);
	size_t len = (size_t)(last - from);
	uint8_t *buf = malloc(len);
	int rc = 0, fd = -1, seg;

	if (!buf)
		return -ENOMEM;
	snprintf(r->cut_file, sizeof(r->cut_file), "%s/cut-%016" PRIx64 ".bin", log->dir, from);
	seg = tdm_seg_open(log->dir, start, O_RDWR);
	if (seg < 0 || pread(seg, buf, len, (off_t)(TDM_SEG_HDR_SIZE + from - start)) != (ssize_t)len) {
		rc = TDM_ERR(-errno, "cannot read the torn tail of %s at %" PRIu64, log->dir, from);
		goto out;
	}
	fd = open(r->cut_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) || tdm_fsync_dir(log->dir_fd)) {
		rc = TDM_ERR(-errno, "cannot save the torn tail to %s: %s; nothing was cut",
			     r->cut_file, strerror(errno));
		goto out;
	}
	memset(buf, 0, len);
	if (pwrite(seg, buf, len, (off_t)(TDM_SEG_HDR_SIZE + from - start)) != (ssize_t)len ||
	    fdatasync(seg)) {
		rc = TDM_ERR(-errno, "cannot cut the torn tail of %s at %" PRIu64 ": %s", log->dir,
			     from, strerror(errno));
		goto out;
	}
	r->bytes_cut = len;
out:
	if (fd >= 0)
		close(fd);
	if (seg >= 0)
		close(seg);
	free(buf);
	return rc;
}

static int recover(struct tdm_log *log)
{
	struct tdm_log_scan_report rep;
	struct tdm_scan_ctx sc = {
		.dir = log->dir, .cluster_id = log->cfg.cluster_id,
		.seg_size = log->cfg.segment_size, .full = log->cfg.verify_all, .rep = &rep,
	};
	int rc = tdm_scan_dir(&sc);

	free(sc.starts);
	if (rc)
		return rc;
	log->recovery.start = rep.segments ? rep.start : log->cfg.base;
	log->recovery.end = rep.segments ? rep.end : log->cfg.base;
	log->recovery.records = rep.records;
	log->recovery.segments = rep.segments;
	if (sc.torn_last > sc.torn_from) {
		rc = cut_tail(log, sc.torn_from, sc.torn_last);
		if (rc)
			return rc;
	}
	return 0;
}

static struct tdm_log *log_alloc(void)
{
	struct tdm_log *log = calloc(1, sizeof(*log));

	if (log) {
		log->shm_fd = log->dir_fd = log->lock_fd = -1;
		log->fl.seg_fd = log->fl.next_fd = -1;
	}
	return log;
}

static void log_free(struct tdm_log *log)
{
	tdm_flusher_fini(log);
	tdm_ring_unmap(log);
	if (log->lock_fd >= 0)
		close(log->lock_fd); /* releases the flock */
	if (log->dir_fd >= 0)
		close(log->dir_fd);
	free(log);
}

TDM_API int tdm_log_open(const struct tdm_log_config *cfg, struct tdm_log **out)
{
	char name[64];
	uint32_t epoch;
	struct tdm_log *log;
	int rc;

	tdm_err_clear();
	rc = check_config(cfg);
	if (rc)
		return rc;
	log = log_alloc();
	if (!log)
		return -ENOMEM;
	log->owner = true;
	log->cfg = *cfg;
	snprintf(log->dir, sizeof(log->dir), "%s", cfg->dir);
	log->seg_size = cfg->segment_size;
	if (!cfg->shm_name)
		snprintf(name, sizeof(name), "tandem-%u", cfg->node_id);
	rc = lock_dir(log);
	if (rc)
		goto err;
	rc = tdm_truncate_resume(log); /* a truncate cut short by a crash: finish it */
	if (rc)
		goto err;
	rc = recover(log);
	if (rc)
		goto err;
	rc = tdm_history_last_epoch(log->dir, &epoch);
	if (rc)
		goto err;
	rc = tdm_ring_create(log, cfg->shm_name ? cfg->shm_name : name, log->recovery.end);
	if (rc)
		goto err;
	log->meta->epoch = epoch;
	tdm_store_release(&log->meta->start.v, log->recovery.segments ? log->recovery.start
								      : log->recovery.end);
	rc = tdm_flusher_init(log, log->recovery.end);
	if (rc)
		goto err;
	*out = log;
	return 0;
err:
	if (log->map) {
		log->meta->state = TDM_RING_CLOSED;
		unlink(log->shm_path);
	}
	log_free(log);
	return rc;
}

TDM_API int tdm_log_attach(const char *shm_name, struct tdm_log **out)
{
	struct tdm_log *log = log_alloc();
	int rc;

	if (!log)
		return -ENOMEM;
	tdm_err_clear();
	rc = tdm_ring_map_existing(log, shm_name);
	if (rc) {
		log_free(log);
		return rc;
	}
	*out = log;
	return 0;
}

/* Flush everything published, then record the durable end as the segment's checkpoint. */
static void close_flush(struct tdm_log *log)
{
	struct tdm_flusher *fl = &log->fl;

	for (;;) {
		int rc = tdm_log_flusher_do_work(log);

		if (rc < 0)
			return;
		if (fl->inflight)
			tdm_log_flusher_idle(log);
		else if (rc == 0 && fl->scan == fl->submitted)
			break;
	}
	tdm_seg_write_ckpt_sync(fl->seg_fd, log->meta->durable.v);
}

TDM_API void tdm_log_close(struct tdm_log *log)
{
	if (!log)
		return;
	if (log->owner && log->map) {
		if (!log->fl.failed)
			close_flush(log);
		tdm_store32_release(&log->meta->state, TDM_RING_CLOSED);
		unlink(log->shm_path);
	}
	log_free(log);
}

TDM_API const struct tdm_log_recovery *tdm_log_recovery(const struct tdm_log *log)
{
	return &log->recovery;
}

TDM_API int tdm_log_begin_epoch(struct tdm_log *log, uint32_t epoch, uint64_t hlc)
{
	uint32_t prev = log->meta->epoch;
	uint64_t value = prev, pos;
	struct tdm_log_entry e = {
		.type = TDM_LOG_REC_EPOCH, .origin = log->cfg.node_id, .hlc = hlc,
		.value = &value, .value_len = sizeof(value),
	};
	int rc;

	if (!log->owner)
		return -EINVAL;
	if (epoch <= prev)
		return TDM_ERR(-EINVAL, "epoch %u is not above the current epoch %u", epoch, prev);
	__atomic_store_n(&log->meta->epoch, epoch, __ATOMIC_RELEASE);
	rc = tdm_ring_append_ungated(log, &e, &pos, NULL);
	if (rc) {
		__atomic_store_n(&log->meta->epoch, prev, __ATOMIC_RELEASE);
		return rc;
	}
	return tdm_history_append(log->dir_fd, log->dir, epoch, pos);
}

TDM_API uint64_t tdm_log_tail(const struct tdm_log *log)
{
	return tdm_tail_pos(tdm_load_acquire(&log->meta->tail.v));
}

TDM_API uint64_t tdm_log_written(const struct tdm_log *log)
{
	return tdm_load_acquire(&log->meta->written.v);
}

TDM_API uint64_t tdm_log_durable(const struct tdm_log *log)
{
	return tdm_load_acquire(&log->meta->durable.v);
}

TDM_API uint64_t tdm_log_start(const struct tdm_log *log)
{
	return tdm_load_acquire(&log->meta->start.v);
}

TDM_API uint32_t tdm_log_epoch(const struct tdm_log *log)
{
	return __atomic_load_n(&log->meta->epoch, __ATOMIC_ACQUIRE);
}

TDM_API int tdm_log_peer_add(struct tdm_log *log, uint16_t node_id, uint64_t from)
{
	for (int i = 0; i < TDM_LOG_MAX_PEERS; i++) {
		struct tdm_peer_slot *p = &log->meta->peers[i];
		uint32_t idle = 0;

		if (!__atomic_compare_exchange_n(&p->active, &idle, 2, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_RELAXED))
			continue;
		p->node_id = node_id;
		p->ack = from;
		p->needs_resync = from < tdm_log_start(log);
		__atomic_store_n(&p->active, 1, __ATOMIC_RELEASE); /* pairs with retention */
		return i;
	}
	return TDM_ERR(-ENOSPC, "all %d peer slots of log %s are in use", TDM_LOG_MAX_PEERS,
		       log->dir);
}

TDM_API void tdm_log_peer_ack(struct tdm_log *log, int slot, uint64_t pos)
{
	if (slot >= 0 && slot < TDM_LOG_MAX_PEERS)
		tdm_store_release(&log->meta->peers[slot].ack, pos);
}

TDM_API bool tdm_log_peer_needs_resync(const struct tdm_log *log, int slot)
{
	if (slot < 0 || slot >= TDM_LOG_MAX_PEERS)
		return false;
	return __atomic_load_n(&log->meta->peers[slot].needs_resync, __ATOMIC_ACQUIRE) != 0;
}

TDM_API void tdm_log_peer_remove(struct tdm_log *log, int slot)
{
	if (slot >= 0 && slot < TDM_LOG_MAX_PEERS)
		__atomic_store_n(&log->meta->peers[slot].active, 0, __ATOMIC_RELEASE);
}

TDM_API void tdm_log_stats(const struct tdm_log *log, struct tdm_log_stats *out)
{
	const struct tdm_ring_meta *m = log->meta;

	out->backpressure = __atomic_load_n(&m->backpressure.v, __ATOMIC_RELAXED);
	out->batches = __atomic_load_n(&m->batches, __ATOMIC_RELAXED);
	out->bytes_flushed = __atomic_load_n(&m->bytes_flushed, __ATOMIC_RELAXED);
	out->io_errors = __atomic_load_n(&m->io_errors, __ATOMIC_RELAXED);
	out->segments_created = __atomic_load_n(&m->segments_created, __ATOMIC_RELAXED);
	out->segments_removed = __atomic_load_n(&m->segments_removed, __ATOMIC_RELAXED);
	out->resyncs_forced = __atomic_load_n(&m->resyncs_forced, __ATOMIC_RELAXED);
	out->stalls = __atomic_load_n(&m->stalls, __ATOMIC_RELAXED);
}
