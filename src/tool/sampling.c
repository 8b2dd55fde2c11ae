/* Validation split and the sampling order of each training epoch (`cfnet train`): both derived
 * from the seed alone, so that a resumed run draws exactly what an uninterrupted one would. */
#include "tool.h"

#include <math.h>
#include <stdlib.h>

/* Stratified split: per class (in dataset order), a seeded shuffle puts round(frac * n)
 * images (at least 1 when frac > 0 and the class has 2 or more) in validation. Images already
 * found bad (--skip-bad) take no part: their split stays SPLIT_NONE. */
void split_stratified(tool_dataset *ds, double frac, uint64_t seed)
{
    for (int k = 0; k < ds->n_classes; k++) {
        int64_t n = 0;
        for (int64_t i = 0; i < ds->n; i++) n += ds->s[i].cls == k && !ds->s[i].bad;
        int64_t *idx = xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1)), m = 0;
        for (int64_t i = 0; i < ds->n; i++)
            if (ds->s[i].cls == k && !ds->s[i].bad) idx[m++] = i;
        uint64_t st = tool_mix(seed ^ 0x5eed5eedull, (uint64_t)k);
        tool_shuffle(idx, n, &st);
        int64_t nv = (int64_t)floor(frac * (double)n + 0.5);
        if (frac > 0 && nv == 0 && n >= 2) nv = 1;
        if (nv >= n) nv = n - 1; /* keep at least one training image */
        for (int64_t i = 0; i < n; i++) ds->s[idx[i]].split = i < nv ? SPLIT_VAL : SPLIT_TRAIN;
        free(idx);
    }
}

/* One epoch's sampling order over the training indices tr[0..ntr-1] (positions into tr).
 * Derived from (seed, epoch) only, so a resumed run draws the same orders. */
void epoch_order(const tool_dataset *ds, const int64_t *tr, int64_t ntr, uint64_t seed,
                 int balance, int epoch, int64_t *order)
{
    uint64_t st = tool_mix(seed ^ 0x0dde7ull, (uint64_t)epoch);
    if (ntr <= 0) return;
    if (!balance) {
        for (int64_t i = 0; i < ntr; i++) order[i] = i;
        tool_shuffle(order, ntr, &st);
        return;
    }
    /* Balanced: every slot picks a class uniformly, then the next image of that class's
     * shuffled cycle (reshuffled when used up). */
    const int K = ds->n_classes;
    int64_t *count = xcalloc((size_t)K, sizeof(int64_t)), *pos = xcalloc((size_t)K, sizeof(int64_t));
    int64_t **members = xcalloc((size_t)K, sizeof(int64_t *));
    for (int64_t i = 0; i < ntr; i++) count[ds->s[tr[i]].cls]++;
    for (int k = 0; k < K; k++) members[k] = xmalloc(sizeof(int64_t) * (size_t)(count[k] ? count[k] : 1));
    int64_t *fill = xcalloc((size_t)K, sizeof(int64_t));
    for (int64_t i = 0; i < ntr; i++) {
        int k = ds->s[tr[i]].cls;
        members[k][fill[k]++] = i;
    }
    for (int k = 0; k < K; k++) tool_shuffle(members[k], count[k], &st);
    for (int64_t i = 0; i < ntr; i++) {
        int k;
        do k = (int)(tool_rand(&st) % (uint64_t)K);
        while (count[k] == 0);
        if (pos[k] == count[k]) {
            tool_shuffle(members[k], count[k], &st);
            pos[k] = 0;
        }
        order[i] = members[k][pos[k]++];
    }
    for (int k = 0; k < K; k++) free(members[k]);
    free(members);
    free(count);
    free(pos);
    free(fill);
}
