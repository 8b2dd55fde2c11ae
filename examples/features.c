/* Feature pictures like the paper's Fig. 5: one biomarker image rotated by 0, 45 and 90 degrees
 * goes through a trained CFNet and a trained CNN; the grid shows the third convolution layer's
 * maps (after batch norm and ReLU). Conic maps rotate with the input; the CNN's change.
 *
 *   build/default/examples/features [--steps S] [--out DIR]
 *
 * Writes DIR/features.ppm (and features.png when pnmtopng or ImageMagick is installed) and prints
 * how far each network's third-layer maps are from rotating with the input. */
#include "biomarker.h"
#include "exutil.h"
#include "models.h"
#include "pnm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLASSES 10
#define SHOW 6 /* feature maps shown per row */

static const double angles[3] = {0, 45, 90};

/* Runs x (1 x 1 x S x S) through the layers up to and including the ReLU after the third
 * convolution; returns a new tensor (1 x C x h x w). */
static cfnet_tensor *third_layer(const cfnet_network *net, const cfnet_tensor *x)
{
    cfnet_tensor *cur = NULL;
    int64_t shape[CFNET_MAX_DIMS];
    int nd;
    EX_CHECK(cfnet_network_input_shape(net, &nd, shape + 1));
    shape[0] = 1;
    EX_CHECK(cfnet_tensor_create(nd + 1, shape, &cur));
    EX_CHECK(cfnet_tensor_copy_in(cur, cfnet_tensor_data(x), cfnet_tensor_numel(x)));
    int convs = 0;
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        cfnet_layer *l = cfnet_network_layer(net, i);
        int k = cfnet_layer_kind_of(l);
        EX_CHECK(cfnet_layer_output_shape(l, &nd, shape + 1));
        cfnet_tensor *next = NULL;
        EX_CHECK(cfnet_tensor_create(nd + 1, shape, &next));
        EX_CHECK(cfnet_layer_forward(l, cur, next, CFNET_MODE_INFERENCE));
        cfnet_tensor_free(cur);
        cur = next;
        if (k == CFNET_LAYER_CONIC_CONV || k == CFNET_LAYER_CONV2D) convs++;
        if (convs == 3 && k == CFNET_LAYER_RELU) return cur;
    }
    ex_die("features: network has fewer than three convolution layers");
}

static cfnet_network *train(ex_model m, int steps, const cfnet_tensor *x, const int32_t *y,
                            int64_t n)
{
    cfnet_network *net = ex_preset(m, 1, BM_SIZE, CLASSES, 12, 42 + (uint64_t)m);
    ex_set_recipe(net, 5e-3, 5e-4, steps / 30 > 0 ? steps / 30 : 1, 3, 2);
    cfnet_tensor *xb = ex_tensor4(50, 1, BM_SIZE, BM_SIZE);
    int32_t yb[50];
    int64_t *order = ex_malloc((size_t)n * sizeof *order);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    uint64_t rs = 7 + (uint64_t)m;
    int64_t pos = n;
    ex_progress pr;
    ex_progress_start(&pr, stdout, ex_model_name(m), steps);
    double la = 0;
    for (int s = 1; s <= steps; s++) {
        if (pos + 50 > n) {
            ex_shuffle(order, n, &rs);
            pos = 0;
        }
        ex_gather(cfnet_tensor_data(x), y, BM_SIZE * BM_SIZE, order + pos, 50,
                  cfnet_tensor_data(xb), yb);
        pos += 50;
        float loss;
        EX_CHECK(cfnet_network_train_step(net, xb, yb, 50, &loss));
        la = s == 1 ? loss : 0.95 * la + 0.05 * loss;
        ex_progress_update(&pr, s, la, NAN);
    }
    ex_progress_end(&pr);
    free(order);
    cfnet_tensor_free(xb);
    return net;
}

/* max |rot90(F(x)) - F(rot90 x)| / max |F(x)| over the shown maps. */
static double equivariance_error(const cfnet_tensor *f0, const cfnet_tensor *f90)
{
    cfnet_tensor *r = NULL;
    int64_t shape[CFNET_MAX_DIMS];
    int nd;
    EX_CHECK(cfnet_tensor_shape(f0, &nd, shape));
    EX_CHECK(cfnet_tensor_create(nd, shape, &r));
    EX_CHECK(cfnet_image_rotate(f0, r, 90));
    const float *a = cfnet_tensor_data(r), *b = cfnet_tensor_data(f90);
    double num = 0, den = 0;
    for (int64_t i = 0; i < cfnet_tensor_numel(r); i++) {
        if (fabs(a[i] - b[i]) > num) num = fabs(a[i] - b[i]);
        if (fabs(a[i]) > den) den = fabs(a[i]);
    }
    cfnet_tensor_free(r);
    return den > 0 ? num / den : 0;
}

int main(int argc, char **argv)
{
    int steps = 300;
    const char *out = "build/results";
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--steps")) {
            steps = ex_arg_int("features", argv[i], argv[i + 1]);
            i++;
        }
        else if (i + 1 < argc && !strcmp(argv[i], "--out")) out = argv[++i];
        else {
            int help = !strcmp(argv[i], "-h") || !strcmp(argv[i], "--help");
            fprintf(help ? stdout : stderr,
                    "usage: features [--steps S] [--out DIR]\n"
                    "  --steps S  training steps of each network (default 300)\n"
                    "  --out DIR  output folder (default build/results)\n");
            return help ? 0 : 2;
        }
    }
    if (steps < 1) ex_bad_arg("features: --steps must be positive, not %d", steps);
    ex_make_dirs(out); /* before training, so that a folder that cannot be made fails at once */
    ex_blas_single_thread();
    int64_t n = CLASSES * 50;
    cfnet_tensor *x = ex_tensor4(n, 1, BM_SIZE, BM_SIZE);
    int32_t *y = ex_malloc((size_t)n * sizeof *y);
    bm_generate(CLASSES, 50, BM_TRAIN, BM_PATTERN_SEED, 1, cfnet_tensor_data(x), y);
    printf("features: training CFNet and CNN for %d steps on %d biomarker classes\n", steps,
           CLASSES);
    const ex_model models[2] = {EX_CFNET, EX_CNN};
    cfnet_network *nets[2];
    for (int m = 0; m < 2; m++) nets[m] = train(models[m], steps, x, y, n);

    /* One test image of class 2, at three rotations. */
    cfnet_tensor *img = ex_tensor4(1, 1, BM_SIZE, BM_SIZE), *rot = ex_tensor4(1, 1, BM_SIZE, BM_SIZE);
    bm_class pat;
    bm_class_pattern(2, BM_PATTERN_SEED, &pat);
    bm_render(&pat, 2, BM_TEST, 0, 1, cfnet_tensor_data(img));

    ex_canvas c;
    ex_canvas_init(&c, 6, SHOW + 1, 96, 96, 3);
    for (int m = 0; m < 2; m++) {
        cfnet_tensor *f[3];
        for (int a = 0; a < 3; a++) {
            EX_CHECK(cfnet_image_rotate(img, rot, angles[a]));
            f[a] = third_layer(nets[m], rot);
            int row = m * 3 + a;
            ex_canvas_map(&c, row, 0, cfnet_tensor_data(rot), BM_SIZE, BM_SIZE, 0, 1, 1);
            int h = (int)cfnet_tensor_dim(f[a], 2), w = (int)cfnet_tensor_dim(f[a], 3);
            /* One colour scale per channel, shared by the three rotations. */
            for (int ch = 0; ch < SHOW && ch < cfnet_tensor_dim(f[a], 1); ch++) {
                const float *map = cfnet_tensor_data(f[a]) + (size_t)ch * h * w;
                const float *map0 = cfnet_tensor_data(f[0]) + (size_t)ch * h * w;
                float hi = 0;
                for (int q = 0; q < h * w; q++)
                    if (map0[q] > hi) hi = map0[q];
                ex_canvas_map(&c, row, ch + 1, map, h, w, 0, hi > 0 ? hi : 1, 0);
            }
        }
        printf("%-6s third-layer maps (%lldx%lldx%lld): max |rot90 F(x) - F(rot90 x)| / max|F| "
               "= %.2e\n",
               ex_model_name(models[m]), (long long)cfnet_tensor_dim(f[0], 1),
               (long long)cfnet_tensor_dim(f[0], 2), (long long)cfnet_tensor_dim(f[0], 3),
               equivariance_error(f[0], f[2]));
        for (int a = 0; a < 3; a++) cfnet_tensor_free(f[a]);
    }
    char ppm[4096], png[4096];
    snprintf(ppm, sizeof ppm, "%s/features.ppm", out);
    snprintf(png, sizeof png, "%s/features.png", out);
    if (ex_canvas_write_ppm(&c, ppm)) ex_die("features: cannot write %s", ppm);
    printf("wrote %s%s\nrows: CFNet at 0, 45, 90 degrees, then CNN at 0, 45, 90 degrees; column 1: "
           "input, columns 2-%d: third-layer maps 1-%d\n",
           ppm, ex_pnm_to_png("features", ppm, png) ? "" : " and features.png", SHOW + 1, SHOW);
    ex_canvas_free(&c);
    for (int m = 0; m < 2; m++) cfnet_network_free(nets[m]);
    cfnet_tensor_free(img);
    cfnet_tensor_free(rot);
    cfnet_tensor_free(x);
    free(y);
    return 0;
}
