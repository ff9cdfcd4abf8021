/*
 * The tandem frame format, byte by byte, and the stateless checks every received frame passes
 * before anything reads it.
 *
 * A frame is the payload of one UDP/IPv4 datagram (the kernel builds Ethernet/IPv4/UDP on the
 * udp backend, transport_dpdk.c builds them on the dpdk backend with UDP checksum 0: integrity
 * comes from our own CRCs). All integers are little-endian.
 *
 * HEADER (48 bytes)
 *   off size field
 *   0   4    magic       "TNDF" (0x46444e54)
 *   4   1    version     1
 *   5   1    type        1 DATA, 2 STATUS, 3 NAK, 4 HEARTBEAT, 5 HELLO, 6 VOTE_REQUEST, 7 VOTE
 *   6   2    flags       bit 0 FRAG (DATA only); other bits must be 0
 *   8   8    cluster_id  frames of another cluster are dropped
 *   16  2    src         sending node id (must be a configured peer)
 *   18  2    dst         receiving node id (must be us)
 *   20  4    epoch       sender's epoch; frames of an epoch older than the receiver's are dropped
 *   24  4    stream      stream id (0 for a primary's log; the origin node in multi-primary)
 *   28  4    length      payload bytes; the datagram is exactly 48 + length bytes
 *   32  8    position    DATA: stream position of the first item (FRAG: of the record);
 *                        STATUS: received; NAK: the position the receiver expects;
 *                        HEARTBEAT: sent; control frames: 0
 *   40  4    frag_off    DATA with FRAG: offset of this slice in the record; otherwise 0
 *   44  4    crc         CRC32C of header bytes [0,44), then of the payload for every type but
 *                        DATA. DATA items protect themselves (below), so a record's bytes are
 *                        checksummed once, by the CRC the log already computed.
 *
 * DATA payload without FRAG: items back to back, each starting where the previous one ended in
 * the stream (the first at `position`):
 *   RECORD  a log record exactly as in the log (see log/record.c), `span` bytes (its length
 *           rounded up to 8). Its own CRC32C and position field are checked on delivery.
 *   PAD     16 bytes standing for `span` zero bytes of the log (the end of a segment):
 *             0 4 0x80000000 | span   (span > 0, a multiple of 8)
 *             4 4 CRC32C of bytes [0,4) then [8,16)
 *             8 8 position of the PAD in the stream
 * DATA payload with FRAG: bytes [frag_off, frag_off + length) of one record's span at `position`.
 *   The slice at frag_off 0 holds at least the 40-byte record header. The receiver joins slices
 *   in order and checks the record's CRC when the last one arrives.
 * STATUS payload (32 bytes): received, durable, applied, window (u64 each). The sender may send
 *   up to received + window.
 * NAK: no payload. HEARTBEAT payload (24 bytes): sent, tail, sender's clock in ns.
 * HELLO, VOTE_REQUEST, VOTE: payload defined by the engine, covered by the header CRC.
 *
 * RECOVERY RULE: a frame failing any check is dropped and counted by reason; nothing in it is
 * used. A receiver accepts DATA only at the position it expects (go-back-N); a gap gets a NAK
 * with that position, and the sender resends from its log.
 */
#include <errno.h>

#include "dp_pvt.h"

static const char *const type_names[] = {
	"?", "DATA", "STATUS", "NAK", "HEARTBEAT", "HELLO", "VOTE_REQUEST", "VOTE",
};

static const char *const drop_names[TDM_DP_DROP_REASONS] = {
	[TDM_DP_DROP_SHORT] = "short",       [TDM_DP_DROP_MAGIC] = "magic",
	[TDM_DP_DROP_VERSION] = "version",   [TDM_DP_DROP_TYPE] = "type",
	[TDM_DP_DROP_CLUSTER] = "cluster",   [TDM_DP_DROP_DEST] = "destination",
	[TDM_DP_DROP_SOURCE] = "source",     [TDM_DP_DROP_CHECKSUM] = "checksum",
	[TDM_DP_DROP_EPOCH] = "stale_epoch", [TDM_DP_DROP_PAYLOAD] = "payload",
	[TDM_DP_DROP_STREAM] = "no_stream",
};

TDM_DP_API const char *tdm_dp_frame_type_name(unsigned type)
{
	return type <= TDM_DP_FRAME_TYPE_MAX ? type_names[type] : "?";
}

TDM_DP_API const char *tdm_dp_drop_reason_name(unsigned reason)
{
	return reason < TDM_DP_DROP_REASONS ? drop_names[reason] : "?";
}

void tdm_dp_hdr_fill(struct tdm_dp_hdr *h, unsigned type, uint64_t cluster, uint16_t src,
		     uint16_t dst, uint32_t epoch, uint32_t stream)
{
	h->magic = TDM_DP_FRAME_MAGIC;
	h->version = TDM_DP_FRAME_VERSION;
	h->type = (uint8_t)type;
	h->flags = 0;
	h->cluster_id = cluster;
	h->src = src;
	h->dst = dst;
	h->epoch = epoch;
	h->stream = stream;
	h->length = 0;
	h->position = 0;
	h->frag_off = 0;
	h->crc = 0;
}

static uint32_t frame_crc(const uint8_t *frame, unsigned type, uint32_t payload_len)
{
	uint32_t crc = tdm_crc32c(0, frame, TDM_DP_HDR_SIZE - 4);

	if (type != TDM_DP_DATA && payload_len)
		crc = tdm_crc32c(crc, frame + TDM_DP_HDR_SIZE, payload_len);
	return crc;
}

void tdm_dp_frame_seal(uint8_t *frame, uint32_t payload_len)
{
	struct tdm_dp_hdr *h = (struct tdm_dp_hdr *)frame;

	h->length = payload_len;
	h->crc = frame_crc(frame, h->type, payload_len);
}

static uint32_t pad_crc(const uint8_t *p)
{
	return tdm_crc32c(tdm_crc32c(0, p, 4), p + 8, 8);
}

void tdm_dp_pad_item_write(uint8_t *p, uint64_t pos, uint64_t span)
{
	uint32_t len = 0x80000000u | (uint32_t)span, crc;

	memcpy(p, &len, 4);
	memcpy(p + 8, &pos, 8);
	crc = pad_crc(p);
	memcpy(p + 4, &crc, 4);
}

uint32_t tdm_dp_item_next(const uint8_t *p, uint32_t avail, uint64_t *span, bool *is_pad,
			  uint64_t *pad_pos)
{
	uint32_t len, crc;

	if (avail < 8)
		return 0;
	memcpy(&len, p, 4);
	if (len & 0x80000000u) {
		len &= ~0x80000000u;
		if (avail < TDM_DP_PAD_ITEM_SIZE || !len || len % TDM_LOG_REC_ALIGN)
			return 0;
		memcpy(&crc, p + 4, 4);
		if (crc != pad_crc(p))
			return 0;
		memcpy(pad_pos, p + 8, 8);
		*span = len;
		*is_pad = true;
		return TDM_DP_PAD_ITEM_SIZE;
	}
	if (len < TDM_LOG_REC_HDR_SIZE)
		return 0;
	*span = ((uint64_t)len + TDM_LOG_REC_ALIGN - 1) & ~(uint64_t)(TDM_LOG_REC_ALIGN - 1);
	if (*span > avail)
		return 0;
	*is_pad = false;
	return (uint32_t)*span;
}

/* DATA without FRAG: the items must tile the payload exactly. */
static bool data_items_ok(const uint8_t *p, uint32_t len)
{
	uint32_t off = 0;

	while (off < len) {
		uint64_t span, pad_pos;
		bool is_pad;
		uint32_t n = tdm_dp_item_next(p + off, len - off, &span, &is_pad, &pad_pos);

		if (!n)
			return false;
		off += n;
	}
	return len > 0;
}

static int payload_check(const struct tdm_dp_hdr *h, const uint8_t *payload)
{
	switch (h->type) {
	case TDM_DP_DATA:
		if (h->flags & TDM_DP_F_FRAG)
			return h->length > 0 && (h->frag_off || h->length >= TDM_LOG_REC_HDR_SIZE) &&
			       (uint64_t)h->frag_off + h->length <= TDM_LOG_REC_HDR_SIZE +
			       (uint64_t)TDM_LOG_MAX_KEY + TDM_LOG_MAX_VALUE + TDM_LOG_REC_ALIGN;
		return h->frag_off == 0 && data_items_ok(payload, h->length);
	case TDM_DP_STATUS:
		return h->length == sizeof(struct tdm_dp_status_payload);
	case TDM_DP_NAK:
		return h->length == 0;
	case TDM_DP_HEARTBEAT:
		return h->length == sizeof(struct tdm_dp_heartbeat_payload);
	default:
		return 1;
	}
}

#define DROP(reason) (-(1 + (int)(reason)))

TDM_DP_API int tdm_dp_frame_check(const void *frame, uint32_t len)
{
	const uint8_t *f = frame;
	struct tdm_dp_hdr h;

	if (len < TDM_DP_HDR_SIZE)
		return DROP(TDM_DP_DROP_SHORT);
	memcpy(&h, f, sizeof(h));
	if (h.magic != TDM_DP_FRAME_MAGIC)
		return DROP(TDM_DP_DROP_MAGIC);
	if (h.version != TDM_DP_FRAME_VERSION)
		return DROP(TDM_DP_DROP_VERSION);
	if (h.type == 0 || h.type > TDM_DP_FRAME_TYPE_MAX || (h.flags & ~TDM_DP_F_MASK) ||
	    ((h.flags & TDM_DP_F_FRAG) && h.type != TDM_DP_DATA))
		return DROP(TDM_DP_DROP_TYPE);
	if (h.length != len - TDM_DP_HDR_SIZE)
		return DROP(TDM_DP_DROP_SHORT);
	if (h.crc != frame_crc(f, h.type, h.length))
		return DROP(TDM_DP_DROP_CHECKSUM);
	if (!payload_check(&h, f + TDM_DP_HDR_SIZE))
		return DROP(TDM_DP_DROP_PAYLOAD);
	return 0;
}
