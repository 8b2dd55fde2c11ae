/* The training options: one declarative table (key, names, type, bounds, default, field) that
 * drives cfnet_network_set_option / get_option, the defaults of a new network, the "options"
 * object of model files (src/io/schema.c) and the public cfnet_option_name / _bounds /
 * _default queries (which the bindings use instead of copies of their own). */
#include "nn/network.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const char *const optimizer_names[] = {"adam", "sgd", NULL};
static const char *const rotation_names[] = {"none", "quarter", "any", NULL};

_Static_assert(CFNET_OPTIMIZER_ADAM == 0 && CFNET_OPTIMIZER_SGD == 1,
               "optimizer_names follows the CFNET_OPTIMIZER_ values");
_Static_assert(CFNET_AUG_ROTATION_NONE == 0 && CFNET_AUG_ROTATION_QUARTER == 1 &&
                   CFNET_AUG_ROTATION_ANY == 2,
               "rotation_names follows the CFNET_AUG_ROTATION_ values");

#define OPT_D 'd' /* double field */
#define OPT_I 'i' /* int field */
#define OPT_L 'l' /* int64_t field */

/* A row of the table: OPT names the option (key CFNET_OPTION_<K>, public name, model-file name,
 * name in messages), REAL / INT / NAMED its field in cf_options, bounds [lo, hi] and default
 * (min_open / max_open added where a bound is exclusive). */
#define OPT(K, nm, file, wh) .key = CFNET_OPTION_##K, .name = nm, .file_name = file, .what = wh
#define FIELD(f, t) .offset = offsetof(cf_options, f), .field = t
#define REAL(f, lo, hi, d) .type = CF_OPTION_REAL, .min = lo, .max = hi, .def = d, FIELD(f, OPT_D)
#define INT(f, t, lo, hi, d) .type = CF_OPTION_INT, .min = lo, .max = hi, .def = d, FIELD(f, t)
#define NAMED(f, names, hi, d)                                                                   \
    .type = CF_OPTION_NAMED, .min = 0, .max = hi, .def = d, FIELD(f, OPT_I), .value_names = names

/* In key order (the index is key - 1): the optimiser comes first, so that a loader setting the
 * options in table order resets the optimiser state before anything else. */
static const cf_option_def table[] = {
    {OPT(OPTIMIZER, "optimizer", "optimizer", "optimizer"),
     NAMED(optimizer, optimizer_names, 1, CFNET_OPTIMIZER_ADAM)},
    {OPT(LEARNING_RATE, "learning_rate", "lr", "learning rate"), REAL(lr, 0, DBL_MAX, 1e-3)},
    {OPT(BETA1, "beta1", "beta1", "beta1"), REAL(beta1, 0, 1, 0.9), .max_open = true},
    {OPT(BETA2, "beta2", "beta2", "beta2"), REAL(beta2, 0, 1, 0.999), .max_open = true},
    {OPT(EPSILON, "epsilon", "epsilon", "epsilon"), REAL(eps, 0, DBL_MAX, 1e-8),
     .min_open = true},
    {OPT(MOMENTUM, "momentum", "momentum", "momentum"), REAL(momentum, 0, 1, 0.9),
     .max_open = true},
    {OPT(WEIGHT_DECAY, "weight_decay", "weight_decay", "weight decay"),
     REAL(weight_decay, 0, DBL_MAX, 0)},
    {OPT(LR_DECAY_RATE, "lr_decay_rate", "decay_rate", "decay rate"),
     REAL(decay_rate, 0, 1, 1), .min_open = true},
    {OPT(LR_DECAY_STEPS, "lr_decay_steps", "decay_steps", "decay steps"),
     INT(decay_steps, OPT_L, 1, 1e15, 1000)},
    {OPT(THREADS, "threads", "threads", "threads"), INT(threads, OPT_I, 1, CFNET_MAX_THREADS, 1)},
    {OPT(AUG_ROTATION, "aug_rotation", "aug_rotation", "rotation augmentation"),
     NAMED(aug_rotation, rotation_names, 2, CFNET_AUG_ROTATION_NONE)},
    /* also less than the input's height and width (checked against the network) */
    {OPT(AUG_JITTER, "aug_jitter", "aug_jitter", "jitter"),
     INT(aug_jitter, OPT_I, 0, INT_MAX - 1, 0)},
    {OPT(AUG_FLIP, "aug_flip", "aug_flip", "flip"), INT(aug_flip, OPT_I, 0, 1, 0)},
};
#define N_OPTIONS ((int)(sizeof table / sizeof table[0]))

_Static_assert(sizeof table / sizeof table[0] == CFNET_OPTION_AUG_FLIP,
               "the option table must have one entry per cfnet_option");

int cf_option_count(void) { return N_OPTIONS; }

const cf_option_def *cf_option_at(int index)
{
    return index >= 0 && index < N_OPTIONS ? &table[index] : NULL;
}

/* The entry of `key`, or NULL. */
static const cf_option_def *find(int key)
{
    const cf_option_def *d = cf_option_at(key - 1);
    return d && (int)d->key == key ? d : NULL;
}

static double read_field(const cf_options *o, const cf_option_def *d)
{
    const char *p = (const char *)o + d->offset;
    switch (d->field) {
    case OPT_I: return *(const int *)(const void *)p;
    case OPT_L: return (double)*(const int64_t *)(const void *)p;
    default: return *(const double *)(const void *)p;
    }
}

static void write_field(cf_options *o, const cf_option_def *d, double v)
{
    char *p = (char *)o + d->offset;
    switch (d->field) {
    case OPT_I: *(int *)(void *)p = (int)v; break;
    case OPT_L: *(int64_t *)(void *)p = (int64_t)v; break;
    default: *(double *)(void *)p = v; break;
    }
}

void cf_options_set_defaults(cf_options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < N_OPTIONS; i++) write_field(o, &table[i], table[i].def);
}

/* The closed bounds: every value v with min <= v <= max (and integral unless REAL) is valid. */
static void closed_bounds(const cf_option_def *d, double *min, double *max)
{
    *min = d->min_open ? nextafter(d->min, INFINITY) : d->min;
    *max = d->max_open ? nextafter(d->max, -INFINITY) : d->max;
}

/* "must be in [0, 1)", "must be an integer in 1..256", "must be >= 0": from the bounds. */
static void describe_range(const cf_option_def *d, char *buf, size_t size)
{
    if (d->type != CF_OPTION_REAL)
        snprintf(buf, size, "must be an integer in %.0f..%.0f", d->min, d->max);
    else if (d->max == DBL_MAX)
        snprintf(buf, size, "must be %s %g", d->min_open ? ">" : ">=", d->min);
    else
        snprintf(buf, size, "must be in %c%g, %g%c", d->min_open ? '(' : '[', d->min, d->max,
                 d->max_open ? ')' : ']');
}

CFNET_API cfnet_status cfnet_network_set_option(cfnet_network *net, cfnet_option option,
                                                double value)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, true, "network_set_option");
    CF_FAIL_IF(!net, CFNET_E_INVALID_ARGUMENT, "network_set_option: network is NULL");
    const cf_option_def *d = find((int)option);
    CF_FAIL_IF(!d, CFNET_E_INVALID_ARGUMENT, "network_set_option: unknown option %d",
               (int)option);
    CF_FAIL_IF(!isfinite(value), CFNET_E_INVALID_ARGUMENT,
               "network_set_option: %s: value is not finite", d->what);
    double lo, hi;
    closed_bounds(d, &lo, &hi);
    if (value < lo || value > hi || (d->type != CF_OPTION_REAL && value != floor(value))) {
        char range[64];
        describe_range(d, range, sizeof range);
        return cf_error(CFNET_E_INVALID_ARGUMENT, "network_set_option: %s is %g, %s", d->what,
                        value, range);
    }
    /* Constraints that depend on the network's input. */
    if (option == CFNET_OPTION_AUG_ROTATION)
        CF_FAIL_IF(value != CFNET_AUG_ROTATION_NONE && net->in_shape[1] != net->in_shape[2],
                   CFNET_E_SHAPE_MISMATCH,
                   "network_set_option: rotation augmentation needs square inputs, not %lldx%lld",
                   (long long)net->in_shape[1], (long long)net->in_shape[2]);
    if (option == CFNET_OPTION_AUG_JITTER)
        CF_FAIL_IF(value >= (double)net->in_shape[1] || value >= (double)net->in_shape[2],
                   CFNET_E_INVALID_ARGUMENT,
                   "network_set_option: jitter is %g, must be less than the image size "
                   "%lldx%lld", value, (long long)net->in_shape[1], (long long)net->in_shape[2]);
    /* Side effects: a new optimiser starts from fresh state; the thread count reaches the
     * layers and resizes the training buffers. */
    if (option == CFNET_OPTION_OPTIMIZER && (int)value != net->opt.optimizer)
        cf_network_reset_optimizer(net);
    if (option == CFNET_OPTION_THREADS)
        cf_network_set_threads(net, (int)value);
    else
        write_field(&net->opt, d, value);
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_get_option(const cfnet_network *net, cfnet_option option,
                                                double *value)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_FAIL_IF(!net || !value, CFNET_E_INVALID_ARGUMENT, "network_get_option: NULL argument");
    const cf_option_def *d = find((int)option);
    CF_FAIL_IF(!d, CFNET_E_INVALID_ARGUMENT, "network_get_option: unknown option %d",
               (int)option);
    *value = read_field(&net->opt, d);
    return CFNET_OK;
}

CFNET_API const char *cfnet_option_name(int option)
{
    const cf_option_def *d = find(option);
    return d ? d->name : NULL;
}

CFNET_API cfnet_status cfnet_option_bounds(int option, double *min, double *max)
{
    CF_FAIL_IF(!min || !max, CFNET_E_INVALID_ARGUMENT, "option_bounds: NULL argument");
    const cf_option_def *d = find(option);
    CF_FAIL_IF(!d, CFNET_E_INVALID_ARGUMENT, "option_bounds: unknown option %d", option);
    closed_bounds(d, min, max);
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_option_default(int option, double *value)
{
    CF_FAIL_IF(!value, CFNET_E_INVALID_ARGUMENT, "option_default: value is NULL");
    const cf_option_def *d = find(option);
    CF_FAIL_IF(!d, CFNET_E_INVALID_ARGUMENT, "option_default: unknown option %d", option);
    *value = d->def;
    return CFNET_OK;
}

CFNET_API int cfnet_option_is_integer(int option)
{
    const cf_option_def *d = find(option);
    return d ? d->type != CF_OPTION_REAL : -1;
}
