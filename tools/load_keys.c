/*
 * tandem-load: key numbers, uniform or Zipf (Gray et al.), from xoshiro256**.
 */
#include "load_keys.h"

#include <errno.h>
#include <math.h>

/* zeta(n, theta) sums this many terms exactly; the tail comes from Euler-Maclaurin. */
#define ZETA_EXACT 10000000ull

/* ---- xoshiro256** (Blackman and Vigna), seeded by splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void tdm_load_rng_seed(struct tdm_load_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed); /* never all zero: splitmix64 is a bijection */
}

uint64_t tdm_load_rng_next(struct tdm_load_rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double tdm_load_rng_unit(struct tdm_load_rng *r)
{
	return (double)(tdm_load_rng_next(r) >> 11) * 0x1p-53;
}

/* ---- Zipf ---- */

/* sum over i = 1..n of 1 / i^theta. */
static double zeta(uint64_t n, double theta)
{
	uint64_t exact = n < ZETA_EXACT ? n : ZETA_EXACT;
	double sum = 0;

	for (uint64_t i = 1; i <= exact; i++)
		sum += pow((double)i, -theta);
	if (n > exact) {
		/* sum over i = a+1..b of f(i) = integral from a to b of f + (f(b) - f(a)) / 2
		 * + (f'(b) - f'(a)) / 12 + ..., with f(x) = x^-theta, f'(x) = -theta f(x) / x. */
		double a = (double)exact, b = (double)n;
		double fa = pow(a, -theta), fb = pow(b, -theta);
		sum += (pow(b, 1 - theta) - pow(a, 1 - theta)) / (1 - theta) + (fb - fa) / 2 -
		       theta * (fb / b - fa / a) / 12;
	}
	return sum;
}

int tdm_load_keys_init(struct tdm_load_keys *k, enum tdm_load_dist dist, uint64_t n,
		       double theta, uint64_t seed)
{
	if (n == 0 || n > TDM_LOAD_KEYS_MAX)
		return -EINVAL;
	*k = (struct tdm_load_keys){ .dist = dist, .n = n, .theta = theta };
	tdm_load_rng_seed(&k->rng, seed);
	if (dist == TDM_LOAD_DIST_UNIFORM)
		return 0;
	if (dist != TDM_LOAD_DIST_ZIPF || !(theta >= 0 && theta < 1))
		return -EINVAL;
	k->zetan = zeta(n, theta);
	k->alpha = 1 / (1 - theta);
	k->two_cut = 1 + pow(0.5, theta);
	/* With n <= 2 every draw ends at rank 0 or 1 before eta is used (and it would be 0/0). */
	if (n > 2)
		k->eta = (1 - pow(2.0 / (double)n, 1 - theta)) / (1 - zeta(2, theta) / k->zetan);
	return 0;
}

uint64_t tdm_load_keys_next(struct tdm_load_keys *k)
{
	if (k->dist == TDM_LOAD_DIST_UNIFORM)
		return tdm_load_rng_next(&k->rng) % k->n; /* bias below n / 2^64: negligible */

	double u = tdm_load_rng_unit(&k->rng), uz = u * k->zetan;
	if (uz < 1)
		return 0;
	if (uz < k->two_cut)
		return 1;
	uint64_t r = (uint64_t)((double)k->n * pow(k->eta * u - k->eta + 1, k->alpha));
	return r < k->n ? r : k->n - 1;
}

uint64_t tdm_load_spread_key(uint64_t r, uint64_t n, uint64_t shared, int node)
{
	return r < shared ? r : shared + (uint64_t)node * (n - shared) + (r - shared);
}

void tdm_load_key_format(uint64_t id, char out[TDM_LOAD_KEY_LEN])
{
	out[0] = 'k';
	for (int i = TDM_LOAD_KEY_LEN - 1; i > 0; i--) {
		out[i] = (char)('0' + id % 10);
		id /= 10;
	}
}
