/* Messages, allocation, numbers, files and the progress line of the `cfnet` command. */
#define _GNU_SOURCE
#include "tool.h"

#include "platform/platform.h"

#include <cblas.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int tool_quiet = 0;
volatile int tool_interrupted = 0;

/* The progress line drawn on a terminal and not ended yet: a message ends it first, so that the
 * message starts a line of its own. */
static FILE *open_line;

static void end_open_line(void)
{
    if (open_line) {
        fputc('\n', open_line);
        fflush(open_line);
        open_line = NULL;
    }
}

/* Whether p starts with a C1 control character, U+0080 to U+009F (UTF-8 C2 80 to C2 9F): as
 * much a terminal control as a C0 one (U+009B is CSI, the start of an escape sequence, for a
 * terminal that reads C1 controls). A byte C2 followed by anything else (U+00A0 and up, or bytes
 * that are not UTF-8) is not one. */
int tool_is_c1(const unsigned char *p, size_t left)
{
    return left >= 2 && p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F;
}

void tool_put_visible(FILE *out, const char *s, size_t bytes)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < bytes && p[i]; i++) {
        if (p[i] < 0x20 || p[i] == 0x7F) {
            fputs("\xEF\xBF\xBD", out);
        } else if (tool_is_c1(p + i, bytes - i)) {
            fputs("\xEF\xBF\xBD", out);
            i++;
        } else {
            fputc(p[i], out);
        }
    }
}

/* Writes a message line, `prefix` then fmt's text with its control characters shown as U+FFFD
 * (tool_put_visible), then a newline: messages name class folders, labels and files from the
 * data, and a tab, a newline or an escape sequence in such a name would otherwise reach the
 * terminal as it is. The line is made in memory and written by one fwrite: stderr is
 * unbuffered, and written piecewise each character was a write(2) of its own, which
 * `mpirun --tag-output` tagged one by one. Out of memory, it is written piecewise. */
static void put_line_v(FILE *out, const char *prefix, const char *fmt, va_list ap)
{
    char *s = NULL, *line = NULL;
    size_t line_len = 0;
    va_list aq;
    va_copy(aq, ap);
    int n = vasprintf(&s, fmt, aq);
    va_end(aq);
    FILE *mem = n >= 0 ? open_memstream(&line, &line_len) : NULL;
    FILE *to = mem ? mem : out;
    fputs(prefix, to);
    if (n >= 0)
        tool_put_visible(to, s, (size_t)n);
    else
        vfprintf(to, fmt, ap); /* out of memory: the message as it is rather than none */
    fputc('\n', to);
    if (mem && fclose(mem) == 0) {
        fwrite(line, 1, line_len, out);
    } else if (mem) { /* the stream lost part of the line (out of memory): piecewise */
        fputs(prefix, out);
        tool_put_visible(out, s, (size_t)n);
        fputc('\n', out);
    }
    free(line);
    free(s);
}

/* tool_hold_messages: where errors and warnings go instead of stderr (NULL: stderr) */
static FILE *held_to;

FILE *tool_hold_messages(FILE *to)
{
    FILE *was = held_to;
    held_to = to;
    return was;
}

void tool_say_held(const char *text, size_t len)
{
    fflush(stdout);
    end_open_line();
    if (len) fwrite(text, 1, len, stderr);
}

int tool_env_errno(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == ENOMEM || e == EMFILE ||
           e == ENFILE;
}

/* A message line to stderr (or where tool_hold_messages sends them), a progress line ended
 * first: with usage_cmd, said as a usage error of that command ("cfnet CMD: ..." and the
 * pointer to its --help); else "cfnet: " and prefix ("error: ", "warning: ") before it. */
static void vmsg(const char *usage_cmd, const char *prefix, const char *fmt, va_list ap)
{
    FILE *out = held_to ? held_to : stderr;
    if (!held_to) {
        fflush(stdout);
        end_open_line();
    }
    char pre[96];
    if (usage_cmd) {
        snprintf(pre, sizeof pre, "cfnet %s: ", usage_cmd);
        put_line_v(out, pre, fmt, ap);
        fprintf(out, "(see 'cfnet %s --help')\n", usage_cmd);
        return;
    }
    snprintf(pre, sizeof pre, "cfnet: %s", prefix);
    put_line_v(out, pre, fmt, ap);
}

void tool_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(NULL, "error: ", fmt, ap);
    va_end(ap);
}

void tool_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(NULL, "warning: ", fmt, ap);
    va_end(ap);
}

void tool_info(const char *fmt, ...)
{
    if (tool_quiet) return;
    end_open_line();
    va_list ap;
    va_start(ap, fmt);
    put_line_v(stderr, "", fmt, ap);
    va_end(ap);
}

int tool_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(cmd, NULL, fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}

int tool_refuse(const char *usage_cmd, int e, const char *fmt, ...)
{
    if (tool_env_errno(e)) usage_cmd = NULL; /* the machine's fault, not the names given */
    va_list ap;
    va_start(ap, fmt);
    vmsg(usage_cmd, "error: ", fmt, ap);
    va_end(ap);
    return usage_cmd ? EXIT_USAGE : EXIT_RUNTIME;
}

void tool_lib_error(const char *what, cfnet_status st)
{
    tool_error("%s: %s: %s", what, cfnet_status_string(st), cfnet_last_error());
}

static const char *oom_what;

const char *tool_oom_for(const char *what)
{
    const char *was = oom_what;
    oom_what = what;
    return was;
}

/* what the run made, removed by tool_fail_cleanup (tool_on_failure) */
static void (*fail_fn)(void *);
static void *fail_arg;

void tool_on_failure(void (*fn)(void *), void *arg)
{
    fail_fn = fn;
    fail_arg = arg;
}

static void out_remove_tracked(void);

void tool_fail_cleanup(void)
{
    void (*fn)(void *) = fail_fn;
    fail_fn = NULL; /* once */
    out_remove_tracked();
    if (fn) fn(fail_arg);
}

/* Out of memory in one of the x* functions. Under mpirun a failure that every rank ends with,
 * reported at a check-in that meets every other rank's next one (tool_mpi_report_oom): before
 * the start vote said as a failure of this rank's set-up, after it by this rank at the
 * check-in. Else
 * (one process, or out of memory again while ending) said straight to fd 2 by write(2),
 * needing no memory, and the process exits: not through stderr, which under mpirun before the
 * start vote is a memory stream (src/tool/mpi.c), lost by this exit (without MPI_Finalize);
 * there the message names the rank. Either way what the run made is removed first
 * (tool_fail_cleanup: an output's temporary file, train's new log, eval's --out folder). */
void tool_out_of_memory(void)
{
    static int again;
    fflush(stdout);
    if (open_line && fileno(open_line) == STDERR_FILENO) end_open_line();
    if (!again++) (void)tool_mpi_report_oom(oom_what); /* (returns only when it cannot meet) */
    char msg[96];
    int n = tool_mpi_size() > 1
                ? snprintf(msg, sizeof msg, "cfnet: error: rank %d of %d: out of memory\n",
                           tool_mpi_rank(), tool_mpi_size())
                : snprintf(msg, sizeof msg, "cfnet: error: out of memory\n");
    fflush(stdout);
    for (size_t done = 0; n > 0 && done < (size_t)n;) {
        ssize_t w = write(STDERR_FILENO, msg + done, (size_t)n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    if (again == 1) {
        again = 2;
        tool_fail_cleanup();
    }
    exit(EXIT_RUNTIME);
}

static void oom(void) { tool_out_of_memory(); }

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) oom();
    return p;
}

char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) oom();
    return d;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) oom();
    return s;
}

double tool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t tool_phys_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return 0;
    return (uint64_t)pages * (uint64_t)page;
}

/* One number from a cgroup file ("max" or anything else than a number: none). */
static int read_limit_file(const char *path, uint64_t *v)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64];
    int ok = 0;
    if (fgets(buf, sizeof buf, f) && isdigit((unsigned char)buf[0])) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(buf, &end, 10);
        if (errno == 0 && (*end == '\n' || *end == '\0')) {
            *v = (uint64_t)x;
            ok = 1;
        }
    }
    fclose(f);
    return ok;
}

/* The smallest limit in FILE of the cgroup BASE + PATH and of each parent up to BASE (a
 * parent's limit applies to its children too). A path missing under BASE (a container that sees
 * the host's path but has its own cgroup mounted at BASE) leaves BASE's own file. */
static uint64_t cgroup_walk(const char *base, const char *path, const char *file)
{
    uint64_t best = UINT64_MAX, v;
    size_t baselen = strlen(base);
    char *dir = xasprintf("%s%s%s", base, path[0] == '/' ? "" : "/", path);
    for (;;) {
        char *f = xasprintf("%s/%s", dir, file);
        if (read_limit_file(f, &v) && v < best) best = v;
        free(f);
        char *slash = strlen(dir) > baselen ? strrchr(dir + baselen, '/') : NULL;
        if (!slash) break;
        *slash = '\0';
    }
    free(dir);
    return best;
}

/* A field of /proc/self/mountinfo in place: its octal escapes (\040 for a space, \011, \012,
 * \134 for a backslash) decoded. */
static void mountinfo_unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

/* Whether the comma-separated list `opts` holds `name`. */
static int opt_listed(const char *opts, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = opts; *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && strncmp(p, name, n) == 0) return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

/* The folder of a cgroup hierarchy for the cgroup `path` (of /proc/self/cgroup), from the
 * mountinfo file `mountinfo`: with `v2`, a mount of file system type "cgroup2" (at
 * /sys/fs/cgroup, at /sys/fs/cgroup/unified beside v1 controllers, or anywhere else); without, a
 * cgroup v1 mount (type "cgroup") whose super options name "memory" (mounted alone at
 * /sys/fs/cgroup/memory, or combined, "memory,cpuacct", or anywhere else). Its field 4 is the
 * folder of the hierarchy seen at the mount point (in a container, often the container's own
 * cgroup): `path` is taken relative to it, and a `path` outside it leaves the mount point's own
 * cgroup. *base is the mount point and *rel the path below it (both allocated); among several
 * mounts, the one whose root holds `path` most closely. Lines are read whole, however long (an
 * escaped mount point may take four bytes a character). 0 when there is none, -1 when the file
 * cannot be read. */
static int cgroup_mount(const char *mountinfo, const char *path, int v2, char **base, char **rel)
{
    FILE *f = fopen(mountinfo, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0, best = 0;
    int found = 0;
    *base = *rel = NULL;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        /* id parent major:minor root mountpoint options [optional...] - fstype source super */
        char *field[6] = {0}, *save = NULL, *t = strtok_r(line, " ", &save);
        int n = 0;
        for (; t && n < 6; t = strtok_r(NULL, " ", &save)) field[n++] = t;
        if (n < 6) continue;
        while (t && strcmp(t, "-") != 0) t = strtok_r(NULL, " ", &save);
        char *fstype = t ? strtok_r(NULL, " ", &save) : NULL;
        char *source = fstype ? strtok_r(NULL, " ", &save) : NULL;
        char *super = source ? strtok_r(NULL, " ", &save) : NULL;
        if (!super) continue;
        if (v2 ? strcmp(fstype, "cgroup2") != 0
               : strcmp(fstype, "cgroup") != 0 || !opt_listed(super, "memory"))
            continue;
        char *mroot = field[3], *mpoint = field[4];
        mountinfo_unescape(mroot);
        mountinfo_unescape(mpoint);
        size_t rl = strcmp(mroot, "/") == 0 ? 0 : strlen(mroot);
        int inside = strncmp(path, mroot, rl) == 0 && (path[rl] == '/' || path[rl] == '\0');
        size_t score = inside ? rl + 2 : 1; /* a mount whose root holds path beats one that does not */
        if (found && score <= best) continue;
        free(*base);
        free(*rel);
        *base = xstrdup(mpoint);
        *rel = xstrdup(inside ? path + rl : "");
        best = score;
        found = 1;
    }
    free(line);
    fclose(f);
    return found;
}

/* The cgroup memory limit of this process (UINT64_MAX if none): cgroup v2's memory.max for its
 * "0::" line of /proc/self/cgroup, cgroup v1's memory.limit_in_bytes for its "memory" line, in
 * the hierarchy's folder found in /proc/self/mountinfo (the cgroup2 mount; the v1 memory
 * controller's mount), or when that cannot be read in the usual places (/sys/fs/cgroup or
 * /sys/fs/cgroup/unified for v2, /sys/fs/cgroup/memory for v1). CFNET_TEST_CGROUP_ROOT is a test
 * hook (tests/test_cli_memory.sh): a folder standing for /sys/fs/cgroup, with its file
 * "self-cgroup" standing for /proc/self/cgroup and its file "mountinfo", if there is one, for
 * /proc/self/mountinfo (its mount points are used as they are: the test gives folders of its
 * own). */
static uint64_t cgroup_memory_limit(void)
{
    const char *root = getenv("CFNET_TEST_CGROUP_ROOT");
    int test = root && root[0];
    char *self = test ? xasprintf("%s/self-cgroup", root) : xstrdup("/proc/self/cgroup");
    char *mountinfo = test ? xasprintf("%s/mountinfo", root) : xstrdup("/proc/self/mountinfo");
    if (!test) root = "/sys/fs/cgroup";
    FILE *f = fopen(self, "r");
    free(self);
    if (!f) {
        free(mountinfo);
        return UINT64_MAX;
    }
    uint64_t best = UINT64_MAX;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) { /* whole lines, however long the cgroup's path */
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = *c2 = '\0';
        const char *ctrl = c1 + 1, *path = c2 + 1;
        uint64_t v = UINT64_MAX;
        if (strcmp(line, "0") == 0 && ctrl[0] == '\0') {
            char *base = NULL, *rel = NULL;
            int m = cgroup_mount(mountinfo, path, 1, &base, &rel);
            if (m < 0) { /* no mountinfo: at the root itself, or root/unified beside v1 */
                char *probe = xasprintf("%s/cgroup.controllers", root);
                base = access(probe, F_OK) == 0 ? xstrdup(root) : xasprintf("%s/unified", root);
                v = cgroup_walk(base, path, "memory.max");
                free(probe);
            } else if (m > 0) {
                v = cgroup_walk(base, rel, "memory.max");
            }
            free(base);
            free(rel);
        } else if (opt_listed(ctrl, "memory")) {
            char *base = NULL, *rel = NULL;
            int m = cgroup_mount(mountinfo, path, 0, &base, &rel);
            if (m < 0) /* no mountinfo: the usual place */
                v = cgroup_walk((base = xasprintf("%s/memory", root)), path, "memory.limit_in_bytes");
            else if (m > 0)
                v = cgroup_walk(base, rel, "memory.limit_in_bytes");
            free(base);
            free(rel);
        }
        if (v < best) best = v;
    }
    free(line);
    fclose(f);
    free(mountinfo);
    return best;
}

uint64_t tool_memory_limit(const char **what)
{
    uint64_t best = tool_phys_memory();
    *what = "the physical memory";
    if (!best) {
        best = UINT64_MAX;
        *what = NULL;
    }
    uint64_t cg = cgroup_memory_limit();
    if (cg < best) {
        best = cg;
        *what = "the cgroup memory limit";
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)rl.rlim_cur < best) {
        best = (uint64_t)rl.rlim_cur;
        *what = "the ulimit -v address-space limit";
    }
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)rl.rlim_cur < best) {
        best = (uint64_t)rl.rlim_cur;
        *what = "the ulimit -d data-size limit";
    }
    return *what ? best : 0;
}

int tool_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > CFNET_MAX_THREADS ? CFNET_MAX_THREADS : (int)n;
}

uint64_t tool_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double tool_uniform(uint64_t *state)
{
    return (double)(tool_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

void tool_shuffle(int64_t *idx, int64_t n, uint64_t *state)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(tool_rand(state) % (uint64_t)(i + 1));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

uint64_t tool_mix(uint64_t a, uint64_t b)
{
    uint64_t s = a ^ (b * 0xD1B54A32D192ED03ull);
    return tool_rand(&s);
}

int parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int parse_bytes(const char *s, uint64_t *out)
{
    if (!s || !*s || !isdigit((unsigned char)s[0])) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !isfinite(v) || v < 0) return -1;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1024.0 * 1024; end++; break;
    case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: return -1;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    v *= mul;
    if (v > 9.2e18) return -1;
    *out = (uint64_t)v;
    return 0;
}

int opt_long(const char *cmd, const char *name, const char *value, long lo, long hi,
             const char *expect, long *out)
{
    if (parse_int(value, lo, hi, out) == 0) return 0;
    if (expect) return tool_usage_error(cmd, "%s: expected %s, got '%s'", name, expect, value);
    return tool_usage_error(cmd, "%s: expected %ld..%ld, got '%s'", name, lo, hi, value);
}

int opt_int(const char *cmd, const char *name, const char *value, long lo, long hi,
            const char *expect, int *out)
{
    long v;
    int u = opt_long(cmd, name, value, lo, hi, expect, &v);
    if (u == 0) *out = (int)v;
    return u;
}

int opt_double(const char *cmd, const char *name, const char *value, double lo, double hi,
               const char *expect, double *out)
{
    if (parse_double(value, lo, hi, out) == 0) return 0;
    return tool_usage_error(cmd, "%s: expected %s, got '%s'", name, expect, value);
}

/* The options of the command being parsed, for opt_error's and opt_path's messages. */
static const struct option *opt_cur_longopts;
static const char *opt_cur_optstring;
static char **opt_cur_argv;

/* The argument that holds `value` glued to a short option (-o.csv, -qo.csv: the rest of that
 * argument, getopt's optarg), or NULL: a value of its own (-o .csv), of a long option
 * (--output=.csv) or not from getopt. */
static const char *glued_to_short(const char *value)
{
    if (!opt_cur_argv || optind < 1 || !opt_cur_argv[optind - 1]) return NULL;
    const char *a = opt_cur_argv[optind - 1];
    size_t n = strlen(a), k = strlen(value);
    if (a[0] != '-' || a[1] == '-' || k + 2 > n || a + (n - k) != value) return NULL;
    return a;
}

/* Whether name is a dot and one of the extensions of the command's files only (".csv"): a
 * hidden file that has no name but its extension. */
static int extension_only(const char *name)
{
    static const char *const ext[] = {"csv",  "json", "jsonl", "tif", "tiff", "png", "svg",
                                      "onnx", "safetensors", "log", "txt"};
    if (name[0] != '.') return 0;
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(name + 1, ext[i])) return 1;
    return 0;
}

int opt_path(const char *cmd, const char *name, const char *value, const char **out)
{
    if (!value[0]) return tool_usage_error(cmd, "%s: the file name is empty", name);
    /* a short option's value may be glued to it (-oout.csv is -o out.csv, as getopt reads it);
     * glued, a value that is an extension alone (-o.csv) or starts with '=' (-o=out.csv) is
     * almost surely not the hidden file ".csv" or the file "=out.csv" meant: refused, saying
     * how to give either. Given apart (-o .csv, --output=.csv), a value is taken as written. */
    const char *arg = glued_to_short(value);
    const char o = arg ? value[-1] : 0; /* the option, just before its value */
    if (arg && extension_only(value))
        return tool_usage_error(cmd, "%s: the value '%s' is a hidden file named by its "
                                "extension alone; give the file a name (-%c NAME%s), or write "
                                "-%c ./%s for that file", arg, value, o, value, o, value);
    if (arg && value[0] == '=')
        return tool_usage_error(cmd, "%s: a short option takes its value without '=' (-%c %s); "
                                "for a file named '%s', write -%c ./%s", arg, o,
                                value[1] ? value + 1 : "NAME", value, o, value);
    *out = value;
    return 0;
}

/* A long option given shortened (--epoch for --epochs), which getopt_long takes for the one
 * option it begins: the argument and the option's full name, for opt_error. */
static const char *opt_short_arg;
static const char *opt_short_full;

int opt_next(int argc, char **argv, const char *optstring, const struct option *longopts,
             const char *help)
{
    opterr = 0;
    opt_cur_longopts = longopts;
    opt_cur_optstring = optstring;
    opt_cur_argv = argv;
    opt_short_arg = opt_short_full = NULL;
    int idx = -1;
    int c = getopt_long(argc, argv, optstring, longopts, &idx);
    /* Options are taken in full only: a script's shortened option would change its meaning, or
     * stop working, once an option that it also begins is added (predict's --out, taken for
     * --output, would be a folder as eval's is). The option's argument is the one before its
     * value when that value came as an argument of its own. */
    if (idx >= 0 && c != '?' && c != ':' && c != -1 && longopts && optind >= 1) {
        const int apart = optarg && optind >= 2 && optarg == argv[optind - 1];
        const char *a = argv[optind - 1 - apart];
        if (a && a[0] == '-' && a[1] == '-' &&
            strcspn(a + 2, "=") != strlen(longopts[idx].name)) {
            opt_short_arg = a;
            opt_short_full = longopts[idx].name;
            optopt = 0;
            return '?';
        }
    }
    if (c == 'h') {
        fputs(help, stdout);
        return OPT_HELP;
    }
    return c;
}

/* Whether the group of short options g ("-1.tif") stops at the unknown option optopt, as
 * getopt reads it: its first character that is no option is optopt (an option that takes a
 * value takes the rest of the group). */
static int group_stops_at(const char *g)
{
    const char *os = opt_cur_optstring ? opt_cur_optstring : "";
    os += strspn(os, "+-:");
    for (const char *c = g + 1; *c; c++) {
        const char *k = *c == ':' ? NULL : strchr(os, *c);
        if (!k) return (unsigned char)*c == (unsigned)optopt;
        if (k[1] == ':') return 0;
    }
    return 0;
}

/* The argument that holds the unknown option (the long option `arg` itself, or the group of
 * short ones getopt is in: argv[optind - 1] when optopt ended it, else argv[optind]) when it is
 * the name of a file or folder: an image named "-1.tif" given as an input, taken for options.
 * NULL: none. */
static const char *option_named_file(char **argv, const char *arg, int is_long)
{
    const char *cand[2] = {arg, is_long || optopt <= 0 ? NULL : argv[optind]};
    for (int i = 0; i < 2; i++) {
        const char *a = cand[i];
        struct stat st;
        if (!a || a[0] != '-' || !a[1] || (!is_long && a[1] == '-') || lstat(a, &st) != 0)
            continue;
        if (is_long || group_stops_at(a)) return a;
    }
    return NULL;
}

/* "unknown option '-1'", and when a file has the name that held it, how to give that file */
static int unknown_option(const char *cmd, const char *what, char **argv, const char *arg,
                          int is_long)
{
    const char *file = option_named_file(argv, arg, is_long);
    if (!file) return tool_usage_error(cmd, "unknown option '%s'", what);
    return tool_usage_error(cmd, "unknown option '%s' (to give the file '%s', write ./%s, or put "
                            "-- before the file names)", what, file, file);
}

int opt_error(const char *cmd, int ch, char **argv)
{
    if (opt_short_arg) {
        const char *a = opt_short_arg;
        opt_short_arg = NULL;
        return tool_usage_error(cmd, "unknown option '--%.*s': options are written in full "
                                "(--%s)", (int)strcspn(a + 2, "="), a + 2, opt_short_full);
    }
    /* getopt_long has moved past a long option, so argv[optind - 1] is that argument. A short
     * option is named by optopt: inside a group (-zq) argv[optind - 1] is still the argument
     * before the group. */
    const char *arg = argv[optind - 1];
    const int is_long = !strncmp(arg, "--", 2) && arg[2];
    if (ch == ':' && !is_long) return tool_usage_error(cmd, "-%c needs a value", optopt);
    const char *name = arg + 2, *eq = strchr(arg, '=');
    const size_t len = is_long ? (eq ? (size_t)(eq - name) : strlen(name)) : 0;
    const struct option *match = NULL;
    int n = 0, exact = 0;
    char list[512] = "";
    size_t used = 0;
    for (const struct option *o = opt_cur_longopts; is_long && o && o->name; o++) {
        if (strncmp(o->name, name, len)) continue;
        if (!exact) match = o;
        if (strlen(o->name) == len) exact = 1;
        n++;
        int w = snprintf(list + used, sizeof list - used, "%s--%s", n > 1 ? ", " : "", o->name);
        if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
    }
    /* a long option given shortened and without its value (--epoch last), or with one it
     * does not take (--fli=1): refused as shortened, as it is with a value it can take (not
     * "--epoch needs a value", which --epoch 2 then refuses for another reason) */
    const int whole = exact || n != 1;
    if (ch == ':' && whole) return tool_usage_error(cmd, "%s needs a value", arg);
    if (!whole && (ch == ':' || (optopt != 0 && eq && match->has_arg == no_argument &&
                                 match->val == optopt)))
        return tool_usage_error(cmd, "unknown option '--%.*s': options are written in full "
                                "(--%s)", (int)len, name, match->name);
    if (optopt == 0) { /* an unknown or ambiguous long option */
        if (n > 1 && !exact)
            return tool_usage_error(cmd, "ambiguous option '--%.*s' (%s)", (int)len, name, list);
        return unknown_option(cmd, arg, argv, arg, 1);
    }
    /* optopt is the code of a long option given a value it does not take (--flip=1), or an
     * unknown short option */
    if (eq && match && (n == 1 || exact) && match->has_arg == no_argument && match->val == optopt)
        return tool_usage_error(cmd, "--%s takes no value, got '%s'", match->name, arg);
    char shortopt[3] = {'-', (char)optopt, 0};
    return unknown_option(cmd, shortopt, argv, arg, 0);
}

int read_file(const char *path, size_t limit, unsigned char **data, size_t *size, char *err,
              size_t errsize)
{
    /* open_nowait: opening a FIFO (a pipe named like an image) would otherwise wait for a
     * writer forever; it is refused below like any other file that is not a regular one. */
    struct stat st;
    int fd = open_nowait(path, &st);
    if (fd < 0) {
        int e = errno;
        /* A symbolic link whose target is gone (a link into a share that is not mounted, a
         * folder copied with its relative links) is listed like a file: "No such file" alone
         * would name a file that `ls` shows. */
        struct stat ls;
        char to[512];
        ssize_t tn;
        char why[PATH_MAX * 2 + 64];
        if ((e == ENOENT || e == ELOOP) && lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode) &&
            (tn = readlink(path, to, sizeof to - 1)) >= 0) {
            to[tn] = 0;
            snprintf(err, errsize, "cannot open: a symbolic link %s (-> %s)",
                     e == ENOENT ? "whose target does not exist" : "that leads into a loop of links",
                     to);
        } else if (link_trouble(e) && dangling_on_way(path, why, sizeof why)) {
            /* a link further up the path (a folder given through a loop of links or a link to
             * nothing, a target on a way the user may not search): named, not "Too many levels
             * of symbolic links" or "No such file or directory" */
            snprintf(err, errsize, "cannot open: %s", why);
        } else {
            snprintf(err, errsize, "cannot open: %s", strerror(e));
        }
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errsize, "not a regular file");
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > limit) {
        snprintf(err, errsize, "file too large (%lld bytes, limit %zu)", (long long)st.st_size,
                 limit);
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        snprintf(err, errsize, "out of memory reading %zu bytes", n);
        close(fd);
        return -1;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            snprintf(err, errsize, "read failed: %s", r < 0 ? strerror(errno) : "file shrank");
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = n;
    return 0;
}

int open_nowait(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int fl = S_ISREG(st->st_mode) ? fcntl(fd, F_GETFL) : -1;
    if (fl != -1) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int open_write_wait(const char *path, int flags, mode_t mode)
{
    for (;;) {
        int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | flags, mode);
        if (fd >= 0) {
            int fl = fcntl(fd, F_GETFL);
            if (fl != -1) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            return fd;
        }
        /* ENXIO: a FIFO that no process reads yet (else a device that is not there, or a
         * socket); the open's errno is the one returned, not that of the stat that tells them
         * apart (a FIFO removed meanwhile: ENOENT, which the message would take for a link to
         * nothing) */
        const int e = errno;
        struct stat st;
        if (e != EINTR && (e != ENXIO || stat(path, &st) != 0 || !S_ISFIFO(st.st_mode))) {
            errno = e;
            return -1;
        }
        if (tool_interrupted) {
            errno = EINTR;
            return -1;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int path_is_dir(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    return S_ISDIR(st.st_mode) ? 1 : 0;
}

int link_trouble(int err)
{
    return err == ENOENT || err == ELOOP || err == EACCES || err == ENOTDIR;
}

int file_on_way(const char *path, char *buf, size_t size)
{
    char *p = xstrdup(path);
    int found = 0;
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        struct stat st;
        int there = stat(p, &st) == 0;
        if (there && !S_ISDIR(st.st_mode)) {
            snprintf(buf, size, "%s", p);
            found = 1;
        }
        *q = '/';
        if (!there || found) break;
    }
    free(p);
    return found;
}

/* The first name on the way to `path`, path itself included, that is a symbolic link that
 * cannot be followed (its target missing, a loop of links, a target on a way the user may not
 * search, or one on a way through a file: link -> file/sub), or a link on the way to a file,
 * not a folder, said in buf ("NAME is a symbolic link to a missing target (-> TARGET)"). 2 when
 * that name is path itself, 1 when it is a folder on the way, or 0 when there is none (buf
 * untouched). */
int dangling_on_way(const char *path, char *buf, size_t size)
{
    if (!*path) return 0; /* (no name: nothing on its way, and no first character to pass) */
    char *p = xstrdup(path);
    int found = 0;
    for (char *q = p + 1;; q++) {
        if (*q && *q != '/') continue;
        const char end = *q;
        *q = 0;
        struct stat ls, st;
        char to[PATH_MAX];
        ssize_t n;
        if (lstat(p, &ls) != 0) break; /* nothing further is there */
        int e = S_ISLNK(ls.st_mode) && stat(p, &st) != 0 ? errno : 0;
        if (link_trouble(e) && (n = readlink(p, to, sizeof to - 1)) >= 0) {
            to[n] = 0;
            if (e == ENOTDIR) {
                /* its target is on a way through a file (link -> file/sub): that file named
                 * when the link's own target shows it */
                char *dir = path_dir(p);
                char *full = to[0] == '/' ? xstrdup(to) : path_join(dir, to);
                char file[PATH_MAX];
                if (file_on_way(full, file, sizeof file))
                    snprintf(buf, size, "%s is a symbolic link to a target through %s, which is a "
                             "file, not a folder (-> %s)", p, file, to);
                else
                    snprintf(buf, size, "%s is a symbolic link to a target through a file that "
                             "is not a folder (-> %s)", p, to);
                free(full);
                free(dir);
            } else {
                snprintf(buf, size, "%s is a symbolic link to %s (-> %s)", p,
                         e == ENOENT   ? "a missing target"
                         : e == ELOOP ? "a loop of links"
                                      : "a target that cannot be reached: permission denied",
                         to);
            }
            found = end ? 1 : 2;
            break;
        }
        if (end && S_ISLNK(ls.st_mode) && e == 0 && !S_ISDIR(st.st_mode) &&
            (n = readlink(p, to, sizeof to - 1)) >= 0) {
            /* a link on the way to a file (lnk/sub, lnk -> file): not a folder */
            to[n] = 0;
            snprintf(buf, size, "%s is a symbolic link to a file, not a folder (-> %s)", p, to);
            found = 1;
            break;
        }
        if (!end) break;
        *q = end;
    }
    free(p);
    return found;
}

int link_in_way(const char *path, char *buf, size_t size)
{
    struct stat st;
    if (stat(path, &st) == 0 || !link_trouble(errno)) return 0;
    const int e = errno;
    if (dangling_on_way(path, buf, size) != 0) return 1;
    char file[PATH_MAX];
    if (e != ENOTDIR || !file_on_way(path, file, sizeof file)) return 0;
    snprintf(buf, size, "%s is a file, not a folder", file);
    return 1;
}

/* The refusal of the folder `p` (label `l`) that make_dirs cannot make: `e` the errno of its
 * mkdir, or of the stat that found it there when that is the machine's (EIO), else 0 (the name
 * is taken by something that is not a folder). A link to nothing on the way (mkdir finds its
 * name taken, EEXIST, and the next one fails, ENOENT) is said as what it is. */
static int refuse_dir(const char *usage_cmd, const char *l, const char *p, int e)
{
    char why[PATH_MAX * 2 + 64];
    if ((e == 0 || link_trouble(e)) && dangling_on_way(p, why, sizeof why))
        return tool_refuse(usage_cmd, 0, "%scannot create directory %s: %s", l, p, why);
    if (e == ENOTDIR && file_on_way(p, why, sizeof why)) /* (a file on the way: named) */
        return tool_refuse(usage_cmd, 0, "%scannot create directory %s: %s is a file, not a "
                           "folder", l, p, why);
    if (e) return tool_refuse(usage_cmd, e, "%scannot create directory %s: %s", l, p, strerror(e));
    return tool_refuse(usage_cmd, 0, "%s%s exists and is not a directory", l, p);
}

int make_dirs(const char *path, const char *usage_cmd, const char *label)
{
    const char *l = label ? label : "";
    char *p = xstrdup(path);
    int u = 0;
    for (char *q = p + 1; *q && !u; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) u = refuse_dir(usage_cmd, l, p, errno);
        *q = '/';
    }
    if (!u && mkdir(p, 0777) != 0 && errno != EEXIST) u = refuse_dir(usage_cmd, l, p, errno);
    int isdir = u ? 1 : path_is_dir(p), e = errno;
    /* there, but stat fails for the machine's sake (EIO), or on a link that cannot be followed
     * (a loop of links, a target the user may not reach): that error; else not a folder */
    if (isdir != 1)
        u = refuse_dir(usage_cmd, l, p,
                       isdir < 0 && (tool_env_errno(e) || e == ELOOP || e == EACCES) ? e : 0);
    free(p);
    return u;
}

/* The outermost folder on the way to `path` that does not exist yet (the first that make_dirs
 * creates), or NULL when path exists. */
char *first_missing_dir(const char *path)
{
    char *p = xstrdup(path), *top = NULL;
    struct stat st;
    while (stat(p, &st) != 0 && errno == ENOENT) {
        free(top);
        top = p;
        p = path_dir(top);
        if (!strcmp(p, top)) break;
    }
    free(p);
    return top;
}

/* Removes the folders that make_dirs(path) created, path first, up to `top` (from
 * first_missing_dir); stops at one that is not empty. */
void remove_new_dirs(const char *path, const char *top)
{
    char *p = xstrdup(path);
    while (strlen(p) >= strlen(top)) {
        if (rmdir(p) != 0 && errno != ENOENT) break;
        if (!strcmp(p, top)) break;
        char *up = path_dir(p);
        free(p);
        p = up;
    }
    free(p);
}

/* Temporary files of outputs still open, removed if a signal ends the process (SIGINT, SIGTERM,
 * which MPI_Abort sends to the other ranks, SIGHUP) so that none is left behind. The handler
 * is installed only where the signal has its default action: training's own handler, which
 * stops after the current step, stays. unlink is async-signal-safe. */
#define OUT_MAX_OPEN 8
static char *volatile out_tmps[OUT_MAX_OPEN];

/* The commit of several files as one (out_commit_all, out_commit_held): before the first
 * rename, every file that a new one replaces gets a second name in its folder, a hard link
 * "<name>.kept.<pid>.<n>" (on a file system without hard links the file is renamed to it), so
 * that until the commit is settled every earlier file can be put back by one rename: a failed
 * rename, out of memory (tool_fail_cleanup), a signal, or under mpirun a failure that another
 * rank reports at the final check-in (out_settle(0)) leaves the folder with the earlier files
 * and without the new ones it created, and nothing else in it touched. Settled (out_settle(1)),
 * the second names are removed.
 *
 * Signals: the handler below may run in any thread (OpenMP's, MPI's do not block signals), so
 * blocking them in this one would not keep it out. While the links and renames are made
 * (commit_state 1), the handler only notes the signal (state 2) and returns; the commit, once
 * its last rename is made or refused, takes the note back (state 0), puts every earlier file
 * back and ends the process by that signal. Outside that window the journal is complete, and
 * the handler puts the earlier files back itself with rename, unlink and lstat, which are
 * async-signal-safe, on strings made before the commit. */
typedef struct out_entry {
    char *path;  /* the file replaced (NULL: a free entry) */
    char *kept;  /* its second name, a buffer made before the commit (NULL: none was there) */
    size_t kept_size;
    int linked;  /* kept names the earlier file (linked, or renamed when moved) */
    int moved;   /* renamed to kept (no hard links): path holds nothing until the new file */
    int renamed; /* the new file renamed over path */
    dev_t dev;   /* the new file */
    ino_t ino;
} out_entry;
static out_entry out_journal[OUT_MAX_OPEN];
static volatile sig_atomic_t out_journal_n;
static int commit_state;                  /* 0, 1: links and renames under way, 2: and a signal */
static volatile sig_atomic_t commit_signal; /* the signal noted in state 2 */
/* the folder made for the files of a commit held (out_held_folder): removed again with them */
static char *held_dir, *held_top;

/* Puts back what the journal says (async-signal-safe). say: not in a handler: a file that
 * could not be put back is said. Returns 0 when every earlier file is back. */
static int out_journal_undo(int say)
{
    int ok = 1;
    for (int i = out_journal_n - 1; i >= 0; i--) {
        out_entry *e = &out_journal[i];
        if (!e->path) continue;
        if (e->linked) {
            /* the earlier file back over the new one; when path still is that file (the same
             * inode: not replaced yet), rename does nothing and unlink drops the second name */
            if (rename(e->kept, e->path) == 0) {
                (void)unlink(e->kept);
            } else {
                int err = errno;
                ok = 0;
                if (say)
                    tool_error("%s: the earlier file could not be put back: %s; it is %s", e->path,
                               strerror(err), e->kept);
            }
        } else if (e->renamed) { /* created: removed while it is still the new file */
            struct stat st;
            if (lstat(e->path, &st) == 0 && st.st_dev == e->dev && st.st_ino == e->ino)
                (void)unlink(e->path);
        }
        e->linked = e->renamed = e->moved = 0;
    }
    return ok ? 0 : -1;
}

/* Forgets the journal (not in a handler: it frees) */
static void out_journal_clear(void)
{
    const int n = out_journal_n;
    out_journal_n = 0;
    for (int i = 0; i < n; i++) {
        free(out_journal[i].path);
        free(out_journal[i].kept);
        memset(&out_journal[i], 0, sizeof out_journal[i]);
    }
    free(held_dir);
    free(held_top);
    held_dir = held_top = NULL;
}

static void out_remove_tracked(void)
{
    for (int i = 0; i < OUT_MAX_OPEN; i++)
        if (out_tmps[i]) unlink(out_tmps[i]);
    if (out_journal_n) {
        (void)out_journal_undo(1);
        if (held_dir) remove_new_dirs(held_dir, held_top);
        out_journal_clear();
    }
}

/* The folders that the run made for its outputs (out_new_folder), deepest first, NULL-ended:
 * removed by a signal that ends the process, each only while it is empty (rmdir). */
static char **volatile sig_dirs;
static char **sig_dirs_made; /* (the same list, freed when another replaces it) */

/* A signal that ends the process while nothing is being renamed */
static void out_end_by(int sig)
{
    for (int i = 0; i < OUT_MAX_OPEN; i++)
        if (out_tmps[i]) unlink(out_tmps[i]);
    (void)out_journal_undo(0);
    char **d = sig_dirs;
    for (int i = 0; d && d[i]; i++) /* (one not there yet is passed: the next may be) */
        if (rmdir(d[i]) != 0 && errno != ENOENT) break;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void out_on_signal(int sig)
{
    int busy = 1;
    commit_signal = sig;
    if (__atomic_compare_exchange_n(&commit_state, &busy, 2, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        return; /* a commit under way acts on it after its last rename */
    if (busy == 2) return; /* (noted already) */
    out_end_by(sig);
}

/* out_on_signal for SIGINT, SIGTERM and SIGHUP where they have their default action */
static void out_catch_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = out_on_signal;
            sigemptyset(&sa.sa_mask);
            sigaction(sigs[i], &sa, NULL);
        }
    }
}

static void on_wait_signal(int sig)
{
    (void)sig;
    tool_interrupted = 1;
}

/* While an output waits for a process to read its FIFO (open_write_wait), SIGINT, SIGTERM and
 * SIGHUP where they have their default action only set tool_interrupted (without SA_RESTART),
 * so that predict -o FIFO and export MODEL FIFO end with their message and status 130 rather
 * than be killed outright; train's own handler, or out_on_signal, stays. Returns a mask of the
 * signals caught (kept: their earlier actions, put back by wait_release_signals). */
static const int wait_sigs[3] = {SIGINT, SIGTERM, SIGHUP};
static int wait_catch_signals(struct sigaction kept[3])
{
    int caught = 0;
    for (int i = 0; i < 3; i++) {
        if (sigaction(wait_sigs[i], NULL, &kept[i]) != 0 || kept[i].sa_handler != SIG_DFL)
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_wait_signal;
        sigemptyset(&sa.sa_mask);
        if (sigaction(wait_sigs[i], &sa, NULL) == 0) caught |= 1 << i;
    }
    return caught;
}

static void wait_release_signals(int caught, const struct sigaction kept[3])
{
    for (int i = 0; i < 3; i++)
        if (caught & (1 << i)) sigaction(wait_sigs[i], &kept[i], NULL);
}

void out_new_folder(const char *path, const char *top)
{
    sig_dirs = NULL;
    if (!path || !top) return;
    /* path, then each folder above it up to top, as remove_new_dirs goes */
    size_t n = 0, cap = 4;
    char **d = xmalloc(sizeof *d * cap);
    char *p = xstrdup(path);
    while (p && strlen(p) >= strlen(top)) {
        if (n + 2 > cap) d = xrealloc(d, sizeof *d * (cap *= 2));
        d[n++] = p;
        char *up = strcmp(p, top) ? path_dir(p) : NULL;
        if (up && !strcmp(up, p)) { /* (the root: no folder above) */
            free(up);
            up = NULL;
        }
        p = up;
    }
    free(p);
    d[n] = NULL;
    if (sig_dirs_made)
        for (char **q = sig_dirs_made; *q; q++) free(*q);
    free(sig_dirs_made);
    sig_dirs_made = d;
    out_catch_signals();
    sig_dirs = d;
}

static void out_track(char *tmp, char *untrack)
{
    if (tmp) out_catch_signals();
    for (int i = 0; i < OUT_MAX_OPEN; i++) {
        if (tmp && !out_tmps[i]) {
            out_tmps[i] = tmp;
            tmp = NULL;
        } else if (untrack && out_tmps[i] == untrack) {
            out_tmps[i] = NULL;
        }
    }
}

/* The refusal of the output `path` (label `l`) that cannot be created, `e` the errno of its
 * open: a symbolic link on the way that cannot be followed, or a file on the way (a name in
 * place of a folder: file/out.csv), is named, not the system's "Not a directory". */
static int refuse_create(const char *usage_cmd, const char *l, const char *path, int e)
{
    char why[PATH_MAX * 2 + 64];
    if (link_trouble(e) && dangling_on_way(path, why, sizeof why))
        return tool_refuse(usage_cmd, 0, "%s%s: cannot create: %s", l, path, why);
    if (e == ENOTDIR && file_on_way(path, why, sizeof why))
        return tool_refuse(usage_cmd, 0, "%s%s: cannot create: %s is a file, not a folder", l,
                           path, why);
    return tool_refuse(usage_cmd, e, "%s%s: cannot create: %s", l, path, strerror(e));
}

int out_open(tool_out *o, const char *path, const char *usage_cmd, const char *label)
{
    const char *l = label ? label : "";
    memset(o, 0, sizeof *o);
    if (!strcmp(path, "-")) {
        o->f = stdout;
        return 0;
    }
    struct stat st, lst;
    int exists = stat(path, &st) == 0;
    if (exists && S_ISDIR(st.st_mode))
        return tool_refuse(usage_cmd, 0, "%s%s is a folder; give a file name", l, path);
    if ((exists && !S_ISREG(st.st_mode)) || (!exists && lstat(path, &lst) == 0)) {
        /* a device, FIFO or socket (/dev/null, a pipe), or a link to nothing yet: written as
         * it goes, as a shell redirection would, never replaced */
        struct sigaction kept[3];
        int caught = exists && S_ISFIFO(st.st_mode) ? wait_catch_signals(kept) : 0;
        int fd = open_write_wait(path, O_CREAT | O_TRUNC, 0666);
        int e = errno;
        wait_release_signals(caught, kept);
        if (fd >= 0 && caught && tool_interrupted) { /* (a signal as a reader came: unwritten) */
            close(fd);
            fd = -1;
            e = EINTR;
        }
        o->f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!o->f) {
            if (fd >= 0) {
                e = errno;
                close(fd);
            }
            if (e == EINTR && tool_interrupted) {
                /* not a usage error of usage_cmd (eval --out: it said "cfnet eval: ..." and
                 * "(see 'cfnet eval --help')") */
                tool_error("%s%s: interrupted while waiting for a process to read this FIFO", l,
                           path);
                return 130; /* the status of an interrupted command */
            }
            return refuse_create(usage_cmd, l, path, e);
        }
        o->path = xstrdup(path);
        /* through a link to nothing yet: the file made here goes again if the run fails (or
         * a signal ends it), as no file is left where there was none */
        if (!exists && (o->made = realpath(path, NULL)) != NULL) out_track(o->made, NULL);
        return 0;
    }
    if (exists && access(path, W_OK) != 0)
        return tool_refuse(usage_cmd, errno, "%s%s: cannot write: %s", l, path, strerror(errno));
    /* a link to a file: the file it names is replaced, the link stays */
    o->path = exists ? realpath(path, NULL) : NULL;
    if (!o->path) o->path = xstrdup(path);
    const char *slash = strrchr(o->path, '/'), *base = slash ? slash + 1 : o->path;
    int dirlen = (int)(slash ? slash - o->path + 1 : 0);
    int fd = -1;
    /* "<name>.tmp.<pid>.<host>", locked until the rename as the library's atomic saves are (the
     * name part shortened when the suffix would not fit): a run killed while it writes leaves a
     * file that the next cfnet train with the same path removes once that process is gone (see
     * remove_stale_tmps). Without a host name, or with the name held by a live writer, the
     * numbered names below. */
    char host[256];
    if (cf_platform_host_name(host, sizeof host) == 0) {
        char *suffix = xasprintf(".tmp.%ld.%s", (long)getpid(), host);
        char *dir = path_dir(o->path);
        long nmax = pathconf(dir, _PC_NAME_MAX);
        free(dir);
        size_t slen = strlen(suffix), blen = strlen(base), max = nmax > 0 ? (size_t)nmax : 255;
        if (slen < max) {
            size_t keep = cf_platform_temp_keep(base, blen, slen, max);
            o->tmp = xasprintf("%.*s%s", (int)(dirlen + keep), o->path, suffix);
            fd = cf_platform_temp_file_locked(o->tmp, exists ? o->path : NULL);
        }
        free(suffix);
    }
    for (int n = 0; fd < 0 && n < 100; n++) {
        free(o->tmp);
        /* beside the file, under a name of at most NAME_MAX bytes */
        o->tmp = strlen(base) + 32 <= 255
                     ? xasprintf("%s.tmp.%ld.%d", o->path, (long)getpid(), n)
                     : xasprintf("%.*s.cfnet-%ld-%d.tmp", dirlen, o->path, (long)getpid(), n);
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd >= 0 && exists) (void)fchmod(fd, st.st_mode & 07777); /* keep the file's permissions */
    /* the lock lasts until the rename (0: none); close-on-exec, or the PNG converter (and any
     * program started while the file is open) would hold a descriptor of it */
    if (fd >= 0) o->lock = fcntl(fd, F_DUPFD_CLOEXEC, 0) + 1;
    if (fd >= 0) o->f = fdopen(fd, "w");
    if (!o->f) {
        int u = refuse_create(usage_cmd, l, path, errno);
        if (fd >= 0) {
            close(fd);
            unlink(o->tmp);
        }
        if (o->lock > 0) close(o->lock - 1);
        free(o->path);
        free(o->tmp);
        memset(o, 0, sizeof *o);
        return u;
    }
    out_track(o->tmp, NULL);
    return 0;
}

/* Makes a rename in path's folder durable (best effort: not every file system allows it). */
static void sync_folder(const char *path)
{
    char *dir = path_dir(path);
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Flushes o's temporary file to disk and closes it (o->f becomes NULL, the file stays). 1 when
 * every byte reached the disk; 0 otherwise, with errno the reason, or 0 when it is not known:
 * a write before this flush failed (the stream's error flag) and errno has been set by other
 * calls since, or by none (it said "write failed: Success"). */
static int out_flush_tmp(tool_out *o)
{
    int flushed = fflush(o->f) == 0;
    int err = flushed ? 0 : errno; /* a flush that failed: its own reason */
    int ok = flushed && !ferror(o->f);
    if (fsync(fileno(o->f)) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (fclose(o->f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    o->f = NULL;
    errno = err;
    return ok;
}

/* Forgets o after its temporary file was renamed or removed. */
static void out_forget(tool_out *o)
{
    if (o->lock > 0) close(o->lock - 1);
    out_track(NULL, o->tmp);
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

/* The long second name's N for the file named base, its k-th try (k < 100): base's hash (FNV-1a,
 * 1 to 999999) times 100, plus k, so that N says which file it was of; N below 100 (left by an
 * earlier cfnet, which wrote k alone) says nothing of it, and is read as before. */
static long kept_long_n(const char *base, int k)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *c = (const unsigned char *)base; *c; c++) h = (h ^ *c) * 16777619u;
    return (long)(h % 999999u + 1) * 100 + k;
}

/* The second name of an earlier file while a commit is open (see out_journal): beside it, as
 * its temporary file is, under a name of at most NAME_MAX bytes */
static void kept_format(char *buf, size_t size, const char *path, int k)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    int dirlen = (int)(slash ? slash - path + 1 : 0);
    if (strlen(base) + 32 <= 255)
        snprintf(buf, size, "%s.kept.%ld.%d", path, (long)getpid(), k);
    else
        snprintf(buf, size, "%.*s.cfnet-%ld-%ld.kept", dirlen, path, (long)getpid(),
                 kept_long_n(base, k));
}

/* Whether the entry d of a folder is a second name as kept_format makes it for a file named
 * base: "base.kept.PID.N" (long: ".cfnet-PID-N.kept", for a base too long for that, whose N
 * holds base's hash, kept_long_n, or is below 100 from an earlier cfnet: of any such base). *pid
 * the process that made it. */
static int kept_name_of(const char *d, const char *base, int long_form, long *pid)
{
    const size_t blen = strlen(base);
    const char *p;
    if (long_form) {
        if (strncmp(d, ".cfnet-", 7)) return 0;
        p = d + 7;
    } else {
        if (strncmp(d, base, blen) || strncmp(d + blen, ".kept.", 6)) return 0;
        p = d + blen + 6;
    }
    const char sep = long_form ? '-' : '.';
    const char *s = strchr(p, sep);
    if (!s || s == p || strspn(p, "0123456789") != (size_t)(s - p)) return 0;
    char *e;
    errno = 0;
    *pid = strtol(p, &e, 10);
    if (errno || *pid <= 0 || e != s) return 0;
    const size_t nd = strspn(s + 1, "0123456789");
    if (nd == 0) return 0;
    if (!long_form) return s[1 + nd] == 0;
    if (strcmp(s + 1 + nd, ".kept")) return 0;
    const long n = nd <= 9 ? strtol(s + 1, NULL, 10) : -1;
    return n >= 0 && (n < 100 || kept_long_n(base, (int)(n % 100)) == n);
}

/* The length of the folder part of path, as opendir takes it (0: none, the current folder) */
static size_t folder_len(const char *path)
{
    const char *slash = strrchr(path, '/');
    return !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
}

void out_note_kept(const char *dir, const char *const *names, int n)
{
    /* the file that a commit of each name replaces, as out_open names it: through a link, the
     * file it leads to (its second name is beside that file); a link to nothing (its file
     * moved to its second name), where it led, through each link of a chain. (Nothing else
     * allocated but for a second name found: no copy of a folder's name.) */
    char *real[OUT_MAX_OPEN];
    if (n > OUT_MAX_OPEN) n = OUT_MAX_OPEN;
    for (int i = 0; i < n; i++) {
        char *p = path_join(dir, names[i]), to[PATH_MAX];
        struct stat st, ls;
        ssize_t tn;
        real[i] = NULL;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) real[i] = realpath(p, NULL);
        if (real[i]) {
            free(p);
            continue;
        }
        /* (40: the kernel's limit of links followed in one name) */
        for (int hop = 0; hop < 40 && lstat(p, &ls) == 0 && S_ISLNK(ls.st_mode) &&
                          (tn = readlink(p, to, sizeof to - 1)) > 0;
             hop++) {
            to[tn] = 0;
            const size_t fl = folder_len(p);
            char *next = to[0] == '/' || fl == 0 ? xstrdup(to) : xasprintf("%.*s/%s", (int)fl, p, to);
            free(p);
            p = next;
        }
        real[i] = p;
    }
    for (int f = 0; f < n; f++) {
        const size_t fl = folder_len(real[f]);
        int seen = 0;
        for (int j = 0; j < f && !seen; j++)
            seen = folder_len(real[j]) == fl && !strncmp(real[j], real[f], fl);
        if (seen) continue; /* (that folder read already) */
        DIR *dp;
        if (fl == 0) {
            dp = opendir(".");
        } else if (fl == 1 && real[f][0] == '/') {
            dp = opendir("/");
        } else { /* (its name cut from real[f] while it is opened) */
            const char c = real[f][fl];
            real[f][fl] = 0;
            dp = opendir(real[f]);
            real[f][fl] = c;
        }
        struct dirent *de;
        while (dp && (de = readdir(dp))) {
            const char *d = de->d_name;
            long pid = 0;
            /* the names of this folder whose second name d may be: one for NAME.kept.PID.N;
             * for .cfnet-PID-N.kept, the one whose hash N holds (two only when their hashes
             * are the same), or, left by an earlier cfnet, each whose name is too long for
             * NAME.kept.PID.N */
            int which[OUT_MAX_OPEN], nw = 0;
            for (int i = 0; i < n; i++) {
                if (folder_len(real[i]) != fl || strncmp(real[i], real[f], fl)) continue;
                const char *base = real[i] + (fl ? fl + (real[i][fl] == '/') : 0);
                if (kept_name_of(d, base, strlen(base) + 32 > 255, &pid)) which[nw++] = i;
            }
            if (!nw) continue;
            /* a run of this machine still at its commit: none of ours to speak of */
            if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
            char *kept = fl == 0                           ? xstrdup(d)
                         : fl == 1 && real[f][0] == '/' ? xasprintf("/%s", d)
                                                          : xasprintf("%.*s/%s", (int)fl, real[f], d);
            struct stat ks, ps;
            if (lstat(kept, &ks) != 0 || !S_ISREG(ks.st_mode)) {
                free(kept);
                continue;
            }
            /* the file it is a second name of, as it is: nothing needs it */
            int same = -1, there = 0;
            for (int w = 0; w < nw; w++) {
                if (lstat(real[which[w]], &ps) != 0) continue;
                there = 1;
                if (ps.st_dev == ks.st_dev && ps.st_ino == ks.st_ino) same = which[w];
            }
            if (same >= 0) {
                tool_warn("%s: a second name of %s, as it is, that a run killed during its commit "
                          "left (process %ld, no longer running on this machine); nothing needs "
                          "it: remove it", kept, real[same], pid);
            } else {
                /* which file: one name, or (the long form, several names too long for the
                 * short one in this folder) each that it may be */
                size_t len = 1;
                for (int w = 0; w < nw; w++) len += strlen(real[which[w]]) + 16;
                char *what = xmalloc(len);
                what[0] = 0;
                if (nw > 1) strcat(what, "one of ");
                for (int w = 0; w < nw; w++) {
                    if (w) strcat(what, w + 1 < nw ? ", " : " or ");
                    strcat(what, real[which[w]]);
                }
                const char *base = nw == 1 ? real[which[0]] + (fl ? fl + (real[which[0]][fl] == '/') : 0)
                                           : "its name";
                tool_warn("%s: %s as it was before process %ld ran (a run killed during its "
                          "commit, no longer running on this machine, which %s); renaming it "
                          "back to %s puts that earlier file over whatever is there by then, "
                          "this run's new file included (to restore that earlier report, "
                          "rename back every file that process %ld kept aside); otherwise "
                          "remove it",
                          kept, what, pid, there ? "had replaced it" : "had moved it out of the way",
                          base, pid);
                free(what);
            }
            free(kept);
        }
        if (dp) closedir(dp);
    }
    for (int i = 0; i < n; i++) free(real[i]);
}

/* Gives the file at e->path its second name (none there: nothing to keep). 0, or -1 said. */
static int out_keep_aside(out_entry *e)
{
    for (int k = 0; k < 100; k++) {
        kept_format(e->kept, e->kept_size, e->path, k);
        if (link(e->path, e->kept) == 0) {
            e->linked = 1;
            return 0;
        }
        int err = errno;
        if (err == ENOENT) return 0; /* no earlier file: the new one is created */
        if (err == EEXIST) continue;
        if (err == EPERM || err == ENOTSUP || err == EOPNOTSUPP || err == EMLINK || err == ENOSYS) {
            /* no hard link here (a file system without them, a file of another owner under
             * protected_hardlinks): the file itself moves to its second name, so that the
             * folder lacks it until the new file is renamed in */
            struct stat st;
            if (lstat(e->kept, &st) == 0) continue;
            if (rename(e->path, e->kept) == 0) {
                e->linked = e->moved = 1;
                return 0;
            }
            err = errno;
            if (err == ENOENT) return 0;
        }
        tool_error("%s: write failed: cannot keep the earlier file while the new one replaces "
                   "it: %s (no file replaced)", e->path, strerror(err));
        return -1;
    }
    /* (the names tried, of the form kept_format gave them: the long one for a long name) */
    const char *slash = strrchr(e->path, '/'), *base = slash ? slash + 1 : e->path;
    if (strlen(base) + 32 <= 255)
        tool_error("%s: write failed: 100 files named %s.kept.%ld.* are in the way (no file "
                   "replaced)", e->path, e->path, (long)getpid());
    else
        tool_error("%s: write failed: 100 files named %.*s.cfnet-%ld-*.kept (its second names) "
                   "are in the way (no file replaced)", e->path, (int)(slash ? slash - e->path + 1 : 0),
                   e->path, (long)getpid());
    return -1;
}

static int commit_files(tool_out *o, int n, int hold)
{
    int ok = 1;
    struct stat made[OUT_MAX_OPEN];
    int known[OUT_MAX_OPEN] = {0};
    if (n > OUT_MAX_OPEN) {
        tool_error("internal error: more outputs than one commit takes");
        ok = 0;
    }
    /* every file is on disk before any replaces its earlier version: a full disk part-way
     * leaves every earlier file as it was, not some new and some old */
    for (int i = 0; i < n; i++) {
        if (!o[i].f) {
            if (ok) tool_error("internal error: an output was not open");
            ok = 0;
        } else if (!o[i].tmp) { /* standard output, or written in place */
            int flushed = fflush(o[i].f) == 0;
            int err = flushed ? 0 : errno; /* 0: an earlier write failed, for a reason unknown */
            int bad = !flushed || ferror(o[i].f);
            if (o[i].f != stdout && fclose(o[i].f) != 0 && !bad) {
                bad = 1;
                err = errno;
            }
            if (bad && ok)
                tool_error("%s: write failed%s%s", o[i].path ? o[i].path : "standard output",
                           err ? ": " : "", err ? strerror(err) : "");
            ok = ok && !bad;
            if (o[i].made) out_track(NULL, o[i].made);
            free(o[i].made);
            free(o[i].path);
            memset(&o[i], 0, sizeof o[i]);
        } else {
            if (i < OUT_MAX_OPEN) known[i] = fstat(fileno(o[i].f), &made[i]) == 0;
            if (!out_flush_tmp(&o[i])) {
                int err = errno;
                if (ok)
                    tool_error("%s: write failed%s%s (%s unchanged)", o[i].path, err ? ": " : "",
                               err ? strerror(err) : "",
                               n > 1 ? "the earlier files are" : "the file is");
                ok = 0;
            }
        }
    }
    if (n == 1 && !hold) { /* one rename: the file is replaced whole or not at all */
        if (!o[0].tmp) return ok ? 0 : -1;
        if (ok && rename(o[0].tmp, o[0].path) != 0) {
            tool_error("%s: write failed: %s (the file is unchanged)", o[0].path, strerror(errno));
            ok = 0;
        } else if (ok) {
            sync_folder(o[0].path);
        }
        if (!ok) unlink(o[0].tmp);
        out_forget(&o[0]);
        return ok ? 0 : -1;
    }
    if (ok) {
        out_settle(1); /* (a commit held before: kept) */
        /* the journal, made before anything is renamed (nothing allocated from here to the
         * last rename) */
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (!o[i].tmp) continue;
            out_entry *e = &out_journal[k++];
            e->path = xstrdup(o[i].path);
            e->kept_size = strlen(e->path) + 64;
            e->kept = xmalloc(e->kept_size);
            e->dev = known[i] ? made[i].st_dev : 0;
            e->ino = known[i] ? made[i].st_ino : 0;
        }
        __atomic_store_n(&commit_state, 1, __ATOMIC_SEQ_CST);
        out_journal_n = k;
        for (int j = 0; j < k && ok; j++)
            if (out_keep_aside(&out_journal[j]) != 0) ok = 0;
        for (int i = 0, j = 0; i < n && ok; i++) {
            if (!o[i].tmp) continue;
            if (rename(o[i].tmp, o[i].path) != 0) {
                /* (the files renamed before it are put back below) */
                tool_error("%s: write failed: %s (no file replaced)", o[i].path, strerror(errno));
                ok = 0;
            } else {
                out_journal[j].renamed = 1;
            }
            j++;
        }
        const int was = __atomic_exchange_n(&commit_state, 0, __ATOMIC_SEQ_CST);
        if (!ok || was == 2) (void)out_journal_undo(1);
        for (int i = 0; i < n; i++) {
            if (!o[i].tmp) continue;
            if (!ok || was == 2) unlink(o[i].tmp);
            out_forget(&o[i]);
        }
        if (was == 2) out_end_by(commit_signal); /* (all put back: it ends the process) */
        if (!ok) {
            out_journal_clear();
            return -1;
        }
        /* on disk; out of memory here (the folder's name) puts the earlier files back too */
        for (int j = 0; j < k; j++) sync_folder(out_journal[j].path);
        if (!hold) out_settle(1);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (!o[i].tmp) continue;
        unlink(o[i].tmp);
        out_forget(&o[i]);
    }
    return -1;
}

int out_commit_all(tool_out *o, int n)
{
    return commit_files(o, n, 0);
}

int out_commit_held(tool_out *o, int n)
{
    return commit_files(o, n, 1);
}

void out_held_folder(const char *dir, const char *top)
{
    if (!out_journal_n || !dir || !top) return;
    free(held_dir);
    free(held_top);
    held_dir = xstrdup(dir);
    held_top = xstrdup(top);
}

void out_settle(int keep)
{
    if (!out_journal_n) return;
    if (!keep) {
        (void)out_journal_undo(1);
        if (held_dir) remove_new_dirs(held_dir, held_top);
        out_journal_clear();
        return;
    }
    /* the second names go; a signal meanwhile waits, and then finds the new files kept */
    __atomic_store_n(&commit_state, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < out_journal_n; i++) {
        out_entry *e = &out_journal[i];
        if (e->path && e->linked) (void)unlink(e->kept);
        e->linked = e->renamed = e->moved = 0;
    }
    const int was = __atomic_exchange_n(&commit_state, 0, __ATOMIC_SEQ_CST);
    out_journal_clear();
    if (was == 2) out_end_by(commit_signal);
}

int out_commit(tool_out *o)
{
    return out_commit_all(o, 1);
}

void out_discard(tool_out *o)
{
    if (o->f && o->tmp) {
        fclose(o->f);
        unlink(o->tmp);
        out_track(NULL, o->tmp);
        if (o->lock > 0) close(o->lock - 1);
    } else if (o->f && o->f != stdout) {
        struct stat fst, mst; /* the file made through a link, if it is still that file */
        if (o->made && fstat(fileno(o->f), &fst) == 0 && stat(o->made, &mst) == 0 &&
            fst.st_dev == mst.st_dev && fst.st_ino == mst.st_ino)
            unlink(o->made);
        fclose(o->f);
    }
    if (o->made) out_track(NULL, o->made);
    free(o->made);
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

int check_writable(const char *cmd, const char *label, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return 0; /* a device or pipe: opening it here could block or consume it */
    /* a link to a file not there yet: out_open creates that file, out_discard removes it */
    tool_out o;
    int u = out_open(&o, path, cmd, label); /* its refusal is a usage error of cmd */
    if (u == 0) out_discard(&o);
    return u;
}

/* The canonical name of path: realpath() when it exists, else its resolved folder plus its last
 * name (a file about to be created); NULL when neither resolves. */
static char *canonical(const char *path)
{
    char *r = realpath(path, NULL);
    if (r) return r;
    const char *slash = strrchr(path, '/');
    char *dir = path_dir(path);
    char *rd = realpath(dir, NULL);
    free(dir);
    if (!rd) return NULL;
    const char *base = slash ? slash + 1 : path;
    char *out = path_join(rd, base);
    free(rd);
    return out;
}

void tool_saved_note(tool_saved *f, const char *path)
{
    struct stat st;
    memset(f, 0, sizeof *f);
    if (stat(path, &st) != 0) return;
    f->known = 1;
    f->size = (long long)st.st_size;
    f->mtime_sec = (long long)st.st_mtim.tv_sec;
    f->mtime_nsec = (long long)st.st_mtim.tv_nsec;
}

int tool_saved_unchanged(const tool_saved *f, const char *path)
{
    struct stat st;
    if (!f->known || stat(path, &st) != 0)
        return 1; /* not saved yet, or removed: nothing of another run to keep apart */
    return (long long)st.st_size == f->size && (long long)st.st_mtim.tv_sec == f->mtime_sec &&
           (long long)st.st_mtim.tv_nsec == f->mtime_nsec;
}

int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char *ca = canonical(a), *cb = canonical(b);
    int same = ca && cb ? !strcmp(ca, cb) : !strcmp(a, b);
    free(ca);
    free(cb);
    return same;
}

/* The last name of a path. */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int64_t dataset_holds(const tool_dataset *ds, const char *path)
{
    struct stat so, st;
    if (stat(path, &so) != 0) return -1; /* a new file: not an input */
    /* Only samples with the same last name are compared by inode: a stat per image of a large
     * dataset on a network file system would cost seconds (a hard link under another name goes
     * unnoticed). */
    const char *b = base_name(path);
    for (int64_t i = 0; i < ds->n; i++)
        if (!strcmp(base_name(ds->s[i].path), b) && stat(ds->s[i].path, &st) == 0 &&
            st.st_dev == so.st_dev && st.st_ino == so.st_ino)
            return i;
    return -1;
}

char *path_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    const size_t n = (size_t)(slash - path);
    char *d = xmalloc(n + 1);
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

int path_inside(const char *path, const char *dir)
{
    struct stat ds, st;
    if (stat(dir, &ds) != 0 || !S_ISDIR(ds.st_mode)) return 0;
    /* where mkdir -p puts path: its names taken left to right, links resolved where there is a
     * file, ".." after a folder still to be made going back where it was made ("new/../DATA") */
    char *cur = path[0] == '/' ? xstrdup("/") : realpath(".", NULL);
    if (!cur) return 0;
    char *p = xstrdup(path), *save = NULL;
    for (char *c = strtok_r(p, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, ".")) continue;
        char *next = strcmp(c, "..") ? path_join(cur, c) : path_dir(cur);
        free(cur);
        cur = realpath(next, NULL);
        if (cur) free(next);
        else cur = next;
    }
    free(p);
    /* that place or a folder above it is dir: the same device and inode, so a bind mount of dir
     * is dir too, and a folder that merely begins with its name (DATA2) is not */
    int in = 0;
    for (;;) {
        if (stat(cur, &st) == 0 && st.st_dev == ds.st_dev && st.st_ino == ds.st_ino) {
            in = 1;
            break;
        }
        char *up = path_dir(cur);
        const int top = !strcmp(up, cur);
        free(cur);
        cur = up;
        if (top) break;
    }
    free(cur);
    return in;
}

char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    if (n == 0 || name[0] == '/' || !strcmp(dir, ".")) return xstrdup(name);
    if (dir[n - 1] == '/') return xasprintf("%s%s", dir, name);
    return xasprintf("%s/%s", dir, name);
}

int has_image_extension(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/')) return 0;
    return !strcasecmp(dot, ".tif") || !strcasecmp(dot, ".tiff") || !strcasecmp(dot, ".png");
}

/* Length of the valid UTF-8 sequence at p (1 to 4), or 0 if the bytes there are not one
 * (a stray continuation byte, a cut-off sequence, an overlong form, a surrogate, a code point
 * above U+10FFFF): the rules jansson checks strings by. */
static int utf8_seq(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))) return 0;
    if (n == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))) return 0;
    return n;
}

char *utf8_repair(const char *s, int hex, int *was_valid)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    char *o = xmalloc(4 * n + 1), *q = o;
    int valid = 1;
    while (*p) {
        int l = utf8_seq(p);
        if (l > 0) {
            memcpy(q, p, (size_t)l);
            q += l;
            p += l;
            continue;
        }
        valid = 0;
        if (hex) q += sprintf(q, "\\x%02X", *p);
        else q += sprintf(q, "\xEF\xBF\xBD"); /* U+FFFD REPLACEMENT CHARACTER */
        p++;
    }
    *q = 0;
    if (was_valid) *was_valid = valid;
    return o;
}

char *csv_quote(const char *s)
{
    if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && (s[0] == 0 || s[strlen(s) - 1] != ' '))
        return xstrdup(s);
    size_t n = strlen(s);
    char *o = xmalloc(2 * n + 3), *q = o;
    *q++ = '"';
    for (const char *p = s; *p; p++) {
        if (*p == '"') *q++ = '"';
        *q++ = *p;
    }
    *q++ = '"';
    *q = 0;
    return o;
}

void csv_write_names(FILE *f, char **names, int n)
{
    for (int j = 0; j < n; j++) {
        char *q = csv_quote(names[j]);
        fprintf(f, ",%s", q);
        free(q);
    }
}

void progress_init(tool_progress *p, FILE *out)
{
    p->out = out;
    p->tty = isatty(fileno(out));
    p->t0 = tool_now();
    p->last_plain = 0;
    p->last_tick = 0;
}

void progress_line(tool_progress *p, int force, const char *fmt, ...)
{
    if (tool_quiet || (!p->tty && !force)) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (p->tty) {
        fprintf(p->out, "\r%s\033[K", buf);
        open_line = p->out;
    } else
        fprintf(p->out, "%s\n", buf);
    fflush(p->out);
}

void progress_tick(tool_progress *p, const char *fmt, ...)
{
    if (tool_quiet || !p->tty) return;
    double t = tool_now();
    if (p->last_tick > 0 && t - p->last_tick < 0.1) return;
    p->last_tick = t;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    progress_line(p, 0, "%s", buf);
}

void progress_done(tool_progress *p)
{
    if (open_line == p->out) end_open_line();
}

void progress_erase(tool_progress *p)
{
    if (open_line == p->out) {
        fputs("\r\033[K", p->out);
        fflush(p->out);
        open_line = NULL;
    }
    p->last_tick = 0; /* the next line is another one: drawn at once */
}

static void on_signal(int sig)
{
    (void)sig;
    tool_interrupted = 1;
}

void tool_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a write blocked on a full pipe (stderr read by a program that lags, a CSV on
     * standard output) goes on after the signal; without it the write failed with EINTR and
     * stdio dropped the rest of the message. The run still stops where tool_interrupted is
     * checked (every read and write of the command's own retries on EINTR anyway). */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* a closed terminal stops training like Ctrl-C (it used to end the process at once, even
     * inside a save, leaving its temporary file); under nohup SIGHUP stays ignored */
    struct sigaction old;
    if (sigaction(SIGHUP, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
        sigaction(SIGHUP, &sa, NULL);
}

/* OpenBLAS threads on top of libcfnet's own threads oversubscribe the cores (see
 * docs/performance.md); a weak reference keeps other BLAS libraries working. */
extern void openblas_set_num_threads(int n) __attribute__((weak));
#pragma weak cblas_sgemm

void tool_blas_single_thread(void)
{
    if (openblas_set_num_threads && !getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
}

int tool_blas_room(const char *hint)
{
    struct rlimit as, data;
    if (!openblas_set_num_threads || !cblas_sgemm) return 0;
    int limited_as = getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY;
    int limited_data = getrlimit(RLIMIT_DATA, &data) == 0 && data.rlim_cur != RLIM_INFINITY;
    if (!limited_as && !limited_data) return 0;
    /* reserved, not touched: counts against both limits without using memory */
    void *p = mmap(NULL, TOOL_BLAS_ROOM, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        uint64_t lim = limited_as ? (uint64_t)as.rlim_cur : (uint64_t)data.rlim_cur;
        int v = limited_as;
        if (limited_as && limited_data && (uint64_t)data.rlim_cur < lim) {
            lim = (uint64_t)data.rlim_cur;
            v = 0;
        }
        /* under mpirun the limit may be one node's: the message names the rank (its callers
         * hold it and agree, so that rank 0 says it and every rank ends with status 1, see
         * tests/test_mpi.sh) */
        char who[48] = "";
        if (tool_mpi_size() > 1)
            snprintf(who, sizeof who, "rank %d of %d: ", tool_mpi_rank(), tool_mpi_size());
        tool_error("%sthe ulimit -%s limit of %.0f MiB leaves less than %zu MiB for OpenBLAS's "
                   "working buffer (128 MiB; OpenBLAS retries a failed allocation forever, so the "
                   "run would hang): raise the limit%s",
                   who, v ? "v" : "d", lim / 1048576.0, TOOL_BLAS_ROOM >> 20, hint);
        return -1;
    }
    munmap(p, TOOL_BLAS_ROOM);
    /* one product now makes OpenBLAS take its buffer, which it keeps: an allocation failing
     * later is then libcfnet's, said as "out of memory", not a hang inside OpenBLAS */
    enum { N = 128 };
    float *m = xcalloc((size_t)3 * N * N, sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, m, N, m + N * N, N, 0.0f,
                m + 2 * N * N, N);
    free(m);
    return 0;
}
