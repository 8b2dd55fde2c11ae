/* Model files on disk: saving replaces the file atomically (a temporary file beside it, written,
 * synced, renamed over it, then the directory synced), so a failed save leaves the old model
 * intact; loading reads a regular file of bounded size whole, then parses it as a buffer. */
#include "io/io.h"
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *errno_text(int err, char *buf, size_t size)
{
    if (strerror_r(err, buf, size) != 0) snprintf(buf, size, "error %d", err);
    return buf;
}

/* A path quoted in an error message: control characters are escaped (\n, \t, \xNN), C0, DEL
 * and C1 (U+0080 to U+009F, UTF-8 C2 80 to C2 9F, as \xc2\xNN: U+009B is a terminal's CSI), so
 * that a message stays one line and cannot drive a terminal whatever the file name; other bytes
 * (UTF-8 of non-ASCII names, or not UTF-8) are kept; long paths are cut with "...". Lives until
 * the end of the enclosing full expression, like CF_SAFE. */
typedef struct quoted_path {
    char s[512];
} quoted_path;

static quoted_path quote_path(const char *path)
{
    static const char hex[] = "0123456789abcdef";
    quoted_path q;
    size_t n = 0, cap = sizeof q.s - 4; /* room for "..." and the NUL */
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        char e[8];
        size_t len = 0;
        if (*c == '\n') e[len++] = '\\', e[len++] = 'n';
        else if (*c == '\t') e[len++] = '\\', e[len++] = 't';
        else if (*c == '\r') e[len++] = '\\', e[len++] = 'r';
        else if (*c == '\\') e[len++] = '\\', e[len++] = '\\';
        else if (*c < 0x20 || *c == 0x7f)
            e[len++] = '\\', e[len++] = 'x', e[len++] = hex[*c >> 4], e[len++] = hex[*c & 15];
        else if (*c == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) {
            e[len++] = '\\', e[len++] = 'x', e[len++] = 'c', e[len++] = '2';
            e[len++] = '\\', e[len++] = 'x', e[len++] = hex[c[1] >> 4], e[len++] = hex[c[1] & 15];
            c++;
        }
        else e[len++] = (char)*c; /* UTF-8 bytes of non-ASCII names are kept */
        if (n + len > cap) {
            memcpy(q.s + n, "...", 3);
            n += 3;
            break;
        }
        memcpy(q.s + n, e, len);
        n += len;
    }
    q.s[n] = '\0';
    return q;
}
#define QP(path) (quote_path(path).s)

/* Best effort: makes the rename durable. The file itself is already complete and synced. */
static void sync_parent_dir(const cf_allocator *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = cf_alloc(a, n + 1);
        if (!dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    cf_platform_sync_dir(dir ? dir : ".");
    cf_free(dir);
}

/* Longest file name in the directory of `path` (NAME_MAX if the system does not say). */
static size_t name_max_for(const cf_allocator *a, const char *path, const char *slash)
{
    long m = -1;
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        char *dir = cf_alloc(a, n + 1);
        if (dir) {
            memcpy(dir, path, n);
            dir[n] = '\0';
            m = pathconf(dir, _PC_NAME_MAX);
            cf_free(dir);
        }
    } else {
        m = pathconf(".", _PC_NAME_MAX);
    }
    return m > 0 ? (size_t)m : (size_t)NAME_MAX;
}

/* The temporary file's name: path with its file name shortened when the name plus `suffix`
 * would exceed the directory's longest file name (a legal 250-byte name plus the suffix does),
 * then `suffix`. A heap string, or NULL when out of memory. */
static char *temp_name(const cf_allocator *a, const char *path, const char *slash,
                       size_t name_max, const char *suffix)
{
    size_t plen = strlen(path), slen = strlen(suffix);
    size_t base = slash ? plen - (size_t)(slash + 1 - path) : plen;
    size_t keep = cf_platform_temp_keep(path + plen - base, base, slen, name_max);
    size_t tlen = plen - base + keep;
    char *tmp = cf_alloc(a, tlen + slen + 1);
    if (!tmp) return NULL;
    memcpy(tmp, path, tlen);
    memcpy(tmp + tlen, suffix, slen + 1);
    return tmp;
}

cfnet_status cf_file_write_atomic(const cf_allocator *a, const char *path,
                                  const unsigned char *buf, size_t size, const char *what)
{
    char ebuf[128];
    /* The temporary file is "<name>.tmp.<pid>.<host>" beside the target, locked (flock) until
     * it is renamed: a process killed while it saves (kill -9, a cluster's time limit) leaves
     * a file that says whose it was, so that a later program on this host can remove it once
     * that process is gone, and a locked one never (see docs/format.md). Without a host name,
     * with a suffix that leaves no room for a name, or with the name held by a live writer (a
     * thread of this process saving the same path), it is "<name>.tmp.XXXXXX" (mkstemp). */
    const char *slash = strrchr(path, '/');
    size_t name_max = name_max_for(a, path, slash);
    char host[256], suffix[300];
    bool named = cf_platform_host_name(host, sizeof host) == 0;
    if (named) snprintf(suffix, sizeof suffix, ".tmp.%ld.%s", (long)getpid(), host);
    if (named && strlen(suffix) >= name_max) named = false;
    char *tmp = NULL;
    int fd = -1, err = 0;
    if (named) {
        tmp = temp_name(a, path, slash, name_max, suffix);
        CF_FAIL_IF(!tmp, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
        fd = cf_platform_temp_file_locked(tmp, path);
        err = errno;
        if (fd < 0 && err == EEXIST) {
            cf_free(tmp);
            tmp = NULL;
            named = false;
        }
    }
    if (!named) {
        tmp = temp_name(a, path, slash, name_max, ".tmp.XXXXXX");
        CF_FAIL_IF(!tmp, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
        fd = cf_platform_temp_file(tmp, path);
        err = errno;
    }
    if (fd < 0) {
        cf_free(tmp);
        return cf_error(CFNET_E_IO, "%s: cannot create a temporary file beside '%s': %s", what,
                        QP(path), errno_text(err, ebuf, sizeof ebuf));
    }
    const char *step = NULL;
    err = 0;
    const unsigned char *p = buf;
    for (size_t left = size; left > 0 && !step;) {
        size_t chunk = left > ((size_t)1 << 30) ? ((size_t)1 << 30) : left;
        ssize_t w = write(fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err = w < 0 ? errno : ENOSPC;
            step = "writing";
        } else {
            p += w;
            left -= (size_t)w;
        }
    }
    if (!step && fsync(fd) != 0) {
        err = errno;
        step = "syncing";
    }
    /* the lock lasts through lk, a duplicate that the close below leaves open, until the rename;
     * close-on-exec like fd (a program another thread starts meanwhile would keep it open) */
    int lk = named ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (close(fd) != 0 && !step) {
        err = errno;
        step = "closing";
    }
    if (!step && rename(tmp, path) != 0) {
        err = errno;
        step = "renaming";
    }
    if (step) unlink(tmp);
    if (lk >= 0) close(lk);
    if (step) {
        cf_error(CFNET_E_IO, "%s: %s the temporary file '%s' for '%s' failed: %s", what, step,
                 QP(tmp), QP(path), errno_text(err, ebuf, sizeof ebuf));
        cf_free(tmp);
        return CFNET_E_IO;
    }
    cf_free(tmp);
    sync_parent_dir(a, path);
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_save(const cfnet_network *net, const char *path,
                                          unsigned flags)
{
    CF_CHECK(cf_handle_check(net, CF_MAGIC_NETWORK, "network", __func__));
    CF_NET_GUARD(net, false, "network_save");
    CF_FAIL_IF(!net || !path, CFNET_E_INVALID_ARGUMENT, "network_save: NULL argument");
    CF_FAIL_IF(!*path, CFNET_E_INVALID_ARGUMENT, "network_save: path is empty");
    CF_NET_SCOPE(net);
    unsigned char *buf;
    size_t size;
    CF_CHECK(cf_schema_serialize(net, flags, "network_save", &buf, &size));
    cfnet_status st = cf_file_write_atomic(&net->alloc, path, buf, size, "network_save");
    cf_free(buf);
    return st;
}

CFNET_API cfnet_status cfnet_remove_stale_temporaries(const char *path, size_t *removed)
{
    char ebuf[128];
    CF_FAIL_IF(!path, CFNET_E_INVALID_ARGUMENT, "remove_stale_temporaries: NULL path");
    CF_FAIL_IF(!*path, CFNET_E_INVALID_ARGUMENT, "remove_stale_temporaries: path is empty");
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    CF_FAIL_IF(!*base, CFNET_E_INVALID_ARGUMENT,
               "remove_stale_temporaries: '%s' names a folder, not a file a save writes",
               QP(path));
    /* the folder the saves write in: path's own (a link at path is replaced, not followed) */
    char *dir = NULL;
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = cf_alloc(&cf_default_allocator, n + 1);
        CF_FAIL_IF(!dir, CFNET_E_OUT_OF_MEMORY, "remove_stale_temporaries: out of memory");
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_NOCTTY | O_CLOEXEC);
    size_t count = 0;
    int rc = fd >= 0 ? cf_platform_remove_stale_temps(fd, base, 0, &count, NULL, 0) : -1;
    int err = errno;
    if (fd >= 0) close(fd);
    cfnet_status st = CFNET_OK;
    if (rc != 0)
        st = cf_error(CFNET_E_IO, "remove_stale_temporaries: cannot read the folder '%s': %s",
                      QP(dir ? dir : "."), errno_text(err, ebuf, sizeof ebuf));
    cf_free(dir);
    if (st == CFNET_OK && removed) *removed = count;
    return st;
}

/* Reads exactly n bytes at the current position; false on error or early end (errno 0). */
static bool read_exact(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t got = read(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = 0;
            return false;
        }
        p += got;
        n -= (size_t)got;
    }
    return true;
}

static cfnet_status read_error(const char *what, const char *path, char *ebuf, size_t esize)
{
    int err = errno;
    if (err == 0)
        return cf_error(CFNET_E_IO, "%s: '%s' ended early (it changed while being read)", what,
                        QP(path));
    return cf_error(CFNET_E_IO, "%s: reading '%s' failed: %s", what, QP(path),
                    errno_text(err, ebuf, esize));
}

cfnet_status cf_file_read_all(const cf_allocator *a, const char *path, uint64_t max_header,
                              uint64_t max_data, const char *what, unsigned char **buf_out, size_t *size_out)
{
    char ebuf[128];
    /* Opening a FIFO (or a device) must not wait for a writer; fstat then refuses anything that
     * is not a regular file before a byte is read. */
    int fd = cf_platform_open_read_nowait(path);
    if (fd < 0) {
        int err = errno;
        return cf_error(CFNET_E_IO, "%s: cannot open '%s': %s", what, QP(path),
                        errno_text(err, ebuf, sizeof ebuf));
    }
    struct stat sb;
    cfnet_status st = CFNET_OK;
    uint64_t max_size = cf_add_sat_u64(8, cf_add_sat_u64(max_header, max_data));
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        st = cf_error(CFNET_E_IO, "%s: cannot stat '%s': %s", what, QP(path),
                      errno_text(err, ebuf, sizeof ebuf));
    } else if (!S_ISREG(sb.st_mode)) {
        st = cf_error(CFNET_E_IO, "%s: '%s' is not a regular file", what, QP(path));
    } else if ((uint64_t)sb.st_size > max_size || (uint64_t)sb.st_size > SIZE_MAX) {
        st = cf_error(CFNET_E_LIMIT,
                      "%s: '%s' has %lld bytes, more than a model within the limits (%" PRIu64
                      ")",
                      what, QP(path), (long long)sb.st_size, max_size);
    } else {
        cf_platform_set_blocking(fd);
    }
    /* The framing first: the 8-byte header length and the JSON header (with its tensor table,
     * which must tile the rest of the file) are read and checked before the file is read
     * whole, so a large file that is not a model, or a model with bytes appended, is refused
     * after a few bytes, not gigabytes. */
    size_t size = st == CFNET_OK ? (size_t)sb.st_size : 0;
    unsigned char head[8];
    uint64_t hlen = 0;
    if (st == CFNET_OK && size >= 8) {
        if (!read_exact(fd, head, 8)) st = read_error(what, path, ebuf, sizeof ebuf);
        for (int i = 7; st == CFNET_OK && i >= 0; i--) hlen = hlen << 8 | head[i];
    }
    unsigned char *buf = NULL;
    if (st == CFNET_OK && size >= 8)
        st = cf_container_check_framing(head, hlen, size, max_header, max_data);
    if (st == CFNET_OK) {
        buf = cf_alloc(a, size >= 8 ? 8 + (size_t)hlen : size);
        if (!buf)
            st = cf_error(CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for '%s'", what,
                          size, QP(path));
    }
    if (st == CFNET_OK && size < 8 && size > 0 && !read_exact(fd, buf, size))
        st = read_error(what, path, ebuf, sizeof ebuf);
    if (st == CFNET_OK && size >= 8) {
        memcpy(buf, head, 8);
        if (!read_exact(fd, buf + 8, (size_t)hlen)) st = read_error(what, path, ebuf, sizeof ebuf);
        if (st == CFNET_OK)
            st = cf_container_check_header(a, buf + 8, (size_t)hlen, size - 8 - (uint64_t)hlen);
    }
    if (st == CFNET_OK && size >= 8 && size > 8 + (size_t)hlen) {
        unsigned char *whole = cf_alloc(a, size);
        if (!whole) {
            st = cf_error(CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for '%s'", what,
                          size, QP(path));
        } else {
            memcpy(whole, buf, 8 + (size_t)hlen);
            cf_free(buf);
            buf = whole;
            if (!read_exact(fd, buf + 8 + hlen, size - 8 - (size_t)hlen))
                st = read_error(what, path, ebuf, sizeof ebuf);
        }
    }
    close(fd);
    if (st != CFNET_OK) {
        cf_free(buf);
        return st;
    }
    *buf_out = buf;
    *size_out = size;
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_load(const char *path, cfnet_network **out)
{
    return cfnet_network_load_in(NULL, path, out);
}

CFNET_API cfnet_status cfnet_network_load_in(cfnet_context *ctx, const char *path,
                                             cfnet_network **out)
{
    CF_CHECK(cf_handle_check(ctx, CF_MAGIC_CONTEXT, "context", __func__));
    CF_FAIL_IF(!path || !out, CFNET_E_INVALID_ARGUMENT, "network_load: NULL argument");
    uint64_t max_header, max_data;
    cf_io_limits(ctx, &max_header, &max_data);
    unsigned char *buf = NULL;
    size_t size = 0;
    CF_CHECK(cf_file_read_all(cf_context_allocator(ctx), path, max_header, max_data, CF_LOAD,
                              &buf, &size));
    cfnet_status st = cf_schema_load(ctx, buf, size, out);
    cf_free(buf);
    return st;
}
