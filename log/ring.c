/*
 * The shared-memory ring: creating and mapping the ring file, and appending records to it.
 *
 * The data region is mapped twice back to back so a record that wraps the ring end is contiguous
 * in memory: writers and readers never split a copy. Appends take no lock and make no system
 * call: one CAS reserves space, the record is written in place, and the length word is stored
 * last with release order (the flusher and cursors load it with acquire).
 *
 * The writers' gate (fencing) is the top bit of the same tail word: tdm_log_append refuses while
 * it is set, and since it is set by an atomic OR on the word every writer CASes, no reservation
 * can succeed once tdm_log_set_writable(false) has returned. A replica's copies
 * (tdm_log_append_at, tdm_log_pad_at) and the owner's EPOCH record pass the gate and keep the bit.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log_pvt.h"

static int shm_path(char *buf, size_t len, const char *name)
{
	if (!name || !*name || strchr(name, '/') || strlen(name) > 200)
		return TDM_ERR(-EINVAL, "ring name '%s' is not valid: use 1-200 characters without '/'",
			       name ? name : "(null)");
	snprintf(buf, len, "/dev/shm/%s", name);
	return 0;
}

/* Map the file's metadata and its data region twice: [meta][data][data again]. */
static int map_mirrored(struct tdm_log *log, int fd, uint64_t cap)
{
	size_t len = TDM_RING_META_SIZE + 2 * cap;
	uint8_t *base, *p;

	base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return TDM_ERR(-errno, "cannot reserve %zu bytes of address space: %s", len,
			       strerror(errno));
	/* MAP_POPULATE: fault every page in now, not on the first lap of appends. */
	p = mmap(base, TDM_RING_META_SIZE + cap, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0);
	if (p == MAP_FAILED)
		goto err;
	p = mmap(base + TDM_RING_META_SIZE + cap, cap, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, TDM_RING_META_SIZE);
	if (p == MAP_FAILED)
		goto err;
	log->map = base;
	log->map_len = len;
	log->meta = (struct tdm_ring_meta *)base;
	log->ring = base + TDM_RING_META_SIZE;
	log->cap = cap;
	log->mask = cap - 1;
	return 0;
err: {
	int e = errno;
	munmap(base, len);
	return TDM_ERR(-e, "cannot map ring file: %s", strerror(e));
}
}

static uint64_t max_span_for(uint64_t cap, uint64_t seg_size)
{
	uint64_t m = cap / 4;
	return m < seg_size ? m : seg_size;
}

/*
 * Owner: create the ring file. A file left by an owner that died is replaced; one held by a live
 * owner (flock) is refused. The stream starts at position `at` (the recovered end).
 */
int tdm_ring_create(struct tdm_log *log, const char *name, uint64_t at)
{
	struct tdm_ring_meta *m;
	uint64_t cap = log->cfg.ring_size;
	int fd, rc;

	rc = shm_path(log->shm_path, sizeof(log->shm_path), name);
	if (rc)
		return rc;
	fd = open(log->shm_path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
			uint32_t pid = 0;
			if (pread(fd, &pid, 4, offsetof(struct tdm_ring_meta, owner_pid)) != 4)
				pid = 0;
			close(fd);
			return TDM_ERR(-EBUSY, "ring %s is in use by process %u: stop that node or "
				       "choose another shm_name", log->shm_path, pid);
		}
		unlink(log->shm_path); /* a dead owner's ring: attached writers see it orphaned */
		close(fd);
	}
	fd = open(log->shm_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return TDM_ERR(-errno, "cannot create ring %s: %s", log->shm_path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		rc = TDM_ERR(-EBUSY, "ring %s was created by another process at the same time",
			     log->shm_path);
		goto err;
	}
	if (ftruncate(fd, (off_t)(TDM_RING_META_SIZE + cap)) != 0) {
		rc = TDM_ERR(-errno, "cannot size ring %s to %llu bytes: %s (is /dev/shm big "
			     "enough?)", log->shm_path, (unsigned long long)(TDM_RING_META_SIZE + cap),
			     strerror(errno));
		goto err;
	}
	/* Allocate the pages now so appends never fault in tmpfs memory (or hit ENOSPC as SIGBUS). */
	rc = posix_fallocate(fd, 0, (off_t)(TDM_RING_META_SIZE + cap));
	if (rc) {
		rc = TDM_ERR(-rc, "cannot allocate ring %s (%llu bytes): %s", log->shm_path,
			     (unsigned long long)(TDM_RING_META_SIZE + cap), strerror(rc));
		goto err;
	}
	rc = map_mirrored(log, fd, cap);
	if (rc)
		goto err;
	log->shm_fd = fd;
	log->seg_size = log->cfg.segment_size;
	log->max_span = max_span_for(cap, log->seg_size);

	m = log->meta;
	m->layout_version = TDM_RING_LAYOUT_VERSION;
	m->meta_size = TDM_RING_META_SIZE;
	m->ring_size = cap;
	m->segment_size = log->seg_size;
	m->cluster_id = log->cfg.cluster_id;
	m->owner_pid = (uint32_t)getpid();
	m->node_id = log->cfg.node_id;
	snprintf(m->dir, sizeof(m->dir), "%s", log->dir);
	m->tail.v = m->gate.v = m->published.v = m->written.v = m->durable.v = at; /* writable */
	m->start.v = at;
	m->truncations = 0;
	log->gate_cache = at;
	log->cache_gen = 0;
	m->state = TDM_RING_OPEN;
	tdm_store_release(&m->magic, TDM_RING_MAGIC); /* pairs with attach's acquire */
	return 0;
err:
	close(fd);
	unlink(log->shm_path);
	return rc;
}

/* Another process: map a running owner's ring. */
int tdm_ring_map_existing(struct tdm_log *log, const char *name)
{
	struct tdm_ring_meta head;
	struct stat st;
	int fd, rc;

	rc = shm_path(log->shm_path, sizeof(log->shm_path), name);
	if (rc)
		return rc;
	fd = open(log->shm_path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return TDM_ERR(-errno, "cannot open ring %s: %s (is the node running, and is the "
			       "name right?)", log->shm_path, strerror(errno));
	if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(head) ||
	    pread(fd, &head, sizeof(head), 0) != (ssize_t)sizeof(head)) {
		rc = TDM_ERR(-ENOENT, "ring %s is empty or still being created; retry", log->shm_path);
		goto err;
	}
	if (head.magic != TDM_RING_MAGIC) {
		rc = TDM_ERR(TDM_ERR_CORRUPT, "%s is not a tandem ring (bad magic)", log->shm_path);
		goto err;
	}
	if (head.layout_version != TDM_RING_LAYOUT_VERSION) {
		rc = TDM_ERR(TDM_ERR_VERSION, "ring %s has layout version %u, this build reads %u: "
			     "use tools of the node's version", log->shm_path, head.layout_version,
			     TDM_RING_LAYOUT_VERSION);
		goto err;
	}
	if (head.meta_size != TDM_RING_META_SIZE || !head.ring_size ||
	    (head.ring_size & (head.ring_size - 1)) ||
	    (uint64_t)st.st_size != TDM_RING_META_SIZE + head.ring_size) {
		rc = TDM_ERR(TDM_ERR_CORRUPT, "ring %s has inconsistent sizes", log->shm_path);
		goto err;
	}
	if (head.state != TDM_RING_OPEN || kill((pid_t)head.owner_pid, 0) != 0) {
		rc = TDM_ERR(TDM_ERR_CLOSED, "ring %s: its owner (process %u) closed it or is gone",
			     log->shm_path, head.owner_pid);
		goto err;
	}
	rc = map_mirrored(log, fd, head.ring_size);
	if (rc)
		goto err;
	log->shm_fd = fd;
	log->seg_size = head.segment_size;
	log->max_span = max_span_for(head.ring_size, head.segment_size);
	log->cache_gen = tdm_load_acquire(&log->meta->truncations);
	log->gate_cache = tdm_load_acquire(&log->meta->gate.v);
	snprintf(log->dir, sizeof(log->dir), "%s", log->meta->dir);
	return 0;
err:
	close(fd);
	return rc;
}

void tdm_ring_unmap(struct tdm_log *log)
{
	if (log->map)
		munmap(log->map, log->map_len);
	log->map = NULL;
	if (log->shm_fd >= 0)
		close(log->shm_fd);
	log->shm_fd = -1;
}

/* Why appends are refused while the ring is not open (owner's release store; only a hint). */
static inline int ring_closed(const struct tdm_ring_meta *m)
{
	uint32_t state = __atomic_load_n(&m->state, __ATOMIC_RELAXED);

	if (__builtin_expect(state == TDM_RING_OPEN, 1))
		return 0;
	return state == TDM_RING_FAILED ? TDM_ERR_FAILED : TDM_ERR_CLOSED;
}

/*
 * May the tail move to nend without passing gate + ring size? 0, or why not (counted).
 * The gate only moves forward except in tdm_log_truncate, which bumps meta->truncations after
 * moving it back: a cached gate of another generation may be above the real one, so it is
 * re-read.
 */
static inline int ring_room(struct tdm_log *log, uint64_t nend)
{
	struct tdm_ring_meta *m = log->meta;
	/* pairs with the release in tdm_log_truncate; the line is written only there */
	uint64_t gen = tdm_load_acquire(&m->truncations);
	/* The cache is published with release so a thread that reads it also sees the zeroing the
	 * flusher did before moving the gate (acquire chains to its release). Its generation is
	 * stored after it, so a matching generation is loaded first. */
	bool fresh = tdm_load_acquire(&log->cache_gen) == gen;
	uint64_t gate = tdm_load_acquire(&log->gate_cache);

	if (fresh && nend - gate <= log->cap)
		return 0;
	gate = tdm_load_acquire(&m->gate.v); /* pairs with the flusher's release */
	tdm_store_release(&log->gate_cache, gate);
	tdm_store_release(&log->cache_gen, gen);
	if (nend - gate <= log->cap)
		return 0;
	__atomic_fetch_add(&m->backpressure.v, 1, __ATOMIC_RELAXED);
	/* Refused anyway, so a system call is affordable: an attached writer learns here that the
	 * owner died without closing. */
	if (!log->owner && kill((pid_t)m->owner_pid, 0) != 0 && errno == ESRCH)
		return TDM_ERR_CLOSED;
	return TDM_ERR_BACKPRESSURE;
}

/* Write one record's header and payload at p; the length word stays 0 until publish. */
static inline void rec_write(uint8_t *p, const struct tdm_log_entry *e, uint64_t pos,
			     uint32_t epoch, uint32_t len)
{
	struct tdm_log_rec_hdr *h = (struct tdm_log_rec_hdr *)p;
	uint32_t crc;

	h->position = pos;
	h->hlc = e->hlc;
	h->epoch = epoch;
	h->origin = e->origin;
	h->type = e->type;
	h->flags = e->flags;
	h->key_len = e->key_len;
	h->value_len = e->value_len;
	if (e->key_len)
		memcpy(p + TDM_LOG_REC_HDR_SIZE, e->key, e->key_len);
	if (e->value_len)
		memcpy(p + TDM_LOG_REC_HDR_SIZE + e->key_len, e->value, e->value_len);
	crc = tdm_crc32c(0, &len, 4);
	h->crc = tdm_crc32c(crc, p + 8, len - 8);
	tdm_store32_release(&h->length, len); /* publish; pairs with readers' acquire */
}

/* A refused append says why: the text is what a client shows. */
static int not_primary(const struct tdm_log *log)
{
	return TDM_ERR(TDM_ERR_NOT_PRIMARY, "node %u is not accepting writes: it is not the primary "
		       "or it is fenced", log->meta->node_id);
}

/* tdm_log_append, with or without the writers' gate (gated is a constant at each call). */
static inline __attribute__((always_inline)) int
append(struct tdm_log *log, const struct tdm_log_entry *e, uint64_t *pos, uint64_t *end,
       bool gated)
{
	struct tdm_ring_meta *m = log->meta;
	uint64_t span, old, at, nend, pad;
	uint32_t len;
	int rc;

	if (e->type == 0 || e->type > TDM_LOG_REC_NOOP || e->key_len > TDM_LOG_MAX_KEY ||
	    e->value_len > TDM_LOG_MAX_VALUE)
		return -EINVAL;
	span = tdm_log_rec_span(e->key_len, e->value_len);
	if (span > log->max_span)
		return -EINVAL;
	rc = ring_closed(m);
	if (rc)
		return rc;

	/* Acquire, also on CAS failure: a tail stored after a truncate comes with that truncate's
	 * gate and generation, which ring_room reads next. */
	old = tdm_load_acquire(&m->tail.v);
	for (;;) {
		if (gated && (old & TDM_TAIL_FENCED))
			return not_primary(log);
		/* A record never straddles a segment boundary: pad up to it instead. */
		uint64_t t = tdm_tail_pos(old), off = t & (log->seg_size - 1);
		pad = off + span > log->seg_size ? log->seg_size - off : 0;
		at = t + pad;
		nend = at + span;
		rc = ring_room(log, nend);
		if (rc)
			return rc;
		if (__atomic_compare_exchange_n(&m->tail.v, &old, nend | (old & TDM_TAIL_FENCED), true,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			break;
	}
	if (pad)
		tdm_store32_release((uint32_t *)(log->ring + ((at - pad) & log->mask)),
				    TDM_LOG_PAD_FLAG | (uint32_t)pad);
	len = (uint32_t)(TDM_LOG_REC_HDR_SIZE + e->key_len + e->value_len);
	rec_write(log->ring + (at & log->mask), e, at, __atomic_load_n(&m->epoch, __ATOMIC_RELAXED),
		  len);
	if (pos)
		*pos = at;
	if (end)
		*end = nend;
	return 0;
}

TDM_API int tdm_log_append(struct tdm_log *log, const struct tdm_log_entry *e, uint64_t *pos,
			   uint64_t *end)
{
	return append(log, e, pos, end, true);
}

/* The owner's EPOCH record: a new primary writes it before opening the gate, so no write of the
 * old epoch can land after the new epoch's start. */
int tdm_ring_append_ungated(struct tdm_log *log, const struct tdm_log_entry *e, uint64_t *pos,
			    uint64_t *end)
{
	return append(log, e, pos, end, false);
}

TDM_API void tdm_log_set_writable(struct tdm_log *log, bool writable)
{
	if (!log->owner)
		return;
	/* read-modify-writes of the tail word: ordered with every writer's CAS */
	if (writable)
		__atomic_fetch_and(&log->meta->tail.v, ~TDM_TAIL_FENCED, __ATOMIC_ACQ_REL);
	else
		__atomic_fetch_or(&log->meta->tail.v, TDM_TAIL_FENCED, __ATOMIC_ACQ_REL);
}

TDM_API bool tdm_log_writable(const struct tdm_log *log)
{
	return !(tdm_load_acquire(&log->meta->tail.v) & TDM_TAIL_FENCED);
}

/* Reserve exactly [pos, pos + len) for a replica's copy: the tail must be at pos. Same room rule
 * as tdm_log_append; the writers' gate is passed and kept as it is (a replica copies its
 * primary's stream while closed to clients). */
static int reserve_at(struct tdm_log *log, uint64_t pos, uint64_t len)
{
	struct tdm_ring_meta *m = log->meta;
	uint64_t old;
	int rc = ring_closed(m);

	if (rc)
		return rc;
	old = tdm_load_acquire(&m->tail.v);
	for (;;) {
		if (tdm_tail_pos(old) != pos)
			return -ESPIPE;
		rc = ring_room(log, pos + len);
		if (rc)
			return rc;
		/* fails only when another writer moved the tail or the gate bit changed */
		if (__atomic_compare_exchange_n(&m->tail.v, &old,
						(pos + len) | (old & TDM_TAIL_FENCED), false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return 0;
	}
}

/* Check that bytes hold whole records at their own positions, none straddling a segment, and
 * count the EPOCH records among them. The CRCs are the caller's job (a receiver checks each
 * record as it arrives). */
static int check_copy(const struct tdm_log *log, uint64_t pos, const uint8_t *p, size_t len,
		      uint32_t *epochs)
{
	size_t off = 0;

	while (off < len) {
		struct tdm_log_rec_hdr h;
		uint64_t span;

		if (len - off < TDM_LOG_REC_HDR_SIZE)
			return -EINVAL;
		memcpy(&h, p + off, sizeof(h));
		if (h.length & TDM_LOG_PAD_FLAG || h.length < TDM_LOG_REC_HDR_SIZE ||
		    h.position != pos + off)
			return -EINVAL;
		span = tdm_log_rec_span(h.key_len, h.value_len);
		if (h.length != TDM_LOG_REC_HDR_SIZE + (uint64_t)h.key_len + h.value_len ||
		    span > len - off || span > log->max_span ||
		    ((pos + off) & (log->seg_size - 1)) + span > log->seg_size)
			return -EINVAL;
		*epochs += h.type == TDM_LOG_REC_EPOCH;
		off += span;
	}
	return 0;
}

/*
 * The slow path of a copy holding EPOCH records: add each to the history file as
 * tdm_log_begin_epoch does on the primary, before the copy is reserved, so a failure copies
 * nothing. A retry after back-pressure finds its entries already there (the history takes the
 * same entry twice without a change). *last: the last one's epoch.
 */
static int copy_epochs(struct tdm_log *log, uint64_t pos, const uint8_t *p, size_t len,
		       uint32_t *last)
{
	int dir_fd = log->dir_fd, rc = 0;

	if (dir_fd < 0) /* an attached process: no directory handle yet */
		dir_fd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return TDM_ERR(-errno, "cannot open log dir %s to add to its history: %s", log->dir,
			       strerror(errno));
	for (size_t off = 0; off < len && !rc;) {
		struct tdm_log_rec_hdr h;

		memcpy(&h, p + off, sizeof(h));
		if (h.type == TDM_LOG_REC_EPOCH) {
			rc = tdm_history_append(dir_fd, log->dir, h.epoch, pos + off);
			*last = h.epoch;
		}
		off += tdm_log_rec_span(h.key_len, h.value_len);
	}
	if (dir_fd != log->dir_fd)
		close(dir_fd);
	return rc;
}

TDM_API int tdm_log_append_at(struct tdm_log *log, uint64_t pos, const void *bytes, size_t len)
{
	uint32_t first, epochs = 0, epoch = 0;
	uint8_t *dst;
	int rc;

	if (!len || (pos | len) & (TDM_LOG_REC_ALIGN - 1) || len > log->cap / 2 ||
	    check_copy(log, pos, bytes, len, &epochs))
		return -EINVAL;
	if (__builtin_expect(epochs != 0, 0)) {
		if (tdm_tail_pos(tdm_load_acquire(&log->meta->tail.v)) != pos)
			return -ESPIPE; /* not ours to record; reserve_at decides for the copy */
		rc = copy_epochs(log, pos, bytes, len, &epoch);
		if (rc)
			return rc;
	}
	rc = reserve_at(log, pos, len);
	if (rc)
		return rc;
	dst = log->ring + (pos & log->mask);
	memcpy(dst + 4, (const uint8_t *)bytes + 4, len - 4);
	memcpy(&first, bytes, 4);
	/* Publish the first record last: readers scan in order, so its release covers the rest. */
	tdm_store32_release((uint32_t *)dst, first);
	if (epochs)
		__atomic_store_n(&log->meta->epoch, epoch, __ATOMIC_RELEASE);
	return 0;
}

TDM_API int tdm_log_pad_at(struct tdm_log *log, uint64_t pos, uint64_t span)
{
	int rc;

	if (!span || (pos | span) & (TDM_LOG_REC_ALIGN - 1) || span > log->seg_size ||
	    ((pos + span) & (log->seg_size - 1)) != 0 ||
	    (pos & ~(log->seg_size - 1)) != ((pos + span - 1) & ~(log->seg_size - 1)))
		return -EINVAL;
	rc = reserve_at(log, pos, span);
	if (rc)
		return rc;
	/* The ring bytes are zero (the flusher zeroes before moving the gate): only the length. */
	tdm_store32_release((uint32_t *)(log->ring + (pos & log->mask)),
			    TDM_LOG_PAD_FLAG | (uint32_t)span);
	return 0;
}
