/*
 * tandem write log: the public interface of log/.
 *
 * The log is a byte stream addressed by position (a 64-bit byte offset that only increases).
 * Records are appended into a shared-memory ring by any number of threads or local processes,
 * made durable in fixed-size segment files by the flusher (io_uring, group commit), and read back
 * by cursors from the ring or, once the ring has moved on, from the segment files.
 * The byte-by-byte formats of records, the ring file and segment files are written out at the top
 * of log/record.c.
 *
 * Threads: the owner process opens the log with tdm_log_open() and runs the flusher agent
 * (tdm_log_flusher_do_work) on one thread. Writers call tdm_log_append() from any thread of the
 * owner or of a process that attached with tdm_log_attach(). Cursors are single-threaded objects.
 *
 * Failover: the owner closes the writers' gate (tdm_log_set_writable) to fence writers, cuts a
 * divergent end off with tdm_log_truncate (the records go to a side file, read back with
 * tdm_log_side_read), and a new primary writes its EPOCH record (tdm_log_begin_epoch) before it
 * opens the gate again.
 */
#ifndef TDM_LOG_H
#define TDM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tdm_err.h"

/* ---- Record format (see log/record.c for the full layout) ---- */

#define TDM_LOG_REC_HDR_SIZE 40u     /**< bytes of the fixed record header */
#define TDM_LOG_REC_ALIGN 8u         /**< every record starts and ends 8-byte aligned */
#define TDM_LOG_MAX_KEY (64u * 1024) /**< largest key in bytes */
#define TDM_LOG_MAX_VALUE (16u * 1024 * 1024) /**< largest value; also capped by ring/segment */

/** Record types. 0 is never valid, so zeroed memory is never mistaken for a record. */
enum tdm_log_rec_type {
	TDM_LOG_REC_PUT = 1,   /**< key = value */
	TDM_LOG_REC_DEL = 2,   /**< delete key (value empty) */
	TDM_LOG_REC_EPOCH = 3, /**< first record of a new epoch; value = previous epoch (u64 LE) */
	TDM_LOG_REC_NOOP = 4,  /**< carries nothing; may hold a value (heartbeat payloads) */
	TDM_LOG_REC_PAD = 5,   /**< fills to a segment boundary (marked in the length word, see
	                            record.c); cursors skip it, tdm_log_scan reports it */
};

/** The fixed header that starts every record, little-endian, in the ring and on disk. */
struct tdm_log_rec_hdr {
	uint32_t length;    /**< header + key + value bytes (PAD: the whole span); stored last */
	uint32_t crc;       /**< CRC32C of the record with this field skipped (see record.c) */
	uint64_t position;  /**< stream position of this record */
	uint64_t hlc;       /**< hybrid-logical-clock timestamp of the write */
	uint32_t epoch;     /**< epoch the record was written in */
	uint16_t origin;    /**< node id that accepted the write */
	uint8_t type;       /**< enum tdm_log_rec_type */
	uint8_t flags;      /**< reserved for the engine; 0 today */
	uint32_t key_len;   /**< bytes of key after the header */
	uint32_t value_len; /**< bytes of value after the key */
};
_Static_assert(sizeof(struct tdm_log_rec_hdr) == TDM_LOG_REC_HDR_SIZE, "record header size");

/** What a writer supplies; the log fills position, epoch, length and checksum. */
struct tdm_log_entry {
	uint8_t type;      /**< TDM_LOG_REC_PUT, _DEL, _EPOCH or _NOOP */
	uint8_t flags;     /**< copied into the header */
	uint16_t origin;   /**< node id that accepted the write */
	uint64_t hlc;      /**< timestamp to store */
	const void *key;   /**< key bytes, may be NULL when key_len is 0 */
	uint32_t key_len;  /**< at most TDM_LOG_MAX_KEY */
	const void *value; /**< value bytes, may be NULL when value_len is 0 */
	uint32_t value_len; /**< at most TDM_LOG_MAX_VALUE */
};

/** A record as read back: points into the ring, a segment buffer or a cursor's buffer. */
struct tdm_log_rec {
	const struct tdm_log_rec_hdr *hdr; /**< header; hdr->position is the record's position */
	const uint8_t *key;                /**< hdr->key_len bytes */
	const uint8_t *value;              /**< hdr->value_len bytes */
};

/** Bytes a record with these key and value sizes occupies in the stream (header + padding). */
static inline uint64_t tdm_log_rec_span(uint32_t key_len, uint32_t value_len)
{
	uint64_t n = (uint64_t)TDM_LOG_REC_HDR_SIZE + key_len + value_len;
	return (n + TDM_LOG_REC_ALIGN - 1) & ~(uint64_t)(TDM_LOG_REC_ALIGN - 1);
}

/** CRC32C (Castagnoli) of buf, continuing from crc (start with 0). SSE4.2 when the CPU has it. */
uint32_t tdm_crc32c(uint32_t crc, const void *buf, size_t len);

/**
 * Check one record found at position pos in a buffer of avail bytes: length sane, type known,
 * position field == pos, checksum valid.
 * @return 0, TDM_ERR_EMPTY when the length word is 0 (nothing written there), TDM_ERR_CORRUPT
 *         (no message set: this is called on hot paths; callers add context).
 */
int tdm_log_rec_check(const void *buf, size_t avail, uint64_t pos);

/* ---- Opening, attaching, closing ---- */

/** Configuration of a log owner. Start from tdm_log_config_defaults(). */
struct tdm_log_config {
	const char *dir;        /**< segment directory (created when missing) */
	const char *shm_name;   /**< ring name: the file /dev/shm/<shm_name>; NULL: "tandem-<node_id>" */
	uint64_t ring_size;     /**< ring data bytes: power of two, >= 64 KiB. Up to half keeps
	                             recent records readable from memory; all of it is usable for
	                             a burst (refused appends make the flusher free what is written);
	                             one record's span is at most ring_size / 4 */
	uint64_t segment_size;  /**< data bytes per segment file: power of two, >= 64 KiB */
	uint64_t retention_cap; /**< most bytes of segments kept for lagging peers; 0 = no cap */
	uint64_t cluster_id;    /**< written into every segment; a mismatch on open is an error */
	uint16_t node_id;       /**< this node's id, recorded in the ring metadata */
	uint32_t max_batch;     /**< flusher: most bytes per write (group-commit batch) */
	uint64_t checkpoint_bytes; /**< flusher: record the durable point in the segment header
	                                 at least every this many bytes (bounds torn-tail scans) */
	uint64_t base;          /**< a directory without segments starts its log at this position
	                             (a multiple of segment_size; a replica after a full resync);
	                             ignored when segments exist. Default 0 */
	bool verify_all;        /**< open: check every record of every segment (default); false:
	                             only the last segment holding data (faster for big logs) */
};

/** Fill cfg with defaults: 64 MiB ring, 64 MiB segments, no cap, 1 MiB batches. */
void tdm_log_config_defaults(struct tdm_log_config *cfg);

struct tdm_log;

/** What recovery found when the owner opened the log. */
struct tdm_log_recovery {
	uint64_t start;         /**< oldest retained position */
	uint64_t end;           /**< end of the valid log: appends continue here */
	uint64_t records;       /**< records verified in the scanned part */
	uint64_t bytes_cut;     /**< torn-tail bytes removed past end (0 after a clean close) */
	uint32_t segments;      /**< segment files found */
	char cut_file[600];     /**< where the cut bytes were saved ("" when none) */
};

/**
 * Open (or create) the log in cfg->dir as its owner: lock the directory, check every segment,
 * recover (verify checksums from the last checkpoint, cut a torn tail and save the cut bytes
 * aside), create the shared-memory ring, and get the flusher ready.
 * @return 0; -EINVAL bad configuration; -EBUSY directory or ring owned by a live process;
 *         -EACCES/-EROFS etc. directory not writable; TDM_ERR_CORRUPT a bad record below the
 *         checkpoint or in a closed segment; TDM_ERR_VERSION, TDM_ERR_CLUSTER a segment of
 *         another version or cluster; -ENOENT a missing segment in the middle. Nothing on disk
 *         is changed on any error. tdm_errmsg() names the file and offset.
 */
int tdm_log_open(const struct tdm_log_config *cfg, struct tdm_log **out);

/**
 * Map a running owner's ring from another local process to append and read. The ring's segment
 * directory is read from the ring metadata, so cursors work too.
 * @return 0; -ENOENT no such ring; TDM_ERR_VERSION a ring of another layout version;
 *         TDM_ERR_CLOSED the owner closed it or its process is gone.
 */
int tdm_log_attach(const char *shm_name, struct tdm_log **out);

/** Owner: flush what is published, record a clean checkpoint, unmap and remove the ring.
 *  Attached: unmap. NULL is ignored. */
void tdm_log_close(struct tdm_log *log);

/** Recovery report of an owner's open (zeros for an attached log). */
const struct tdm_log_recovery *tdm_log_recovery(const struct tdm_log *log);

/* ---- Appending ---- */

/**
 * Append one record: reserve space with one compare-and-swap on the shared tail, write the record
 * in place, publish it by storing its length last (release). Safe from any thread or attached
 * process. Makes no system call and takes no lock.
 * @param pos  out, may be NULL: the record's position
 * @param end  out, may be NULL: the position just past it (wait for durable >= end)
 * @return 0; TDM_ERR_BACKPRESSURE the ring is full up to the flusher (nothing written, retry);
 *         TDM_ERR_NOT_PRIMARY the writers' gate is closed (tdm_log_set_writable; nothing
 *         written; tdm_errmsg says so); -EINVAL bad type or sizes (too large for the ring or a
 *         segment); TDM_ERR_FAILED the log has stopped after an I/O error; TDM_ERR_CLOSED the
 *         owner closed the ring, or (seen when the ring is full) its process is gone.
 */
int tdm_log_append(struct tdm_log *log, const struct tdm_log_entry *e, uint64_t *pos,
		   uint64_t *end);

/**
 * Replica side: append records copied from another log at the same positions. The tail must be
 * at pos (one writer: the receiver of the stream). bytes hold whole records (no PAD), each at its
 * own position field and none straddling a segment of this log (so both logs need the same
 * segment size). Lengths and positions are checked here; CRCs are not (the receiver checked each
 * record as it arrived). The first record's length is stored last (release). Works whether the
 * writers' gate is open or closed, and leaves it as it is.
 * An EPOCH record among them is recorded as tdm_log_begin_epoch does on the primary: its
 * (epoch, position) is added to the history file (before anything is copied, so an error copies
 * nothing; the same entry added again by a retry is no change) and the log's epoch becomes its
 * epoch. Only copies holding an EPOCH record pay for that file write.
 * @return 0; -EINVAL malformed or misplaced records, or len > ring/2; -ESPIPE the log does not
 *         end at pos; TDM_ERR_BACKPRESSURE, TDM_ERR_FAILED, TDM_ERR_CLOSED as for append;
 *         for an EPOCH record: -EINVAL its epoch does not follow the history's last entry (the
 *         logs diverged), -errno the history file cannot be written (tdm_errmsg names it).
 */
int tdm_log_append_at(struct tdm_log *log, uint64_t pos, const void *bytes, size_t len);

/**
 * Replica side: copy a PAD of span bytes at pos (the end of a segment in the source log).
 * @return 0; -EINVAL pos + span is not a segment boundary of this log; others as append_at.
 */
int tdm_log_pad_at(struct tdm_log *log, uint64_t pos, uint64_t span);

/**
 * Start a new epoch: append an EPOCH record and add (epoch, position) to the history file.
 * Owner only. Passes the writers' gate, so a new primary writes it before opening the gate and
 * no write of the old epoch can land after the new epoch's start.
 * @return 0; -EINVAL epoch not above the current one; errors of append and of writing the
 *         history file.
 */
int tdm_log_begin_epoch(struct tdm_log *log, uint32_t epoch, uint64_t hlc);

/**
 * Open or close the writers' gate (fencing). Owner only (ignored on an attached handle).
 * Closed, tdm_log_append fails with TDM_ERR_NOT_PRIMARY in every process; closing is one atomic
 * operation on the tail word every append reserves with, so once this returns no append can
 * reserve space. Appends that reserved before still publish: wait for them with
 * tdm_log_flush_until(log, tdm_log_tail(log)). tdm_log_append_at, tdm_log_pad_at and
 * tdm_log_begin_epoch pass the gate. tdm_log_open leaves it open; it is not kept across opens.
 */
void tdm_log_set_writable(struct tdm_log *log, bool writable);

/** Is the writers' gate open? Any process. */
bool tdm_log_writable(const struct tdm_log *log);

/* ---- Positions (acquire loads of the shared counters) ---- */

uint64_t tdm_log_tail(const struct tdm_log *log);    /**< end of reserved space (any gate) */
uint64_t tdm_log_written(const struct tdm_log *log); /**< bytes handed to segment files */
uint64_t tdm_log_durable(const struct tdm_log *log); /**< every byte before it is on disk */
uint64_t tdm_log_start(const struct tdm_log *log);   /**< oldest retained position */
uint32_t tdm_log_epoch(const struct tdm_log *log);   /**< current epoch */

/* ---- The flusher agent (owner only) ---- */

/**
 * One step of the flusher: reap io_uring completions and publish the durable position; find the
 * published records past the last batch and submit them as one linked write + fdatasync (group
 * commit); free ring space; prepare the next segment; apply retention.
 * Never blocks; makes no system call when there is nothing to do.
 * @return work done (> 0), 0 when idle, TDM_ERR_FAILED after an I/O error (see tdm_errmsg;
 *         the durable position no longer moves).
 */
int tdm_log_flusher_do_work(struct tdm_log *log);

/**
 * Idle step for a thread that runs only the flusher: when a batch is in flight, sleep in the
 * kernel until it completes (leaving the CPU to writers and io_uring's workers); otherwise yield.
 * Call it when tdm_log_flusher_do_work() returns 0. Agents sharing a thread must not call it.
 * @return 0, or a negative errno from io_uring.
 */
int tdm_log_flusher_idle(struct tdm_log *log);

/**
 * Run the flusher until durable >= pos (for tests, tools and single-threaded callers).
 * @return 0; TDM_ERR_FAILED; -EINVAL pos beyond the tail.
 */
int tdm_log_flush_until(struct tdm_log *log, uint64_t pos);

/* ---- Reading ---- */

/**
 * Copy len stream bytes starting at pos into buf: from the ring while they are still there,
 * from segment files otherwise.
 * @return 0; TDM_ERR_EMPTY part of the range is past the published position (what the flusher
 *         has seen published; cursors see records as soon as they are published); TDM_ERR_TRIMMED pos is older
 *         than the oldest retained segment; -EIO etc. on read errors.
 */
int tdm_log_read(struct tdm_log *log, uint64_t pos, void *buf, size_t len);

struct tdm_log_cursor;

/** Create a cursor at position from (a record boundary: 0, a record's position or an end). */
int tdm_log_cursor_create(struct tdm_log *log, uint64_t from, struct tdm_log_cursor **out);

/**
 * Read the next record (PAD records are skipped). rec points into the cursor's own buffer and
 * stays valid until the next call.
 * @return 0; TDM_ERR_EMPTY no published record yet (poll again); TDM_ERR_TRIMMED the position
 *         was removed by retention; TDM_ERR_CORRUPT a record failed its checks (tdm_errmsg names
 *         the position; the cursor does not move).
 */
int tdm_log_cursor_next(struct tdm_log_cursor *c, struct tdm_log_rec *rec);

/** Position of the next record the cursor will return. */
uint64_t tdm_log_cursor_position(const struct tdm_log_cursor *c);

/** Move the cursor to pos (a record boundary), e.g. to resend from there. No allocation. */
void tdm_log_cursor_seek(struct tdm_log_cursor *c, uint64_t pos);

void tdm_log_cursor_destroy(struct tdm_log_cursor *c);

/* ---- Peers and retention ---- */

#define TDM_LOG_MAX_PEERS 16

/**
 * Track a peer that still needs the log from position from (retention keeps it).
 * @return the peer's slot (>= 0); -ENOSPC all slots used; -EINVAL bad args.
 */
int tdm_log_peer_add(struct tdm_log *log, uint16_t node_id, uint64_t from);

/** Record that peer slot has everything before pos (one writer thread per slot). */
void tdm_log_peer_ack(struct tdm_log *log, int slot, uint64_t pos);

/** True when retention had to drop history the peer still needed: it needs a full resync. */
bool tdm_log_peer_needs_resync(const struct tdm_log *log, int slot);

void tdm_log_peer_remove(struct tdm_log *log, int slot);

/* ---- History of epochs ---- */

struct tdm_log_epoch_start {
	uint32_t epoch;  /**< epoch number */
	uint64_t start;  /**< position of its first record */
};

#define TDM_LOG_HISTORY_MAX 65536 /**< most epochs a history file holds */

/**
 * Read the history file of dir into out (at most max entries, oldest first).
 * @return number of entries (0 for a log that never began an epoch); TDM_ERR_CORRUPT.
 */
int tdm_log_history_read(const char *dir, struct tdm_log_epoch_start *out, int max);

/* ---- Counters ---- */

/** Counters kept in the ring metadata, readable by any process that maps it. */
struct tdm_log_stats {
	uint64_t backpressure;    /**< appends refused with TDM_ERR_BACKPRESSURE */
	uint64_t batches;         /**< flusher write+fdatasync batches completed */
	uint64_t bytes_flushed;   /**< bytes made durable */
	uint64_t io_errors;       /**< failed writes or fdatasyncs */
	uint64_t segments_created;
	uint64_t segments_removed;
	uint64_t resyncs_forced;  /**< peers marked as needing a full resync by retention */
	uint64_t stalls;          /**< flusher found a reserved but unpublished record for long */
};

void tdm_log_stats(const struct tdm_log *log, struct tdm_log_stats *out);

/* ---- Offline inspection (no ring, no lock, nothing modified) ---- */

/** What a scan of a log directory found. */
struct tdm_log_scan_report {
	uint64_t start;      /**< first position on disk */
	uint64_t end;        /**< end of the last valid record (where a scan error was found) */
	uint64_t records;    /**< valid records seen (PAD included; fn is not called for PAD) */
	uint32_t segments;   /**< segment files */
	uint64_t checkpoint; /**< durable point recorded in the last segment's header */
	uint64_t torn_bytes; /**< non-zero bytes past end in the last segment above the checkpoint */
	int error;           /**< 0, or the code of the first error */
	char error_file[512];  /**< the file where it was found */
	uint64_t error_offset; /**< byte offset in that file */
	uint64_t error_position; /**< stream position */
	char error_text[256];  /**< what is wrong and what to do */
};

/** Called for each record by tdm_log_scan; return non-zero to stop (that value is returned). */
typedef int (*tdm_log_scan_fn)(void *ctx, const struct tdm_log_rec *rec);

/**
 * Read every segment of dir in position order, checking headers, contiguity and every record,
 * and call fn (may be NULL) for each valid record at or after from. A torn tail (bad or partial
 * data past the checkpoint of the last segment) ends the scan without error and is reported in
 * torn_bytes; anything else that is wrong stops the scan with rep->error set.
 * cluster_id 0 accepts any cluster.
 * @return 0, fn's non-zero value, or rep->error (tdm_errmsg also set).
 */
int tdm_log_scan(const char *dir, uint64_t cluster_id, uint64_t from, tdm_log_scan_fn fn,
		 void *ctx, struct tdm_log_scan_report *rep);

/* ---- Truncating (failover; the side file reader is offline like the scan) ---- */

/**
 * Cut the log back to pos, keeping the records after it in a side file: for a node whose log
 * went past the position where it diverged from the new primary's.
 *
 * Owner only, on the flusher's thread (or with the flusher stopped): it runs the flusher itself.
 * Before calling: the writers' gate is closed and no append is in flight in any process
 * (tdm_log_append_at and tdm_log_pad_at included); no cursor or reader relies on records at or
 * after pos (cursors positioned past pos must be destroyed and re-created, or seeked to pos or
 * below, by the caller); peers' acknowledged positions past pos are the caller's to reset.
 *
 * Steps: flush everything; check pos; write every record of [pos, tail) to aside_path as a side
 * file (format at the top of log/truncate.c; PADs left out; written to aside_path.tmp, fsynced,
 * renamed, directory fsynced); then cut: segments after pos removed, the rest of pos's segment
 * zeroed, its checkpoint set to pos, history entries at or after pos removed, the log's epoch set
 * to the last remaining entry's (0 when none), tail, written and durable set back to pos. A crash
 * at any point leaves either the old log or, once the cut began, a log that tdm_log_open finishes
 * cutting to pos. Appends, tdm_log_append_at and tdm_log_pad_at continue at pos; the gate stays
 * as it was. durable moves back: commit waits must not span a truncate.
 *
 * When pos == tail nothing is moved and no side file is written (nor when [pos, tail) holds only
 * a PAD); history entries at or after pos (left by a crash) are still removed. Returns 0.
 * @param aside_path  the side file to create (replaced when it exists); may be NULL when
 *                    pos == tail
 * @return 0; -EINVAL not the owner, pos above the tail, below tdm_log_start, or not a record
 *         boundary, or no aside_path (tdm_errmsg says which); -EBUSY the gate is open, or the
 *         tail moved while flushing; TDM_ERR_CORRUPT a record to move fails its checks;
 *         -errno the side file or the marker cannot be written (nothing was changed in these
 *         cases); TDM_ERR_FAILED the log stopped after an I/O error, or the cut failed part way
 *         (the log then refuses writes; reopening it finishes the cut).
 */
int tdm_log_truncate(struct tdm_log *log, uint64_t pos, const char *aside_path);

/** What a side file's header says, and where reading it stopped. */
struct tdm_log_side_info {
	uint64_t cluster_id;    /**< cluster of the log the records were cut from */
	uint64_t first;         /**< the cut position: that log was truncated to it */
	uint64_t end;           /**< where that log ended before the cut */
	uint64_t count;         /**< records in the file (PADs are not kept) */
	uint32_t epoch;         /**< epoch field of the first record */
	uint16_t node_id;       /**< the node whose log it was */
	uint64_t records;       /**< records read and checked */
	uint64_t error_offset;  /**< on TDM_ERR_CORRUPT: byte offset in the file of the damage */
	char error_text[256];   /**< on TDM_ERR_CORRUPT: what is wrong */
};

/**
 * Read a side file written by tdm_log_truncate: check its header, then each record (length,
 * type, position field increasing inside [first, end), CRC32C, zero padding), and call fn (may
 * be NULL) for each in order; rec points into a buffer valid during the call. The header fields
 * of info are set once the header is valid, even when a record is bad.
 * @return 0; fn's non-zero value (reading stops); TDM_ERR_CORRUPT not a side file (bad magic),
 *         damaged header or record, fewer or more records than the header counts (tdm_errmsg
 *         and info name the file and byte offset); TDM_ERR_VERSION another format version;
 *         -errno the file cannot be opened or read.
 */
int tdm_log_side_read(const char *path, struct tdm_log_side_info *info, tdm_log_scan_fn fn,
		      void *ctx);

/** Name of a record type ("PUT", "DEL", ...; "?" for unknown). */
const char *tdm_log_rec_type_name(uint8_t type);

#endif /* TDM_LOG_H */
