/* Files: the POSIX calls behind atomic saves and bounded reads (see platform.h). */
#include "platform/platform.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/vfs.h>
#endif
#include <unistd.h>

#ifndef S_ISVTX
#define S_ISVTX 01000 /* the sticky bit (XSI; outside the POSIX base this file is built for) */
#endif

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

int cf_platform_temp_file(char *tmpl, const char *replaces)
{
    int fd = mkstemp(tmpl);
    if (fd < 0) return -1;
    /* mkstemp creates the file 0600; give it the mode an ordinary create would (or the mode of
     * the file it replaces). Failing to do so is not worth losing the save over. */
    struct stat sb;
    mode_t mode = (replaces && stat(replaces, &sb) == 0 && S_ISREG(sb.st_mode))
                      ? (sb.st_mode & 0777)
                      : (0666 & ~current_umask());
    (void)fchmod(fd, mode);
    return fd;
}

int cf_platform_host_name(char *buf, size_t size)
{
    if (size < 2 || gethostname(buf, size) != 0) return -1;
    buf[size - 1] = '\0';
    return buf[0] && !strchr(buf, '/') ? 0 : -1;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

static int same_inode(int fd, const char *name)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && lstat(name, &b) == 0 && same_file(&a, &b);
}

bool cf_platform_pid_gone(long pid)
{
    return pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Takes a shared lock on fd without waiting: true when no process holds an exclusive one (a live
 * writer's), or, lenient, when the file system has no locks (the caller's process id decided). */
static bool lock_unless_held(int fd, bool lenient)
{
    return flock(fd, LOCK_SH | LOCK_NB) == 0 || (lenient && errno != EWOULDBLOCK);
}

/* Removes the regular file `name` (in the folder dir, or AT_FDCWD) if no process holds a lock on
 * it, holding a shared lock (it excludes a writer's exclusive one, and needs only reading, over
 * NFS too) over the unlink so that a writer that locks after finds its name gone; when `seen` is
 * given, only while it is still that file. lenient: a file that cannot be opened, or a file
 * system without locks, is removed all the same (the caller's process id decided). 0 when
 * removed. */
static int unlink_if_unlocked(int dir, const char *name, const struct stat *seen, bool lenient)
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return lenient && errno != ENOENT && errno != ELOOP ? unlinkat(dir, name, 0) : -1;
    struct stat sb, now;
    int rc = -1;
    if (lock_unless_held(fd, lenient) && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (!seen || same_file(&sb, seen)) &&
        fstatat(dir, name, &now, AT_SYMLINK_NOFOLLOW) == 0 && same_file(&sb, &now))
        rc = unlinkat(dir, name, 0);
    close(fd);
    return rc;
}

int cf_platform_temp_file_locked(const char *name, const char *replaces)
{
    int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    /* A file of this name already: one that a process of this id on this host left (the id was
     * reused), removed unless it is locked (a live writer: another thread of this process saving
     * the same path, or a process of the same id elsewhere sharing the folder). */
    if (fd < 0 && errno == EEXIST) {
        if (unlink_if_unlocked(AT_FDCWD, name, NULL, false) != 0) {
            errno = EEXIST;
            return -1;
        }
        fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    /* Locked, and still the file of that name (a cleaner may have removed it between the
     * creation and the lock: then created again). Without locks on this file system, the
     * process id in the name decides. Never waits. */
    for (int again = 0; fd >= 0; again++) {
        int locked = flock(fd, LOCK_EX | LOCK_NB) == 0;
        if ((locked || errno != EWOULDBLOCK) && same_inode(fd, name)) break;
        close(fd);
        fd = -1;
        if (again == 2) {
            errno = EEXIST;
            break;
        }
        fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd < 0) return -1;
    struct stat sb;
    if (replaces && stat(replaces, &sb) == 0 && S_ISREG(sb.st_mode))
        (void)fchmod(fd, sb.st_mode & 0777);
    return fd;
}

void cf_platform_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int cf_platform_open_read_nowait(const char *path)
{
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; the caller's fstat
     * then refuses anything that is not a regular file before a byte is read. */
    return open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
}

void cf_platform_set_blocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

size_t cf_platform_temp_keep(const char *base, size_t blen, size_t slen, size_t name_max)
{
    if (blen + slen <= name_max) return blen;
    size_t keep = name_max > slen ? name_max - slen : 0;
    /* not inside a UTF-8 character: back to the lead byte of one cut (at most 3 bytes back) */
    const unsigned char *b = (const unsigned char *)base;
    size_t k = keep;
    while (k > 0 && keep - k < 3 && (b[k] & 0xc0) == 0x80) k--;
    return k < keep && (b[k] & 0xc0) == 0xc0 ? k : keep;
}

/* The process id of a temporary name's "<pid>" at q (1 to 999999999, no leading zero); *end
 * after it. 0 when there is none. */
static long name_pid(const char *q, const char **end)
{
    size_t digits = strspn(q, "0123456789");
    if (digits == 0 || digits > 9 || q[0] == '0') return 0;
    *end = q + digits;
    return strtol(q, NULL, 10);
}

/* What follows "<pid>" or "<pid>-<n>" at q (a staging folder's or claim's name after its
 * prefix: the host part, "" for none), *pid its process id; NULL when q is neither. */
static const char *after_run_id(const char *q, long *pid)
{
    const char *tail = NULL;
    *pid = name_pid(q, &tail);
    if (*pid == 0) return NULL;
    if (tail[0] == '-') {
        size_t digits = strspn(tail + 1, "0123456789");
        if (digits == 0) return NULL;
        tail += 1 + digits;
    }
    return tail;
}

/* Where "<pid>" starts in the entry n if n is a temporary name of base (blen bytes) with the
 * suffix ".<host>": "<base>.tmp.<pid>..." whole, or shortened as cf_platform_temp_keep says
 * ("<a beginning of base>.tmp.<pid>.<host>", as long as the folder allows). Else NULL. */
static const char *temp_pid_start(const char *n, const char *base, size_t blen,
                                  const char *hsuffix, size_t name_max)
{
    if (strncmp(n, base, blen) == 0 && strncmp(n + blen, ".tmp.", 5) == 0) return n + blen + 5;
    size_t len = strlen(n), hlen = strlen(hsuffix);
    if (len <= hlen || strcmp(n + len - hlen, hsuffix) != 0) return NULL;
    size_t start = len - hlen;
    while (start > 0 && n[start - 1] >= '0' && n[start - 1] <= '9') start--;
    if (start == len - hlen || start < 5 || strncmp(n + start - 5, ".tmp.", 5) != 0) return NULL;
    size_t keep = start - 5;
    /* cut on a character boundary, or (as earlier versions did) at the byte the limit says */
    size_t slen = len - keep;
    if (keep >= blen || strncmp(n, base, keep) != 0 ||
        (cf_platform_temp_keep(base, blen, slen, name_max) != keep &&
         (len != name_max || blen + slen <= name_max)))
        return NULL;
    return n + start;
}

/* A stream over the folder open as dirfd, from its first entry, on a descriptor of its own
 * (closedir leaves dirfd open); NULL with errno set. */
static DIR *reopen_dir(int dirfd)
{
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int err = errno;
        if (fd >= 0) close(fd);
        errno = err;
        return NULL;
    }
    rewinddir(d); /* the duplicate shares dirfd's offset */
    return d;
}

int cf_platform_remove_stale_temps(int dirfd, const char *base, unsigned flags, size_t *removed,
                                   char *first, size_t first_size)
{
    *removed = 0;
    if (first_size) first[0] = '\0';
    char host[256], hsuffix[258];
    if (cf_platform_host_name(host, sizeof host) != 0) return 0;
    snprintf(hsuffix, sizeof hsuffix, ".%s", host);
    DIR *d = reopen_dir(dirfd);
    if (!d) return -1;
    long m = fpathconf(dirfd, _PC_NAME_MAX);
    size_t name_max = m > 0 ? (size_t)m : (size_t)NAME_MAX, blen = strlen(base);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name, *tail = NULL;
        const char *q = temp_pid_start(n, base, blen, hsuffix, name_max);
        long pid = q ? name_pid(q, &tail) : 0;
        if (pid == 0) continue;
        /* the command's empty probe "<base>.tmp.<pid>.<n>" has no host: removing another host's
         * is harmless, it only unlinks it again */
        bool probe = (flags & CF_STALE_PROBES) && q == n + blen + 5 && tail[0] == '.' && tail[1] &&
                     strspn(tail + 1, "0123456789") == strlen(tail + 1);
        if (!probe && strcmp(tail, hsuffix) != 0) continue;
        if (!cf_platform_pid_gone(pid)) continue;
        struct stat st;
        if (fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (!probe || st.st_size == 0) &&
            unlink_if_unlocked(dirfd, n, &st, (flags & CF_STALE_LENIENT) != 0) == 0 &&
            (*removed)++ == 0 && first_size)
            snprintf(first, first_size, "%s", n);
    }
    closedir(d);
    return 0;
}

int cf_platform_lock_dir(const char *path, bool *locked)
{
    *locked = false;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        /* a file system without locks, or no lock for another reason (ENOLCK): not locked,
         * *locked says so (the caller does not mark the folder as a run's) */
        if (errno != EWOULDBLOCK) return fd;
        close(fd);
        errno = EEXIST;
        return -1;
    }
    /* locked, and still the folder of that name (not removed, or replaced, by a cleaner
     * before the lock was taken): else ENOENT */
    struct stat a, b;
    if (fstat(fd, &a) != 0 || lstat(path, &b) != 0 || !same_file(&a, &b)) {
        close(fd);
        errno = ENOENT;
        return -1;
    }
    /* the sticky bit that said "made, not locked yet" is cleared (after the lock, so
     * that a cleaner that sees it cleared finds the lock held, or the run over) */
    struct stat sb;
    if (fstat(fd, &sb) == 0 && (sb.st_mode & S_ISVTX))
        (void)fchmod(fd, sb.st_mode & 07777 & ~(mode_t)S_ISVTX);
    *locked = true;
    return fd;
}

/* Whether the folder open as fd is on a file system of this machine's own disks or memory,
 * which no other host writes (ext2/3/4, XFS, Btrfs, F2FS, tmpfs): there flock(2) is seen by
 * every process that can reach the folder, so a lock not held means its run is over. Network
 * and cluster file systems (NFS, SMB, Lustre, CephFS, ...) and any other: false. */
static bool locks_local(int fd)
{
#ifdef __linux__
    struct statfs sf;
    if (fstatfs(fd, &sf) != 0) return false;
    switch ((unsigned long)sf.f_type) {
    case 0xEF53UL:     /* ext2/3/4 */
    case 0x58465342UL: /* XFS */
    case 0x9123683EUL: /* Btrfs */
    case 0xF2F52010UL: /* F2FS */
    case 0x01021994UL: /* tmpfs */
        return true;
    default:
        return false;
    }
#else
    (void)fd;
    return false;
#endif
}

/* Whether the folder open as fd holds only regular files and, `depth` levels down, folders that
 * hold only such. */
static bool tree_plain(int fd, int depth)
{
    DIR *d = reopen_dir(fd);
    if (!d) return false;
    bool plain = true;
    for (struct dirent *e; plain && (e = readdir(d)) != NULL;) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        plain = fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                (S_ISREG(st.st_mode) || (S_ISDIR(st.st_mode) && depth > 0));
        if (plain && S_ISDIR(st.st_mode)) {
            int sub = openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            plain = sub >= 0 && tree_plain(sub, depth - 1);
            if (sub >= 0) close(sub);
        }
    }
    closedir(d);
    return plain;
}

/* Removes what the folder open as fd holds, its folders emptied first (tree_plain said what is
 * there). */
static void tree_empty(int fd)
{
    DIR *d = reopen_dir(fd);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                tree_empty(sub);
                close(sub);
            }
            (void)unlinkat(fd, e->d_name, AT_REMOVEDIR);
        } else {
            (void)unlinkat(fd, e->d_name, 0);
        }
    }
    closedir(d);
}

/* One line of an id file (/etc/machine-id, the boot id): hex digits and '-', 1 to 63 of them. */
static bool read_id(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t r;
    do r = read(fd, buf, size - 1);
    while (r < 0 && errno == EINTR);
    close(fd);
    if (r <= 0) return false;
    buf[r] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    size_t n = strlen(buf);
    return n > 0 && n < 64 && strspn(buf, "0123456789abcdefABCDEF-") == n;
}

/* The machine's ids: MACHINE its /etc/machine-id (or /var/lib/dbus/machine-id), else "boot-"
 * and the boot id (a machine without an id is told apart by its boot alone), BOOT the kernel's
 * boot id; each empty where there is none (outside Linux: no /proc, often no machine id).
 * CFNET_TEST_ID_ROOT is a test hook (tests/test_cli_crop.sh), as CFNET_TEST_CGROUP_ROOT is for
 * the cgroup's files: a folder standing for "/" where the three files are read (an empty folder:
 * a machine without ids). */
static void machine_ids(char *machine, size_t msize, char *boot, size_t bsize)
{
    const char *root = getenv("CFNET_TEST_ID_ROOT");
    if (!root) root = "";
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/proc/sys/kernel/random/boot_id", root);
    if (!read_id(path, boot, bsize)) boot[0] = '\0';
    snprintf(path, sizeof path, "%s/etc/machine-id", root);
    if (read_id(path, machine, msize)) return;
    snprintf(path, sizeof path, "%s/var/lib/dbus/machine-id", root);
    if (!read_id(path, machine, msize))
        snprintf(machine, msize, "%s%s", boot[0] ? "boot-" : "", boot);
}

/* "host=HOST\nmachine=MACHINE\nboot=BOOT\npid=", the mark's head on this machine
 * (machine_ids). Its length, or 0 when it does not fit. *known: whether the machine's identity
 * is known, its boot id there (then MACHINE is never empty either): without it two cloned
 * machines of one host name (or one whose machine id was not renewed) write the same head. */
static size_t mark_head(char *buf, size_t size, const char *host, bool *known)
{
    char boot[80] = "", machine[96] = "";
    machine_ids(machine, sizeof machine, boot, sizeof boot);
    *known = boot[0] && machine[0];
    int n = snprintf(buf, size, "host=%s\nmachine=%s\nboot=%s\npid=", host, machine, boot);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

int cf_platform_run_mark(char *buf, size_t size, const char *host)
{
    bool known;
    size_t n = mark_head(buf, size, host, &known);
    if (n == 0) return -1;
    int m = snprintf(buf + n, size - n, "%ld\n", (long)getpid());
    return m > 0 && (size_t)m < size - n ? 0 : -1;
}

/* Whether the folder open as fd holds the regular file `mark` of a run of this host, machine and
 * boot: exactly cf_platform_run_mark's text (any process id), nothing after (a host name may
 * hold a newline: the mark of a host "HOST\nX" begins with the line "host=HOST" too). A mark
 * that cannot be read, another host's (a client's on an NFS server, whose flock the server does
 * not see), another machine's of the same host name (a cloned virtual machine sharing the
 * folder) or of another boot (such a clone whose machine id was not renewed; or this machine
 * before a reboot, which cannot be told from it) is no run's of this machine: an empty folder
 * is no run's either (a folder of the user's). Nor is any mark where this machine's identity is
 * unknown (no boot id: outside Linux, or without /proc): its empty ids, matched exactly, prove
 * nothing (two cloned machines of one host name write the same mark; on an NFS server's own disk,
 * which counts as this machine's, a client clone's folder would be removed), so nothing is
 * removed on such a machine (remove a killed run's folder by hand). Never follows a link or waits
 * on a FIFO; reads at most a few hundred bytes. */
static bool dir_marked(int fd, const char *mark, const char *host)
{
    struct stat st, now;
    if (fstatat(fd, mark, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return false;
    char head[512];
    bool known;
    size_t hl = mark_head(head, sizeof head, host, &known);
    if (hl == 0 || !known) return false;
    int mfd = openat(fd, mark, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (mfd < 0) return false;
    char buf[600];
    size_t got = 0;
    bool ok = fstat(mfd, &now) == 0 && S_ISREG(now.st_mode) && same_file(&st, &now);
    for (ssize_t r; ok && got < sizeof buf && (r = read(mfd, buf + got, sizeof buf - got)) != 0;) {
        if (r < 0) {
            if (errno == EINTR) continue;
            ok = false;
            break;
        }
        got += (size_t)r;
    }
    close(mfd);
    /* the head, then digits and "\n": the whole file (one that fills buf is longer) */
    if (!ok || got >= sizeof buf || got < hl + 2 || memcmp(buf, head, hl) != 0) return false;
    size_t at = hl, digits = 0;
    while (at < got && buf[at] >= '0' && buf[at] <= '9') at++, digits++;
    return digits > 0 && at + 1 == got && buf[at] == '\n';
}

/* Removes the folder `name` in dirfd and the regular files in it (and, `depth` levels down, the
 * folders in it that hold only such), while no process holds a lock on it
 * (cf_platform_lock_dir) and it is still the folder of that name. pid_stale: the process of
 * its name is gone; else only a folder that was locked once (its sticky bit cleared) on a file
 * system whose locks every writer's process shares (`local`) is removed: there the lock alone
 * tells, whatever process has the id now. Only a folder that holds `mark` (dir_marked: of this
 * host, machine and boot) is a run's. A folder that holds anything else stays whole. 0 when
 * removed. */
static int remove_dir_if_unlocked(int dirfd, const char *name, const char *mark, int depth,
                                  bool pid_stale, bool local, const char *host)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb, now;
    /* the mode before the lock: cleared, the run had locked it (or was a run of a version
     * without the mark, which locked it before writing a file) */
    if (fstat(fd, &sb) != 0 || (!pid_stale && (!local || (sb.st_mode & S_ISVTX))) ||
        !lock_unless_held(fd, false) || fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0 ||
        !same_file(&sb, &now)) {
        close(fd); /* a run's own, or gone (renamed into DIR's place) since it was read */
        return -1;
    }
    /* a run's (its mark in it, naming this host, machine and boot), of
     * regular files (and plain folders of them) only, or it is left as it is: a folder of the
     * user's that has the name stays, empty or not */
    bool files = dir_marked(fd, mark, host) && tree_plain(fd, depth);
    if (files) tree_empty(fd);
    int rc = files ? unlinkat(dirfd, name, AT_REMOVEDIR) : -1;
    close(fd);
    return rc;
}

int cf_platform_remove_stale_dirs(int dirfd, const char *prefix, const char *mark, int depth,
                                  size_t *removed)
{
    *removed = 0;
    char host[256], hsuffix[258];
    bool hosted = cf_platform_host_name(host, sizeof host) == 0;
    if (hosted) snprintf(hsuffix, sizeof hsuffix, ".%s", host);
    DIR *d = reopen_dir(dirfd);
    if (!d) return -1;
    size_t plen = strlen(prefix);
    bool local = locks_local(dirfd);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        if (strncmp(n, prefix, plen) != 0) continue;
        /* "<pid>.<host>" or "<pid>-<n>.<host>" (the name taken): the host is all after the
         * first '.', so a host "box.2" is never host "box" with a number. The names of earlier
         * versions, "<pid>.<host>.<n>" (of host "<host>.<n>" as well) and "<pid>" (of any
         * host), stay. */
        long pid;
        const char *tail = after_run_id(n + plen, &pid);
        if (!tail) continue;
        /* "<pid>" or "<pid>-<n>" without a host (no host name, or none that fit in the name):
         * of any host or container, its process id tells nothing; on a file system of this
         * machine's own its lock tells, but only for a run of this machine: an NFS server's
         * own disk is written by its clients too, whose flock the server does not see, so
         * only a folder whose mark names this host is taken */
        if (!tail[0]) {
            struct stat st;
            if (local && hosted && fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISDIR(st.st_mode) &&
                remove_dir_if_unlocked(dirfd, n, mark, depth, false, true, host) == 0)
                (*removed)++;
            continue;
        }
        if (!hosted || strcmp(tail, hsuffix) != 0) continue;
        /* this process's own id too: the caller has made no folder yet, so one of that id is a
         * killed run's whose process id came round again (a container's, run after run) */
        struct stat st;
        bool pid_stale = pid == (long)getpid() || cf_platform_pid_gone(pid);
        if ((pid_stale || local) && fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISDIR(st.st_mode) &&
            remove_dir_if_unlocked(dirfd, n, mark, depth, pid_stale, local, host) == 0)
            (*removed)++;
    }
    closedir(d);
    return 0;
}

/* The claim `name` (a regular file in dirfd, its lock free, checked by the caller's rules) and the
 * folder `sprefix` + `suffix` it made, when the claim is exactly this host's mark (dir_marked): the
 * folder is removed only while its lock is free and it is empty (rmdir(2) itself refuses one that
 * holds anything: a file of the user's, the output of a run), the claim only once its folder is
 * gone. A claim that is empty or holds anything else is no run's (a run's claim is never seen
 * without its whole mark: stage.c) and stays, and its folder with it. Counted in *out as
 * cf_platform_remove_stale_claims says. */
static void remove_claim(int dirfd, const char *name, const char *sprefix, const char *suffix,
                         const char *host, cf_stale_claims *out)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat sb, now;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || !lock_unless_held(fd, false) ||
        fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) != 0 || !same_file(&sb, &now)) {
        close(fd); /* a live run's (locked), or gone since it was read */
        return;
    }
    /* exactly this host's mark, and still the file locked here */
    bool ours = sb.st_size > 0 && dir_marked(dirfd, name, host) &&
                fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 && same_file(&sb, &now);
    bool folder = false, had_folder = false;
    if (ours) {
        char sname[NAME_MAX * 2 + 2];
        snprintf(sname, sizeof sname, "%s%s", sprefix, suffix);
        struct stat a, b;
        int sfd = openat(dirfd, sname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        had_folder = fstatat(dirfd, sname, &b, AT_SYMLINK_NOFOLLOW) == 0;
        if (sfd >= 0 && fstat(sfd, &a) == 0 && lock_unless_held(sfd, false) &&
            fstatat(dirfd, sname, &b, AT_SYMLINK_NOFOLLOW) == 0 && same_file(&a, &b) &&
            unlinkat(dirfd, sname, AT_REMOVEDIR) == 0)
            out->removed++;
        if (sfd >= 0) close(sfd);
        folder = fstatat(dirfd, sname, &b, AT_SYMLINK_NOFOLLOW) == 0;
        /* kept, not empty: a run's whole output, its mark moved out for the rename into DIR */
        if (folder && S_ISDIR(b.st_mode)) {
            char **k = realloc(out->kept, sizeof *k * (out->nkept + 1));
            if (k) out->kept = k;
            if (k && (k[out->nkept] = strdup(sname)) != NULL) out->nkept++;
            out->finished++; /* counted even when its name could not be kept (no memory) */
        }
    }
    /* a claim alone (no folder of its name when it was proved its run's): said by the caller,
     * once, as it is removed without a folder to tell of */
    if (ours && !folder && fstatat(dirfd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
        same_file(&sb, &now) && unlinkat(dirfd, name, 0) == 0 && !had_folder &&
        out->lone++ == 0)
        snprintf(out->lone_first, sizeof out->lone_first, "%s", name);
    close(fd);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void cf_platform_stale_claims_free(cf_stale_claims *c)
{
    for (size_t i = 0; i < c->nkept; i++) free(c->kept[i]);
    free(c->kept);
    c->kept = NULL;
}

int cf_platform_remove_stale_claims(int dirfd, const char *cprefix, const char *sprefix,
                                    cf_stale_claims *out)
{
    memset(out, 0, sizeof *out);
    char host[256], hsuffix[258];
    if (cf_platform_host_name(host, sizeof host) != 0) return 0;
    snprintf(hsuffix, sizeof hsuffix, ".%s", host);
    DIR *d = reopen_dir(dirfd);
    if (!d) return -1;
    size_t plen = strlen(cprefix);
    bool local = locks_local(dirfd);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        if (strncmp(n, cprefix, plen) != 0) continue;
        long pid;
        const char *tail = after_run_id(n + plen, &pid);
        if (!tail) continue;
        /* as cf_platform_remove_stale_dirs decides for the folders: without a host in the
         * name, on this machine's own disk only, by the lock (and a mark naming this host); of
         * this host, by the lock there, elsewhere when the process is gone too */
        if (tail[0]) {
            if (strcmp(tail, hsuffix) != 0) continue;
            if (!local && pid != (long)getpid() && !cf_platform_pid_gone(pid)) continue;
        } else if (!local) {
            continue;
        }
        struct stat st;
        if (fstatat(dirfd, n, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        /* an empty claim is no run's (a file of the user's of that name): kept */
        if (st.st_size == 0) continue;
        remove_claim(dirfd, n, sprefix, n + plen, host, out);
    }
    closedir(d);
    /* by name, not in the folder's order, so that the note naming them is the same each run */
    if (out->nkept > 1) qsort(out->kept, out->nkept, sizeof *out->kept, cmp_names);
    return 0;
}
