/*
 * Internals of log/: the ring metadata layout, the process-local handle, and helpers shared by
 * the files of this module. Only the .c files of log/ include this.
 */
#ifndef TDM_LOG_PVT_H
#define TDM_LOG_PVT_H

#include <liburing.h>
#include <stdatomic.h>
#include <stdint.h>

#include "tdm_log.h"

#define TDM_API __attribute__((visibility("default")))

/* ---- Atomics: the two helpers every shared position goes through ---- */

static inline uint64_t tdm_load_acquire(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void tdm_store_release(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline uint32_t tdm_load32_acquire(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void tdm_store32_release(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* ---- Formats (the byte-by-byte text is at the top of record.c) ---- */

#define TDM_LOG_PAD_FLAG 0x80000000u /* length word of a PAD: flag | span */

/* Bytes a record or PAD occupies in the stream, from its length word (checked by the caller). */
static inline uint64_t tdm_rec_span_of(uint32_t len)
{
	if (len & TDM_LOG_PAD_FLAG)
		return len & ~TDM_LOG_PAD_FLAG;
	return ((uint64_t)len + TDM_LOG_REC_ALIGN - 1) & ~(uint64_t)(TDM_LOG_REC_ALIGN - 1);
}
#define TDM_LOG_MIN_SIZE (64u * 1024)

#define TDM_SEG_MAGIC 0x314745534d444e54ull /* "TNDMSEG1" little-endian bytes */
#define TDM_SEG_VERSION 1u
#define TDM_SEG_HDR_SIZE 4096u
#define TDM_SEG_CKPT_OFF 512u

/** Fixed part of a segment header (file offset 0). */
struct tdm_seg_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;
	uint64_t cluster_id;
	uint64_t start;
	uint64_t segment_size;
	uint32_t crc; /* CRC32C of the 40 bytes above */
	uint32_t reserved;
};
_Static_assert(sizeof(struct tdm_seg_hdr) == 48, "segment header");

/** Checkpoint (file offset 512): a durable position the flusher recorded. */
struct tdm_seg_ckpt {
	uint64_t durable;
	uint32_t crc; /* CRC32C of durable */
	uint32_t reserved;
};
_Static_assert(sizeof(struct tdm_seg_ckpt) == 16, "checkpoint");

#define TDM_RING_MAGIC 0x474e49524d444e54ull /* "TNDMRING" */
#define TDM_RING_LAYOUT_VERSION 2u /* 2: the writers' gate bit in the tail word, truncations */
#define TDM_RING_META_SIZE 16384u

enum tdm_ring_state {
	TDM_RING_INIT = 0,   /* being created; attachers wait or fail */
	TDM_RING_OPEN = 1,   /* owner running */
	TDM_RING_CLOSED = 2, /* owner closed it */
	TDM_RING_FAILED = 3, /* flusher stopped after an I/O error */
};

/** A position on its own 128-byte slot, so writers of different slots never share a line. */
struct tdm_slot {
	uint64_t v;
	uint8_t pad[120];
};
_Static_assert(sizeof(struct tdm_slot) == 128, "slot");

/*
 * The writers' gate lives in the top bit of the tail word, so closing it and reserving space are
 * ordered by the one CAS every writer already does: once the bit is set no CAS from a tail without
 * it can succeed. Positions stay below 2^63; every reader of the tail masks the bit.
 */
#define TDM_TAIL_FENCED (1ull << 63)

static inline uint64_t tdm_tail_pos(uint64_t tail_word)
{
	return tail_word & ~TDM_TAIL_FENCED;
}

/** Per-peer retention slot; one writer (the engine thread owning the peer link). */
struct tdm_peer_slot {
	uint64_t ack;         /**< peer has everything before this */
	uint32_t active;      /**< 1 when in use */
	uint32_t needs_resync; /**< set by the flusher when retention dropped what it needed */
	uint16_t node_id;
	uint8_t pad[110];
};
_Static_assert(sizeof(struct tdm_peer_slot) == 128, "peer slot");

/**
 * The ring file's metadata page(s). The owner writes the cold part once before setting magic
 * (release); attachers check magic (acquire), version and state.
 */
struct tdm_ring_meta {
	/* cold: written by the owner at creation */
	uint64_t magic;
	uint32_t layout_version;
	uint32_t meta_size;
	uint64_t ring_size;
	uint64_t segment_size;
	uint64_t cluster_id;
	uint32_t owner_pid;
	uint16_t node_id;
	uint16_t reserved0;
	uint32_t state;   /**< enum tdm_ring_state; owner */
	uint32_t epoch;   /**< current epoch; the owner, or the replica's receiver (append_at) */
	char dir[512];    /**< segment directory, for attached readers */
	uint64_t truncations; /**< times tdm_log_truncate moved the gate back; owner. Writers
	                           re-read the gate when it changes (their cached copy may be
	                           above the new gate) */
	uint8_t pad0[1024 - 576];
	/* hot positions, one slot each */
	struct tdm_slot tail;      /**< reserved end | TDM_TAIL_FENCED; all writers (CAS) */
	struct tdm_slot gate;      /**< ring memory below is zeroed and reusable; flusher */
	struct tdm_slot published; /**< flusher has seen every record before it published */
	struct tdm_slot written;   /**< bytes in segment files (page cache); flusher */
	struct tdm_slot durable;   /**< bytes on disk; flusher */
	struct tdm_slot start;     /**< oldest retained position; flusher */
	struct tdm_slot backpressure; /**< writers (atomic add) */
	/* flusher counters: one writer, one line */
	uint64_t batches;
	uint64_t bytes_flushed;
	uint64_t io_errors;
	uint64_t segments_created;
	uint64_t segments_removed;
	uint64_t resyncs_forced;
	uint64_t stalls;
	uint8_t pad1[2048 - 1920 - 56];
	struct tdm_peer_slot peers[TDM_LOG_MAX_PEERS];
};
_Static_assert(offsetof(struct tdm_ring_meta, dir) == 56, "meta dir");
_Static_assert(offsetof(struct tdm_ring_meta, truncations) == 568, "meta truncations");
_Static_assert(offsetof(struct tdm_ring_meta, tail) == 1024, "meta tail");
_Static_assert(offsetof(struct tdm_ring_meta, batches) == 1920, "meta counters");
_Static_assert(offsetof(struct tdm_ring_meta, peers) == 2048, "meta peers");
_Static_assert(sizeof(struct tdm_ring_meta) <= TDM_RING_META_SIZE, "meta size");

/* ---- The flusher's private state (owner process, flusher thread only) ---- */

struct tdm_flusher {
	struct io_uring uring;
	bool uring_ready;
	int seg_fd;            /**< segment being written */
	uint64_t seg_start;
	int next_fd;           /**< next segment, prepared ahead (-1 when not yet) */
	uint64_t next_start;
	uint64_t scan;         /**< end of the published records found so far */
	uint64_t submitted;    /**< end of the last batch submitted */
	bool inflight;         /**< a batch is in flight */
	uint64_t inflight_from;
	uint64_t inflight_end;
	int inflight_left;     /**< completions still expected */
	int inflight_err;      /**< first error among them */
	uint64_t ckpt_disk;    /**< last checkpoint written */
	struct tdm_seg_ckpt ckpt_buf; /**< source of the in-flight checkpoint write */
	uint64_t stall_pos;    /**< scan position seen unpublished with the tail past it */
	uint64_t stall_since_ns;
	bool stall_reported;
	uint32_t retention_tick;
	uint64_t backpressure_seen; /**< writers' back-pressure count at the last free_ring */
	bool failed;
};

/* ---- The process-local handle ---- */

struct tdm_log {
	bool owner;
	int shm_fd;
	char shm_path[256];
	uint8_t *map;          /**< meta + ring + ring again (mirror) */
	size_t map_len;
	struct tdm_ring_meta *meta;
	uint8_t *ring;         /**< ring data; ring[i] == ring[i + cap] for i < cap */
	uint64_t cap;
	uint64_t mask;
	uint64_t seg_size;
	uint64_t max_span;     /**< largest record span accepted */
	uint64_t gate_cache;   /**< writers' cached copy of meta->gate (relaxed atomic) */
	uint64_t cache_gen;    /**< meta->truncations when gate_cache was loaded */
	char dir[512];
	int dir_fd;            /**< owner */
	int lock_fd;           /**< owner: DIR/LOCK, flock'ed */
	struct tdm_log_config cfg;
	struct tdm_log_recovery recovery;
	struct tdm_flusher fl;
};

/* ---- Module-internal functions ---- */

/* ring.c */
int tdm_ring_create(struct tdm_log *log, const char *name, uint64_t at);
int tdm_ring_append_ungated(struct tdm_log *log, const struct tdm_log_entry *e, uint64_t *pos,
			    uint64_t *end);
int tdm_ring_map_existing(struct tdm_log *log, const char *name);
void tdm_ring_unmap(struct tdm_log *log);

/* segment.c */
void tdm_seg_name(char *buf, size_t len, uint64_t start);
int tdm_seg_path(char *buf, size_t len, const char *dir, uint64_t start);
int tdm_seg_create(int dir_fd, const char *dir, uint64_t start, uint64_t seg_size,
		   uint64_t cluster_id);
int tdm_seg_open(const char *dir, uint64_t start, int flags);
int tdm_seg_read(const char *dir, uint64_t seg_size, uint64_t pos, void *buf, size_t len);
int tdm_seg_write_ckpt_sync(int fd, uint64_t durable);
int tdm_seg_cut(int dir_fd, const char *dir, uint64_t seg_size, uint64_t pos, uint64_t end);
void tdm_seg_ckpt_fill(struct tdm_seg_ckpt *c, uint64_t durable);

/** Result of checking a directory for open (recovery) or inspection (scan). */
struct tdm_scan_ctx {
	const char *dir;
	uint64_t cluster_id;   /**< 0: any */
	uint64_t seg_size;     /**< 0: take it from the first header */
	uint64_t from;
	tdm_log_scan_fn fn;
	void *fn_ctx;
	bool full;             /**< verify every segment (else only the last with data) */
	struct tdm_log_scan_report *rep;
	uint64_t *starts;      /**< segment start positions, sorted (malloc'ed) */
	uint32_t nseg;
	uint64_t torn_from;    /**< where the torn tail begins (== rep->end) */
	uint64_t torn_last;    /**< one past the last non-zero byte of the torn tail */
	bool stopped;          /**< fn asked to stop (not an error) */
};
int tdm_scan_dir(struct tdm_scan_ctx *sc);

/* record.c */
int tdm_rec_check_pad(const void *buf, size_t avail, uint64_t pos, uint64_t seg_size);

/* history.c */
int tdm_history_append(int dir_fd, const char *dir, uint32_t epoch, uint64_t start);
int tdm_history_cut(int dir_fd, const char *dir, uint64_t pos, uint32_t *last_epoch);
int tdm_history_last_epoch(const char *dir, uint32_t *epoch);

/* flusher.c */
int tdm_flusher_init(struct tdm_log *log, uint64_t end);
int tdm_flusher_restart(struct tdm_log *log, uint64_t end);
void tdm_flusher_fini(struct tdm_log *log);
void tdm_log_mark_failed(struct tdm_log *log);

/* truncate.c */
int tdm_truncate_resume(struct tdm_log *log);

/* log.c */
uint64_t tdm_now_ns(void);
int tdm_fsync_dir(int dir_fd);

#endif /* TDM_LOG_PVT_H */
