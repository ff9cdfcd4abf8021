/*
 * The default apply sink: an in-memory hash store in shards (one per apply worker).
 *
 * Each shard is an open-addressing table with linear probing: a power-of-two array of 16-byte
 * slots {hash, entry}, indexed by the top bits of the key's hash (the low bits pick the shard,
 * so they are the same for every key of a shard). The cached hash lets a probe skip an entry
 * without touching it; the key is compared only on a full hash match. Deletion shifts the
 * following slots back (no hash-table tombstones), so probe sequences stay short whatever the
 * history. (Merge mode's tombstones are entries of their own, kept on purpose: merge.c.)
 * The table doubles when it is 3/4 full: that put moves the whole shard by the cached hashes (no
 * key is read). It is the one pause of the store: about 50 ns per entry moved, measured 41 ms
 * for the 786k entries of a shard growing from 1M to 2M slots (2-core VM), then twice as long
 * at each later doubling. Amortized, it is under 100 ns per key ever inserted.
 *
 * An entry is one malloc block: hlc, a word packing key length, value length, origin and the
 * deleted mark, then the key and the value (16 + key + value bytes; 96 for a 16-byte key and a
 * 64-byte value). An overwrite whose new size still fits the block (and uses at least 3/4 of
 * it) reuses it.
 *
 * Prefetching: the sink's prefetch hook gets each record TDM_APPLY_PREFETCH records before its
 * put/del. It hashes the key, remembers the hash (put/del take it back instead of hashing
 * again) and prefetches the key's home slot; PF_LAG announcements later, that slot is in cache,
 * so it finds the entry and prefetches it. With random keys in a store much bigger than the
 * caches, this overlaps the two memory misses of a put with the work on the records before it
 * (measured on the 2-core VM, 1M keys of 16 B + 64 B: a put from ~700 ns to ~300 ns).
 *
 * Locking: a shard's rwlock is taken in write mode once per batch by the sink (begin/end) or
 * once per call by tdm_store_put/del, and in read mode by get/foreach. The digest, count and
 * byte counters are kept by the writer under the lock and published (release) when it unlocks,
 * so readers sum them without locks and see whole batches.
 *
 * Merge mode (multi-primary) uses the same tables: its writes, tombstones (entries with the
 * deleted mark), conflicts and purge are in merge.c; here it only changes which sink calls
 * tdm_store_sink hands out, and reads skip tombstones. The plain sink's put and del do not
 * test the mode.
 * The layout shared with merge.c and snapshot.c is in apply_pvt.h.
 */
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "apply_pvt.h"

#define MIN_SLOTS 256u
#define PF_N TDM_STORE_PF_N
#define PF_LAG 8u /* announcements between prefetching a slot and then its entry */
_Static_assert(PF_N >= TDM_APPLY_PREFETCH && (PF_N & (PF_N - 1)) == 0, "prefetch ring size");

/* ---- The table ---- */

static int table_init(struct tdm_store_shard *sh, uint64_t n)
{
	struct tdm_store_slot *t = calloc(n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	sh->slots = t;
	sh->mask = n - 1;
	sh->shift = 64u - (unsigned)__builtin_ctzll(n);
	return 0;
}

/* Double the table, moving every slot by its cached hash. */
int tdm_store_grow(struct tdm_store_shard *sh)
{
	struct tdm_store_slot *old = sh->slots;
	uint64_t n = sh->mask + 1;

	if (table_init(sh, n * 2))
		return -ENOMEM;
	for (uint64_t j = 0; j < n; j++) {
		uint64_t i;

		if (!old[j].e)
			continue;
		for (i = old[j].hash >> sh->shift; sh->slots[i].e; i = (i + 1) & sh->mask)
			;
		sh->slots[i] = old[j];
	}
	free(old);
	return 0;
}

/* Empty slot sl, shifting back the slots after it that may live closer to their home: each one
 * moves to a slot between sl and where it was (never past sl's side of the table). */
void tdm_store_remove_slot(struct tdm_store_shard *sh, struct tdm_store_slot *sl)
{
	uint64_t i = (uint64_t)(sl - sh->slots), j = i;

	for (;;) {
		j = (j + 1) & sh->mask;
		if (!sh->slots[j].e)
			break;
		uint64_t home = sh->slots[j].hash >> sh->shift;
		if (((j - home) & sh->mask) >= ((j - i) & sh->mask)) {
			sh->slots[i] = sh->slots[j];
			i = j;
		}
	}
	sh->slots[i].e = NULL;
	sh->slots[i].hash = 0;
}

/* ---- Plain-mode writes (lock held) ---- */

/* Replace the value of the entry in sl, reusing its block when the new size fits it well. */
static int overwrite(struct tdm_store_shard *sh, struct tdm_store_slot *sl, uint32_t klen,
		     const void *val, uint32_t vlen, uint64_t hlc, uint16_t origin)
{
	struct tdm_store_entry *e = sl->e;
	uint32_t old_vlen = tdm_store_e_vlen(e);

	sh->digest -= tdm_store_entry_hash(sl->hash, tdm_store_e_val(e), old_vlen);
	if (!tdm_store_block_fits(e, klen, old_vlen, vlen)) {
		struct tdm_store_entry *n = tdm_store_e_new(e->data, klen, vlen);

		if (!n) {
			sh->digest += tdm_store_entry_hash(sl->hash, tdm_store_e_val(e), old_vlen);
			return -ENOMEM;
		}
		free(e);
		sl->e = e = n;
	}
	tdm_store_e_set(e, klen, val, vlen, hlc, origin, false);
	sh->digest += tdm_store_entry_hash(sl->hash, val, vlen);
	sh->bytes += (uint64_t)vlen - old_vlen;
	return 0;
}

static int shard_put(struct tdm_store_shard *sh, uint64_t h, const void *key, uint32_t klen,
		     const void *val, uint32_t vlen, uint64_t hlc, uint16_t origin)
{
	struct tdm_store_slot *sl = tdm_store_find(sh, h, key, klen);
	struct tdm_store_entry *e;

	if (sl->e)
		return overwrite(sh, sl, klen, val, vlen, hlc, origin);
	if (TDM_APPLY_UNLIKELY(tdm_store_full(sh))) {
		if (tdm_store_grow(sh))
			return -ENOMEM;
		sl = tdm_store_find(sh, h, key, klen);
	}
	e = tdm_store_e_new(key, klen, vlen);
	if (!e)
		return -ENOMEM;
	tdm_store_e_set(e, klen, val, vlen, hlc, origin, false);
	sl->hash = h;
	sl->e = e;
	sh->digest += tdm_store_entry_hash(h, val, vlen);
	sh->count++;
	sh->bytes += (uint64_t)klen + vlen;
	return 0;
}

static void shard_del(struct tdm_store_shard *sh, uint64_t h, const void *key, uint32_t klen)
{
	struct tdm_store_slot *sl = tdm_store_find(sh, h, key, klen);
	struct tdm_store_entry *e = sl->e;

	if (!e)
		return;
	sh->digest -= tdm_store_entry_hash(h, tdm_store_e_val(e), tdm_store_e_vlen(e));
	sh->count--;
	sh->bytes -= (uint64_t)klen + tdm_store_e_vlen(e);
	tdm_store_remove_slot(sh, sl);
	free(e);
}

void tdm_store_lock(struct tdm_store_shard *sh)
{
	pthread_rwlock_wrlock(&sh->lock);
}

/* Publish the counters, then unlock. */
void tdm_store_unlock(struct tdm_store_shard *sh)
{
	/* Pair with the acquire loads of tdm_store_digest/count/data_bytes/tombstones. */
	tdm_apply_store_release(&sh->pub_digest, sh->digest);
	tdm_apply_store_release(&sh->pub_count, sh->count);
	tdm_apply_store_release(&sh->pub_bytes, sh->bytes);
	if (sh->m) {
		tdm_apply_store_release(&sh->pub_tombs, sh->tombs);
		sh->m->now = 0; /* the next lock hold reads the clock at its first conflict */
	}
	pthread_rwlock_unlock(&sh->lock);
}

/* ---- Creation ---- */

TDM_API void tdm_store_config_defaults(struct tdm_store_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->shards = 1;
	cfg->conflict_window_ns = TDM_STORE_CONFLICT_WINDOW_NS;
}

static int shard_init(struct tdm_store_shard *sh, bool merge)
{
	if (merge && !(sh->m = calloc(1, sizeof(*sh->m))))
		return -ENOMEM;
	if (table_init(sh, MIN_SLOTS))
		return -ENOMEM;
	pthread_rwlock_init(&sh->lock, NULL);
	return 0;
}

TDM_API int tdm_store_create_cfg(const struct tdm_store_config *cfg, struct tdm_store **out)
{
	size_t sz = sizeof(struct tdm_store_shard) * (size_t)cfg->shards;
	struct tdm_store *s;

	if (cfg->shards <= 0 || cfg->shards > TDM_APPLY_MAX_WORKERS)
		return TDM_ERR(-EINVAL, "store shards %d: must be 1..%d", cfg->shards,
			       TDM_APPLY_MAX_WORKERS);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->merge = cfg->merge;
	s->window = cfg->conflict_window_ns;
	s->on_conflict = cfg->merge ? cfg->on_conflict : NULL;
	s->conflict_ctx = cfg->conflict_ctx;
	s->shards = aligned_alloc(TDM_APPLY_LINE, sz);
	if (!s->shards) {
		free(s);
		return -ENOMEM;
	}
	memset(s->shards, 0, sz);
	for (; s->nshards < cfg->shards; s->nshards++) {
		if (shard_init(&s->shards[s->nshards], cfg->merge)) {
			free(s->shards[s->nshards].m);
			tdm_store_destroy(s);
			return -ENOMEM;
		}
	}
	*out = s;
	return 0;
}

TDM_API int tdm_store_create(int shards, struct tdm_store **out)
{
	struct tdm_store_config cfg;

	tdm_store_config_defaults(&cfg);
	cfg.shards = shards;
	return tdm_store_create_cfg(&cfg, out);
}

TDM_API bool tdm_store_is_merge(const struct tdm_store *s)
{
	return s->merge;
}

/* Free every entry of sh and zero its counters (lock held, or no other user). */
static void shard_empty(struct tdm_store_shard *sh)
{
	for (uint64_t i = 0; i <= sh->mask; i++)
		free(sh->slots[i].e);
	sh->digest = sh->count = sh->bytes = sh->tombs = 0;
}

TDM_API void tdm_store_destroy(struct tdm_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->nshards; i++) {
		shard_empty(&s->shards[i]);
		free(s->shards[i].slots);
		free(s->shards[i].m);
		pthread_rwlock_destroy(&s->shards[i].lock);
	}
	free(s->shards);
	free(s);
}

TDM_API void tdm_store_clear(struct tdm_store *s)
{
	for (int i = 0; i < s->nshards; i++) {
		struct tdm_store_shard *sh = &s->shards[i];
		struct tdm_store_slot *big;
		uint64_t mask;

		tdm_store_lock(sh);
		big = sh->slots;
		mask = sh->mask;
		shard_empty(sh);
		if (mask + 1 > MIN_SLOTS && table_init(sh, MIN_SLOTS) == 0) {
			free(big);
		} else { /* already small, or no memory for a small one: keep it, emptied */
			sh->slots = big;
			memset(big, 0, (mask + 1) * sizeof(*big));
		}
		tdm_store_unlock(sh);
	}
}

/* ---- Public writes and reads ---- */

int tdm_store_check_lengths(uint32_t klen, uint32_t vlen)
{
	if (klen > TDM_LOG_MAX_KEY || vlen > TDM_LOG_MAX_VALUE)
		return TDM_ERR(-EINVAL, "key of %u bytes or value of %u bytes: the store takes up "
			       "to %u and %u", klen, vlen, TDM_LOG_MAX_KEY, TDM_LOG_MAX_VALUE);
	return 0;
}

/* Merge in under its key's shard lock (tdm_store_put/del_at of a merge store). */
static int merge_locked(struct tdm_store *s, const struct tdm_store_in *in)
{
	uint64_t h = tdm_apply_key_hash(in->key, in->klen);
	struct tdm_store_shard *sh = tdm_store_shard_of(s, h);
	int rc;

	tdm_store_lock(sh);
	rc = tdm_store_merge_write(s, sh, h, in);
	tdm_store_unlock(sh);
	return rc;
}

TDM_API int tdm_store_put(struct tdm_store *s, const void *key, uint32_t klen, const void *val,
			  uint32_t vlen, uint64_t hlc, uint16_t origin)
{
	uint64_t h;
	struct tdm_store_shard *sh;
	int rc = tdm_store_check_lengths(klen, vlen);

	if (rc)
		return rc;
	if (s->merge)
		return merge_locked(s, &(struct tdm_store_in){ key, klen, val, vlen, hlc, origin,
							       false });
	h = tdm_apply_key_hash(key, klen);
	sh = tdm_store_shard_of(s, h);
	tdm_store_lock(sh);
	rc = shard_put(sh, h, key, klen, val, vlen, hlc, origin);
	tdm_store_unlock(sh);
	return rc;
}

TDM_API int tdm_store_del(struct tdm_store *s, const void *key, uint32_t klen)
{
	uint64_t h = tdm_apply_key_hash(key, klen);
	struct tdm_store_shard *sh = tdm_store_shard_of(s, h);

	if (s->merge)
		return TDM_ERR(-EINVAL, "a merge-mode store deletes a key as a timestamped write: "
			       "use tdm_store_del_at");
	tdm_store_lock(sh);
	shard_del(sh, h, key, klen);
	tdm_store_unlock(sh);
	return 0;
}

TDM_API int tdm_store_del_at(struct tdm_store *s, const void *key, uint32_t klen, uint64_t hlc,
			     uint16_t origin)
{
	int rc = tdm_store_check_lengths(klen, 0);

	if (rc)
		return rc;
	if (!s->merge)
		return tdm_store_del(s, key, klen);
	return merge_locked(s, &(struct tdm_store_in){ key, klen, NULL, 0, hlc, origin, true });
}

TDM_API int tdm_store_get(struct tdm_store *s, const void *key, uint32_t klen, void *buf,
			  uint32_t cap, uint32_t *vlen, uint64_t *hlc, uint16_t *origin)
{
	uint64_t h = tdm_apply_key_hash(key, klen);
	struct tdm_store_shard *sh = tdm_store_shard_of(s, h);
	const struct tdm_store_entry *e;
	int rc = TDM_ERR_NOT_FOUND;

	pthread_rwlock_rdlock(&sh->lock);
	e = tdm_store_find(sh, h, key, klen)->e;
	if (e && !tdm_store_e_deleted(e)) {
		uint32_t n = tdm_store_e_vlen(e);

		if (n && cap)
			memcpy(buf, tdm_store_e_val(e), n < cap ? n : cap);
		*vlen = n;
		if (hlc)
			*hlc = e->hlc;
		if (origin)
			*origin = tdm_store_e_origin(e);
		rc = 0;
	}
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

/* Sum one published counter over the shards; each load pairs with tdm_store_unlock's release. */
static uint64_t sum_pub(const struct tdm_store *s, size_t off)
{
	uint64_t sum = 0;

	for (int i = 0; i < s->nshards; i++) {
		const char *sh = (const char *)&s->shards[i];

		sum += tdm_apply_load_acquire((const uint64_t *)(const void *)(sh + off));
	}
	return sum;
}

TDM_API uint64_t tdm_store_digest(const struct tdm_store *s)
{
	return sum_pub(s, offsetof(struct tdm_store_shard, pub_digest));
}

TDM_API uint64_t tdm_store_count(const struct tdm_store *s)
{
	return sum_pub(s, offsetof(struct tdm_store_shard, pub_count));
}

TDM_API uint64_t tdm_store_data_bytes(const struct tdm_store *s)
{
	return sum_pub(s, offsetof(struct tdm_store_shard, pub_bytes));
}

TDM_API uint64_t tdm_store_tombstones(const struct tdm_store *s)
{
	return sum_pub(s, offsetof(struct tdm_store_shard, pub_tombs));
}

/* Call fn for each entry (live, or all with tombstones), shard by shard under the read lock. */
static int foreach(struct tdm_store *s, bool all, tdm_store_entry_fn fn, tdm_store_version_fn vfn,
		   void *ctx)
{
	int rc = 0;

	for (int i = 0; i < s->nshards && !rc; i++) {
		struct tdm_store_shard *sh = &s->shards[i];

		pthread_rwlock_rdlock(&sh->lock);
		for (uint64_t j = 0; j <= sh->mask && !rc; j++) {
			const struct tdm_store_entry *e = sh->slots[j].e;
			const void *key, *val;
			uint32_t klen, vlen;

			if (!e || (!all && tdm_store_e_deleted(e)))
				continue;
			key = e->data;
			klen = tdm_store_e_klen(e);
			val = tdm_store_e_val(e);
			vlen = tdm_store_e_vlen(e);
			if (all)
				rc = vfn(ctx, key, klen, &(struct tdm_store_version){
					val, vlen, e->hlc, tdm_store_e_origin(e),
					tdm_store_e_deleted(e) });
			else
				rc = fn(ctx, key, klen, val, vlen, e->hlc, tdm_store_e_origin(e));
		}
		pthread_rwlock_unlock(&sh->lock);
	}
	return rc;
}

TDM_API int tdm_store_foreach(struct tdm_store *s, tdm_store_entry_fn fn, void *ctx)
{
	return foreach(s, false, fn, NULL, ctx);
}

TDM_API int tdm_store_foreach_all(struct tdm_store *s, tdm_store_version_fn fn, void *ctx)
{
	return foreach(s, true, NULL, fn, ctx);
}

/* ---- The sink: worker i writes shard i, locked from begin to end of each batch ---- */

static int sink_begin(void *ctx, int worker)
{
	struct tdm_store *s = ctx;

	if (worker < 0 || worker >= s->nshards)
		return TDM_ERR(-EINVAL, "apply worker %d writes to a store of %d shards: give the "
			       "store as many shards as apply has workers", worker, s->nshards);
	tdm_store_lock(&s->shards[worker]);
	return 0;
}

/* The shard of a key of hash h, which must be the worker's own (locked) one; NULL (message
 * set: this only happens once, as the worker stops) when it is not. */
static inline struct tdm_store_shard *sink_shard(struct tdm_store *s, int worker, uint64_t h)
{
	struct tdm_store_shard *sh = tdm_store_shard_of(s, h);

	if (TDM_APPLY_LIKELY(sh == &s->shards[worker]))
		return sh;
	TDM_ERR(-EINVAL, "apply worker %d got a key of store shard %d: give the store as many "
		"shards as apply has workers (it has %d)", worker, (int)(sh - s->shards),
		s->nshards);
	return NULL;
}

/* The hash of rec's key: the one its announcement computed, when it was announced. */
static inline uint64_t sink_hash(struct tdm_store *s, int worker, const struct tdm_log_rec *rec)
{
	struct tdm_store_shard *sh = &s->shards[worker]; /* begin_batch checked worker */

	if (sh->pf_tail != sh->pf_head) {
		struct tdm_store_pf *p = &sh->pf[sh->pf_tail % PF_N];

		if (p->key == rec->key) {
			sh->pf_tail++;
			return p->hash;
		}
	}
	return tdm_apply_key_hash(rec->key, rec->hdr->key_len);
}

/* Stage 2: the slot of hash h was prefetched PF_LAG announcements ago; prefetch its entry.
 * always_inline: GCC counts __builtin_prefetch as no side effect, so as a function of its own
 * this is found "pure", and its call (with no result) is deleted. */
static inline __attribute__((always_inline)) void prefetch_entry(const struct tdm_store_shard *sh,
								 uint64_t h)
{
	uint64_t i = h >> sh->shift;

	for (int n = 0; n < 4; n++, i = (i + 1) & sh->mask) {
		const struct tdm_store_slot *sl = &sh->slots[i];

		if (!sl->e)
			return;
		if (sl->hash == h) {
			__builtin_prefetch(sl->e, 1);
			__builtin_prefetch((const char *)sl->e + 64, 1);
			return;
		}
	}
}

static void sink_prefetch(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	struct tdm_store *s = ctx;
	struct tdm_store_shard *sh = &s->shards[worker];
	uint64_t h;

	if (sh->pf_head - sh->pf_tail == PF_N) /* put/del will hash it themselves */
		return;
	h = tdm_apply_key_hash(rec->key, rec->hdr->key_len);
	sh->pf[sh->pf_head % PF_N] = (struct tdm_store_pf){ rec->key, h };
	sh->pf_head++;
	__builtin_prefetch(&sh->slots[h >> sh->shift]);
	if (sh->pf_head - sh->pf_tail > PF_LAG)
		prefetch_entry(sh, sh->pf[(sh->pf_head - 1 - PF_LAG) % PF_N].hash);
}

static int sink_put(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	const struct tdm_log_rec_hdr *hdr = rec->hdr;
	uint64_t h = sink_hash(ctx, worker, rec);
	struct tdm_store_shard *sh = sink_shard(ctx, worker, h);
	int rc;

	if (TDM_APPLY_UNLIKELY(!sh))
		return -EINVAL;
	if (TDM_APPLY_UNLIKELY(hdr->key_len > TDM_LOG_MAX_KEY ||
			       hdr->value_len > TDM_LOG_MAX_VALUE))
		return tdm_store_check_lengths(hdr->key_len, hdr->value_len);
	rc = shard_put(sh, h, rec->key, hdr->key_len, rec->value, hdr->value_len, hdr->hlc,
		       hdr->origin);
	if (TDM_APPLY_UNLIKELY(rc))
		return TDM_ERR(rc, "store shard %d: no memory for a key of %u bytes and a value "
			       "of %u bytes", worker, hdr->key_len, hdr->value_len);
	return 0;
}

static int sink_del(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	uint64_t h = sink_hash(ctx, worker, rec);
	struct tdm_store_shard *sh = sink_shard(ctx, worker, h);

	if (TDM_APPLY_UNLIKELY(!sh))
		return -EINVAL;
	shard_del(sh, h, rec->key, rec->hdr->key_len);
	return 0;
}

/* Merge mode: a PUT (del false) or DEL record merged with its header's version. */
static inline int sink_merge(void *ctx, int worker, const struct tdm_log_rec *rec, bool del)
{
	const struct tdm_log_rec_hdr *hdr = rec->hdr;
	uint64_t h = sink_hash(ctx, worker, rec);
	struct tdm_store_shard *sh = sink_shard(ctx, worker, h);
	uint32_t vlen = del ? 0 : hdr->value_len;
	int rc;

	if (TDM_APPLY_UNLIKELY(!sh))
		return -EINVAL;
	if (TDM_APPLY_UNLIKELY(hdr->key_len > TDM_LOG_MAX_KEY || vlen > TDM_LOG_MAX_VALUE))
		return tdm_store_check_lengths(hdr->key_len, vlen);
	rc = tdm_store_merge_write(ctx, sh, h, &(struct tdm_store_in){
		rec->key, hdr->key_len, del ? NULL : rec->value, vlen, hdr->hlc, hdr->origin,
		del });
	if (TDM_APPLY_UNLIKELY(rc))
		return TDM_ERR(rc, "store shard %d: no memory for a key of %u bytes and a value "
			       "of %u bytes", worker, hdr->key_len, vlen);
	return 0;
}

static int sink_merge_put(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	return sink_merge(ctx, worker, rec, false);
}

static int sink_merge_del(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	return sink_merge(ctx, worker, rec, true);
}

static int sink_end(void *ctx, int worker, uint64_t applied)
{
	struct tdm_store *s = ctx;

	s->shards[worker].pf_head = s->shards[worker].pf_tail = 0; /* drop what was not applied */
	tdm_store_unlock(&s->shards[worker]);
	return 0;
}

TDM_API void tdm_store_sink(struct tdm_store *s, struct tdm_apply_sink *out)
{
	out->begin_batch = sink_begin;
	out->put = s->merge ? sink_merge_put : sink_put;
	out->del = s->merge ? sink_merge_del : sink_del;
	out->end_batch = sink_end;
	out->ctx = s;
	out->prefetch = sink_prefetch;
}
