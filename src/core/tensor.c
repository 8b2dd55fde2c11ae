/* The tensor handle: float32, row-major, 1..CFNET_MAX_DIMS dimensions. */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

cfnet_status cf_shape_numel(const char *what, int ndim, const int64_t *shape, int64_t *numel)
{
    CF_FAIL_IF(ndim < 1 || ndim > CFNET_MAX_DIMS, CFNET_E_INVALID_ARGUMENT,
               "%s: ndim is %d, must be 1..%d", what, ndim, CFNET_MAX_DIMS);
    CF_FAIL_IF(!shape, CFNET_E_INVALID_ARGUMENT, "%s: shape is NULL", what);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        CF_FAIL_IF(shape[i] <= 0, CFNET_E_INVALID_ARGUMENT,
                   "%s: dimension %d is %lld, sizes must be positive", what, i,
                   (long long)shape[i]);
        CF_FAIL_IF(!cf_mul_i64(n, shape[i], &n) || n > (int64_t)(SIZE_MAX / sizeof(float)),
                   CFNET_E_LIMIT, "%s: element count overflows", what);
    }
    *numel = n;
    return CFNET_OK;
}

static cfnet_status tensor_make(const cf_allocator *a, const char *what, float *data, int ndim,
                                const int64_t *shape, cfnet_tensor **out)
{
    CF_FAIL_IF(!out, CFNET_E_INVALID_ARGUMENT, "%s: out is NULL", what);
    int64_t numel;
    CF_CHECK(cf_shape_numel(what, ndim, shape, &numel));
    if (!a) a = &cf_default_allocator;
    cfnet_tensor *t = cf_alloc_zero(a, 1, sizeof *t);
    CF_FAIL_IF(!t, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
    t->magic = CF_MAGIC_TENSOR;
    if (data) {
        t->data = data;
        t->owns_data = false;
    } else {
        t->data = cf_alloc_zero(a, (size_t)numel, sizeof(float));
        if (!t->data) {
            cf_free(t);
            return cf_error(CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %lld floats", what,
                            (long long)numel);
        }
        t->owns_data = true;
    }
    t->alloc = *a;
    t->numel = numel;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    *out = t;
    return CFNET_OK;
}

cfnet_status cf_tensor_new(const cf_allocator *a, int ndim, const int64_t *shape,
                           cfnet_tensor **out)
{
    return tensor_make(a, "tensor_create", NULL, ndim, shape, out);
}

CFNET_API cfnet_status cfnet_tensor_create(int ndim, const int64_t *shape, cfnet_tensor **out)
{
    return tensor_make(NULL, "tensor_create", NULL, ndim, shape, out);
}

CFNET_API cfnet_status cfnet_tensor_wrap(float *data, int ndim, const int64_t *shape,
                                         cfnet_tensor **out)
{
    CF_FAIL_IF(!data, CFNET_E_INVALID_ARGUMENT, "tensor_wrap: data is NULL");
    return tensor_make(NULL, "tensor_wrap", data, ndim, shape, out);
}

CFNET_API cfnet_status cfnet_tensor_wrap_const(const float *data, int ndim, const int64_t *shape,
                                               cfnet_tensor **out)
{
    CF_FAIL_IF(!data, CFNET_E_INVALID_ARGUMENT, "tensor_wrap_const: data is NULL");
    /* The cast keeps the one data field; read_only makes every writer refuse the tensor. */
    CF_CHECK(tensor_make(NULL, "tensor_wrap_const", (float *)data, ndim, shape, out));
    (*out)->read_only = true;
    return CFNET_OK;
}

cfnet_status cf_tensor_writable(const char *who, const char *what, const cfnet_tensor *t)
{
    CF_FAIL_IF(t && t->read_only, CFNET_E_INVALID_ARGUMENT,
               "%s: the %s is read-only (made by cfnet_tensor_wrap_const); nothing was written",
               who, what);
    return CFNET_OK;
}

void cf_tensor_destroy(cfnet_tensor *t)
{
    if (!t) return;
    if (t->owns_data) cf_free(t->data);
    t->magic = CF_MAGIC_FREED;
    cf_free(t);
}

CFNET_API void cfnet_tensor_free(cfnet_tensor *t)
{
    if (!cf_handle_ok(t, CF_MAGIC_TENSOR, "tensor", __func__)) return;
    if (!t) return;
    if (t->layer_owned) {
        /* Freeing it would leave the layer with a dangling tensor: refuse. */
        cf_error(CFNET_E_INVALID_ARGUMENT,
                 "tensor_free: this tensor belongs to a layer (a parameter, gradient or state), "
                 "which frees it; nothing was freed");
        return;
    }
    cf_tensor_destroy(t);
}

CFNET_API int cfnet_tensor_ndim(const cfnet_tensor *t)
{
    if (!cf_handle_ok(t, CF_MAGIC_TENSOR, "tensor", __func__)) t = NULL;
    return t ? t->ndim : 0;
}

CFNET_API int64_t cfnet_tensor_dim(const cfnet_tensor *t, int axis)
{
    if (!cf_handle_ok(t, CF_MAGIC_TENSOR, "tensor", __func__)) t = NULL;
    if (!t) return -1;
    if (axis < 0) axis += t->ndim;
    if (axis < 0 || axis >= t->ndim) return -1;
    return t->shape[axis];
}

CFNET_API cfnet_status cfnet_tensor_shape(const cfnet_tensor *t, int *ndim, int64_t *shape)
{
    CF_CHECK(cf_handle_check(t, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!t || !ndim || !shape, CFNET_E_INVALID_ARGUMENT,
               "tensor_shape: NULL argument");
    *ndim = t->ndim;
    memcpy(shape, t->shape, (size_t)t->ndim * sizeof *shape);
    return CFNET_OK;
}

CFNET_API int64_t cfnet_tensor_numel(const cfnet_tensor *t)
{
    if (!cf_handle_ok(t, CF_MAGIC_TENSOR, "tensor", __func__)) t = NULL;
    return t ? t->numel : -1;
}

CFNET_API float *cfnet_tensor_data(const cfnet_tensor *t)
{
    if (!cf_handle_ok(t, CF_MAGIC_TENSOR, "tensor", __func__)) t = NULL;
    return t ? t->data : NULL;
}

CFNET_API cfnet_status cfnet_tensor_copy_in(cfnet_tensor *t, const float *src, int64_t count)
{
    CF_CHECK(cf_handle_check(t, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!t || !src, CFNET_E_INVALID_ARGUMENT, "tensor_copy_in: NULL argument");
    CF_CHECK(cf_tensor_writable("tensor_copy_in", "tensor", t));
    CF_FAIL_IF(count != t->numel, CFNET_E_SHAPE_MISMATCH,
               "tensor_copy_in: count is %lld, tensor has %lld elements", (long long)count,
               (long long)t->numel);
    memmove(t->data, src, (size_t)count * sizeof(float));
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_tensor_copy_out(const cfnet_tensor *t, float *dst, int64_t count)
{
    CF_CHECK(cf_handle_check(t, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!t || !dst, CFNET_E_INVALID_ARGUMENT, "tensor_copy_out: NULL argument");
    CF_FAIL_IF(count != t->numel, CFNET_E_SHAPE_MISMATCH,
               "tensor_copy_out: count is %lld, tensor has %lld elements", (long long)count,
               (long long)t->numel);
    memmove(dst, t->data, (size_t)count * sizeof(float));
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_tensor_fill(cfnet_tensor *t, float value)
{
    CF_CHECK(cf_handle_check(t, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!t, CFNET_E_INVALID_ARGUMENT, "tensor_fill: tensor is NULL");
    CF_CHECK(cf_tensor_writable("tensor_fill", "tensor", t));
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_tensor_zero(cfnet_tensor *t)
{
    CF_CHECK(cf_handle_check(t, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!t, CFNET_E_INVALID_ARGUMENT, "tensor_zero: tensor is NULL");
    CF_CHECK(cf_tensor_writable("tensor_zero", "tensor", t));
    memset(t->data, 0, (size_t)t->numel * sizeof(float));
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_tensor_reshape(cfnet_tensor *t, int ndim, const int64_t *shape)
{
    CF_CHECK(cf_handle_check(t, CF_MAGIC_TENSOR, "tensor", __func__));
    CF_FAIL_IF(!t, CFNET_E_INVALID_ARGUMENT, "tensor_reshape: tensor is NULL");
    CF_FAIL_IF(t->layer_owned, CFNET_E_STATE,
               "tensor_reshape: this tensor belongs to a layer (a parameter, gradient or state), "
               "whose shape the layer fixes; its values may be written, its shape not changed");
    int64_t numel;
    CF_CHECK(cf_shape_numel("tensor_reshape", ndim, shape, &numel));
    CF_FAIL_IF(numel != t->numel, CFNET_E_SHAPE_MISMATCH,
               "tensor_reshape: new shape has %lld elements, tensor has %lld",
               (long long)numel, (long long)t->numel);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    return CFNET_OK;
}

const char *cf_shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < size; i++) {
        int w = snprintf(buf + used, size - used, i ? "x%lld" : "%lld", (long long)shape[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

cfnet_status cf_check_batch(const char *who, const char *what, const cfnet_tensor *t, int ndim,
                            const int64_t *shape, int64_t *n)
{
    char a[96], b[96];
    CF_FAIL_IF(!t, CFNET_E_INVALID_ARGUMENT, "%s: %s is NULL", who, what);
    bool ok = t->ndim == ndim + 1;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i + 1] == shape[i];
    if (ok && *n > 0) ok = t->shape[0] == *n;
    if (!ok) {
        char batch[32] = "N x ";
        if (*n > 0) snprintf(batch, sizeof batch, "%lldx", (long long)*n);
        return cf_error(CFNET_E_SHAPE_MISMATCH, "%s: %s is %s, expected %s%s", who, what,
                        cf_shape_str(a, sizeof a, t->ndim, t->shape), batch,
                        cf_shape_str(b, sizeof b, ndim, shape));
    }
    *n = t->shape[0];
    return CFNET_OK;
}
