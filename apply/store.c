/*
 * The default apply sink: an in-memory hash store in shards (one per apply worker).
 *
 * Each shard is an open-addressing table with linear probing: a power-of-two array of 16-byte
 * slots {hash, entry}, indexed by the top bits of the key's hash (the low bits pick the shard,
 * so they are the same for every key of a shard). The cached hash lets a probe skip an entry
 * without touching it; the key is compared only on a full hash match. Deletion shifts the
 * following slots back (no tombstones), so probe sequences stay short whatever the history.
 * The table doubles when it is 3/4 full: that put moves the whole shard by the cached hashes (no
 * key is read). It is the one pause of the store: about 50 ns per entry moved, measured 41 ms
 * for the 786k entries of a shard growing from 1M to 2M slots (2-core VM), then twice as long
 * at each later doubling. Amortized, it is under 100 ns per key ever inserted.
 *
 * An entry is one malloc block: hlc, a word packing key length, value length and origin, then
 * the key and the value (16 + key + value bytes; 96 for a 16-byte key and a 64-byte value). An
 * overwrite whose new size still fits the block (and uses at least 3/4 of it) reuses it.
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
 */
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "apply_pvt.h"

#define MIN_SLOTS 256u
#define PF_N 32u  /* announced records remembered per shard (>= TDM_APPLY_PREFETCH) */
#define PF_LAG 8u /* announcements between prefetching a slot and then its entry */
_Static_assert(PF_N >= TDM_APPLY_PREFETCH && (PF_N & (PF_N - 1)) == 0, "prefetch ring size");

/* Entry meta word: key length (17 bits: up to 64 KiB), value length (25 bits: up to 16 MiB),
 * origin (16 bits). */
#define KLEN_BITS 17
#define VLEN_BITS 25
#define KLEN_MASK ((1ull << KLEN_BITS) - 1)
#define VLEN_MASK ((1ull << VLEN_BITS) - 1)
_Static_assert(TDM_LOG_MAX_KEY <= KLEN_MASK, "key length fits the entry word");
_Static_assert(TDM_LOG_MAX_VALUE <= VLEN_MASK, "value length fits the entry word");

struct entry {
	uint64_t hlc;
	uint64_t meta;   /* klen | vlen << 17 | origin << 42 */
	uint8_t data[];  /* key, then value */
};

struct slot {
	uint64_t hash;     /* key hash (meaningless when e is NULL) */
	struct entry *e;   /* NULL: empty */
};

/* A record announced by the prefetch hook: its key (in the worker's ring) and its hash. */
struct pf {
	const uint8_t *key;
	uint64_t hash;
};

/* A shard. Everything but the published counters is touched only with the lock held. */
struct shard {
	_Alignas(TDM_APPLY_LINE) pthread_rwlock_t lock;
	struct slot *slots;
	uint64_t mask;     /* slots - 1 */
	unsigned shift;    /* 64 - log2(slots): home slot = hash >> shift */
	uint64_t digest, count, bytes;  /* the writer's, under the lock */
	uint32_t pf_head, pf_tail;      /* announced / taken back by put and del, this batch */
	struct pf pf[PF_N];

	/* Written by the shard's writer when it unlocks (release); read by any thread. */
	_Alignas(TDM_APPLY_LINE) uint64_t pub_digest;
	uint64_t pub_count, pub_bytes;
};

struct tdm_store {
	int nshards;
	struct shard *shards; /* nshards entries, 128-aligned */
};

/* ---- Entries ---- */

static inline uint32_t e_klen(const struct entry *e)
{
	return (uint32_t)(e->meta & KLEN_MASK);
}

static inline uint32_t e_vlen(const struct entry *e)
{
	return (uint32_t)((e->meta >> KLEN_BITS) & VLEN_MASK);
}

static inline uint16_t e_origin(const struct entry *e)
{
	return (uint16_t)(e->meta >> (KLEN_BITS + VLEN_BITS));
}

static inline const uint8_t *e_val(const struct entry *e)
{
	return e->data + e_klen(e);
}

/* Fill e (already big enough) with the value and metadata; the key is in place. */
static inline void e_set(struct entry *e, uint32_t klen, const void *val, uint32_t vlen,
			 uint64_t hlc, uint16_t origin)
{
	e->hlc = hlc;
	e->meta = klen | (uint64_t)vlen << KLEN_BITS | (uint64_t)origin << (KLEN_BITS + VLEN_BITS);
	if (vlen)
		memcpy(e->data + klen, val, vlen);
}

static struct entry *e_new(const void *key, uint32_t klen, uint32_t vlen)
{
	struct entry *e = malloc(sizeof(*e) + klen + vlen);

	if (e && klen)
		memcpy(e->data, key, klen);
	return e;
}

/* ---- The table ---- */

static inline struct shard *shard_of(struct tdm_store *s, uint64_t h)
{
	return &s->shards[s->nshards == 1 ? 0 : h % (uint64_t)s->nshards];
}

static int table_init(struct shard *sh, uint64_t n)
{
	struct slot *t = calloc(n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	sh->slots = t;
	sh->mask = n - 1;
	sh->shift = 64u - (unsigned)__builtin_ctzll(n);
	return 0;
}

/* The slot holding key, or the empty slot where it would go. */
static inline struct slot *find(const struct shard *sh, uint64_t h, const void *key,
				uint32_t klen)
{
	for (uint64_t i = h >> sh->shift;; i = (i + 1) & sh->mask) {
		struct slot *sl = &sh->slots[i];

		if (!sl->e)
			return sl;
		if (sl->hash == h && e_klen(sl->e) == klen && !memcmp(sl->e->data, key, klen))
			return sl;
	}
}

/* Double the table, moving every slot by its cached hash. */
static int grow(struct shard *sh)
{
	struct slot *old = sh->slots;
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

/* Empty slot i, shifting back the slots after it that may live closer to their home. */
static void remove_slot(struct shard *sh, struct slot *sl)
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

/* ---- Writes (lock held) ---- */

/* Does a block holding an entry of old_vlen also suit one of vlen? The same length always
 * does; otherwise the block's real size (its malloc size class) must hold the new entry and not
 * leave more than a quarter of it unused. */
static inline bool block_fits(struct entry *e, uint32_t klen, uint32_t old_vlen, uint32_t vlen)
{
	size_t need, have;

	if (vlen == old_vlen)
		return true;
	need = sizeof(*e) + klen + vlen;
	have = malloc_usable_size(e);
	return need <= have && need >= have - have / 4;
}

/* Replace the value of the entry in sl, reusing its block when the new size fits it well. */
static int overwrite(struct shard *sh, struct slot *sl, uint32_t klen, const void *val,
		     uint32_t vlen, uint64_t hlc, uint16_t origin)
{
	struct entry *e = sl->e;
	uint32_t old_vlen = e_vlen(e);

	sh->digest -= tdm_store_entry_hash(sl->hash, e_val(e), old_vlen);
	if (!block_fits(e, klen, old_vlen, vlen)) {
		struct entry *n = e_new(e->data, klen, vlen);

		if (!n) {
			sh->digest += tdm_store_entry_hash(sl->hash, e_val(e), old_vlen);
			return -ENOMEM;
		}
		free(e);
		sl->e = e = n;
	}
	e_set(e, klen, val, vlen, hlc, origin);
	sh->digest += tdm_store_entry_hash(sl->hash, val, vlen);
	sh->bytes += (uint64_t)vlen - old_vlen;
	return 0;
}

static int shard_put(struct shard *sh, uint64_t h, const void *key, uint32_t klen,
		     const void *val, uint32_t vlen, uint64_t hlc, uint16_t origin)
{
	struct slot *sl = find(sh, h, key, klen);
	struct entry *e;

	if (sl->e)
		return overwrite(sh, sl, klen, val, vlen, hlc, origin);
	if (TDM_APPLY_UNLIKELY((sh->count + 1) * 4 > (sh->mask + 1) * 3)) {
		if (grow(sh))
			return -ENOMEM;
		sl = find(sh, h, key, klen);
	}
	e = e_new(key, klen, vlen);
	if (!e)
		return -ENOMEM;
	e_set(e, klen, val, vlen, hlc, origin);
	sl->hash = h;
	sl->e = e;
	sh->digest += tdm_store_entry_hash(h, val, vlen);
	sh->count++;
	sh->bytes += (uint64_t)klen + vlen;
	return 0;
}

static void shard_del(struct shard *sh, uint64_t h, const void *key, uint32_t klen)
{
	struct slot *sl = find(sh, h, key, klen);
	struct entry *e = sl->e;

	if (!e)
		return;
	sh->digest -= tdm_store_entry_hash(h, e_val(e), e_vlen(e));
	sh->count--;
	sh->bytes -= (uint64_t)klen + e_vlen(e);
	remove_slot(sh, sl);
	free(e);
}

static void shard_lock(struct shard *sh)
{
	pthread_rwlock_wrlock(&sh->lock);
}

/* Publish the counters, then unlock. */
static void shard_unlock(struct shard *sh)
{
	/* The three stores pair with the acquire loads of tdm_store_digest/count/data_bytes. */
	tdm_apply_store_release(&sh->pub_digest, sh->digest);
	tdm_apply_store_release(&sh->pub_count, sh->count);
	tdm_apply_store_release(&sh->pub_bytes, sh->bytes);
	pthread_rwlock_unlock(&sh->lock);
}

/* ---- Creation ---- */

TDM_API int tdm_store_create(int shards, struct tdm_store **out)
{
	struct tdm_store *s;

	if (shards <= 0 || shards > TDM_APPLY_MAX_WORKERS)
		return TDM_ERR(-EINVAL, "store shards %d: must be 1..%d", shards,
			       TDM_APPLY_MAX_WORKERS);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->shards = aligned_alloc(TDM_APPLY_LINE, sizeof(struct shard) * (size_t)shards);
	if (!s->shards) {
		free(s);
		return -ENOMEM;
	}
	memset(s->shards, 0, sizeof(struct shard) * (size_t)shards);
	for (; s->nshards < shards; s->nshards++) {
		struct shard *sh = &s->shards[s->nshards];

		if (table_init(sh, MIN_SLOTS)) {
			tdm_store_destroy(s);
			return -ENOMEM;
		}
		pthread_rwlock_init(&sh->lock, NULL);
	}
	*out = s;
	return 0;
}

/* Free every entry of sh and zero its counters (lock held, or no other user). */
static void shard_empty(struct shard *sh)
{
	for (uint64_t i = 0; i <= sh->mask; i++)
		free(sh->slots[i].e);
	sh->digest = sh->count = sh->bytes = 0;
}

TDM_API void tdm_store_destroy(struct tdm_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->nshards; i++) {
		shard_empty(&s->shards[i]);
		free(s->shards[i].slots);
		pthread_rwlock_destroy(&s->shards[i].lock);
	}
	free(s->shards);
	free(s);
}

TDM_API void tdm_store_clear(struct tdm_store *s)
{
	for (int i = 0; i < s->nshards; i++) {
		struct shard *sh = &s->shards[i];
		struct slot *big;
		uint64_t mask;

		shard_lock(sh);
		big = sh->slots;
		mask = sh->mask;
		shard_empty(sh);
		if (mask + 1 > MIN_SLOTS && table_init(sh, MIN_SLOTS) == 0) {
			free(big);
		} else { /* already small, or no memory for a small one: keep it, emptied */
			sh->slots = big;
			memset(big, 0, (mask + 1) * sizeof(*big));
		}
		shard_unlock(sh);
	}
}

/* ---- Public writes and reads ---- */

static int check_lengths(uint32_t klen, uint32_t vlen)
{
	if (klen > TDM_LOG_MAX_KEY || vlen > TDM_LOG_MAX_VALUE)
		return TDM_ERR(-EINVAL, "key of %u bytes or value of %u bytes: the store takes up "
			       "to %u and %u", klen, vlen, TDM_LOG_MAX_KEY, TDM_LOG_MAX_VALUE);
	return 0;
}

TDM_API int tdm_store_put(struct tdm_store *s, const void *key, uint32_t klen, const void *val,
			  uint32_t vlen, uint64_t hlc, uint16_t origin)
{
	uint64_t h = tdm_apply_key_hash(key, klen);
	struct shard *sh = shard_of(s, h);
	int rc = check_lengths(klen, vlen);

	if (rc)
		return rc;
	shard_lock(sh);
	rc = shard_put(sh, h, key, klen, val, vlen, hlc, origin);
	shard_unlock(sh);
	return rc;
}

TDM_API int tdm_store_del(struct tdm_store *s, const void *key, uint32_t klen)
{
	uint64_t h = tdm_apply_key_hash(key, klen);
	struct shard *sh = shard_of(s, h);

	shard_lock(sh);
	shard_del(sh, h, key, klen);
	shard_unlock(sh);
	return 0;
}

TDM_API int tdm_store_get(struct tdm_store *s, const void *key, uint32_t klen, void *buf,
			  uint32_t cap, uint32_t *vlen, uint64_t *hlc, uint16_t *origin)
{
	uint64_t h = tdm_apply_key_hash(key, klen);
	struct shard *sh = shard_of(s, h);
	const struct entry *e;
	int rc = TDM_ERR_NOT_FOUND;

	pthread_rwlock_rdlock(&sh->lock);
	e = find(sh, h, key, klen)->e;
	if (e) {
		uint32_t n = e_vlen(e);

		if (n && cap)
			memcpy(buf, e_val(e), n < cap ? n : cap);
		*vlen = n;
		if (hlc)
			*hlc = e->hlc;
		if (origin)
			*origin = e_origin(e);
		rc = 0;
	}
	pthread_rwlock_unlock(&sh->lock);
	return rc;
}

/* Sum one published counter over the shards; each load pairs with shard_unlock's release. */
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
	return sum_pub(s, offsetof(struct shard, pub_digest));
}

TDM_API uint64_t tdm_store_count(const struct tdm_store *s)
{
	return sum_pub(s, offsetof(struct shard, pub_count));
}

TDM_API uint64_t tdm_store_data_bytes(const struct tdm_store *s)
{
	return sum_pub(s, offsetof(struct shard, pub_bytes));
}

TDM_API int tdm_store_foreach(struct tdm_store *s, tdm_store_entry_fn fn, void *ctx)
{
	int rc = 0;

	for (int i = 0; i < s->nshards && !rc; i++) {
		struct shard *sh = &s->shards[i];

		pthread_rwlock_rdlock(&sh->lock);
		for (uint64_t j = 0; j <= sh->mask && !rc; j++) {
			const struct entry *e = sh->slots[j].e;

			if (e)
				rc = fn(ctx, e->data, e_klen(e), e_val(e), e_vlen(e), e->hlc,
					e_origin(e));
		}
		pthread_rwlock_unlock(&sh->lock);
	}
	return rc;
}

/* ---- The sink: worker i writes shard i, locked from begin to end of each batch ---- */

static int sink_begin(void *ctx, int worker)
{
	struct tdm_store *s = ctx;

	if (worker < 0 || worker >= s->nshards)
		return TDM_ERR(-EINVAL, "apply worker %d writes to a store of %d shards: give the "
			       "store as many shards as apply has workers", worker, s->nshards);
	shard_lock(&s->shards[worker]);
	return 0;
}

/* The shard of a key of hash h, which must be the worker's own (locked) one; NULL (message
 * set: this only happens once, as the worker stops) when it is not. */
static inline struct shard *sink_shard(struct tdm_store *s, int worker, uint64_t h)
{
	struct shard *sh = shard_of(s, h);

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
	struct shard *sh = &s->shards[worker]; /* begin_batch checked worker */

	if (sh->pf_tail != sh->pf_head) {
		struct pf *p = &sh->pf[sh->pf_tail % PF_N];

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
static inline __attribute__((always_inline)) void prefetch_entry(const struct shard *sh,
								 uint64_t h)
{
	uint64_t i = h >> sh->shift;

	for (int n = 0; n < 4; n++, i = (i + 1) & sh->mask) {
		const struct slot *sl = &sh->slots[i];

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
	struct shard *sh = &s->shards[worker];
	uint64_t h;

	if (sh->pf_head - sh->pf_tail == PF_N) /* put/del will hash it themselves */
		return;
	h = tdm_apply_key_hash(rec->key, rec->hdr->key_len);
	sh->pf[sh->pf_head % PF_N] = (struct pf){ rec->key, h };
	sh->pf_head++;
	__builtin_prefetch(&sh->slots[h >> sh->shift]);
	if (sh->pf_head - sh->pf_tail > PF_LAG)
		prefetch_entry(sh, sh->pf[(sh->pf_head - 1 - PF_LAG) % PF_N].hash);
}

static int sink_put(void *ctx, int worker, const struct tdm_log_rec *rec)
{
	const struct tdm_log_rec_hdr *hdr = rec->hdr;
	uint64_t h = sink_hash(ctx, worker, rec);
	struct shard *sh = sink_shard(ctx, worker, h);
	int rc;

	if (TDM_APPLY_UNLIKELY(!sh))
		return -EINVAL;
	if (TDM_APPLY_UNLIKELY(hdr->key_len > TDM_LOG_MAX_KEY ||
			       hdr->value_len > TDM_LOG_MAX_VALUE))
		return check_lengths(hdr->key_len, hdr->value_len);
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
	struct shard *sh = sink_shard(ctx, worker, h);

	if (TDM_APPLY_UNLIKELY(!sh))
		return -EINVAL;
	shard_del(sh, h, rec->key, rec->hdr->key_len);
	return 0;
}

static int sink_end(void *ctx, int worker, uint64_t applied)
{
	struct tdm_store *s = ctx;

	s->shards[worker].pf_head = s->shards[worker].pf_tail = 0; /* drop what was not applied */
	shard_unlock(&s->shards[worker]);
	return 0;
}

TDM_API void tdm_store_sink(struct tdm_store *s, struct tdm_apply_sink *out)
{
	out->begin_batch = sink_begin;
	out->put = sink_put;
	out->del = sink_del;
	out->end_batch = sink_end;
	out->ctx = s;
	out->prefetch = sink_prefetch;
}
