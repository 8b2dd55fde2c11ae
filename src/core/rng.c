/* xoshiro256** (Blackman and Vigna) seeded through splitmix64: small, fast, reproducible. */
#include "core/core.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cf_rng_seed(cf_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t cf_rng_next(cf_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double cf_rng_uniform(cf_rng *rng) { return (double)(cf_rng_next(rng) >> 11) * 0x1.0p-53; }

double cf_rng_normal(cf_rng *rng)
{
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
    double u = 1.0 - cf_rng_uniform(rng);
    double v = cf_rng_uniform(rng);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

uint64_t cf_rng_below(cf_rng *rng, uint64_t n)
{
    /* Rejection sampling avoids modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = cf_rng_next(rng);
    while (x >= limit);
    return x % n;
}

uint64_t cf_sample_seed(uint64_t key, int64_t step, int64_t index)
{
    /* Chained splitmix64 finalisers: every input bit reaches every output bit. */
    uint64_t x = key;
    uint64_t h = splitmix64(&x);
    x = h ^ (uint64_t)step;
    h = splitmix64(&x);
    x = h ^ (uint64_t)index;
    return splitmix64(&x);
}
