/* Model files on disk: saving replaces the file atomically (a temporary file beside it, written,
 * synced, renamed over it, then the directory synced), so a failed save leaves the old model
 * intact; loading reads a regular file of bounded size whole, then parses it as a buffer. */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

/* The process umask, read without changing it (Linux /proc); 022 if unavailable. */
static mode_t current_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return mask;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned m;
        if (sscanf(line, "Umask: %o", &m) == 1) {
            mask = (mode_t)(m & 0777);
            break;
        }
    }
    fclose(f);
    return mask;
}

/* Best effort: makes the rename durable. The file itself is already complete and synced. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (slash) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = cf_malloc(n + 1);
        if (!dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir ? dir : ".", O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    cf_free(dir);
}

cfnet_status cf_file_write_atomic(const char *path, const unsigned char *buf, size_t size,
                                  const char *what)
{
    static const char suffix[] = ".tmp.XXXXXX";
    char ebuf[128];
    size_t plen = strlen(path);
    char *tmp = cf_malloc(plen + sizeof suffix);
    CF_FAIL_IF(!tmp, CFNET_E_OUT_OF_MEMORY, "%s: out of memory", what);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);

    int fd = mkstemp(tmp);
    if (fd < 0) {
        int err = errno;
        cf_free(tmp);
        return cf_error(CFNET_E_IO, "%s: cannot create a temporary file beside '%s': %s", what,
                        path, errno_text(err, ebuf, sizeof ebuf));
    }
    /* mkstemp creates the file 0600; give it the mode an ordinary create would (or the mode of
     * the file it replaces). Failing to do so is not worth losing the save over. */
    struct stat sb;
    mode_t mode = (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) ? (sb.st_mode & 0777)
                                                                : (0666 & ~current_umask());
    (void)fchmod(fd, mode);

    const char *step = NULL;
    int err = 0;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        err = errno;
        close(fd);
        step = "opening";
    } else {
        if (size > 0 && fwrite(buf, 1, size, f) != size) step = "writing";
        else if (fflush(f) != 0) step = "writing";
        else if (fsync(fileno(f)) != 0) step = "syncing";
        if (step) err = errno;
        if (fclose(f) != 0 && !step) {
            err = errno;
            step = "closing";
        }
    }
    if (!step && rename(tmp, path) != 0) {
        err = errno;
        step = "renaming";
    }
    if (step) {
        unlink(tmp);
        cf_error(CFNET_E_IO, "%s: %s the temporary file '%s' for '%s' failed: %s", what, step, tmp,
                 path, errno_text(err, ebuf, sizeof ebuf));
        cf_free(tmp);
        return CFNET_E_IO;
    }
    cf_free(tmp);
    sync_parent_dir(path);
    return CFNET_OK;
}

CFNET_API cfnet_status cfnet_network_save(const cfnet_network *net, const char *path,
                                          unsigned flags)
{
    CF_FAIL_IF(!net || !path, CFNET_E_INVALID_ARGUMENT, "network_save: NULL argument");
    CF_FAIL_IF(!*path, CFNET_E_INVALID_ARGUMENT, "network_save: path is empty");
    CF_NET_SCOPE(net);
    unsigned char *buf;
    size_t size;
    CF_CHECK(cf_schema_serialize(net, flags, "network_save", &buf, &size));
    cfnet_status st = cf_file_write_atomic(path, buf, size, "network_save");
    cf_free(buf);
    return st;
}

cfnet_status cf_file_read_all(const char *path, uint64_t max_size, const char *what,
                              unsigned char **buf_out, size_t *size_out)
{
    char ebuf[128];
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = errno;
        return cf_error(CFNET_E_IO, "%s: cannot open '%s': %s", what, path,
                        errno_text(err, ebuf, sizeof ebuf));
    }
    struct stat sb;
    cfnet_status st = CFNET_OK;
    if (fstat(fileno(f), &sb) != 0) {
        int err = errno;
        st = cf_error(CFNET_E_IO, "%s: cannot stat '%s': %s", what, path,
                      errno_text(err, ebuf, sizeof ebuf));
    } else if (!S_ISREG(sb.st_mode)) {
        st = cf_error(CFNET_E_IO, "%s: '%s' is not a regular file", what, path);
    } else if ((uint64_t)sb.st_size > max_size || (uint64_t)sb.st_size > SIZE_MAX) {
        st = cf_error(CFNET_E_LIMIT,
                      "%s: '%s' has %lld bytes, more than a model within the limits (%" PRIu64
                      ")",
                      what, path, (long long)sb.st_size, max_size);
    }
    unsigned char *buf = NULL;
    size_t size = st == CFNET_OK ? (size_t)sb.st_size : 0;
    if (st == CFNET_OK) {
        buf = cf_malloc(size);
        if (!buf)
            st = cf_error(CFNET_E_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for '%s'", what,
                          size, path);
    }
    if (st == CFNET_OK && size > 0 && fread(buf, 1, size, f) != size) {
        int err = errno;
        st = ferror(f) ? cf_error(CFNET_E_IO, "%s: reading '%s' failed: %s", what, path,
                                  errno_text(err, ebuf, sizeof ebuf))
                       : cf_error(CFNET_E_IO, "%s: '%s' ended early (it changed while being "
                                              "read)", what, path);
    }
    fclose(f);
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
    CF_FAIL_IF(!path || !out, CFNET_E_INVALID_ARGUMENT, "network_load: NULL argument");
    CF_ALLOC_SCOPE(cf_context_allocator(ctx));
    uint64_t max_header, max_data;
    cf_io_limits(ctx, &max_header, &max_data);
    unsigned char *buf = NULL;
    size_t size = 0;
    CF_CHECK(cf_file_read_all(path, 8 + max_header + max_data, CF_LOAD, &buf, &size));
    cfnet_status st = cf_schema_load(ctx, buf, size, out);
    cf_free(buf);
    return st;
}
