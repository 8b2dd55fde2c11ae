/* Files: the POSIX calls behind atomic saves and bounded reads (see platform.h). */
#include "platform/platform.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
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
