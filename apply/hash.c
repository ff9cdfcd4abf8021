/*
 * The hash of apply/: XXH64 (Yann Collet's xxHash, 64-bit variant), written out here so that the
 * key hash is the same in every build and process. Snapshots and the choice of worker depend on
 * it: changing it changes which worker owns a key and every stored digest.
 *
 * Bytes are read little-endian whatever the host, so the values match the reference XXH64
 * (XXH64("", 0) = 0xef46db3751d8e999, XXH64("abc", 0) = 0x44bc2cf5ad770999).
 */
#include <string.h>

#include "apply_pvt.h"

#define P1 0x9e3779b185ebca87ull
#define P2 0xc2b2ae3d27d4eb4full
#define P3 0x165667b19e3779f9ull
#define P4 0x85ebca77c2b2ae63ull
#define P5 0x27d4eb2f165667c5ull

static inline uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static inline uint64_t round1(uint64_t acc, uint64_t in)
{
	acc += in * P2;
	return rotl(acc, 31) * P1;
}

static inline uint64_t merge(uint64_t acc, uint64_t v)
{
	acc ^= round1(0, v);
	return acc * P1 + P4;
}

/* The 32-byte stripes of an input of n >= 32 bytes; returns the state, *done the bytes used. */
static uint64_t stripes(const uint8_t *p, size_t n, uint64_t seed, size_t *done)
{
	uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
	size_t i = 0;
	uint64_t h;

	for (; n - i >= 32; i += 32) {
		v1 = round1(v1, rd64(p + i));
		v2 = round1(v2, rd64(p + i + 8));
		v3 = round1(v3, rd64(p + i + 16));
		v4 = round1(v4, rd64(p + i + 24));
	}
	*done = i;
	h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
	h = merge(h, v1);
	h = merge(h, v2);
	h = merge(h, v3);
	return merge(h, v4);
}

uint64_t tdm_apply_hash64(const void *buf, size_t len, uint64_t seed)
{
	const uint8_t *p = buf;
	size_t i = 0;
	uint64_t h = len >= 32 ? stripes(p, len, seed, &i) : seed + P5;

	h += (uint64_t)len;
	for (; len - i >= 8; i += 8) {
		h ^= round1(0, rd64(p + i));
		h = rotl(h, 27) * P1 + P4;
	}
	if (len - i >= 4) {
		h ^= (uint64_t)rd32(p + i) * P1;
		h = rotl(h, 23) * P2 + P3;
		i += 4;
	}
	for (; i < len; i++) {
		h ^= p[i] * P5;
		h = rotl(h, 11) * P1;
	}
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	return h ^ (h >> 32);
}

TDM_API uint64_t tdm_apply_key_hash(const void *key, uint32_t len)
{
	return tdm_apply_hash64(key, len, 0);
}
