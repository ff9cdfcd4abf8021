/*
 * The dispatcher and the apply workers: how records get from the log into the sink.
 *
 * The dispatcher reads the log with a cursor. Each PUT/DEL record is copied (header, key, value,
 * padded to the record's span) into the single-producer single-consumer ring of the worker that
 * owns its key (tdm_apply_key_hash % workers); EPOCH and NOOP records are passed over. At the end
 * of a step it publishes the ring heads it moved, then `dispatched`, the cursor's position.
 *
 * A worker loads `dispatched` (D), then its ring head, and applies the queued records below D as
 * one sink batch. When it has drained everything below D, every record of its partition below D
 * is applied, so its applied mark becomes D, even when it had nothing to do: an idle worker does
 * not hold the applied position back. When it stops at the batch limit, its mark is the end of
 * the last record it applied. tdm_apply_applied() is the minimum of the marks.
 *
 * A full ring ends the dispatcher's step (counted in ring_full): the cursor has already returned
 * the record, so it is moved back to that record's position, and the next step reads it again.
 *
 * Shared fields and their writers are listed in struct tdm_apply_worker / struct tdm_apply
 * (apply_pvt.h). The steps make no allocation, take no lock and make no system call of their own;
 * what the sink does is the sink's (the store takes its shard lock once per batch).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "apply_pvt.h"

#define DEFAULT_BATCH 256u
#define DEFAULT_RING (4u * 1024 * 1024)
#define MIN_RING 1024u
#define MAX_RING (1u << 30)

#define ROUTE_FULL 1 /* route(): the worker's ring has no room; nothing was written */

TDM_API void tdm_apply_config_defaults(struct tdm_apply_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->workers = 1;
	cfg->batch = DEFAULT_BATCH;
	cfg->ring_bytes = DEFAULT_RING;
}

/* ---- Sticky errors: each written once, by its owner thread ---- */

static int err_of(const uint64_t *e)
{
	/* Pairs with set_error's release (by the owner thread; stats may read from another). */
	return (int)(int64_t)tdm_apply_load_acquire(e);
}

static int set_error(uint64_t *e, int rc)
{
	tdm_apply_store_release(e, (uint64_t)(int64_t)rc);
	return rc;
}

/* ---- Creation ---- */

static int check_config(const struct tdm_apply_config *cfg, uint64_t ring)
{
	if (!cfg->log || !cfg->sink.put || !cfg->sink.del)
		return TDM_ERR(-EINVAL, "apply needs a log and a sink with put and del");
	if (cfg->workers < 1 || cfg->workers > TDM_APPLY_MAX_WORKERS)
		return TDM_ERR(-EINVAL, "apply workers %d: must be 1..%d", cfg->workers,
			       TDM_APPLY_MAX_WORKERS);
	if (ring < MIN_RING || ring > MAX_RING || (ring & (ring - 1)))
		return TDM_ERR(-EINVAL, "apply ring_bytes %" PRIu64 ": must be a power of two "
			       "from %u to %u", ring, MIN_RING, MAX_RING);
	if (cfg->from < tdm_log_start(cfg->log))
		return TDM_ERR(TDM_ERR_TRIMMED, "apply from position %" PRIu64 ": the log starts "
			       "at %" PRIu64 " (history trimmed): resync from a snapshot",
			       cfg->from, tdm_log_start(cfg->log));
	if (cfg->from > tdm_log_tail(cfg->log))
		return TDM_ERR(-EINVAL, "apply from position %" PRIu64 ": past the log's tail %"
			       PRIu64, cfg->from, tdm_log_tail(cfg->log));
	return 0;
}

static int workers_init(struct tdm_apply *a, uint64_t from)
{
	size_t sz = sizeof(*a->w) * (size_t)a->workers;

	a->w = aligned_alloc(TDM_APPLY_LINE, sz);
	if (!a->w)
		return -ENOMEM;
	memset(a->w, 0, sz);
	for (int i = 0; i < a->workers; i++) {
		struct tdm_apply_worker *w = &a->w[i];

		w->a = a;
		w->index = i;
		w->mask = a->ring_bytes - 1;
		w->applied = from;
		w->buf = aligned_alloc(TDM_APPLY_LINE, a->ring_bytes);
		if (!w->buf)
			return -ENOMEM;
	}
	return 0;
}

TDM_API int tdm_apply_create(const struct tdm_apply_config *cfg, struct tdm_apply **out)
{
	uint64_t ring = cfg->ring_bytes ? cfg->ring_bytes : DEFAULT_RING;
	struct tdm_apply *a;
	int rc = check_config(cfg, ring);

	if (rc)
		return rc;
	a = aligned_alloc(TDM_APPLY_LINE, sizeof(*a));
	if (!a)
		return -ENOMEM;
	memset(a, 0, sizeof(*a));
	a->log = cfg->log;
	a->sink = cfg->sink;
	a->workers = cfg->workers;
	a->batch = cfg->batch ? cfg->batch : DEFAULT_BATCH;
	a->ring_bytes = ring;
	a->dispatched = cfg->from;
	rc = workers_init(a, cfg->from);
	if (!rc)
		rc = tdm_log_cursor_create(cfg->log, cfg->from, &a->cursor);
	if (rc) {
		tdm_apply_destroy(a);
		return rc == -ENOMEM ? TDM_ERR(rc, "no memory for %d apply rings of %" PRIu64
					       " bytes", cfg->workers, ring) : rc;
	}
	*out = a;
	return 0;
}

TDM_API void tdm_apply_destroy(struct tdm_apply *a)
{
	if (!a)
		return;
	tdm_apply_stop_threads(a);
	if (a->w)
		for (int i = 0; i < a->workers; i++)
			free(a->w[i].buf);
	free(a->w);
	tdm_log_cursor_destroy(a->cursor);
	free(a);
}

/* ---- Dispatcher ---- */

/* Copy rec (span bytes) into w's ring. @return 0 or ROUTE_FULL (nothing written). */
static int ring_push(struct tdm_apply_worker *w, const struct tdm_log_rec *rec, uint64_t span)
{
	uint64_t size = w->mask + 1, off = w->prod_head & w->mask;
	uint64_t need = off + span > size ? span + (size - off) : span;
	uint8_t *p;

	if (TDM_APPLY_UNLIKELY(need > size - (w->prod_head - w->prod_tail))) {
		/* Pairs with the worker's release of tail after it applied those bytes. */
		w->prod_tail = tdm_apply_load_acquire(&w->tail);
		if (need > size - (w->prod_head - w->prod_tail))
			return ROUTE_FULL;
	}
	if (off + span > size) { /* mark the rest of the lap as skipped, start at offset 0 */
		uint32_t wrap = TDM_APPLY_RING_WRAP;

		memcpy(w->buf + off, &wrap, sizeof(wrap));
		w->prod_head += size - off;
		off = 0;
	}
	p = w->buf + off;
	memcpy(p, rec->hdr, TDM_LOG_REC_HDR_SIZE);
	memcpy(p + TDM_LOG_REC_HDR_SIZE, rec->key, rec->hdr->key_len);
	memcpy(p + TDM_LOG_REC_HDR_SIZE + rec->hdr->key_len, rec->value, rec->hdr->value_len);
	w->prod_head += span;
	return 0;
}

static int too_large(struct tdm_apply *a, const struct tdm_log_rec_hdr *h, uint64_t span)
{
	return TDM_ERR(-EMSGSIZE, "record at log position %" PRIu64 " spans %" PRIu64 " bytes "
		       "(key %u, value %u): more than a quarter of the apply ring (%" PRIu64
		       " bytes); raise ring_bytes", h->position, span, h->key_len, h->value_len,
		       a->ring_bytes);
}

/* What one dispatcher step did, published at its end. */
struct step {
	uint64_t touched; /* bit i: worker i's ring head moved */
	uint64_t skipped; /* EPOCH/NOOP records passed over */
};

/* Hand one record to its worker. @return 0 (routed or passed over), ROUTE_FULL, or a fatal
 * error. */
static int route(struct tdm_apply *a, const struct tdm_log_rec *rec, struct step *st)
{
	const struct tdm_log_rec_hdr *h = rec->hdr;
	uint64_t span;
	int wi;

	if (h->type != TDM_LOG_REC_PUT && h->type != TDM_LOG_REC_DEL) {
		st->skipped++;
		return 0;
	}
	span = tdm_log_rec_span(h->key_len, h->value_len);
	if (TDM_APPLY_UNLIKELY(span > a->ring_bytes / 4))
		return too_large(a, h, span);
	wi = a->workers == 1 ? 0 : (int)(tdm_apply_key_hash(rec->key, h->key_len) %
					 (uint64_t)a->workers);
	if (ring_push(&a->w[wi], rec, span))
		return ROUTE_FULL;
	st->touched |= 1ull << wi;
	return 0;
}

/* Publish the moved ring heads, the counters, then the dispatched mark. */
static void publish(struct tdm_apply *a, const struct step *st, bool full)
{
	uint64_t t = st->touched;

	for (int i = 0; t; i++, t >>= 1)
		if (t & 1) /* pairs with the worker's acquire of head in worker_do_work */
			tdm_apply_store_release(&a->w[i].head, a->w[i].prod_head);
	/* The counters pair with tdm_apply_stats' acquires (the owner reads its own plainly). */
	if (st->skipped)
		tdm_apply_store_release(&a->skipped, a->skipped + st->skipped);
	if (full)
		tdm_apply_store_release(&a->ring_full, a->ring_full + 1);
	/* After the heads: pairs with the worker's acquire of dispatched, which then finds every
	 * record below it in its ring. Stored only when it moved: idle steps dirty no shared line. */
	if (tdm_log_cursor_position(a->cursor) != a->dispatched)
		tdm_apply_store_release(&a->dispatched, tdm_log_cursor_position(a->cursor));
}

static int dispatch_failed(struct tdm_apply *a, int rc)
{
	uint64_t pos = tdm_log_cursor_position(a->cursor);

	if (rc == TDM_ERR_TRIMMED) /* the cursor sets no message for this one */
		TDM_ERR(rc, "the log no longer holds position %" PRIu64 " (retention trimmed it): "
			"apply needs a resync from a snapshot", pos);
	tdm_err_append(rc, "apply dispatcher stopped at log position %" PRIu64, pos);
	return set_error(&a->error, rc);
}

TDM_API int tdm_apply_dispatch_do_work(struct tdm_apply *a)
{
	struct step st = { 0, 0 };
	int n = 0, rc = err_of(&a->error);

	if (TDM_APPLY_UNLIKELY(rc))
		return rc;
	while ((uint32_t)n < a->batch) {
		struct tdm_log_rec rec;

		rc = tdm_log_cursor_next(a->cursor, &rec);
		if (rc)
			break;
		rc = route(a, &rec, &st);
		if (rc) { /* full or too large: read it again next time */
			tdm_log_cursor_seek(a->cursor, rec.hdr->position);
			break;
		}
		n++;
	}
	publish(a, &st, rc == ROUTE_FULL);
	if (TDM_APPLY_UNLIKELY(rc < 0 && rc != TDM_ERR_EMPTY))
		return dispatch_failed(a, rc);
	return n;
}

/* ---- Workers ---- */

/* The next record in w's ring before head, past a wrap marker (moving *tail); NULL: empty. */
static inline const struct tdm_log_rec_hdr *ring_peek(const struct tdm_apply_worker *w,
						       uint64_t *tail, uint64_t head)
{
	const uint8_t *p;
	uint32_t len;

	if (*tail == head)
		return NULL;
	p = w->buf + (*tail & w->mask);
	memcpy(&len, p, sizeof(len));
	if (len == TDM_APPLY_RING_WRAP) {
		*tail += w->mask + 1 - (*tail & w->mask);
		if (*tail == head)
			return NULL;
		p = w->buf;
	}
	return (const struct tdm_log_rec_hdr *)(const void *)p;
}

/* What one worker step did. */
struct batch {
	uint64_t tail;  /* ring bytes consumed */
	uint64_t mark;  /* the worker's applied mark after the step */
	uint64_t puts, dels;
	const struct tdm_log_rec_hdr *fail; /* the record the sink failed on */
	uint64_t ahead; /* ring offset of the next record to announce to sink->prefetch */
	uint64_t announced; /* records announced in this batch */
};

static inline struct tdm_log_rec rec_of(const struct tdm_log_rec_hdr *h)
{
	const uint8_t *key = (const uint8_t *)(h + 1);

	return (struct tdm_log_rec){ h, key, key + h->key_len };
}

/* Announce the records up to TDM_APPLY_PREFETCH past the next one to apply (below d, within the
 * batch limit), so the sink's loads overlap the records applied meanwhile. */
static inline void prefetch_ahead(struct tdm_apply_worker *w, struct batch *b, uint64_t d,
				  uint64_t head)
{
	const struct tdm_apply_sink *sink = &w->a->sink;
	uint64_t limit = b->puts + b->dels + TDM_APPLY_PREFETCH;

	if (limit > w->a->batch)
		limit = w->a->batch;
	while (b->announced < limit) {
		const struct tdm_log_rec_hdr *h = ring_peek(w, &b->ahead, head);
		struct tdm_log_rec rec;

		if (!h || h->position >= d)
			return;
		rec = rec_of(h);
		sink->prefetch(sink->ctx, w->index, &rec);
		b->ahead += tdm_log_rec_span(h->key_len, h->value_len);
		b->announced++;
	}
}

/* One record from the ring (header, key, value back to back) through the sink. */
static inline int apply_one(const struct tdm_apply_sink *sink, int wi,
			    const struct tdm_log_rec_hdr *h)
{
	struct tdm_log_rec rec = rec_of(h);

	if (h->type == TDM_LOG_REC_PUT)
		return sink->put(sink->ctx, wi, &rec);
	return sink->del(sink->ctx, wi, &rec);
}

/* Apply w's queued records below d, at most batch of them, as one sink batch. */
static int apply_batch(struct tdm_apply_worker *w, uint64_t d, uint64_t head, struct batch *b)
{
	const struct tdm_apply_sink *sink = &w->a->sink;
	const struct tdm_log_rec_hdr *h;
	bool begun = false;
	int rc = 0;

	b->tail = w->tail;
	b->mark = d; /* unless stopped early: then everything before the next record */
	while ((h = ring_peek(w, &b->tail, head)) && h->position < d) {
		if (b->puts + b->dels == w->a->batch) {
			b->mark = h->position;
			break;
		}
		if (!begun && sink->begin_batch && (rc = sink->begin_batch(sink->ctx, w->index))) {
			b->mark = w->applied;
			return rc;
		}
		if (!begun)
			b->ahead = b->tail;
		begun = true;
		if (sink->prefetch)
			prefetch_ahead(w, b, d, head);
		rc = apply_one(sink, w->index, h);
		if (TDM_APPLY_UNLIKELY(rc)) {
			b->fail = h;
			b->mark = h->position;
			break;
		}
		if (h->type == TDM_LOG_REC_PUT)
			b->puts++;
		else
			b->dels++;
		b->tail += tdm_log_rec_span(h->key_len, h->value_len);
	}
	if (begun && sink->end_batch) {
		int e = sink->end_batch(sink->ctx, w->index, b->mark);

		if (e && !rc) {
			rc = e;
			b->mark = w->applied;
		}
	}
	return rc;
}

static int worker_failed(struct tdm_apply_worker *w, int rc, const struct tdm_log_rec_hdr *h)
{
	if (h)
		tdm_err_append(rc, "apply worker %d stopped: the sink's %s of the record at log "
			       "position %" PRIu64 " returned %s", w->index,
			       h->type == TDM_LOG_REC_PUT ? "put" : "del", h->position,
			       tdm_strerror(rc));
	else
		tdm_err_append(rc, "apply worker %d stopped: the sink's begin or end of batch "
			       "returned %s (applied up to %" PRIu64 ")", w->index,
			       tdm_strerror(rc), w->applied);
	return set_error(&w->error, rc);
}

TDM_API int tdm_apply_worker_do_work(struct tdm_apply *a, int worker)
{
	struct tdm_apply_worker *w = &a->w[worker];
	struct batch b = { 0, 0, 0, 0, NULL, 0, 0 };
	uint64_t d, head;
	int rc = err_of(&w->error);

	if (TDM_APPLY_UNLIKELY(rc))
		return rc;
	d = tdm_apply_load_acquire(&a->dispatched);  /* pairs with publish()'s last release */
	head = tdm_apply_load_acquire(&w->head);     /* pairs with publish()'s head release */
	rc = apply_batch(w, d, head, &b);
	/* Pairs with ring_push's acquire of tail: the bytes before it may be reused now. */
	if (b.tail != w->tail)
		tdm_apply_store_release(&w->tail, b.tail);
	if (b.puts + b.dels) { /* counters: pair with tdm_apply_stats' acquires */
		tdm_apply_store_release(&w->puts, w->puts + b.puts);
		tdm_apply_store_release(&w->dels, w->dels + b.dels);
		tdm_apply_store_release(&w->records, w->records + b.puts + b.dels);
		tdm_apply_store_release(&w->batches, w->batches + 1);
	}
	if (b.mark != w->applied) /* pairs with tdm_apply_applied's acquire */
		tdm_apply_store_release(&w->applied, b.mark);
	if (TDM_APPLY_UNLIKELY(rc))
		return worker_failed(w, rc, b.fail);
	return (int)(b.puts + b.dels);
}

/* ---- Positions, statistics, agents ---- */

TDM_API uint64_t tdm_apply_applied(const struct tdm_apply *a)
{
	uint64_t min = UINT64_MAX;

	for (int i = 0; i < a->workers; i++) {
		/* Pairs with the worker's release of its mark in tdm_apply_worker_do_work. */
		uint64_t m = tdm_apply_load_acquire(&a->w[i].applied);

		if (m < min)
			min = m;
	}
	return min;
}

TDM_API uint64_t tdm_apply_dispatched(const struct tdm_apply *a)
{
	return tdm_apply_load_acquire(&a->dispatched); /* pairs with publish()'s last release */
}

/* All loads pair with the owners' releases (publish() and tdm_apply_worker_do_work). */
TDM_API void tdm_apply_stats(const struct tdm_apply *a, struct tdm_apply_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->dispatched = tdm_apply_dispatched(a);
	out->applied = tdm_apply_applied(a);
	out->skipped = tdm_apply_load_acquire(&a->skipped);
	out->ring_full = tdm_apply_load_acquire(&a->ring_full);
	out->error = err_of(&a->error);
	for (int i = 0; i < a->workers; i++) {
		const struct tdm_apply_worker *w = &a->w[i];

		out->puts += tdm_apply_load_acquire(&w->puts);
		out->dels += tdm_apply_load_acquire(&w->dels);
		out->records += tdm_apply_load_acquire(&w->records);
		out->batches += tdm_apply_load_acquire(&w->batches);
		if (!out->error)
			out->error = err_of(&w->error);
	}
}

TDM_API int tdm_apply_dispatch_agent(void *ctx)
{
	return tdm_apply_dispatch_do_work(ctx);
}

TDM_API int tdm_apply_worker_agent(void *ctx)
{
	struct tdm_apply_worker *w = ctx;

	return tdm_apply_worker_do_work(w->a, w->index);
}

TDM_API void *tdm_apply_worker_ctx(struct tdm_apply *a, int worker)
{
	return &a->w[worker];
}
