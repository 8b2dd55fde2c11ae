/* An output folder written whole or not at all (crop's -o DIR, synth's DIR): the files go into a
 * hidden staging folder beside DIR, locked while the run lasts, renamed into DIR's place only
 * when every file was written. */
#define _GNU_SOURCE
#include "tool.h"

#include "platform/platform.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* A refusal (tool_refuse: a usage error of how->usage_cmd, or an error), after how->label,
 * errno e its cause (0: none). */
static int refuse(const tool_stage_how *how, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(const tool_stage_how *how, int e, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tool_refuse(how->usage_cmd, e, "%s%s", how->label, msg);
}

/* The file a run puts in its staging folder once it holds the folder's lock (its claim, made
 * beside the folder before the folder, moved in: stage_open), naming its host and
 * process (cf_platform_run_mark: host, machine, boot, pid), moved back out to the claim's name
 * just before the folder becomes DIR (stage_commit): only a folder
 * holding it is taken for a killed run's (a folder without a host in its name, only by a run of
 * the host it names), not a folder of the user's that has a staging folder's name (empty or
 * not), nor one whose run could not lock it (a file system without locks, ENOLCK) and goes on
 * unlocked. */
#define STAGE_MARK ".cfnet-staging"

/* nftw's: all but the staging folder's mark, which stage_close removes last */
static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    if (ftw->level == 1 && !strcmp(path + ftw->base, STAGE_MARK)) return 0;
    if (flag == FTW_DP) (void)rmdir(path);
    else (void)unlink(path);
    return 0;
}

/* Whether the folder `path` is the root of a mount other than its parent's (another file
 * system, or a bind mount of the same one: told by the mount id where the kernel gives it). */
static int mount_point(const char *path, const char *parent)
{
    struct stat a, b;
    if (stat(path, &a) != 0 || stat(parent, &b) != 0) return 0;
    if (a.st_dev != b.st_dev) return 1;
#ifdef STATX_MNT_ID
    struct statx x, y;
    if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &x) == 0 &&
        statx(AT_FDCWD, parent, 0, STATX_MNT_ID, &y) == 0 && (x.stx_mask & STATX_MNT_ID) &&
        (y.stx_mask & STATX_MNT_ID) && x.stx_mnt_id != y.stx_mnt_id)
        return 1;
#endif
    return 0;
}

/* Whether a folder made in `parent` can have its sticky bit cleared (cf_platform_lock_dir)
 * without losing the setgid bit it takes from a setgid parent: chmod(2) clears that bit when
 * the caller is not in the folder's group (the parent's) and not root. Else the folder is made
 * without the sticky bit: a cleaner on this machine's disk may then lock it for a moment before
 * the run does (it finds no mark in it and leaves it, never removing an empty folder), and the
 * run, its lock refused, removes the folder and makes it anew under the next name. */
static int sticky_keeps_setgid(const char *parent)
{
    struct stat sb;
    if (stat(parent, &sb) != 0 || !(sb.st_mode & S_ISGID) || geteuid() == 0 ||
        getegid() == sb.st_gid)
        return 1;
    int n = getgroups(0, NULL);
    if (n <= 0) return 0;
    gid_t *g = xmalloc((size_t)n * sizeof *g);
    int in = 0;
    n = getgroups(n, g);
    for (int k = 0; k < n && !in; k++) in = g[k] == sb.st_gid;
    free(g);
    return in;
}

/* `path` as one word of a POSIX shell's command line, to be copied from a message: as it is when
 * it holds only characters no shell reads otherwise, else in single quotes (a quote in it as
 * '\''); "./" before a relative path beginning with '-', which a command would take for an
 * option. */
static char *sh_word(const char *path)
{
    const char *dot = path[0] == '-' ? "./" : "";
    if (path[0] && strspn(path, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                                "_./@%+=:,-") == strlen(path))
        return xasprintf("%s%s", dot, path);
    size_t n = strlen(dot) + 3;
    for (const char *c = path; *c; c++) n += *c == '\'' ? 4 : 1;
    char *q = xmalloc(n), *o = q;
    o += sprintf(o, "'%s", dot);
    for (const char *c = path; *c; c++) {
        if (*c == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *c;
        }
    }
    *o++ = '\'';
    *o = '\0';
    return q;
}

/* Writes all of text to fd: 0, or -1 with errno set (ENOSPC for a short write: the disk is
 * full). */
static int write_text(int fd, const char *text)
{
    size_t len = strlen(text);
    ssize_t w;
    do w = write(fd, text, len);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)len) return 0;
    if (w >= 0) errno = ENOSPC;
    return -1;
}

/* The claim `claim` made in `parent`, locked and holding `text`: its descriptor, the lock held
 * for as long as it is open. -1 with errno set (EEXIST: the name is taken: the next name); -2
 * when the file system has no locks for it (no claim: the folder is then not marked).
 *
 * A claim is never seen without its whole mark: the text is written into an unnamed file of
 * the parent's file system (O_TMPFILE), which is locked and only then given the claim's name by
 * linkat(2), which never replaces a file that has the name (EEXIST). A run killed before the
 * link leaves nothing (the unnamed file goes with its last descriptor); killed after, a locked
 * claim that holds its whole mark, which the next run proves its own (the lock free, exactly
 * this host's mark) and removes. So an empty claim, or one whose mark is not whole, is no run's
 * and no cleaner removes it: it may be a file of the user's of that name, whose lock is free too
 * (an empty claim was once removed on its lock alone). Where the file system has no unnamed
 * files (EOPNOTSUPP, EISDIR, EINVAL: NFS, an older kernel), or no /proc to link one by (or
 * the link is refused otherwise, but for EEXIST), the claim is made by its name (O_EXCL),
 * locked and then written: a run killed in the instant
 * between leaves an empty claim, which stays (removed by hand), never taken for a run's. */
static int make_claim(const char *parent, const char *claim, const char *text)
{
#ifdef O_TMPFILE
    int tfd = open(parent, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (tfd >= 0) {
        if (write_text(tfd, text) != 0) {
            int e = errno;
            close(tfd);
            errno = e;
            return -1;
        }
        if (flock(tfd, LOCK_EX | LOCK_NB) != 0) { /* a file system without locks (ENOLCK) */
            int e = errno;
            close(tfd);
            if (e != EWOULDBLOCK) return -2;
            errno = EEXIST; /* no other process can hold it: as the claim by its name */
            return -1;
        }
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", tfd);
        if (linkat(AT_FDCWD, self, AT_FDCWD, claim, AT_SYMLINK_FOLLOW) == 0) return tfd;
        int e = errno;
        close(tfd);
        errno = e;
        if (e == EEXIST) return -1; /* taken: the next name */
        /* not linked otherwise (no /proc, ENOENT; a /proc whose magic links cannot be linked
         * by, a security module or a file system refusing the link, EPERM, EXDEV, ...): made by
         * its name below, which says the error itself where the parent cannot take it */
    } else if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
        return -1;
    }
#else
    (void)parent;
#endif
    int fd = open(claim, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    struct stat a, b;
    int mine = fstat(fd, &a) == 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (mine && lstat(claim, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            (void)unlink(claim);
        close(fd);
        if (e != EWOULDBLOCK) return -2;
        errno = EEXIST;
        return -1;
    }
    /* still the file of that name (not replaced before the lock) */
    if (!mine || lstat(claim, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
        close(fd);
        errno = EEXIST;
        return -1;
    }
    if (write_text(fd, text) != 0) {
        int e = errno;
        (void)unlink(claim);
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int stage_open(tool_stage *st, const tool_stage_how *how, const char *dir)
{
    memset(st, 0, sizeof *st);
    st->lock = -1;
    /* DIR: a new or empty folder, replaced by the staging folder at the end (rename(2) takes
     * an empty folder's place). */
    char *target = xstrdup(dir);
    for (size_t k = strlen(target); k > 1 && target[k - 1] == '/'; k--) target[k - 1] = 0;
    int isdir = path_is_dir(target);
    const int stat_errno = errno; /* ELOOP: DIR a link in a loop of links */
    struct stat lst;
    if (isdir == 1 && lstat(target, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        /* a link to an empty folder: the files go into the folder it names (rename(2) would
         * not replace the link with a folder) */
        char *real = realpath(target, NULL);
        if (real) {
            free(target);
            target = real;
        }
    }
    if (isdir == 0) {
        free(target);
        return refuse(how, 0, "%s exists and is not a folder", dir);
    }
    /* a link to nothing (its target missing, or a loop of links): refused now, not after every
     * file was written (rename(2) does not put a folder in a link's place) */
    if (isdir != 1 && lstat(target, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        free(target);
        if (stat_errno == ELOOP)
            return refuse(how, 0, "%s is a link that leads into a loop of links (make it a link to "
                          "a folder, or give another DIR)", dir);
        if (stat_errno == EACCES)
            return refuse(how, 0, "%s is a link to a folder that cannot be reached: permission "
                          "denied (make its way searchable, or give another DIR)", dir);
        if (stat_errno != ENOENT && stat_errno != ENOTDIR)
            return refuse(how, stat_errno, "%s is a link that cannot be followed: %s", dir,
                          strerror(stat_errno));
        return refuse(how, 0, "%s is a link to a folder that does not exist (make that folder, or "
                      "give another DIR)", dir);
    }
    /* DIR reached through a link further up that cannot be followed (a loop of links, a target
     * the user may not reach): that link named, not "Too many levels of symbolic links" */
    char why[PATH_MAX * 2 + 64];
    if (isdir < 0 && (stat_errno == ELOOP || stat_errno == EACCES) &&
        dangling_on_way(target, why, sizeof why)) {
        free(target);
        return refuse(how, 0, "%s: cannot be reached: %s", dir, why);
    }
    /* an existing DIR's mode, group and setgid bit, given to the staging folder that takes its
     * place */
    struct stat dst;
    st->keep = isdir == 1 && stat(target, &dst) == 0;
    if (st->keep) {
        st->mode = dst.st_mode & 07777;
        st->gid = dst.st_gid;
    }
    if (isdir == 1) {
        DIR *dp = opendir(target);
        int used = 0;
        if (dp) {
            struct dirent *e;
            while (!used && (e = readdir(dp))) used = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
            closedir(dp);
        }
        if (!dp || used) {
            /* a folder that cannot be read for the machine's sake (no descriptor or memory
             * left, an I/O error): an error (status 1), not a refusal of the name given */
            int e = dp ? 0 : errno;
            int u = tool_env_errno(e)
                        ? refuse(how, e, "%s: cannot read the folder: %s", dir, strerror(e))
                        : refuse(how, e, "%s: %s; %s a new or empty folder (remove it or give "
                                 "another DIR)", dir, dp ? "the folder is not empty" : strerror(e),
                                 how->purpose);
            free(target);
            return u;
        }
    }
    const char *base = strrchr(target, '/');
    base = base ? base + 1 : target;
    if (!base[0] || !strcmp(base, ".") || !strcmp(base, "..")) {
        free(target);
        return refuse(how, 0, "give DIR by its name, not '%s'", dir);
    }
    /* the current folder by any other name ("$PWD", "../d" from d): the new folder would take
     * its place, and the shell that ran the command would be left in a removed, empty one */
    struct stat cst;
    if (isdir == 1 && st->keep && stat(".", &cst) == 0 && cst.st_dev == dst.st_dev &&
        cst.st_ino == dst.st_ino) {
        free(target);
        return refuse(how, 0, "%s is the current folder, which the new folder would replace; run "
                      "the command from another folder", dir);
    }
    char *parent = path_dir(target);
    /* an empty mount point (a volume, a bind mount): rename(2) cannot replace it (EBUSY, or
     * EXDEV for the staging folder on the file system beneath), found now, not after every file
     * was written */
    if (isdir == 1 && mount_point(target, parent)) {
        int u = refuse(how, 0, "%s is a mount point, which the new folder cannot replace; give a "
                       "new folder inside it", dir);
        free(parent);
        free(target);
        return u;
    }
    /* Ctrl-C or SIGTERM from here on only sets tool_interrupted, so that the folders made below
     * are removed again (installed after them, a signal in between left them behind) */
    tool_install_signals();
    /* the folders made on the way to DIR are removed again if the run fails */
    int make = path_is_dir(parent) != 1;
    char *new_dir = make ? first_missing_dir(parent) : NULL;
    /* an output that cannot be made: refused as the others are (crop: "--output: ", a usage
     * error) */
    int unmade = make ? make_dirs(parent, how->usage_cmd, how->label) : 0;
    if (unmade) {
        if (new_dir) remove_new_dirs(parent, new_dir);
        free(new_dir);
        free(parent);
        free(target);
        return unmade;
    }
    /* ".DIR.TAG-tmp.PID.HOST", locked while the run lasts: the staging folders that runs of
     * this host killed outright left (no lock held; on a network file system their process gone
     * too) are removed first, as train removes its stale temporaries
     * (cf_platform_remove_stale_dirs); without a host name, ".DIR.TAG-tmp.PID" (of any host),
     * only on a file system of this machine's own, by its lock, when its mark names this host;
     * only folders with the mark (STAGE_MARK) of a run that locked them, never an empty one */
    char host[256];
    int hosted = cf_platform_host_name(host, sizeof host) == 0;
    const int known = hosted; /* the host, named in the mark even when not in the name */
    char *prefix = xasprintf(".%s.%s-tmp.", base, how->cmd);
    char *cprefix = xasprintf(".%s.%s-new.", base, how->cmd); /* the claims */
    {
        long nmax = pathconf(parent, _PC_NAME_MAX);
        /* too long with the host name (the name DIR may have left no room): without it */
        char pid[24];
        int plen = snprintf(pid, sizeof pid, "%ld", (long)getpid());
        if (hosted && strlen(prefix) + (size_t)plen + 1 + strlen(host) + 4 >
                          (size_t)(nmax > 0 ? nmax : 255))
            hosted = 0;
        int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        size_t removed = 0;
        if (pfd >= 0) {
            /* the marked folders first: a run killed between the link and the unlink that move
             * its mark back out (stage_commit) left its folder still marked, removed here as
             * one killed before; its claim then has no folder, and goes too (the other way
             * round, the folder was said to hold a finished run's output, then removed) */
            (void)cf_platform_remove_stale_dirs(pfd, prefix, STAGE_MARK, how->depth, &removed);
            cf_stale_claims sc;
            (void)cf_platform_remove_stale_claims(pfd, cprefix, prefix, &sc);
            /* a claim removed alone, of a run killed before it made its folder (or after its
             * rename into DIR): provably stale, and said once, as the folders are */
            if (sc.lone) {
                char *cpath = path_join(parent, sc.lone_first);
                if (sc.lone == 1)
                    tool_info("removed the claim %s that a run killed outright left (no staging "
                              "folder of its own beside it)", cpath);
                else
                    tool_info("removed %zu claims (.%s.%s-new.*) that runs killed outright left "
                              "in %s (no staging folder of their own beside them), the first %s",
                              sc.lone, base, how->cmd, parent, cpath);
                free(cpath);
            }
            if (sc.finished) {
                /* kept whole, said once per run with what to do: the claim is what tells the
                 * folder from one of the user's, so it is not removed for the user (the output
                 * would then be hidden for good, unsaid); nor is the folder moved into DIR, which
                 * this run writes. Each folder with its own commands, its paths quoted for a
                 * shell (a name may hold spaces or quotes). */
                const int one = sc.finished == 1 && sc.nkept == 1;
                char *todo = xstrdup("");
                for (size_t k = 0; k < sc.nkept; k++) {
                    const char *kept = sc.kept[k];
                    char *claim = xasprintf(".%s.%s-new.%s", base, how->cmd, kept + strlen(prefix));
                    char *kpath = path_join(parent, kept), *cpath = path_join(parent, claim);
                    char *kq = sh_word(kpath), *cq = sh_word(cpath);
                    char *more =
                        one ? xasprintf("(mv %s NEWDIR && rm %s); else remove both (rm -r %s %s)",
                                        kq, cq, kq, cq)
                            : xasprintf("%s%s%s beside %s: keep (mv %s NEWDIR && rm %s) or remove "
                                        "(rm -r %s %s)", todo, k ? "; " : "", kpath, cpath, kq,
                                        cq, kq, cq);
                    if (one)
                        tool_info("the staging folder %s holds the whole output of a run killed "
                                  "as it moved it into %s; kept, beside its claim %s: to keep that "
                                  "output, move the folder to a name of your own (not %s, which "
                                  "this run writes) and remove the claim %s",
                                  kpath, dir, cpath, dir, more);
                    free(todo);
                    todo = more;
                    free(kq);
                    free(cq);
                    free(claim);
                    free(kpath);
                    free(cpath);
                }
                if (!one)
                    tool_info("%zu staging folders (.%s.%s-tmp.*) in %s hold the whole output of "
                              "runs killed as they moved it into %s; kept, each beside its claim "
                              "(.%s.%s-new.* of the same ending): to keep an output, move its "
                              "folder to a name of your own (not %s, which this run writes; "
                              "NEWDIR a new name for each) and remove its claim; else remove "
                              "both: %s%s",
                              sc.finished, base, how->cmd, parent, dir, base, how->cmd, dir, todo,
                              sc.nkept < sc.finished ? " (the others' names: out of memory)" : "");
                free(todo);
            }
            removed += sc.removed;
            cf_platform_stale_claims_free(&sc);
            close(pfd);
        }
        if (removed)
            tool_info("removed %zu staging folder%s (.%s.%s-tmp.*) that killed runs left in %s",
                      removed, removed == 1 ? "" : "s", base, how->cmd, parent);
    }
    /* a folder of that name still there (locked by a live run elsewhere, e.g. in another
     * container whose processes get the same ids, or holding more than files): left alone, "-N"
     * added to the process id. Made with the sticky bit, which cf_platform_lock_dir clears once
     * the folder is locked: a cleaner does not take the folder for a dead run's before then.
     *
     * The folder is never unmarked while its run could be killed and leave it: before making
     * it, the run makes its claim ".DIR.TAG-new.PID[.HOST]" beside it (the mark's text in a
     * regular file, locked while the run lasts, never seen without its whole mark: make_claim),
     * and once it holds the folder's lock it moves the claim into the folder as its mark (one
     * rename(2): the mark arrives whole). A run killed before the folder is made leaves at most
     * the claim; killed after, the claim beside an empty folder. Both are told stale from the claim
     * and its lock by the rules of the folders themselves (cf_platform_remove_stale_claims), and
     * the folder is removed only while empty (rmdir(2) refuses any other) and unlocked. The
     * claim is made only when no entry has the folder's name, so a folder beside a claim is its
     * run's: another process could make one of that name only in the instant between this check
     * and the mkdir (a run of the same name makes the same claim first, and the link, or O_EXCL,
     * refuses it the second one), and even then, only while it is empty, would it be removed. */
    char *stage = NULL;
    int made = 0;
    mode_t mode = sticky_keeps_setgid(parent) ? 01777 : 0777;
    /* the mark: host, machine, boot and process (cf_platform_run_mark) */
    char text[1024];
    if (cf_platform_run_mark(text, sizeof text, known ? host : "") != 0)
        snprintf(text, sizeof text, "host=\nmachine=\nboot=\npid=%ld\n", (long)getpid());
    for (int k = 0; !made && k <= 100; k++) {
        char num[32];
        if (k) snprintf(num, sizeof num, "%ld-%d", (long)getpid(), k);
        else snprintf(num, sizeof num, "%ld", (long)getpid());
        char *sname = hosted ? xasprintf("%s%s.%s", prefix, num, host) : xasprintf("%s%s", prefix, num);
        char *cname = hosted ? xasprintf("%s%s.%s", cprefix, num, host) : xasprintf("%s%s", cprefix, num);
        free(stage);
        stage = path_join(parent, sname);
        char *claim = path_join(parent, cname);
        free(sname);
        free(cname);
        struct stat taken;
        if (lstat(stage, &taken) == 0) {
            free(claim);
            errno = EEXIST;
            continue;
        }
        int cfd = make_claim(parent, claim, text);
        if (cfd == -1) {
            int e = errno;
            free(claim);
            errno = e;
            if (e == EEXIST) continue;
            break;
        }
        made = mkdir(stage, mode) == 0;
        if (!made) {
            int e = errno;
            if (cfd >= 0) {
                (void)unlink(claim);
                close(cfd);
            }
            free(claim);
            errno = e;
            if (e != EEXIST) break;
            continue;
        }
        /* locked, or a file system without locks; or the lock taken by another process (a
         * cleaner that took the folder just made for a killed run's: left to it, made anew
         * under the next name, never gone on with unlocked), or the folder gone from its name */
        bool locked = false;
        st->lock = cf_platform_lock_dir(stage, &locked);
        int lerr = errno, marked = 0;
        if (st->lock >= 0 && locked && cfd >= 0) {
            /* the mark of a run's folder, moved in only once it is locked: a run that goes on
             * unlocked (a file system without locks, ENOLCK), its folder perhaps without the
             * sticky bit (a setgid parent), is never taken for a killed run's */
            char *mark = path_join(stage, STAGE_MARK);
            int moved = rename(claim, mark) == 0;
            int merr = errno;
            free(mark);
            if (!moved) {
                (void)rmdir(stage);
                (void)unlink(claim);
                close(cfd);
                free(claim);
                close(st->lock);
                st->lock = -1;
                made = 0;
                errno = merr;
                break;
            }
            marked = 1;
        } else if (cfd >= 0) {
            /* not marked: the folder made anew under the next name first, then the claim out */
            if (st->lock < 0 && lerr == EEXIST) (void)rmdir(stage);
            (void)unlink(claim);
        }
        if (marked) {
            /* the mark's name beside the folder and its lock, kept for stage_commit */
            st->claim = claim;
            st->claim_fd1 = cfd + 1;
        } else {
            if (cfd >= 0) close(cfd);
            free(claim);
        }
        errno = lerr;
        if (st->lock >= 0) break;
        if (errno != EEXIST && errno != ENOENT) { /* no descriptor or memory for the lock */
            int e = errno;
            (void)rmdir(stage); /* not gone on with unlocked: a refusal below */
            made = 0;
            errno = e;
            break;
        }
        if (errno == EEXIST && cfd < 0) (void)rmdir(stage);
        made = 0;
        errno = EEXIST;
    }
    free(cprefix);
    free(prefix);
    if (!made) {
        st->lock = -1;
        if (st->claim_fd1) close(st->claim_fd1 - 1);
        free(st->claim);
        st->claim = NULL;
        st->claim_fd1 = 0;
        /* a full disk, a read-only file system: an error (status 1) of the environment, not a
         * refusal of the name given */
        int e = errno;
        int u = refuse(how, e, "cannot make %s beside %s: %s", stage, dir, strerror(e));
        if (new_dir) remove_new_dirs(parent, new_dir);
        free(new_dir);
        free(stage);
        free(parent);
        free(target);
        return u;
    }
    /* st->lock: held until the folder is DIR, or removed */
    st->target = target;
    st->parent = parent;
    st->path = stage;
    st->new_dir = new_dir;
    return 0;
}

/* Moves `from` to `to` without replacing what has the name `to` (EEXIST then): a link, then
 * the unlink of `from` (not renameat2's RENAME_NOREPLACE, which not every file system has;
 * killed between, both names are the mark's: the folder is still marked, as before the move) */
static int move_no_replace(const char *from, const char *to)
{
    if (link(from, to) != 0) return -1;
    return unlink(from) == 0 || errno == ENOENT ? 0 : -1;
}

/* Whether the claim's name still names the run's claim (the file its descriptor holds locked):
 * only then is it moved or unlinked by that name */
static int claim_here(const tool_stage *st)
{
    struct stat a, b;
    return st->claim && st->claim_fd1 && fstat(st->claim_fd1 - 1, &a) == 0 &&
           lstat(st->claim, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

int stage_commit(tool_stage *st, const char *dir, const char *what)
{
    /* everything written under the staging folder flushed to disk (one syncfs for the file
     * system instead of one fsync per file) */
    int fd = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int synced = fd >= 0 && syncfs(fd) == 0;
    if (fd >= 0) close(fd);
    if (!synced) {
        tool_error("%s: cannot flush to disk: %s", st->path, strerror(errno));
        return -1;
    }
    /* the mark out first (killed before the rename, the folder stays: it is no run's then),
     * before the folder takes DIR's mode: a DIR without write permission (0555) would leave
     * its owner unable to move the mark out of it. Not inside the folder at the rename
     * (rename(2) takes all it holds: a mark to be removed after it would be left in DIR by a
     * run killed in between), but beside it, as the claim */
    char *mark = path_join(st->path, STAGE_MARK);
    int gone;
    if (st->claim) {
        /* out to the claim's name beside the folder, still locked: a run killed from here to
         * the rename leaves its whole output under the hidden name with the claim beside it,
         * which tells the next run (rmdir(2) refuses to remove a folder that holds anything)
         * that it is a finished run's, to be said, never removed */
        st->marked_out = move_no_replace(mark, st->claim) == 0;
        /* never over a file that took the claim's name meanwhile (the name is free while the
         * mark is in the folder; a file of the user's, once replaced by the mark and then
         * unlinked with it), nor where it cannot be moved so: the mark unlinked instead, as
         * when there is no claim */
        gone = st->marked_out || unlink(mark) == 0 || errno == ENOENT;
    } else {
        gone = unlink(mark) == 0 || errno == ENOENT;
    }
    free(mark);
    if (!gone) {
        tool_error("%s: cannot move %s into place: %s", dir, what, strerror(errno));
        return -1;
    }
    struct stat sb; /* still marked not locked (a file system without locks): the mark cleared */
    if (!st->keep && stat(st->path, &sb) == 0 && (sb.st_mode & S_ISVTX))
        /* not an error if it stays (a file system without modes): the folder keeps its mode */
        (void)chmod(st->path, sb.st_mode & 07777 & ~(mode_t)S_ISVTX);
    if (st->keep) {
        /* group first: a change of group may clear the setgid bit; neither is an error (another
         * owner's group, a file system without modes) */
        if (chown(st->path, (uid_t)-1, (gid_t)st->gid) != 0) { /* not ours to give */
        }
        if (chmod(st->path, (mode_t)st->mode) != 0) { /* the folder's own mode stays */
        }
    }
    if (rename(st->path, st->target) != 0) {
        tool_error("%s: cannot move %s into place: %s%s", dir, what, strerror(errno),
                   errno == ENOTEMPTY || errno == EEXIST ? " (the folder is no longer empty)" : "");
        return -1;
    }
    st->committed = 1;
    if (st->marked_out && claim_here(st)) /* killed before: the next run removes it */
        (void)unlink(st->claim);
    cf_platform_sync_dir(st->parent);
    return 0;
}

void stage_close(tool_stage *st)
{
    if (!st->path) return;
    /* not committed: the staging folder and all this run put in it (depth first, links not
     * followed), its mark last (a run killed while removing, SIGKILL after SIGTERM, leaves a
     * folder still marked, which the next run removes; unmarked, it stayed for good), then the
     * folders made on the way to DIR */
    if (!st->committed) {
        /* a failed rename after the folder took DIR's mode (0555: its files could not be
         * unlinked, the folder was left, unmarked, for good): writable by its owner again */
        (void)chmod(st->path, S_IRWXU);
        /* a mark moved out for the rename (stage_commit) back in, so that it goes last */
        char *back = path_join(st->path, STAGE_MARK);
        if (st->marked_out && claim_here(st) && move_no_replace(st->claim, back) == 0)
            st->marked_out = 0;
        free(back);
        (void)nftw(st->path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        char *mark = path_join(st->path, STAGE_MARK);
        (void)unlink(mark);
        free(mark);
        (void)rmdir(st->path);
        if (st->marked_out && claim_here(st)) (void)unlink(st->claim);
    }
    if (st->claim_fd1) close(st->claim_fd1 - 1);
    free(st->claim);
    if (st->lock >= 0) close(st->lock);
    if (!st->committed && st->new_dir) remove_new_dirs(st->parent, st->new_dir);
    free(st->new_dir);
    free(st->path);
    free(st->parent);
    free(st->target);
    memset(st, 0, sizeof *st);
    st->lock = -1;
}
