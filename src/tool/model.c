/* What `cfnet train` stores in a model file's metadata, and batched inference. */
#define _GNU_SOURCE
#include "tool.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>
#include <unistd.h>

static int set_meta(cfnet_network *net, const char *key, const char *value)
{
    cfnet_status st = cfnet_network_set_metadata(net, key, value);
    if (st != CFNET_OK) {
        tool_lib_error("storing metadata", st);
        return -1;
    }
    return 0;
}

int model_store_info(cfnet_network *net, const tool_model_info *info)
{
    json_t *a = json_array();
    int ok = a != NULL;
    /* json_string is NULL for text that is not UTF-8, and appending NULL fails: checked, so
     * that no class goes missing from the list */
    for (int k = 0; ok && k < info->n_classes; k++)
        ok = json_array_append_new(a, json_string(info->classes[k])) == 0;
    char *classes = ok ? json_dumps(a, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(a);
    if (!classes) {
        tool_error("class names are not valid UTF-8");
        return -1;
    }
    char buf[128], norm[128];
    int rc = set_meta(net, "classes", classes);
    free(classes);
    snprintf(buf, sizeof buf, "%d", info->channels);
    rc = rc ? rc : set_meta(net, "channels", buf);
    snprintf(buf, sizeof buf, "%d", info->size);
    rc = rc ? rc : set_meta(net, "input_size", buf);
    rc = rc ? rc : set_meta(net, "pad", info->pad ? "1" : "0");
    norm_format(&info->norm, norm, sizeof norm);
    rc = rc ? rc : set_meta(net, "normalization", norm);
    rc = rc ? rc : set_meta(net, "arch", info->arch);
    snprintf(buf, sizeof buf, "cfnet %s", cfnet_version_string());
    rc = rc ? rc : set_meta(net, "tool", buf);
    return rc;
}

static const char *get_meta(const cfnet_network *net, const char *key)
{
    const char *v = NULL;
    if (cfnet_network_get_metadata(net, key, &v) != CFNET_OK) return NULL;
    return v;
}

void model_info_free(tool_model_info *info)
{
    for (int k = 0; k < info->n_classes; k++) free(info->classes[k]);
    free(info->classes);
    memset(info, 0, sizeof *info);
}

/* cfnet_network_prepare_image's reading of the metadata, tried on a one-pixel image padded
 * into a one-row batch (image_prepare_model): its refusal of the metadata (CFNET_E_FORMAT) as
 * the model's error. */
static int metadata_check_prepare(const cfnet_network *net, const char *path)
{
    int64_t in[3];
    int nd = 0;
    cfnet_network_input_shape(net, &nd, in);
    tool_image px = {(int)in[0], 1, 1, xcalloc((size_t)in[0], sizeof(float))};
    float *row = xcalloc((size_t)(in[0] * in[1] * in[2]), sizeof(float));
    char err[512];
    int rc = image_prepare_model(net, &px, (int)in[1], 1, row, err, sizeof err);
    free(px.data);
    free(row);
    if (rc != 0) tool_error("%s: %s", path, err);
    return rc;
}

int model_load_info(const cfnet_network *net, const char *path, tool_model_info *info)
{
    memset(info, 0, sizeof *info);
    static const char *keys[] = {"classes", "channels", "input_size", "normalization"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!get_meta(net, keys[i])) {
            tool_error("%s: not a model written by 'cfnet train' (its metadata has no \"%s\"; "
                       "docs/cli.md, \"A network trained elsewhere\", says what to add)",
                       path, keys[i]);
            return -1;
        }
    json_error_t je;
    json_t *a = json_loads(get_meta(net, "classes"), 0, &je);
    int64_t shape[CFNET_MAX_DIMS];
    int nd = 0;
    cfnet_network_output_shape(net, &nd, shape);
    if (!json_is_array(a) || json_array_size(a) < 1 || nd != 1) {
        json_decref(a);
        tool_error("%s: metadata \"classes\" is not a list of class names", path);
        return -1;
    }
    info->n_classes = (int)json_array_size(a);
    info->classes = xcalloc((size_t)info->n_classes, sizeof(char *));
    for (int k = 0; k < info->n_classes; k++) {
        const char *s = json_string_value(json_array_get(a, (size_t)k));
        info->classes[k] = xstrdup(s ? s : "?");
    }
    json_decref(a);
    if (shape[0] != info->n_classes) {
        tool_error("%s: the network has %lld outputs but its metadata names %d classes", path,
                   (long long)shape[0], info->n_classes);
        model_info_free(info);
        return -1;
    }
    long v;
    int64_t in[3];
    cfnet_network_input_shape(net, &nd, in);
    if (parse_int(get_meta(net, "channels"), 1, 4096, &v) != 0 || v != in[0]) goto bad;
    info->channels = (int)v;
    if (parse_int(get_meta(net, "input_size"), 1, 1 << 20, &v) != 0 || v != in[1] || v != in[2])
        goto bad;
    info->size = (int)v;
    if (norm_parse(get_meta(net, "normalization"), &info->norm) != 0) goto bad;
    const char *pad = get_meta(net, "pad");
    /* "0", "1" or absent (0), as cfnet_network_prepare_image reads it for every image */
    if (pad && strcmp(pad, "0") && strcmp(pad, "1")) goto bad;
    info->pad = pad && !strcmp(pad, "1");
    const char *arch = get_meta(net, "arch");
    snprintf(info->arch, sizeof info->arch, "%s", arch ? arch : "custom");
    /* The library reads the same keys for every image predict and eval prepare: what it
     * refuses (e.g. an input_size of "+64", which strtol takes) is refused here, once for
     * the model, not once per image as if each image were bad. */
    if (metadata_check_prepare(net, path) != 0) {
        model_info_free(info);
        return -1;
    }
    return 0;
bad:
    tool_error("%s: inconsistent metadata (channels, input_size, pad or normalization are malformed "
               "or do not match the network)", path);
    model_info_free(info);
    return -1;
}

/* What a file of type `mode` that is not a regular file is ("a folder", "a FIFO", "a
 * character device"...). */
static const char *file_kind(mode_t mode)
{
    return S_ISDIR(mode)    ? "a folder"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISSOCK(mode) ? "a socket"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
                            : "a special file";
}

/* What a file that did not load as a model (status st) is: a folder, a FIFO, a socket or a
 * device (whatever st), or from its first bytes an empty file, an image or a text file given
 * in place of the model (arguments in the wrong order), else NULL. Only a regular file is
 * read, checked on the descriptor it is read from (a FIFO, even one put in its place
 * meanwhile, is not waited on). */
const char *model_not_a_model(const char *path, cfnet_status st)
{
    struct stat sb;
    int fd = open_nowait(path, &sb);
    if (fd < 0) /* (a folder or a socket, which open refuses; a FIFO without read permission) */
        return stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) ? file_kind(sb.st_mode) : NULL;
    if (!S_ISREG(sb.st_mode) || (st != CFNET_E_FORMAT && st != CFNET_E_LIMIT)) {
        close(fd);
        return S_ISREG(sb.st_mode) ? NULL : file_kind(sb.st_mode);
    }
    unsigned char b[9] = {0};
    size_t n = 0;
    int failed = 0;
    while (n < sizeof b) {
        ssize_t r = read(fd, b + n, sizeof b - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            failed = r < 0;
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    if (n == 0 && !failed) return "an empty file";
    if (n >= 4 && ((b[0] == 'I' && b[1] == 'I' && b[2] == 42 && b[3] == 0) ||
                   (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 42) ||
                   (b[0] == 'I' && b[1] == 'I' && b[2] == 43 && b[3] == 0) ||
                   (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 43)))
        return "a TIFF image";
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return "a PNG image";
    if (n == 9 && b[8] == '{') return NULL; /* a safetensors file: the loader's message says more */
    /* ONNX (cfnet export's output): a protobuf ModelProto, whose first field is ir_version (tag
     * 0x08, a small varint) followed by another of its fields (producer name or version,
     * domain, graph, opset import) */
    if (n >= 3 && b[0] == 0x08 && b[1] >= 1 && b[1] <= 30 &&
        (b[2] == 0x12 || b[2] == 0x1a || b[2] == 0x22 || b[2] == 0x28 || b[2] == 0x32 ||
         b[2] == 0x3a || b[2] == 0x42))
        return "an ONNX model, as cfnet export writes";
    int text = n > 0;
    for (size_t i = 0; i < n; i++)
        text = text && ((b[i] >= 32 && b[i] < 127) || b[i] == '\n' || b[i] == '\r' || b[i] == '\t');
    return text ? "a text file" : NULL;
}

/* Whether path is a safetensors file of another program (PyTorch's save_file, Hugging Face):
 * its header parses, and its metadata's "format" is not libcfnet's "cfnet" (none at all, or
 * "pt"). The format found goes to fmt ("" when there is none). */
static int foreign_safetensors(const char *path, char *fmt, size_t fmtsize)
{
    struct stat sb;
    int fd = open_nowait(path, &sb);
    FILE *f = fd >= 0 && S_ISREG(sb.st_mode) ? fdopen(fd, "rb") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return 0;
    }
    unsigned char b[8];
    uint64_t n = 0;
    int foreign = 0;
    if (fread(b, 1, 8, f) == 8) {
        for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
        char *h = n > 0 && n <= ((uint64_t)16 << 20) ? malloc((size_t)n) : NULL;
        if (h && fread(h, 1, (size_t)n, f) == n) {
            json_t *root = json_loadb(h, (size_t)n, 0, NULL);
            if (json_is_object(root)) {
                const char *v = json_string_value(json_object_get(json_object_get(root,
                                                  "__metadata__"), "format"));
                foreign = !v || strcmp(v, "cfnet") != 0;
                snprintf(fmt, fmtsize, "%s", v ? v : "");
            }
            json_decref(root);
        }
        free(h);
    }
    fclose(f);
    return foreign;
}

int model_arg(const char *cmd, const char *name, const char *path)
{
    if (!path[0]) /* (an unset shell variable, as for the outputs) */
        return tool_usage_error(cmd, "%s: the file name is empty", name);
    if (strcmp(path, "-") != 0) return 0;
    return tool_usage_error(cmd, "%s must be a file: '-' (standard input) is not read; give the "
                            "file's name (./- for a file named '-')", name);
}

int model_load(const char *path, cfnet_network **net)
{
    *net = NULL;
    cfnet_status st = cfnet_network_load(path, net);
    if (st != CFNET_OK) {
        const char *what = model_not_a_model(path, st);
        char fmt[64], why[PATH_MAX * 2 + 64];
        if (what)
            tool_error("%s: not a model file (it is %s); MODEL is a .safetensors file written by "
                       "'cfnet train'", path, what);
        else if (st == CFNET_E_FORMAT && foreign_safetensors(path, fmt, sizeof fmt))
            /* weights of another program's network: libcfnet cannot build its layers */
            tool_error("%s: not a libcfnet model: a safetensors file of another program (%s%s%s; "
                       "libcfnet's is \"cfnet\"), such as PyTorch's, which holds weights "
                       "without the network; MODEL is a file written by 'cfnet train' or saved by "
                       "libcfnet (docs/cli.md, \"A network trained elsewhere\")", path,
                       fmt[0] ? "format \"" : "no format in its metadata", fmt, fmt[0] ? "\"" : "");
        else if (link_in_way(path, why, sizeof why))
            /* a symbolic link on the way to nothing or into a loop: named, with its target */
            tool_error("%s: cannot load the model: %s", path, why);
        else
            tool_error("%s: cannot load the model: %s: %s", path, cfnet_status_string(st),
                       cfnet_last_error());
        return -1;
    }
    return 0;
}

int model_open(const char *path, cfnet_network **net, tool_model_info *info)
{
    if (model_load(path, net) != 0) return -1;
    if (model_load_info(*net, path, info) != 0) {
        cfnet_network_free(*net);
        *net = NULL;
        return -1;
    }
    return 0;
}

void model_close(cfnet_network *net, tool_model_info *info)
{
    model_info_free(info);
    cfnet_network_free(net);
}

int model_probabilities(const cfnet_network *net, const float *images, int64_t n, int channels,
                        int size, int k, int tta, int64_t batch, float *probs)
{
    const int64_t per = (int64_t)channels * size * size;
    if (batch < 1) batch = 64;
    float *rot = tta ? xmalloc(sizeof(float) * (size_t)(batch * per)) : NULL;
    float *p = tta ? xmalloc(sizeof(float) * (size_t)(batch * k)) : NULL;
    int rc = 0;
    for (int64_t b0 = 0; b0 < n && rc == 0; b0 += batch) {
        int64_t nb = n - b0 < batch ? n - b0 : batch;
        int64_t xs[4] = {nb, channels, size, size}, ps[2] = {nb, k};
        cfnet_tensor *x = NULL, *pr = NULL, *xr = NULL, *pt = NULL;
        cfnet_status st = cfnet_tensor_wrap_const(images + b0 * per, 4, xs, &x);
        if (st == CFNET_OK) st = cfnet_tensor_wrap(probs + b0 * k, 2, ps, &pr);
        if (st == CFNET_OK) st = cfnet_network_probabilities(net, x, pr);
        if (st == CFNET_OK && tta) {
            st = cfnet_tensor_wrap(rot, 4, xs, &xr);
            if (st == CFNET_OK) st = cfnet_tensor_wrap(p, 2, ps, &pt);
            for (int q = 1; q < 4 && st == CFNET_OK; q++) {
                st = cfnet_image_rotate(x, xr, 90.0 * q);
                if (st == CFNET_OK) st = cfnet_network_probabilities(net, xr, pt);
                for (int64_t i = 0; st == CFNET_OK && i < nb * k; i++) probs[b0 * k + i] += p[i];
            }
            for (int64_t i = 0; st == CFNET_OK && i < nb * k; i++) probs[b0 * k + i] *= 0.25f;
        }
        if (st != CFNET_OK) {
            tool_lib_error("inference", st);
            rc = -1;
        }
        cfnet_tensor_free(x);
        cfnet_tensor_free(pr);
        cfnet_tensor_free(xr);
        cfnet_tensor_free(pt);
    }
    free(rot);
    free(p);
    return rc;
}

int64_t model_hash_values(const cfnet_network *net, int64_t h0)
{
    uint64_t h = h0 ? (uint64_t)h0 : 0xcbf29ce484222325ull;
#define MIX(p, len)                                                                       \
    for (size_t b_ = 0; b_ < (size_t)(len); b_++)                                          \
        h = (h ^ ((const unsigned char *)(p))[b_]) * 0x100000001b3ull;
    for (int i = 0; i < cfnet_network_layer_count(net); i++) {
        const cfnet_layer *l = cfnet_network_layer(net, i);
        const int np = cfnet_layer_param_count(l);
        for (int p = 0; p < np + cfnet_layer_state_count(l); p++) {
            const cfnet_tensor *t = p < np ? cfnet_layer_param(l, p) : cfnet_layer_state(l, p - np);
            const int64_t n = cfnet_tensor_numel(t);
            MIX(&n, sizeof n);
            MIX(cfnet_tensor_data(t), (size_t)n * sizeof(float));
        }
    }
#undef MIX
    return (int64_t)h;
}
