/* Files: the POSIX calls behind atomic saves and bounded reads (see platform.h). */
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

static int same_inode(int fd, const char *name)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && lstat(name, &b) == 0 && a.st_ino == b.st_ino &&
           a.st_dev == b.st_dev;
}

/* Removes the regular file `name` if no process holds a lock on it, holding a shared lock (it
 * excludes a writer's exclusive one, and needs only reading, over NFS too) over the unlink so
 * that a writer that locks after finds its name gone. 0 when removed. */
static int unlink_if_unlocked(const char *name)
{
    int fd = open(name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    int rc = -1;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
        same_inode(fd, name))
        rc = unlink(name);
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
        if (unlink_if_unlocked(name) != 0) {
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
