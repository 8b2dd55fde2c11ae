/* Platform code (private): the few operating-system and CPU facts the library depends on, behind
 * small functions so that the rest of the library does not call POSIX or compiler built-ins for
 * them directly.
 *
 *   file.c   files: the process umask, temporary files, directory sync, opening for a read
 *            that must not block on a FIFO or device.
 *   cpu.c    CPU features for the runtime dispatch of the SIMD kernels.
 *   thread.c threads, mutexes, condition variables and one-time initialisation (the thread
 *            pool, the engine's per-call threads, the FFT planner lock, the inference cache);
 *            fork detection and keeping code loaded for the host's dlclose (the thread pool,
 *            FFTW's planner hooks).
 *
 * Errors are reported the POSIX way (-1 / false with errno set); callers turn them into a
 * cfnet_status with their own message. */
#ifndef CFNET_PLATFORM_PLATFORM_H
#define CFNET_PLATFORM_PLATFORM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- compiler --- */

/* CF_SCOPE_EXIT(fn) on a local variable `v` makes the compiler call fn(&v) whenever `v` goes out
 * of scope, however the block is left (an early return through CF_CHECK included). The
 * library's two scopes use it: the network in-use guard (nn/network.h) and the current thread
 * pool (core/pool.h). GNU C and clang have it; a port to another compiler must supply an
 * equivalent here (for example C++ destructors), so the build stops with this message instead
 * of leaking a claim on a network. */
#if defined(__GNUC__) || defined(__clang__)
#define CF_SCOPE_EXIT(fn) __attribute__((cleanup(fn), unused))
#else
#error "libcfnet needs a scope-exit cleanup (GNU C or clang); see src/platform/platform.h"
#endif

/* --- files (file.c) --- */

/* Creates a temporary file from `tmpl` (a path ending in "XXXXXX", rewritten in place to the
 * name created, as mkstemp does) and gives it the mode an ordinary create would have (0666 less
 * the umask), or the permission bits of `replaces` when that is an existing regular file.
 * Failing to set the mode is not an error. Returns an open descriptor, or -1 with errno set. */
int cf_platform_temp_file(char *tmpl, const char *replaces);

/* Creates the file `name` (O_EXCL, 0666 less the umask, or the permission bits of `replaces`
 * when that is an existing regular file) and locks it (flock, exclusive) without waiting; the
 * lock lasts while a descriptor of it (or a dup) is open, so that a cleaner of stale temporary
 * files leaves it alone. An existing file of that name is removed first unless it is locked.
 * Returns an open descriptor, or -1 with errno set (EEXIST: a live writer holds the name). */
int cf_platform_temp_file_locked(const char *name, const char *replaces);

/* Bytes of the file name `base` (blen bytes) that a temporary name keeps before a suffix of
 * slen bytes in a folder whose longest name is name_max: all of them when they fit, else as many
 * as leave room for the suffix (a name of 250 bytes plus ".tmp.PID.HOST" would not fit), fewer
 * where that would cut a UTF-8 character (a lead byte followed by its continuation bytes) in
 * two. The atomic saves, the command's outputs and the cleaner below agree through this
 * function. */
size_t cf_platform_temp_keep(const char *base, size_t blen, size_t slen, size_t name_max);

/* Removes, in the folder open as `dirfd`, the temporary files "<base>.tmp.<pid>.<host>" (the
 * name part shortened as cf_platform_temp_keep says) that a process of this host no longer alive
 * left (or cut at the folder's longest name inside a character, as earlier versions did): a
 * regular file, not of this process, of a process id that does not exist, removed only
 * while holding a shared flock taken without waiting (a live writer's exclusive lock keeps it).
 * CF_STALE_PROBES: also the empty "<base>.tmp.<pid>.<n>" (the command's probe of a folder);
 * CF_STALE_LENIENT: a file that cannot be opened, or on a file system without locks, the process
 * id alone decides. *removed: how many; the name of the first in first (first_size bytes, may
 * be 0). Without a host name nothing can be told stale (0 removed). 0, or -1 with errno set when
 * the folder cannot be read (nothing removed). */
#define CF_STALE_PROBES 1u
#define CF_STALE_LENIENT 2u
int cf_platform_remove_stale_temps(int dirfd, const char *base, unsigned flags, size_t *removed,
                                   char *first, size_t first_size);

/* Whether the process `pid` of this host is gone: not this process, and kill(pid, 0) says there is
 * no such process. The rule by which the cleaners here tell a temporary stale. */
bool cf_platform_pid_gone(long pid);

/* Opens the folder `path` and locks it (flock, exclusive) without waiting, for as long as the
 * descriptor returned is open, so that cf_platform_remove_stale_dirs leaves it alone, and then
 * clears its sticky bit: make the folder with it (mode 01777), so that until it is locked it is
 * told from a folder whose run is over (a file system without locks: not locked, the bit stays,
 * the process id in the name decides). -1 with errno set (EEXIST: another process holds the
 * lock; ENOENT: the folder, locked, is no longer the one of that name). *locked: whether the
 * descriptor returned holds the lock (false on a file system without locks, or when flock failed
 * for another reason, such as ENOLCK). */
int cf_platform_lock_dir(const char *path, bool *locked);

/* Removes, in the folder open as `dirfd`, the folders "<prefix><pid>.<host>" and
 * "<prefix><pid>-<n>.<host>" of this host (the host is all the name holds after the first '.'
 * that follows the digits) that no live run holds, with the regular files in them, only while
 * holding a shared flock taken without waiting (a live process's cf_platform_lock_dir keeps its
 * folder) and while the name is still that folder's. On a file system of this machine's own
 * (ext4, XFS, Btrfs, F2FS, tmpfs), where every process that writes there shares the kernel's
 * locks, a folder once locked (sticky bit cleared) and not locked now is stale whatever process
 * has its id now; elsewhere (NFS, where another host's lock on a folder is not seen) its process
 * must be gone as well (cf_platform_pid_gone, or this process's own id: call it before making
 * the caller's folder, so that one of this id is a killed run's whose id came round again), and
 * a file system without locks keeps them all. "<prefix><pid>" and "<prefix><pid>-<n>", without
 * a host (of any host), are removed by their lock alone on such a file system of this machine's
 * (locked once, not now) when `mark` in them is this host's, exactly cf_platform_run_mark's
 * (an NFS server's own disk is written by clients whose locks it does not see; a mark that
 * cannot be read, a link or a FIFO, so keeps the folder), kept elsewhere. The names of earlier
 * versions, "<prefix><pid>.<host>.<n>" (as well the name of a host "<host>.<n>"), stay. Only a
 * folder that holds the regular file `mark` (which its run makes once it holds the lock), exactly
 * cf_platform_run_mark's of this host, machine and boot, is a run's: one without it (a user's folder of that name, or an empty one, whose lock does not tell
 * whose it is) stays, as does one that holds anything but regular files (and, `depth` levels
 * down, folders holding only such: 0, none). *removed: how many. Without a host name none is
 * told stale. 0, or -1 with errno set when the folder cannot be read. */
int cf_platform_remove_stale_dirs(int dirfd, const char *prefix, const char *mark, int depth,
                                  size_t *removed);

/* Removes, in the folder open as `dirfd`, the claims "<cprefix><pid>[-<n>][.<host>]" that runs
 * killed outright left, and the empty folders "<sprefix>" with the same rest of the name that
 * they made. A run makes its claim (a regular file holding its mark, cf_platform_run_mark's,
 * locked while the run lasts, never seen without its whole mark: stage.c) before it makes its
 * folder, and moves it into the folder as the folder's mark once it holds the folder's lock;
 * killed in between, it leaves the claim beside an empty, unmarked folder. A claim is taken for
 * a killed run's by the rules of cf_platform_remove_stale_dirs (this host's name: its lock free on
 * this machine's own disk, elsewhere its process gone too; no host in the name: on this machine's
 * own disk only), and only when it is exactly this host's mark; then its folder is removed while
 * its lock is free and it is empty (rmdir(2) refuses any other), and the claim once the folder
 * is gone. An empty claim, or one that is not exactly such a mark, stays (a file of the user's
 * of that name). In *out: `removed`, how many folders; `lone`, how many claims were removed that
 * had no folder beside them (a run killed between its claim's link and its mkdir, or after its
 * rename into DIR), the name of the first in `lone_first`; `finished`, how many folders beside a
 * killed run's claim were kept because they hold something (a run moves its mark back out to the
 * claim's name before the rename into DIR: a run killed then leaves its whole output so), their
 * names in `kept` (`nkept` of them, sorted by name (strcmp), allocated: fewer than `finished`
 * only when memory ran out; freed by cf_platform_stale_claims_free). Without a host name none is
 * told stale. 0, or -1 with errno set when the folder cannot be read. */
typedef struct cf_stale_claims {
    size_t removed, lone, finished, nkept;
    char lone_first[256];
    char **kept;
} cf_stale_claims;
int cf_platform_remove_stale_claims(int dirfd, const char *cprefix, const char *sprefix,
                                    cf_stale_claims *out);
void cf_platform_stale_claims_free(cf_stale_claims *c);

/* The mark of this run's staging folder in buf: "host=HOST\nmachine=MACHINE\nboot=BOOT\npid=PID\n"
 * (HOST as given, may be empty; MACHINE /etc/machine-id, or /var/lib/dbus/machine-id, else
 * "boot-" and the boot id; BOOT /proc/sys/kernel/random/boot_id, empty where there is none;
 * CFNET_TEST_ID_ROOT, a test hook, names a folder standing for "/" where they are read).
 * cf_platform_remove_stale_dirs and cf_platform_remove_stale_claims take a folder for a killed
 * run's only when its mark is exactly this (any PID): not another machine's of the same host
 * name, nor of another boot; and never where the ids are unknown (no boot id: outside Linux),
 * whose empty ids two cloned machines share. 0, or -1 when it does not fit. */
int cf_platform_run_mark(char *buf, size_t size, const char *host);

/* This host's name (gethostname) in buf: 0, or -1 when there is none, or it is empty or holds
 * a '/' (unusable in a file name). */
int cf_platform_host_name(char *buf, size_t size);

/* Best effort: syncs directory `dir` so that a rename in it is durable. */
void cf_platform_sync_dir(const char *dir);

/* Opens `path` read-only without waiting (a FIFO without a writer, a device) and without
 * making it the controlling terminal; -1 with errno set on failure. After checking with fstat
 * that it is a regular file, call cf_platform_set_blocking before reading. */
int cf_platform_open_read_nowait(const char *path);
void cf_platform_set_blocking(int fd);

/* --- CPU features (cpu.c) --- */

typedef enum cf_cpu_feature { CF_CPU_AVX2, CF_CPU_AVX512F, CF_CPU_FMA } cf_cpu_feature;

/* Whether the running CPU (and operating system) supports `f`; false on other architectures or
 * compilers without detection. */
bool cf_platform_cpu_has(cf_cpu_feature f);

/* --- threads (thread.c) ---
 * POSIX threads today; the types are the platform's, used only through these functions. */

typedef pthread_t cf_thread;
typedef pthread_mutex_t cf_mutex;
typedef pthread_cond_t cf_cond;
typedef pthread_once_t cf_once;
#define CF_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define CF_ONCE_INIT PTHREAD_ONCE_INIT

/* Starts `fn(arg)` on a new thread; false if it could not be started. */
bool cf_thread_start(cf_thread *t, void *(*fn)(void *), void *arg);
void cf_thread_join(cf_thread t);
void cf_mutex_init(cf_mutex *m);
void cf_mutex_destroy(cf_mutex *m);
void cf_mutex_lock(cf_mutex *m);
void cf_mutex_unlock(cf_mutex *m);
void cf_cond_init(cf_cond *c);
void cf_cond_destroy(cf_cond *c);
void cf_cond_wait(cf_cond *c, cf_mutex *m);
void cf_cond_signal(cf_cond *c);
void cf_cond_broadcast(cf_cond *c);
/* Runs `fn` once per process however many threads call this with the same `once`. */
void cf_once_run(cf_once *once, void (*fn)(void));

/* Fork generation: the same value in the process that created an object and a different one in
 * every child created by fork() since (counted by a pthread_atfork child handler registered on
 * the first call). Threads do not survive a fork: an object that owns threads records the
 * generation when it starts them, and a forked child must neither use nor join them. */
uint64_t cf_platform_fork_generation(void);

/* Keeps the shared object that contains the function `fn` loaded until the process ends,
 * whatever dlclose the host calls: for code that may still run after the host unloads libcfnet
 * (hooks that libcfnet installed in another library). cf_platform_keep_self_loaded does the
 * same for the object libcfnet itself is part of (its worker threads run its code). Best
 * effort: nothing happens for the main program or where the platform cannot. */
void cf_platform_keep_loaded(void (*fn)(void));
void cf_platform_keep_self_loaded(void);

/* Processors the process may run on (its CPU affinity mask, else the online count; at least
 * 1). */
int cf_platform_cpu_count(void);

/* Monotonic clock in nanoseconds, for bounded spin-waits. */
uint64_t cf_platform_now_ns(void);

/* Times the calling thread was taken off its processor for another thread of the machine
 * (involuntary context switches: getrusage RUSAGE_THREAD's ru_nivcsw), or -1 where the system
 * cannot tell. Time the virtual machine's host takes the processor away is not counted. */
int64_t cf_platform_thread_preemptions(void);

/* Tells the CPU that the caller is spin-waiting (x86 `pause`, Arm `yield`; nothing elsewhere). */
static inline void cf_cpu_relax(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_pause();
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    __asm__ __volatile__("yield");
#endif
}

#endif
