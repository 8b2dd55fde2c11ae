/* The practical compute ceiling: OpenBLAS sgemm on a large square product (C = A B, row-major,
 * n x n, n = 2048 by default), on 1 and 2 BLAS threads.
 *
 *   bench_sgemm [n]          (16..16384)
 *
 * Output: "sgemm <n> <threads> <ms> <GFLOP/s>" tab-separated, after a "# blas:" line. */
#include "bench_util.h"

typedef struct gcase {
    int n;
    float *a, *b, *c;
} gcase;

static void run(void *arg)
{
    gcase *g = arg;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f, g->a, g->n,
                g->b, g->n, 0.0f, g->c, g->n);
}

int main(int argc, char **argv)
{
    bench_check_env(argv[0]);
    if (argc > 2) {
        fprintf(stderr, "usage: %s [n]   (16..16384, default 2048)\n", argv[0]);
        return 2;
    }
    int n = argc > 1 ? bench_int_arg(argv[0], "n", argv[1], 16, 16384) : 2048;
    size_t sz = (size_t)n * (size_t)n;
    gcase g = {n, malloc(sz * sizeof(float)), malloc(sz * sizeof(float)),
               malloc(sz * sizeof(float))};
    if (!g.a || !g.b || !g.c) return 1;
    bench_fill(g.a, sz, 1);
    bench_fill(g.b, sz, 2);
    bench_print_blas(stdout);
    for (int t = 1; t <= 2; t++) {
        bench_blas_threads(t);
        double s = bench_time(run, &g, 1.0);
        printf("sgemm\t%d\t%d\t%.3f\t%.2f\n", n, t, 1e3 * s, 2.0 * n * (double)n * n / s * 1e-9);
    }
    free(g.a);
    free(g.b);
    free(g.c);
    return 0;
}
