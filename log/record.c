/*
 * The write log's formats, byte by byte, and the record checks every reader uses.
 *
 * All integers are little-endian. Positions are byte offsets in one log stream.
 *
 * RECORD (8-byte aligned, at stream position P)
 *   off size field
 *   0   4    length     header + key + value bytes (40 + key_len + value_len), not padded.
 *                       Written LAST with a release store: a reader that loads it non-zero
 *                       (acquire) sees the whole record. 0 means "nothing here yet".
 *   4   4    crc        CRC32C over bytes [0,4) then [8,length): every byte of the record but
 *                       this field. Padding is not covered (it is always zero).
 *   8   8    position   P. A record found at the wrong position is corrupt.
 *   16  8    hlc        hybrid-logical-clock timestamp of the write
 *   24  4    epoch      epoch of the primary that accepted the write
 *   28  2    origin     node id that accepted the write
 *   30  1    type       1 PUT, 2 DEL, 3 EPOCH, 4 NOOP (0 is never valid)
 *   31  1    flags      reserved for the engine
 *   32  4    key_len    <= 64 KiB
 *   36  4    value_len  <= 16 MiB (and the record's span <= ring/4 and <= segment size)
 *   40  ...  key, then value, then zero padding to the next multiple of 8 (the record's span)
 *
 * PAD (fills the end of a segment so that no record straddles two segment files)
 *   0   4    length     0x80000000 | span; span is a multiple of 8 and P + span is a multiple of
 *                       the segment size. The span's other bytes are zero, and readers check that
 *                       (a record whose top length bit flipped is not taken for a PAD).
 *
 * RING FILE  /dev/shm/<name>  (struct tdm_ring_meta in log_pvt.h, _Static_assert'ed)
 *   0       16 KiB metadata: magic "TNDMRING", layout version 2, ring and segment sizes, cluster
 *           id, owner pid, node id, state, epoch, segment directory, truncation count; then
 *           from offset 1024 one 128-byte slot per hot position (tail, gate, published, written,
 *           durable, start, the writers' back-pressure counter), the flusher's counters, and 16
 *           peer slots at 2048. The tail word's top bit is the writers' gate (set: closed,
 *           tdm_log_append refuses); the position is the other 63 bits.
 *   16 KiB  ring_size data bytes: stream byte P lives at 16 KiB + (P mod ring_size). The data is
 *           mapped twice back to back, so a record that wraps is contiguous in memory.
 *   Writers reserve [tail, tail+span) with a CAS that refuses to pass gate + ring_size
 *   (back-pressure). The flusher zeroes ring bytes after writing them to a segment and only then
 *   moves gate past them, so a writer always finds zeroed memory and a zero length word means
 *   "not published yet".
 *
 * SEGMENT FILE  DIR/<start as 16 lowercase hex digits>.seg, 4096 + segment_size bytes,
 *   preallocated; stream byte P at file offset 4096 + (P - start). start is a multiple of the
 *   segment size and segments are contiguous: every position from the oldest retained one to the
 *   end is in exactly one file.
 *   off size field
 *   0   8    magic        "TNDMSEG1"
 *   8   4    version      1
 *   12  4    header_size  4096
 *   16  8    cluster_id
 *   24  8    start
 *   32  8    segment_size
 *   40  4    crc          CRC32C of bytes [0,40)
 *   512 8    checkpoint   a position the flusher knew durable (0: none); on its own sector
 *   520 4    crc          CRC32C of the 8 checkpoint bytes
 *
 * RECOVERY RULE (tdm_log_open; tdm_log_scan reports the same without changing anything)
 *   - Every segment header must be valid: wrong magic or crc -> TDM_ERR_CORRUPT, other version ->
 *     TDM_ERR_VERSION, other cluster -> TDM_ERR_CLUSTER, a gap -> -ENOENT naming the missing file.
 *   - Segments before the last one holding data must be full of valid records up to their end.
 *   - In the last segment holding data, records are checked from its start. At the first position
 *     E whose length word is 0 with only zeros after it, the log ends cleanly at E. At the first
 *     invalid record (or a 0 length word followed by non-zero bytes) at E:
 *       E below that segment's checkpoint   -> TDM_ERR_CORRUPT (it was durable: never cut it);
 *       otherwise a torn tail               -> the log ends at E; the bytes from E to the last
 *         non-zero byte are saved to DIR/cut-<E as hex16>.bin, then zeroed in the segment.
 *   The flusher writes a checkpoint (a position already durable) into the header of the segment
 *   it is writing at least every checkpoint_bytes, and on close, so only the unflushed tail of a
 *   crash is ever treated as torn.
 *
 * HISTORY FILE  DIR/history: see history.c.
 * SIDE FILE and TRUNCATE MARKER (DIR/truncating, finished by tdm_log_open): see truncate.c.
 */
#include <string.h>

#include "log_pvt.h"

static inline uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/*
 * A PAD at pos: flag set, aligned span, ending exactly on a segment boundary when seg_size is
 * known, and zero after the length word for the bytes available (at least the first 40 must be:
 * a real record whose length word was damaged has its checksum and position there).
 */
int tdm_rec_check_pad(const void *buf, size_t avail, uint64_t pos, uint64_t seg_size)
{
	const uint8_t *p = buf;
	uint32_t len = rd32(p);
	uint64_t span = len & ~TDM_LOG_PAD_FLAG;
	size_t n = span < avail ? (size_t)span : avail;

	if (!(len & TDM_LOG_PAD_FLAG) || span == 0 || span % TDM_LOG_REC_ALIGN)
		return TDM_ERR_CORRUPT;
	if (seg_size && (pos + span) % seg_size != 0)
		return TDM_ERR_CORRUPT;
	if (n < span && n < TDM_LOG_REC_HDR_SIZE)
		return TDM_ERR_CORRUPT;
	for (size_t i = 4; i < n; i++)
		if (p[i])
			return TDM_ERR_CORRUPT;
	return 0;
}

TDM_API int tdm_log_rec_check(const void *buf, size_t avail, uint64_t pos)
{
	const uint8_t *p = buf;
	uint32_t len, crc;

	if (avail < 4)
		return TDM_ERR_CORRUPT;
	len = rd32(p);
	if (len == 0)
		return TDM_ERR_EMPTY;
	if (len & TDM_LOG_PAD_FLAG)
		return tdm_rec_check_pad(buf, avail, pos, 0);
	if (len < TDM_LOG_REC_HDR_SIZE || len > avail)
		return TDM_ERR_CORRUPT;
	if (rd64(p + 8) != pos)
		return TDM_ERR_CORRUPT;
	if (p[30] == 0 || p[30] > TDM_LOG_REC_NOOP)
		return TDM_ERR_CORRUPT;
	if ((uint64_t)rd32(p + 32) + rd32(p + 36) + TDM_LOG_REC_HDR_SIZE != len)
		return TDM_ERR_CORRUPT;
	crc = tdm_crc32c(0, p, 4);
	crc = tdm_crc32c(crc, p + 8, len - 8);
	if (crc != rd32(p + 4))
		return TDM_ERR_CORRUPT;
	return 0;
}

TDM_API const char *tdm_log_rec_type_name(uint8_t type)
{
	static const char *const names[] = {
		[TDM_LOG_REC_PUT] = "PUT",     [TDM_LOG_REC_DEL] = "DEL",
		[TDM_LOG_REC_EPOCH] = "EPOCH", [TDM_LOG_REC_NOOP] = "NOOP",
		[TDM_LOG_REC_PAD] = "PAD",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	return "?";
}
