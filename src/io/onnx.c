/* ONNX export: a network as a standard ONNX model (opset CFNET_ONNX_OPSET, default domain only)
 * that computes exactly what cfnet_network_infer computes. The protobuf messages are the ones
 * protoc-c generates at build time from Debian's onnx.proto (libonnx-dev); this file only
 * builds the graph. Layer by layer (x is N x <per-sample shape>, "N" a symbolic batch axis):
 *
 *   conv2d          Conv (weight, bias, pads, strides)
 *   conic_conv      Conv with the filter of every pixel group the layer uses (cone interiors,
 *                   rays, centre; G groups) -> N x G x O x S' x S', times a constant 0/1 mask
 *                   selecting each pixel's group, ReduceSum over G, + bias: every output pixel
 *                   is the convolution with exactly the filter the library applies there
 *   p4_lift/p4_conv Conv with the expanded bank (4O x C G k k, bias repeated) on the C G input
 *                   planes, reshaped to N x O x 4 x S' x S'
 *   group_pool      ReduceMax / ReduceMean over the rotation axis
 *   dft_projection  Flatten, Gemm with the rotated bank ((filters 4R) x D), Reshape
 *   dft_magnitude   |F_A X F_B| with constant cosine and sine DFT matrices: four MatMuls per
 *                   side, Mul, Add, Sqrt
 *   pool            MaxPool / AveragePool plane by plane (window 0 resolved to its k and s)
 *   batch_norm      BatchNormalization with the running statistics
 *   relu, dropout   Relu, Identity
 *   dense           Flatten, Gemm (transB)
 *   softmax         Flatten, Softmax, Reshape
 */
#include "io/io.h"
#include "layers/banks.h"
#include "layers/p4_common.h"

#include "onnx.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ONNX_IR_VERSION 7 /* the IR version of opset 13 (ONNX 1.8) */

/* ------------------------------------------------------------------------------------------ */
/* Export state. Every message, string and array lives in an arena freed in one go; after the
 * first failed allocation every helper does nothing and `oom` makes the export fail. */

typedef struct ox_block {
    struct ox_block *next;
    max_align_t align[];
} ox_block;

typedef struct ox {
    const cf_allocator *alloc; /* the network's */
    ox_block *blocks;
    bool oom;
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t ninits, cap_inits;
    const char *prefix; /* of the current layer's names, "l3_conic_conv" */
    int serial;         /* of intermediate names within the layer */
} ox;

static void *ox_alloc(ox *g, size_t size)
{
    if (g->oom) return NULL;
    ox_block *b = size <= SIZE_MAX - sizeof *b ? cf_alloc(g->alloc, sizeof *b + size) : NULL;
    if (!b) {
        g->oom = true;
        return NULL;
    }
    memset(b->align, 0, size);
    b->next = g->blocks;
    g->blocks = b;
    return b->align;
}

static void ox_free(ox *g)
{
    for (ox_block *b = g->blocks, *next; b; b = next) {
        next = b->next;
        cf_free(b);
    }
    cf_free(g->nodes);
    cf_free(g->inits);
}

static char *ox_printf(ox *g, const char *fmt, ...) CF_PRINTF(2, 3);
static char *ox_printf(ox *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        g->oom = true;
        return NULL;
    }
    char *s = ox_alloc(g, (size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A fresh name inside the current layer: "l3_conic_conv/mask". */
static char *ox_name(ox *g, const char *what)
{
    return ox_printf(g, "%s/%s%d", g->prefix, what, g->serial++);
}

static bool ox_push(ox *g, void ***arr, size_t *n, size_t *cap, void *item)
{
    if (g->oom || !item) return false;
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        void **a = cf_alloc(g->alloc, nc * sizeof *a);
        if (!a) {
            g->oom = true;
            return false;
        }
        if (*n) memcpy(a, *arr, *n * sizeof *a);
        cf_free(*arr);
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = item;
    return true;
}

/* Little-endian bytes of n floats or int64s (raw_data is little-endian by the ONNX spec). */
static uint8_t *le_floats(ox *g, const float *v, size_t n)
{
    uint8_t *out = n <= SIZE_MAX / 4 ? ox_alloc(g, 4 * n) : NULL;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, v + i, 4);
        for (int b = 0; b < 4; b++) out[4 * i + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
    return out;
}

static uint8_t *le_int64s(ox *g, const int64_t *v, size_t n)
{
    uint8_t *out = ox_alloc(g, 8 * n);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t u = (uint64_t)v[i];
        for (int b = 0; b < 8; b++) out[8 * i + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
    return out;
}

/* A constant (graph initializer) of the given type; returns its name. */
static const char *ox_const(ox *g, const char *what, int32_t type, int ndim, const int64_t *dims,
                            const void *data)
{
    Onnx__TensorProto *t = ox_alloc(g, sizeof *t);
    int64_t *d = ox_alloc(g, (size_t)(ndim ? ndim : 1) * sizeof *d);
    char *name = ox_name(g, what);
    if (!t || !d || !name) return NULL;
    onnx__tensor_proto__init(t);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        d[i] = dims[i];
        count *= (size_t)dims[i];
    }
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = type;
    t->name = name;
    t->has_raw_data = 1;
    if (type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        t->raw_data.data = le_floats(g, data, count);
        t->raw_data.len = 4 * count;
    } else {
        t->raw_data.data = le_int64s(g, data, count);
        t->raw_data.len = 8 * count;
    }
    if (!t->raw_data.data && count) return NULL;
    return ox_push(g, (void ***)&g->inits, &g->ninits, &g->cap_inits, t) ? name : NULL;
}

static const char *ox_floats(ox *g, const char *what, int ndim, const int64_t *dims,
                             const float *data)
{
    return ox_const(g, what, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims, data);
}

static const char *ox_ints(ox *g, const char *what, int n, const int64_t *v)
{
    int64_t dims[1] = {n};
    return ox_const(g, what, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, dims, v);
}

/* A node with up to 5 inputs (NULL-terminated list) and one output, named `out` (or a fresh
 * name when `out` is NULL). Returns the node; its output is node->output[0]. Every builder
 * numbers its names and appends its node or initializer in call order, and C leaves the order
 * of a call's arguments open: calls that build inputs go in statements of their own, one after
 * the other, never two as arguments of one call, so that every compiler writes the same bytes. */
static Onnx__NodeProto *ox_node(ox *g, const char *op, const char *out, const char *in0,
                                const char *in1, const char *in2, const char *in3,
                                const char *in4)
{
    const char *in[5] = {in0, in1, in2, in3, in4};
    int nin = 0;
    while (nin < 5 && in[nin]) nin++;
    if (g->oom) return NULL;
    Onnx__NodeProto *n = ox_alloc(g, sizeof *n);
    char **ins = ox_alloc(g, (size_t)(nin ? nin : 1) * sizeof *ins);
    char **outs = ox_alloc(g, sizeof *outs);
    char *name = ox_name(g, op);
    if (!n || !ins || !outs || !name) return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++) ins[i] = (char *)in[i];
    outs[0] = out ? (char *)out : name;
    n->n_input = (size_t)nin;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    n->name = name;
    n->op_type = (char *)op;
    return ox_push(g, (void ***)&g->nodes, &g->nnodes, &g->cap_nodes, n) ? n : NULL;
}

#define OX1(g, op, a) ox_out(ox_node((g), (op), NULL, (a), NULL, NULL, NULL, NULL))
#define OX2(g, op, a, b) ox_out(ox_node((g), (op), NULL, (a), (b), NULL, NULL, NULL))

static const char *ox_out(const Onnx__NodeProto *n) { return n ? n->output[0] : NULL; }

static Onnx__AttributeProto *ox_attr(ox *g, Onnx__NodeProto *n, const char *name,
                                     Onnx__AttributeProto__AttributeType type)
{
    if (!n) return NULL;
    Onnx__AttributeProto *a = ox_alloc(g, sizeof *a);
    Onnx__AttributeProto **arr = ox_alloc(g, (n->n_attribute + 1) * sizeof *arr);
    if (!a || !arr) return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    if (n->n_attribute) memcpy(arr, n->attribute, n->n_attribute * sizeof *arr);
    arr[n->n_attribute++] = a;
    n->attribute = arr; /* the old array stays in the arena */
    return a;
}

static void ox_attr_int(ox *g, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (!a) return;
    a->has_i = 1;
    a->i = v;
}

static void ox_attr_float(ox *g, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (!a) return;
    a->has_f = 1;
    a->f = v;
}

static void ox_attr_ints(ox *g, Onnx__NodeProto *n, const char *name, int count,
                         const int64_t *v)
{
    Onnx__AttributeProto *a = ox_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *vals = ox_alloc(g, (size_t)count * sizeof *vals);
    if (!a || !vals) return;
    memcpy(vals, v, (size_t)count * sizeof *vals);
    a->n_ints = (size_t)count;
    a->ints = vals;
}

/* Reshape to N x shape (the batch axis copied with -1). */
static const char *ox_reshape(ox *g, const char *x, int ndim, const int64_t *shape)
{
    int64_t s[CFNET_MAX_DIMS + 1];
    s[0] = -1;
    for (int i = 0; i < ndim; i++) s[i + 1] = shape[i];
    return OX2(g, "Reshape", x, ox_ints(g, "shape", ndim + 1, s));
}

static const char *ox_flatten(ox *g, const char *x)
{
    Onnx__NodeProto *n = ox_node(g, "Flatten", NULL, x, NULL, NULL, NULL, NULL);
    ox_attr_int(g, n, "axis", 1);
    return ox_out(n);
}

/* Conv with square kernel k, stride s, symmetric zero padding p. */
static const char *ox_conv(ox *g, const char *x, const char *w, const char *b, int k, int s,
                           int p)
{
    Onnx__NodeProto *n = ox_node(g, "Conv", NULL, x, w, b, NULL, NULL);
    int64_t ks[2] = {k, k}, st[2] = {s, s}, pads[4] = {p, p, p, p}, dil[2] = {1, 1};
    ox_attr_ints(g, n, "kernel_shape", 2, ks);
    ox_attr_ints(g, n, "strides", 2, st);
    ox_attr_ints(g, n, "pads", 4, pads);
    ox_attr_ints(g, n, "dilations", 2, dil);
    ox_attr_int(g, n, "group", 1);
    return ox_out(n);
}

static const char *ox_gemm_t(ox *g, const char *x, const char *w, const char *b)
{
    Onnx__NodeProto *n = ox_node(g, "Gemm", NULL, x, w, b, NULL, NULL);
    ox_attr_int(g, n, "transB", 1);
    return ox_out(n);
}

/* ------------------------------------------------------------------------------------------ */
/* Layers. Each takes the name of its input (N x l->in_shape) and returns its output's. */

static int pad_of(int padding, int k) { return padding == CFNET_PADDING_SAME ? (k - 1) / 2 : 0; }

static const char *param(ox *g, const cfnet_layer *l, int i)
{
    const cfnet_tensor *t = l->param[i];
    return ox_floats(g, l->param_name[i], t->ndim, t->shape, t->data);
}

static const char *emit_conv2d(ox *g, const cfnet_layer *l, const char *x)
{
    int k = l->icfg[1], s = l->icfg[2];
    const char *w = param(g, l, 0), *b = param(g, l, 1);
    return ox_conv(g, x, w, b, k, s, pad_of(l->icfg[3], k));
}

/* The conic convolution of N x C x S_in x S_in planes into N x O x S x S. */
static cfnet_status conic_core(ox *g, const cfnet_layer *l, const char *x, int64_t C, int64_t S,
                               const char **y)
{
    int O = l->icfg[0], k = l->icfg[1], pad = pad_of(l->icfg[3], k);
    float *bank = NULL;
    int32_t *group_of = NULL;
    int ngroups = 0;
    CF_CHECK(cf_conic_conv_group_banks(l, &bank, &ngroups, &group_of));
    if (ngroups == 1) { /* a 1 x 1 output: the centre only */
        int64_t wd[4] = {O, C, k, k};
        const char *w = ox_floats(g, "weight", 4, wd, bank), *b = param(g, l, 1);
        *y = ox_conv(g, x, w, b, k, 1, pad);
    } else {
        int64_t wd[4] = {(int64_t)ngroups * O, C, k, k}, md[4] = {ngroups, 1, S, S};
        float *mask = ox_alloc(g, (size_t)(ngroups * S * S) * sizeof *mask);
        if (mask)
            for (int64_t p = 0; p < S * S; p++) mask[(int64_t)group_of[p] * S * S + p] = 1.0f;
        const char *conv = ox_conv(g, x, ox_floats(g, "group_weights", 4, wd, bank), NULL, k, 1,
                                   pad);
        int64_t split[4] = {ngroups, O, S, S}, axes[1] = {1}, bd[3] = {O, 1, 1};
        const char *split4 = ox_reshape(g, conv, 4, split);
        const char *cones = mask ? ox_floats(g, "cone_mask", 4, md, mask) : NULL;
        const char *sel = OX2(g, "Mul", split4, cones);
        Onnx__NodeProto *sum = ox_node(g, "ReduceSum", NULL, sel, ox_ints(g, "axes", 1, axes),
                                       NULL, NULL, NULL);
        ox_attr_int(g, sum, "keepdims", 0);
        *y = OX2(g, "Add", ox_out(sum), ox_floats(g, "bias", 3, bd, l->param[1]->data));
    }
    cf_free(bank);
    cf_free(group_of);
    return CFNET_OK;
}

static cfnet_status emit_conic(ox *g, const cfnet_layer *l, const char *x, const char **y)
{
    return conic_core(g, l, x, l->in_shape[0], l->out_shape[1], y);
}

/* A constant int64 index tensor: a scalar when n == 0, else n values. */
static const char *ox_index(ox *g, int n, const int64_t *v)
{
    return n ? ox_ints(g, "indices", n, v)
             : ox_const(g, "index", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 0, NULL, v);
}

static const char *ox_gather(ox *g, const char *x, const char *indices, int64_t axis)
{
    Onnx__NodeProto *n = ox_node(g, "Gather", NULL, x, indices, NULL, NULL, NULL);
    ox_attr_int(g, n, "axis", axis);
    return ox_out(n);
}

/* Columns in reverse order, 0-based indices S-1 .. 0. */
static const char *reversed(ox *g, int64_t S)
{
    int64_t *v = ox_alloc(g, (size_t)S * sizeof *v);
    if (!v) return NULL;
    for (int64_t j = 0; j < S; j++) v[j] = S - 1 - j;
    return ox_index(g, (int)S, v);
}

/* conic_conv_mirror: y[o, 0] = Phi(f)[o], y[o, 1] = F Phi(F~ f)[o] (src/layers/conic_conv_mirror.c):
 * the planes and their mirror images (columns reversed, the two input copies exchanged) run as
 * one batch of 2N through the conic convolution; the second half is mirrored back and the two
 * halves become the copy axis. */
static cfnet_status emit_conic_mirror(ox *g, const cfnet_layer *l, const char *x, const char **y)
{
    const int G = l->in_ndim == 4 ? 2 : 1;
    const int64_t C = l->in_shape[0] * G, S = l->in_shape[l->in_ndim - 1];
    const int64_t O = l->out_shape[0], OS = l->out_shape[2];
    if (G == 2) {
        int64_t planes[3] = {C, S, S};
        x = ox_reshape(g, x, 3, planes);
    }
    const char *xm = ox_gather(g, x, reversed(g, S), 3);
    if (G == 2) {
        int64_t *swap = ox_alloc(g, (size_t)C * sizeof *swap);
        if (swap)
            for (int64_t p = 0; p < C; p++) swap[p] = (p / 2) * 2 + 1 - p % 2;
        xm = ox_gather(g, xm, swap ? ox_index(g, (int)C, swap) : NULL, 1);
    }
    Onnx__NodeProto *cat = ox_node(g, "Concat", NULL, x, xm, NULL, NULL, NULL);
    ox_attr_int(g, cat, "axis", 0);
    const char *both = NULL;
    CF_CHECK(conic_core(g, l, ox_out(cat), C, OS, &both));
    int64_t halves[5] = {2, -1, O, OS, OS}, zero = 0, one = 1, axes[1] = {2};
    const char *y5 = OX2(g, "Reshape", both, ox_ints(g, "shape", 5, halves));
    const char *a = ox_gather(g, y5, ox_index(g, 0, &zero), 0);
    const char *second = ox_gather(g, y5, ox_index(g, 0, &one), 0);
    const char *b = ox_gather(g, second, reversed(g, OS), 3);
    const char *ua = OX2(g, "Unsqueeze", a, ox_ints(g, "axes", 1, axes));
    const char *ub = OX2(g, "Unsqueeze", b, ox_ints(g, "axes", 1, axes));
    Onnx__NodeProto *out = ox_node(g, "Concat", NULL, ua, ub, NULL, NULL, NULL);
    ox_attr_int(g, out, "axis", 2);
    *y = ox_out(out);
    return CFNET_OK;
}

static cfnet_status emit_p4(ox *g, const cfnet_layer *l, const char *x, const char **y)
{
    /* p4: 4 copies, p4m: 8; group layers take that many input copies per channel */
    int O = l->icfg[CF_P4_CFG_OUT], k = l->icfg[CF_P4_CFG_K];
    int64_t order = l->out_shape[1];
    int p4in = l->kind == CFNET_LAYER_P4_CONV || l->kind == CFNET_LAYER_P4M_CONV;
    int64_t CG = p4in ? l->in_shape[0] * order : l->in_shape[0], S = l->in_shape[l->in_ndim - 1];
    float *bank = NULL, *bias = NULL;
    CF_CHECK(cf_p4_expanded_bank(l, &bank, &bias));
    if (p4in) {
        int64_t planes[3] = {CG, S, S};
        x = ox_reshape(g, x, 3, planes);
    }
    int64_t wd[4] = {order * (int64_t)O, CG, k, k}, bd[1] = {order * (int64_t)O};
    const char *w = ox_floats(g, "expanded_weight", 4, wd, bank);
    const char *b = ox_floats(g, "expanded_bias", 1, bd, bias);
    const char *conv = ox_conv(g, x, w, b, k, 1, pad_of(l->icfg[CF_P4_CFG_PAD], k));
    *y = ox_reshape(g, conv, l->out_ndim, l->out_shape);
    cf_free(bank);
    cf_free(bias);
    return CFNET_OK;
}

static const char *emit_group_pool(ox *g, const cfnet_layer *l, const char *x)
{
    int64_t axes[1] = {2};
    Onnx__NodeProto *n = ox_node(g, l->icfg[0] == CFNET_POOL_MAX ? "ReduceMax" : "ReduceMean",
                                 NULL, x, NULL, NULL, NULL, NULL);
    ox_attr_ints(g, n, "axes", 1, axes);
    ox_attr_int(g, n, "keepdims", 0);
    return ox_out(n);
}

static cfnet_status emit_dft_projection(ox *g, const cfnet_layer *l, const char *x,
                                        const char **y)
{
    int64_t rows = l->out_shape[0] * l->out_shape[1], nrot = l->out_shape[1];
    float *bank = NULL;
    CF_CHECK(cf_dft_projection_bank(l, &bank));
    float *bias = ox_alloc(g, (size_t)rows * sizeof *bias);
    if (bias)
        for (int64_t i = 0; i < rows; i++) bias[i] = l->param[1]->data[i / nrot];
    int64_t wd[2] = {rows, l->in_size}, bd[1] = {rows};
    const char *flat = ox_flatten(g, x), *w = ox_floats(g, "rotated_weight", 2, wd, bank);
    const char *b = bias ? ox_floats(g, "bias", 1, bd, bias) : NULL;
    const char *psi = ox_gemm_t(g, flat, w, b);
    *y = ox_reshape(g, psi, 2, l->out_shape);
    cf_free(bank);
    return CFNET_OK;
}

/* cos / sin (2 pi a b / n) for a, b < n, an n x n matrix; the product is reduced mod n first. */
static const char *dft_matrix(ox *g, int64_t n, bool sine)
{
    float *m = ox_alloc(g, (size_t)(n * n) * sizeof *m);
    if (!m) return NULL;
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++) {
            double t = 2.0 * 3.14159265358979323846 * (double)((a * b) % n) / (double)n;
            m[a * n + b] = (float)(sine ? sin(t) : cos(t));
        }
    int64_t d[2] = {n, n};
    return ox_floats(g, sine ? "dft_sin" : "dft_cos", 2, d, m);
}

/* Y = F_A X F_B (F symmetric, F = C - iS): Re Y = C_A X C_B - S_A X S_B,
 * -Im Y = S_A X C_B + C_A X S_B; out = sqrt(Re^2 + Im^2). */
/* |DFT2| over the last two axes (A x B) of x. */
static const char *dft2_magnitude(ox *g, const char *x, int64_t A, int64_t B)
{
    const char *ca = dft_matrix(g, A, false), *sa = dft_matrix(g, A, true);
    const char *cb = B == A ? ca : dft_matrix(g, B, false), *sb = B == A ? sa : dft_matrix(g, B, true);
    const char *p = OX2(g, "MatMul", x, cb), *q = OX2(g, "MatMul", x, sb);
    const char *cp = OX2(g, "MatMul", ca, p), *sq = OX2(g, "MatMul", sa, q);
    const char *re = OX2(g, "Sub", cp, sq);
    const char *sp = OX2(g, "MatMul", sa, p), *cq = OX2(g, "MatMul", ca, q);
    const char *im = OX2(g, "Add", sp, cq);
    const char *re2 = OX2(g, "Mul", re, re), *im2 = OX2(g, "Mul", im, im);
    const char *pw = OX2(g, "Add", re2, im2);
    return OX1(g, "Sqrt", pw);
}

static const char *emit_dft_magnitude(ox *g, const cfnet_layer *l, const char *x)
{
    if (l->in_ndim != 2) x = ox_reshape(g, x, 2, l->out_shape);
    return dft2_magnitude(g, x, l->out_shape[0], l->out_shape[1]);
}

/* Per channel, |DFT2| of the 8 copies read as a 2 x 4 grid (m, r). */
static const char *emit_p4m_dft_magnitude(ox *g, const cfnet_layer *l, const char *x)
{
    int64_t grid[3] = {l->out_shape[0], 2, 4};
    const char *y = dft2_magnitude(g, ox_reshape(g, x, 3, grid), 2, 4);
    return ox_reshape(g, y, 2, l->out_shape);
}

static const char *emit_dense(ox *g, const cfnet_layer *l, const char *x)
{
    if (l->in_ndim != 1) x = ox_flatten(g, x);
    const char *w = param(g, l, 0), *b = param(g, l, 1);
    return ox_gemm_t(g, x, w, b);
}

static const char *emit_pool(ox *g, const cfnet_layer *l, const char *x)
{
    int nd = l->in_ndim;
    int64_t H = l->in_shape[nd - 2], W = l->in_shape[nd - 1], k = l->icfg[1], s = l->icfg[2];
    if (k == 0) { /* the equivariant choice, as the layer resolves it */
        k = H % 2 == 0 ? 2 : 3;
        s = 2;
    }
    if (nd != 3) {
        int64_t planes[3] = {l->in_size / (H * W), H, W};
        x = ox_reshape(g, x, 3, planes);
    }
    Onnx__NodeProto *n = ox_node(g, l->icfg[0] == CFNET_POOL_MAX ? "MaxPool" : "AveragePool",
                                 NULL, x, NULL, NULL, NULL, NULL);
    int64_t ks[2] = {k, k}, st[2] = {s, s}, pads[4] = {0, 0, 0, 0};
    ox_attr_ints(g, n, "kernel_shape", 2, ks);
    ox_attr_ints(g, n, "strides", 2, st);
    ox_attr_ints(g, n, "pads", 4, pads);
    const char *y = ox_out(n);
    return nd != 3 ? ox_reshape(g, y, nd, l->out_shape) : y;
}

static const char *emit_batch_norm(ox *g, const cfnet_layer *l, const char *x)
{
    int64_t C[1] = {l->in_shape[0]};
    const char *scale = param(g, l, 0), *shift = param(g, l, 1);
    const char *mean = ox_floats(g, l->state_name[0], 1, C, l->state[0]->data);
    const char *var = ox_floats(g, l->state_name[1], 1, C, l->state[1]->data);
    Onnx__NodeProto *n = ox_node(g, "BatchNormalization", NULL, x, scale, shift, mean, var);
    ox_attr_float(g, n, "epsilon", l->fcfg[1]);
    return ox_out(n);
}

static const char *emit_softmax(ox *g, const cfnet_layer *l, const char *x)
{
    Onnx__NodeProto *n =
        ox_node(g, "Softmax", NULL, l->in_ndim == 1 ? x : ox_flatten(g, x), NULL, NULL, NULL,
                NULL);
    ox_attr_int(g, n, "axis", 1);
    return l->in_ndim == 1 ? ox_out(n) : ox_reshape(g, ox_out(n), l->out_ndim, l->out_shape);
}

static cfnet_status emit_layer(ox *g, const cfnet_layer *l, const char *x, const char **y)
{
    *y = NULL;
    switch (l->kind) {
    case CFNET_LAYER_CONV2D: *y = emit_conv2d(g, l, x); break;
    case CFNET_LAYER_CONIC_CONV: return emit_conic(g, l, x, y);
    case CFNET_LAYER_CONIC_CONV_MIRROR: return emit_conic_mirror(g, l, x, y);
    case CFNET_LAYER_P4_LIFT:
    case CFNET_LAYER_P4_CONV:
    case CFNET_LAYER_P4M_LIFT:
    case CFNET_LAYER_P4M_CONV: return emit_p4(g, l, x, y);
    case CFNET_LAYER_P4M_DFT_MAGNITUDE: *y = emit_p4m_dft_magnitude(g, l, x); break;
    case CFNET_LAYER_GROUP_POOL: *y = emit_group_pool(g, l, x); break;
    case CFNET_LAYER_DFT_PROJECTION: return emit_dft_projection(g, l, x, y);
    case CFNET_LAYER_DFT_MAGNITUDE: *y = emit_dft_magnitude(g, l, x); break;
    case CFNET_LAYER_DENSE: *y = emit_dense(g, l, x); break;
    case CFNET_LAYER_RELU: *y = OX1(g, "Relu", x); break;
    case CFNET_LAYER_POOL: *y = emit_pool(g, l, x); break;
    case CFNET_LAYER_BATCH_NORM: *y = emit_batch_norm(g, l, x); break;
    case CFNET_LAYER_DROPOUT: *y = OX1(g, "Identity", x); break;
    case CFNET_LAYER_SOFTMAX: *y = emit_softmax(g, l, x); break;
    default:
        return cf_error(CFNET_E_UNSUPPORTED, "network_export_onnx: layer kind %d (%s) has no ONNX "
                        "form", l->kind, l->ops ? l->ops->name : "unknown");
    }
    return CFNET_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The model                                                                                  */

/* N x shape as a graph input or output. */
static Onnx__ValueInfoProto *value_info(ox *g, const char *name, int ndim, const int64_t *shape)
{
    Onnx__ValueInfoProto *v = ox_alloc(g, sizeof *v);
    Onnx__TypeProto *t = ox_alloc(g, sizeof *t);
    Onnx__TypeProto__Tensor *tt = ox_alloc(g, sizeof *tt);
    Onnx__TensorShapeProto *sh = ox_alloc(g, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dims = ox_alloc(g, (size_t)(ndim + 1) * sizeof *dims);
    if (!v || !t || !tt || !sh || !dims) return NULL;
    for (int i = 0; i <= ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = ox_alloc(g, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (i == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = (char *)"N";
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = shape[i - 1];
        }
        dims[i] = d;
    }
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)ndim + 1;
    sh->dim = dims;
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    onnx__type_proto__init(t);
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    onnx__value_info_proto__init(v);
    v->name = (char *)name;
    v->type = t;
    return v;
}

typedef struct ox_props {
    Onnx__StringStringEntryProto **e;
    size_t n, cap;
} ox_props;

static void add_prop(ox *g, ox_props *p, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *e = ox_alloc(g, sizeof *e);
    if (!e) return;
    onnx__string_string_entry_proto__init(e);
    e->key = ox_printf(g, "%s", key);
    e->value = ox_printf(g, "%s", value);
    if (!p->cap) {
        p->cap = 16;
        p->e = ox_alloc(g, p->cap * sizeof *p->e);
    } else if (p->n == p->cap) {
        Onnx__StringStringEntryProto **ne = ox_alloc(g, 2 * p->cap * sizeof *ne);
        if (ne) memcpy(ne, p->e, p->n * sizeof *ne);
        p->e = ne;
        p->cap *= 2;
    }
    if (p->e) p->e[p->n++] = e;
}

static cfnet_status build(ox *g, const cfnet_network *net, unsigned flags, const char *what,
                          uint8_t **buf_out, size_t *size_out)
{
    char shape_in[96], shape_out[96];
    const cfnet_layer *last = net->layers[net->nlayers - 1];
    cf_shape_str(shape_in, sizeof shape_in, 3, net->in_shape);

    const char *x = "input";
    for (int i = 0; i < net->nlayers; i++) {
        const cfnet_layer *l = net->layers[i];
        g->prefix = ox_printf(g, "l%d_%s", i, l->ops->name);
        g->serial = 0;
        const char *y = NULL;
        cfnet_status st = emit_layer(g, l, x, &y);
        if (st != CFNET_OK)
            return cf_error(st, "%s: layer %d (%s): %s", what, i, l->ops->name, cfnet_last_error());
        x = y;
    }
    int out_ndim = last->out_ndim;
    const int64_t *out_shape = last->out_shape;
    int64_t flat[1] = {last->out_size};
    bool probs = (flags & CFNET_ONNX_PROBABILITIES) && last->kind != CFNET_LAYER_SOFTMAX;
    if (flags & CFNET_ONNX_PROBABILITIES) {
        g->prefix = "probabilities";
        g->serial = 0;
        if (out_ndim != 1) x = ox_flatten(g, x);
        if (probs) {
            Onnx__NodeProto *n = ox_node(g, "Softmax", NULL, x, NULL, NULL, NULL, NULL);
            ox_attr_int(g, n, "axis", 1);
            x = ox_out(n);
        }
        out_ndim = 1;
        out_shape = flat;
    }
    /* the shape of the model's output (after the flattening above), as the metadata says it */
    cf_shape_str(shape_out, sizeof shape_out, out_ndim, out_shape);
    /* The graph output is named "output": the last node writes it directly. */
    if (!g->oom && g->nnodes && !strcmp(g->nodes[g->nnodes - 1]->output[0], x))
        g->nodes[g->nnodes - 1]->output[0] = (char *)"output";
    else
        ox_node(g, "Identity", "output", x, NULL, NULL, NULL, NULL);

    Onnx__GraphProto *graph = ox_alloc(g, sizeof *graph);
    Onnx__ValueInfoProto **gin = ox_alloc(g, sizeof *gin), **gout = ox_alloc(g, sizeof *gout);
    Onnx__ModelProto *model = ox_alloc(g, sizeof *model);
    Onnx__OperatorSetIdProto *opset = ox_alloc(g, sizeof *opset);
    Onnx__OperatorSetIdProto **opsets = ox_alloc(g, sizeof *opsets);
    if (g->oom || !graph || !gin || !gout || !model || !opset || !opsets)
        return cf_error(CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
    gin[0] = value_info(g, "input", 3, net->in_shape);
    gout[0] = value_info(g, "output", out_ndim, out_shape);
    onnx__graph_proto__init(graph);
    graph->name = (char *)"cfnet";
    graph->n_node = g->nnodes;
    graph->node = g->nodes;
    graph->n_initializer = g->ninits;
    graph->initializer = g->inits;
    graph->n_input = 1;
    graph->input = gin;
    graph->n_output = 1;
    graph->output = gout;
    graph->doc_string = ox_printf(g, "libcfnet network, input N x %s, output N x %s (%s)",
                                  shape_in, shape_out,
                                  (flags & CFNET_ONNX_PROBABILITIES) ? "class probabilities"
                                                                     : "as cfnet_network_infer");

    onnx__operator_set_id_proto__init(opset);
    opset->domain = (char *)"";
    opset->has_version = 1;
    opset->version = CFNET_ONNX_OPSET;
    opsets[0] = opset;

    /* The user's metadata (class names, normalisation, ...) as it is, then the library's own
     * entries unless the user set the same key. Read directly: the export holds the network
     * already, and the public accessors' own guard could be refused (a modifying call tried
     * in another thread holds the flag for an instant before it is refused). */
    ox_props props = {0};
    for (int i = 0; i < net->nmeta; i++) add_prop(g, &props, net->meta[i].key, net->meta[i].value);
    char *layers = ox_alloc(g, 64 * (size_t)net->nlayers + 1);
    if (layers) {
        size_t at = 0;
        for (int i = 0; i < net->nlayers; i++)
            at += (size_t)snprintf(layers + at, 64, "%s%s", i ? " " : "",
                                   net->layers[i]->ops->name);
    }
    const char *own[5][2] = {
        {"cfnet.version", cfnet_version_string()},
        {"cfnet.input_shape", shape_in},
        {"cfnet.output_shape", shape_out},
        {"cfnet.output",
         (flags & CFNET_ONNX_PROBABILITIES) ? "probabilities" : "network output"},
        {"cfnet.layers", layers ? layers : ""},
    };
    for (int i = 0; i < 5; i++) {
        if (!cf_network_metadata_value(net, own[i][0])) add_prop(g, &props, own[i][0], own[i][1]);
    }

    onnx__model_proto__init(model);
    model->has_ir_version = 1;
    model->ir_version = ONNX_IR_VERSION;
    model->n_opset_import = 1;
    model->opset_import = opsets;
    model->producer_name = (char *)"libcfnet";
    model->producer_version = (char *)cfnet_version_string();
    model->graph = graph;
    model->n_metadata_props = props.n;
    model->metadata_props = props.e;
    if (g->oom || !gin[0] || !gout[0])
        return cf_error(CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);

    size_t size = protobuf_c_message_get_packed_size(&model->base);
    CF_FAIL_IF(size > (size_t)INT32_MAX, CFNET_E_LIMIT,
               "%s: the model takes %zu bytes, over the 2 GiB limit of a protobuf message", what,
               size);
    uint8_t *buf = cf_alloc(&net->alloc, size ? size : 1);
    CF_FAIL_IF(!buf, CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", what, size);
    size_t packed = protobuf_c_message_pack(&model->base, buf);
    if (packed != size) {
        cf_free(buf);
        return cf_error(CFNET_E_INTERNAL, "%s: protobuf-c packed %zu of %zu bytes", what, packed,
                        size);
    }
    *buf_out = buf;
    *size_out = size;
    return CFNET_OK;
}

static cfnet_status export_buffer(const cfnet_network *net, unsigned flags, const char *what,
                                  uint8_t **buf, size_t *size)
{
    CF_FAIL_IF(flags & ~(unsigned)CFNET_ONNX_PROBABILITIES, CFNET_E_INVALID_ARGUMENT,
               "%s: unknown flags 0x%x", what, flags & ~(unsigned)CFNET_ONNX_PROBABILITIES);
    CF_FAIL_IF(net->nlayers == 0, CFNET_E_STATE, "%s: the network has no layers", what);
    ox g;
    memset(&g, 0, sizeof g);
    g.alloc = &net->alloc;
    cfnet_status st = build(&g, net, flags, what, buf, size);
    ox_free(&g);
    return st;
}

CFNET_API cfnet_status cfnet_network_export_onnx(const cfnet_network *net, const char *path,
                                                 unsigned flags)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, false, "network_export_onnx");
    const char *what = "network_export_onnx";
    CF_FAIL_IF(!net || !path, CFNET_E_INVALID_ARGUMENT, "%s: NULL argument", what);
    CF_FAIL_IF(!*path, CFNET_E_INVALID_ARGUMENT, "%s: path is empty", what);
    CF_NET_SCOPE(net);
    uint8_t *buf;
    size_t size;
    CF_CHECK(export_buffer(net, flags, what, &buf, &size));
    cfnet_status st = cf_file_write_atomic(&net->alloc, path, buf, size, what);
    cf_free(buf);
    return st;
}

CFNET_API cfnet_status cfnet_network_export_onnx_buffer(const cfnet_network *net, unsigned flags,
                                                        void **buffer, size_t *size)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    const char *what = "network_export_onnx_buffer";
    CF_FAIL_IF(!net || !buffer || !size, CFNET_E_INVALID_ARGUMENT, "%s: NULL argument", what);
    CF_NET_SCOPE(net);
    uint8_t *buf;
    size_t n;
    CF_CHECK(export_buffer(net, flags, what, &buf, &n));
    *buffer = buf;
    *size = n;
    return CFNET_OK;
}
