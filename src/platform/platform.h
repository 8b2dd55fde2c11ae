/* Platform code (private): the few operating-system and CPU facts the library depends on, behind
 * small functions so that the rest of the library does not call POSIX or compiler built-ins for
 * them directly.
 *
 *   file.c   files: the process umask, temporary files, directory sync, opening for a read
 *            that must not block on a FIFO or device.
 *   cpu.c    CPU features for the runtime dispatch of the SIMD kernels.
 *
 * Errors are reported the POSIX way (-1 / false with errno set); callers turn them into a
 * cfnet_status with their own message. */
#ifndef CFNET_PLATFORM_PLATFORM_H
#define CFNET_PLATFORM_PLATFORM_H

#include <stdbool.h>

/* --- files (file.c) --- */

/* Creates a temporary file from `tmpl` (a path ending in "XXXXXX", rewritten in place to the
 * name created, as mkstemp does) and gives it the mode an ordinary create would have (0666 less
 * the umask), or the permission bits of `replaces` when that is an existing regular file.
 * Failing to set the mode is not an error. Returns an open descriptor, or -1 with errno set. */
int cf_platform_temp_file(char *tmpl, const char *replaces);

/* Best effort: syncs directory `dir` so that a rename in it is durable. */
void cf_platform_sync_dir(const char *dir);

/* Opens `path` read-only without waiting (a FIFO without a writer, a device) and without
 * making it the controlling terminal; -1 with errno set on failure. After checking with fstat
 * that it is a regular file, call cf_platform_set_blocking before reading. */
int cf_platform_open_read_nowait(const char *path);
void cf_platform_set_blocking(int fd);

/* --- CPU features (cpu.c) --- */

typedef enum cf_cpu_feature { CF_CPU_AVX2, CF_CPU_AVX512F } cf_cpu_feature;

/* Whether the running CPU (and operating system) supports `f`; false on other architectures or
 * compilers without detection. */
bool cf_platform_cpu_has(cf_cpu_feature f);

#endif
