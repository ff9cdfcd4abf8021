/*
 * tandem-load: which key each write goes to.
 *
 * Keys are numbers 0..n-1 written as 16-byte strings "k%015llu" (no terminating NUL in the
 * key). The number is drawn uniformly or from a Zipf distribution where key 0 is the most
 * frequent, key 1 the next, and so on (rank r drawn with weight 1/(r+1)^theta), by the method of
 * Gray et al., "Quickly generating billion-record synthetic databases" (SIGMOD 1994): the
 * normalising zeta(n, theta) is computed once, then each draw costs one pow().
 *
 * Everything is deterministic for a seed: the generator is xoshiro256** seeded through
 * splitmix64, so one seed gives the same keys on every machine and build.
 */
#ifndef TDM_LOAD_KEYS_H
#define TDM_LOAD_KEYS_H

#include <stdint.h>

#define TDM_LOAD_KEY_LEN 16                      /**< bytes of a key: 'k' and 15 digits */
#define TDM_LOAD_KEYS_MAX 1000000000000000ull    /**< 10^15 numbers fit in 15 digits */

/** xoshiro256** state. */
struct tdm_load_rng {
	uint64_t s[4];
};

/** Seed r from one 64-bit seed (any value, 0 included). */
void tdm_load_rng_seed(struct tdm_load_rng *r, uint64_t seed);

/** Next 64 random bits. */
uint64_t tdm_load_rng_next(struct tdm_load_rng *r);

/** Uniform in [0, 1) with 53 random bits. */
double tdm_load_rng_unit(struct tdm_load_rng *r);

enum tdm_load_dist {
	TDM_LOAD_DIST_UNIFORM = 0, /**< every key equally likely */
	TDM_LOAD_DIST_ZIPF = 1,    /**< key r with weight 1/(r+1)^theta */
};

struct tdm_load_keys {
	enum tdm_load_dist dist;
	uint64_t n;                /**< key space */
	double theta;              /**< zipf: skew, 0 <= theta < 1 */
	double zetan;              /**< zipf: zeta(n, theta) */
	double alpha;              /**< zipf: 1 / (1 - theta) */
	double eta;                /**< zipf: Gray's eta */
	double two_cut;            /**< zipf: 1 + 0.5^theta, where rank 1 ends */
	struct tdm_load_rng rng;
};

/**
 * Set up k to draw from n keys. Zipf computes zeta(n, theta): exactly for the first 10^7 terms,
 * the rest by Euler-Maclaurin (relative error far below 1e-9), so at most some 50 ms.
 * @return 0; -EINVAL n is 0 or above TDM_LOAD_KEYS_MAX, or theta is not in [0, 1).
 */
int tdm_load_keys_init(struct tdm_load_keys *k, enum tdm_load_dist dist, uint64_t n,
		       double theta, uint64_t seed);

/** Draw the next key number (0..n-1). */
uint64_t tdm_load_keys_next(struct tdm_load_keys *k);

/**
 * tandem-load --spread: the key number that node `node` (its --attach position, from 0) writes
 * for a draw r (0..n-1). Draws below `shared` are the same key on every node; the rest are the
 * node's own, disjoint from every other node's:
 *
 *   shared keys  0 .. shared-1                       (r as is)
 *   node i       shared + i*(n-shared) .. shared + (i+1)*(n-shared) - 1
 *
 * so with a hot distribution (zipf: rank 0 most frequent) the shared keys are the hottest.
 * @return the key number: below shared + nodes*(n-shared).
 */
uint64_t tdm_load_spread_key(uint64_t r, uint64_t n, uint64_t shared, int node);

/** Write key number id as its 16 bytes ("k" and id in 15 zero-padded digits; no NUL). */
void tdm_load_key_format(uint64_t id, char out[TDM_LOAD_KEY_LEN]);

#endif /* TDM_LOAD_KEYS_H */
