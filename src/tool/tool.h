/* The `cfnet` command: shared declarations of its parts (not installed, not part of libcfnet). */
#ifndef CFNET_TOOL_H
#define CFNET_TOOL_H

#include <cfnet/cfnet.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdio.h>

/* Exit codes (documented in docs/cli.md and the man page). */
#define EXIT_OK 0
#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* ---- messages (util.c) ---------------------------------------------------------------------- */

/* Writes the first bytes of s (up to its end) with each control character as U+FFFD: C0 (a tab,
 * a newline in a manifest's label, an escape), DEL and C1 (U+0080 to U+009F, UTF-8 C2 80 to
 * C2 9F), for text meant to be read in a terminal. Other bytes, UTF-8 or not, are written as
 * they are. The messages (tool_error, tool_warn, tool_info) go through it. */
void tool_put_visible(FILE *out, const char *s, size_t bytes);
/* Whether p (left bytes from p on, at least 1) starts with a C1 control, UTF-8 C2 80 to C2 9F. */
int tool_is_c1(const unsigned char *p, size_t left);
/* Prints "cfnet: <message>" to stderr, control characters as U+FFFD (tool_put_visible): a
 * message may name a class folder, a label or a file from the data. */
void tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tool_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Says "cfnet <cmd>: <message>" plus a hint to run --help where tool_error says its messages
 * (a progress line ended first), returns EXIT_USAGE. */
int tool_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when errno value e is the environment's, not the names given: ENOSPC, EDQUOT, EIO, EROFS,
 * ENOMEM, EMFILE, ENFILE. */
int tool_env_errno(int e);
/* A refusal of a name the user gave (an output, a folder), errno e its cause (0: none): said
 * as a usage error of command usage_cmd (tool_usage_error), EXIT_USAGE returned; said as an
 * error ("cfnet: error: ..."), EXIT_RUNTIME returned, when usage_cmd is NULL or e is the
 * environment's (tool_env_errno: a full disk, a read-only file system, an I/O error). The
 * functions that take a usage_cmd (make_dirs, out_open, check_writable) say their refusals so
 * and return that status. */
int tool_refuse(const char *usage_cmd, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reports a failed libcfnet call: "cfnet: <what>: <status>: <detail>". */
void tool_lib_error(const char *what, cfnet_status st);
/* Errors and warnings go to `to` from now on instead of stderr (NULL: stderr again, as at the
 * start); returns where they went before. Under mpirun a rank holds its messages while it
 * classifies its share, for tool_mpi_say_failures. */
FILE *tool_hold_messages(FILE *to);
/* Writes held messages (text, len bytes) to stderr, ending a progress line first. */
void tool_say_held(const char *text, size_t len);
/* Quiet mode (--quiet): info messages suppressed. */
extern int tool_quiet;
void tool_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* What the x* functions below allocate for, named by the out-of-memory message of a rank
 * under mpirun (tool_mpi_report_oom); NULL: unnamed. Returns the one it replaces. */
const char *tool_oom_for(const char *what);
/* Out of memory: the x* functions' failure, for a block the caller asked malloc for itself
 * (never from a thread other than the main one: under mpirun it meets the other ranks). Says
 * so (named by tool_oom_for under mpirun), removes what the run made (tool_fail_cleanup) and
 * ends the process with status 1; under mpirun every rank ends, at its next collective. */
void tool_out_of_memory(void) __attribute__((noreturn));
/* What to remove if the command ends on a failure it cannot return from (out of memory, here
 * or on another MPI rank): fn(arg), after the temporary files of outputs still open. NULL: none
 * (a command clears it before it returns). */
void tool_on_failure(void (*fn)(void *), void *arg);
/* Removes what tool_on_failure named and the open outputs' temporary files (once). */
void tool_fail_cleanup(void);
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* A heap string formatted like printf. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

double tool_now(void);
/* Physical memory in bytes (0 if unknown). */
uint64_t tool_phys_memory(void);
/* The memory this process may use: the smallest of the physical memory, its cgroup's memory
 * limit (v2 or v1, parents included) and RLIMIT_AS / RLIMIT_DATA; *what names which one ("the
 * cgroup memory limit"). 0 (and *what NULL) if none is known. */
uint64_t tool_memory_limit(const char **what);
/* The default of --threads: the online processors (at least 1), at most CFNET_MAX_THREADS. */
int tool_default_threads(void);
/* One OpenBLAS thread unless OPENBLAS_NUM_THREADS is set. */
void tool_blas_single_thread(void);
/* Under a finite RLIMIT_AS or RLIMIT_DATA with OpenBLAS: OpenBLAS allocates a 128 MiB working
 * buffer at its first product in a thread and retries forever when that fails (a hang). If
 * TOOL_BLAS_ROOM bytes can still be mapped, one product takes the buffer now (OpenBLAS keeps
 * it; libcfnet calls BLAS from the calling thread only) and 0 is returned; else -1 after
 * saying so, with HINT after "raise the limit" (", or give a smaller --max-memory"; "" for
 * none). 0 without a limit or without OpenBLAS. Every command that runs the network calls it
 * before its first product (train, eval, predict). */
#define TOOL_BLAS_ROOM ((size_t)160 << 20)
int tool_blas_room(const char *hint);

/* splitmix64 generator used for splits and sampling orders (derived from --seed). */
uint64_t tool_rand(uint64_t *state);
double tool_uniform(uint64_t *state);
void tool_shuffle(int64_t *idx, int64_t n, uint64_t *state);
uint64_t tool_mix(uint64_t a, uint64_t b);

/* Option parsing helpers: strict numbers (the whole string), 0 on success. */
int parse_int(const char *s, long lo, long hi, long *out);
int parse_double(const char *s, double lo, double hi, double *out);
/* "512M", "2G", "100000" (bytes; K/M/G/T suffixes, powers of 1024). */
int parse_bytes(const char *s, uint64_t *out);

/* Option values: parse `value`, the value of option `name` ("--width") of command `cmd`, as an
 * integer (opt_long, opt_int) or a number (opt_double) in lo..hi. 0 on success; else prints the
 * usage error "NAME: expected EXPECT, got 'VALUE'" (integers: EXPECT NULL says "LO..HI") and
 * returns EXIT_USAGE. */
int opt_long(const char *cmd, const char *name, const char *value, long lo, long hi,
             const char *expect, long *out);
int opt_int(const char *cmd, const char *name, const char *value, long lo, long hi,
            const char *expect, int *out);
int opt_double(const char *cmd, const char *name, const char *value, double lo, double hi,
               const char *expect, double *out);
/* A file or folder name given to option `name`: *out = value, or a usage error if it is empty
 * (an unset shell variable would otherwise be found out only when writing, after the work). */
int opt_path(const char *cmd, const char *name, const char *value, const char **out);
/* The next option of a command's arguments (getopt_long without its own messages), -1 after
 * the last; -h/--help prints `help` to standard output and gives OPT_HELP (the command then
 * ends with EXIT_OK). */
struct option;
#define OPT_HELP (-2)
int opt_next(int argc, char **argv, const char *optstring, const struct option *longopts,
             const char *help);
/* The usage error for what getopt_long returned as `ch`: ':' (an option without its value) or
 * anything else (an unknown or ambiguous option, or a value given to an option that takes
 * none), naming the option as given. Returns EXIT_USAGE. */
int opt_error(const char *cmd, int ch, char **argv);

/* Reads a whole file into memory (at most `limit` bytes, else an error). Returns 0 or -1 with
 * a message in err. */
int read_file(const char *path, size_t limit, unsigned char **data, size_t *size, char *err,
              size_t errsize);
/* path opened for reading without waiting (a FIFO's open would wait for a writer forever), its
 * fstat in *st: the descriptor (close-on-exec), blocking again when it is a regular file, or -1
 * (errno says why). The caller reads it only when S_ISREG(st->st_mode), so that what is checked
 * and what is read are one file (a FIFO swapped in after a stat is not read). */
struct stat;
int open_nowait(const char *path, struct stat *st);
/* path opened for writing (O_WRONLY | flags, mode as open's) without blocking in open: a FIFO
 * that no process reads yet is tried again every 50 ms until one does, or until a signal sets
 * tool_interrupted (then -1 with errno EINTR: a FIFO's blocking open would be restarted after
 * the handler, SA_RESTART, and SIGTERM would not end the run). The descriptor (close-on-exec)
 * is blocking again; -1 with errno otherwise. */
int open_write_wait(const char *path, int flags, mode_t mode);
/* 1 if path is a directory, 0 if not, -1 if stat cannot reach it (errno says why). */
int path_is_dir(const char *path);
/* Whether err (of a stat or open of a path) may come from a symbolic link on the way that
 * cannot be followed: ENOENT, ELOOP, EACCES. */
int link_trouble(int err);
/* The first name on the way to `path`, path itself included, that is a symbolic link that
 * cannot be followed (its target missing, a loop of links, or a target on a way the user may not
 * search), said in buf ("NAME is a symbolic link to a loop of links (-> TARGET)"). 2 when that
 * name is path itself, 1 when it is a folder on the way, 0 when there is none (buf untouched). */
int dangling_on_way(const char *path, char *buf, size_t size);
/* 1 when stat cannot reach path for such a link on the way (dangling_on_way, said in buf), or
 * for a file on the way (ENOTDIR: "NAME is a file, not a folder"), else 0 (buf untouched): for
 * a file that a load failed to open, the link or file named, not "No such file or directory",
 * "Not a directory" or "Too many levels of symbolic links". */
int link_in_way(const char *path, char *buf, size_t size);
/* The first name on the way to `path` (path itself left out) that is there but is not a folder
 * (a file: what makes ENOTDIR), in buf; 1, or 0 when there is none (buf untouched). */
int file_on_way(const char *path, char *buf, size_t size);
/* Creates a directory and its parents (like mkdir -p). 0, or the exit status after saying why
 * (tool_refuse: a usage error of usage_cmd, or with usage_cmd NULL an error, status 1), the
 * message after `label`: the option that named the folder, as the command's other refusals of
 * it name it ("--output: "; NULL: none). */
int make_dirs(const char *path, const char *usage_cmd, const char *label);
/* The outermost folder on the way to `path` that does not exist yet (the first that make_dirs
 * creates), or NULL when path exists. */
char *first_missing_dir(const char *path);
/* Removes the folders that make_dirs(path) created, path first, up to `top` (from
 * first_missing_dir); stops at one that is not empty. */
void remove_new_dirs(const char *path, const char *top);
/* An output folder written whole or not at all (crop's -o DIR, synth's DIR). stage_open checks
 * that DIR is a new or empty folder (a link to one: the folder it names), makes the folders on
 * the way to it, removes the staging folders ".DIR.CMD-tmp.PID.HOST[.N]" that killed runs of
 * this host left beside it, and makes and locks this run's in st->path; stage_commit flushes it
 * to disk and renames it into DIR's place (an existing empty DIR's mode and group kept);
 * stage_close removes it again unless committed, with the folders made on the way. */
typedef struct tool_stage_how {
    const char *cmd;     /* "crop": the messages' and the staging folder's name */
    const char *label;   /* put before every refusal ("--output: "), or "" */
    const char *purpose; /* "crop writes into": what a non-empty DIR is told */
    /* the command whose usage errors the refusals are ("crop"), or NULL: errors, status 1
     * (tool_refuse, as make_dirs, out_open and check_writable take it) */
    const char *usage_cmd;
    int depth;           /* levels of folders in the staging folder (stale ones removed whole) */
} tool_stage_how;
typedef struct tool_stage {
    char *target, *parent, *path, *new_dir;
    char *claim;    /* the run's claim beside the folder, its mark once moved in (stage_open) */
    int claim_fd1;  /* the claim's descriptor + 1 (0: none), its lock held while the run lasts */
    int marked_out; /* the mark moved out to the claim's name (stage_commit) */
    int lock, keep, committed;
    unsigned mode, gid;
} tool_stage;
/* 0, or the exit status after saying why (nothing made). */
int stage_open(tool_stage *st, const tool_stage_how *how, const char *dir);
/* 0, or -1 with a message printed (`what`: "the crops"). */
int stage_commit(tool_stage *st, const char *dir, const char *what);
/* Safe on a zeroed, failed or committed tool_stage. */
void stage_close(tool_stage *st);
/* An output file written whole or not at all: out_open creates a temporary file beside path
 * (path.tmp.PID.N; never through an existing file), out_commit flushes it to disk and renames
 * it over path with path's permissions, out_discard removes it; a signal that ends the process
 * removes it too. Until out_commit succeeds, path keeps what it held. A link to a file replaces
 * the file it names. "-" (standard output), a device or a FIFO are written as they go, and so
 * is a link to a file not there yet (that file is removed again by out_discard or a signal); a
 * folder, or a file that cannot be written, is an error. */
typedef struct tool_out {
    FILE *f;
    char *path; /* the file replaced; NULL for standard output */
    char *tmp;  /* NULL when written as it goes */
    char *made; /* written as it goes, the file created through a link to nothing yet: removed
                 * again by out_discard or a signal, so a failed run leaves none */
    int lock;   /* a duplicate of tmp's descriptor + 1, holding its lock until the rename; 0: none */
} tool_out;
/* 0, or the exit status after saying why (tool_refuse: a usage error of usage_cmd, or with
 * usage_cmd NULL an error, status 1; 130 when a signal, tool_interrupted, ended the wait for a
 * FIFO's reader), the message after `label` (the option that named the file, "-o: "; NULL:
 * none). */
int out_open(tool_out *o, const char *path, const char *usage_cmd, const char *label);
/* 0, or -1 with a message printed (the temporary file removed, path unchanged). */
int out_commit(tool_out *o);
/* Commits o[0..n-1] together, all or nothing: every file is flushed to disk before the first
 * is renamed, so a failure (a full disk) leaves every earlier file as it was; then each file
 * that a new one replaces keeps a second name beside it ("NAME.kept.PID.N", a hard link, or the
 * file itself renamed there where hard links cannot be made) until every rename is made, so
 * that a rename refused part-way, out of memory (tool_fail_cleanup) or a signal that ends the
 * process puts every earlier file back and removes the new files it created: the files hold
 * the earlier report or the new one, never a mix. Nothing else in the folders is touched. 0,
 * or -1 with a message printed and every temporary file removed. */
int out_commit_all(tool_out *o, int n);
/* As out_commit_all, but the commit stays open after the renames: out_settle(1) drops the
 * earlier files' second names, and out_settle(0), tool_fail_cleanup or a signal that ends the
 * process puts the earlier files back and removes the new ones it created (the run failed after
 * all: under mpirun, another rank at the final check-in; see tool_mpi_finish). */
int out_commit_held(tool_out *o, int n);
/* The folder made for the files of the commit held (path, up to top: first_missing_dir), removed
 * again by out_settle(0) or tool_fail_cleanup once the files are (by a signal only when given
 * to out_new_folder too: each folder while it is empty). */
void out_held_folder(const char *path, const char *top);
/* The folders that the run made for its outputs, `path` up to `top` (from first_missing_dir,
 * taken before they were made): a signal that ends the process (SIGINT, SIGTERM, SIGHUP, where
 * it has its default action) removes each that is still empty, after the outputs' temporary
 * files, so that a run ended before its files were committed leaves no empty folder. NULL:
 * forgets them (once the run ends, or keeps its files). */
void out_new_folder(const char *path, const char *top);
/* Warns of the second names of the files names[0..n-1] in the folder dir ("NAME.kept.PID.N", or
 * ".cfnet-PID-N.kept" for a name too long for that; see out_commit_all) that a run killed
 * outright during its commit left (SIGKILL, a crash, a power cut; PID not a process of this
 * machine), looked for beside the file each name leads to (through a link: its target, as the
 * commit keeps it): each names the file, what it holds (the file as it was before process PID
 * ran) and what renaming it back or removing it does. Nothing is removed. */
void out_note_kept(const char *dir, const char *const *names, int n);
/* Ends a commit held (none: nothing): keep (1) or undo (0) it. */
void out_settle(int keep);
/* Safe on a zeroed, failed or committed tool_out. */
void out_discard(tool_out *o);
/* Whether a file can be created at path (its folder exists and is writable): 0, or the exit
 * status after saying why, after `label` (the option that named the file, "-o: "; NULL: none):
 * a usage error of command cmd ("cfnet CMD: ..." and the pointer to its --help), or an error
 * (status 1) of the machine (tool_env_errno). Leaves nothing behind. */
int check_writable(const char *cmd, const char *label, const char *path);
/* 1 when a and b name the same file: the same inode when both exist, else the same resolved
 * folder and name (a file still to be written). */
int same_file(const char *a, const char *b);
/* 1 when path (there or still to be made, as make_dirs would make it) is the folder dir or
 * inside it: links and ".." resolved, dir found by device and inode (through a bind mount too). */
int path_inside(const char *path, const char *dir);
/* A file this run wrote (a model, a checkpoint), to notice before the next save that another
 * program replaced or rewrote it (a second `cfnet train -o` of the same model). It is
 * identified by its size and modification time to the nanosecond: an inode number alone is
 * not enough, since a file system gives a freed number to the next new file (another run's
 * rename frees ours), and some FUSE file systems change it under an unchanged file. */
typedef struct tool_saved {
    int known;
    long long size;
    long long mtime_sec, mtime_nsec;
} tool_saved;
/* Records path as this run's (known = 0 when it cannot be read). */
void tool_saved_note(tool_saved *f, const char *path);
/* 1 when path is still the file noted (or none was noted, or path is gone), else 0. */
int tool_saved_unchanged(const tool_saved *f, const char *path);
/* The folder of a path ("a/b" -> "a", "b" -> ".", "/b" -> "/"); a heap string. */
char *path_dir(const char *path);
/* Joins a directory and a name ("dir/name"); a heap string. */
char *path_join(const char *dir, const char *name);
/* Lower-case extension check: 1 if path ends in .tif/.tiff/.png (any case). */
int has_image_extension(const char *path);

/* A copy of s that is valid UTF-8: each byte that does not belong to a valid UTF-8 sequence
 * becomes "\xNN" (hex, for messages) or U+FFFD (for JSON). *was_valid (if not NULL): whether s
 * was valid UTF-8 already. */
char *utf8_repair(const char *s, int hex, int *was_valid);
/* CSV quoting of one field into a heap string ("a,b" -> "\"a,b\""). */
char *csv_quote(const char *s);
/* Writes names[0..n) to f as CSV fields, each after a comma (the rest of a header line). */
void csv_write_names(FILE *f, char **names, int n);

/* ---- images (imageio.c) ---------------------------------------------------------------------- */

/* A decoded image: channels x height x width float32 intensities as stored (no scaling). */
typedef struct tool_image {
    int channels, height, width;
    float *data;
} tool_image;

/* Largest decoded image accepted (channels * height * width values). */
#define TOOL_IMAGE_MAX_VALUES ((int64_t)1 << 28)
/* Largest image file read. */
#define TOOL_IMAGE_MAX_FILE ((size_t)1 << 31)

/* Decodes a TIFF or PNG held in memory (format from the first bytes). Returns 0, or -1 with a
 * one-line reason in err. max_values caps channels*height*width. */
int image_decode(const unsigned char *data, size_t size, int64_t max_values, tool_image *out,
                 char *err, size_t errsize);
/* Reads and decodes a file (same contract). */
int image_read(const char *path, tool_image *out, char *err, size_t errsize);
void image_free(tool_image *img);
/* image_read that also gives the sample type stored (*bits: 8 or 16 for unsigned integers, 32
 * for float; the widest of a TIFF's pages), to write a crop of it in the same type. */
int image_read_bits(const char *path, tool_image *out, int *bits, char *err, size_t errsize);

/* A label mask (a segmentation): height x width labels, 0 background, row-major. */
typedef struct tool_labels {
    int height, width;
    uint32_t *data;
} tool_labels;
/* Decodes a label mask: a TIFF of one channel of 8-, 16- or 32-bit integers, unsigned or signed
 * (a negative label is an error), or a grey PNG (8 or 16 bits). Float or multi-channel files are
 * refused. Images (image_decode) keep refusing 32-bit integer TIFFs. 0, or -1 with err. */
int labels_decode(const unsigned char *data, size_t size, int64_t max_values, tool_labels *out,
                  char *err, size_t errsize);
int labels_read(const char *path, tool_labels *out, char *err, size_t errsize);
void labels_free(tool_labels *lab);

/* A TIFF or PNG read one row at a time from the file, top to bottom, for images larger than
 * memory (crop): only a row (a row of tiles for tiled TIFFs) of each page is held. Every page
 * and sample is checked as image_read_bits / labels_read check them (the same messages), but
 * the values cap (TOOL_IMAGE_MAX_VALUES) is on one row's values, not the image's. Interlaced
 * PNGs, which cannot be read in rows, and files that are not TIFF or PNG are decoded whole
 * (that cap and messages). Non-finite float values are not refused here: the caller checks. */
typedef struct tool_rows tool_rows;
/* labels: a label mask (one channel of integer labels, as labels_read) instead of an image.
 * 0, or -1 with err. */
int rows_open(const char *path, int labels, tool_rows **out, char *err, size_t errsize);
/* channels, height, width and (images) the widest sample type, as image_read_bits gives it. */
int rows_info(const tool_rows *r, int *channels, int *height, int *width, int *bits);
/* The next row into f (channels x width floats; images) or u (width labels; masks). 0, or -1
 * with err (the file damaged, a negative label). */
int rows_next(tool_rows *r, float *f, uint32_t *u, char *err, size_t errsize);
void rows_close(tool_rows *r);
/* "channel C at row R, column X" of value i of img (channels from 1, rows and columns from 0),
 * for messages about one value. */
void image_where(const tool_image *img, int64_t i, char *buf, size_t size);

/* TIFF layouts for writing. */
typedef enum tiff_layout {
    TIFF_PAGES = 0,       /* one page per channel */
    TIFF_INTERLEAVED = 1, /* samples per pixel, contiguous */
    TIFF_PLANAR = 2,      /* samples per pixel, separate planes */
    TIFF_TILED = 3        /* samples per pixel, contiguous, in 16 x 16 tiles */
} tiff_layout;
/* Writes img (values already in the target range) as a TIFF: bits 8, 16 (unsigned, values
 * rounded and clamped) or 32 (float). 0 or -1 with err. */
int image_write_tiff(const char *path, const tool_image *img, int bits, tiff_layout layout,
                     char *err, size_t errsize);
/* Writes img as a PNG: 1 channel grey, 2 grey+alpha, 3 RGB, 4 RGBA; bits 8 or 16. */
int image_write_png(const char *path, const tool_image *img, int bits, char *err,
                    size_t errsize);

/* ---- preprocessing (dataset.c) ---------------------------------------------------------------- */

/* How raw intensities become network inputs; stored in the model's metadata. */
typedef struct tool_norm {
    int percentile;   /* 1: per image and channel percentile stretch; 0: multiply by scale */
    double low, high; /* percentiles */
    double scale;
} tool_norm;

/* The scales `train --scale` takes and a model may store (a float32 stays finite or non-zero). */
#define TOOL_SCALE_MIN 1e-30
#define TOOL_SCALE_MAX 1e30

/* "percentile 1 99.8" / "scale 0.0001" (a scale within TOOL_SCALE_MIN..TOOL_SCALE_MAX). */
void norm_format(const tool_norm *n, char *buf, size_t size);
int norm_parse(const char *s, tool_norm *n);

/* Normalises img (in place) then centre-crops / zero-pads it to size x size into dst
 * (channels x size x size). Returns 0, or -1 with err (smaller than size and pad == 0). */
int image_prepare(tool_image *img, const tool_norm *norm, int size, int pad, float *dst,
                  char *err, size_t errsize);

/* The same with the settings of a model trained by the command (cfnet_network_prepare_image):
 * img is only read; pad as predict --pad (or the model's "pad"). */
int image_prepare_model(const cfnet_network *net, const tool_image *img, int size, int pad,
                        float *dst, char *err, size_t errsize);

/* ---- datasets (dataset.c) --------------------------------------------------------------------- */

struct tool_progress; /* the progress line, below */

enum { SPLIT_NONE = 0, SPLIT_TRAIN = 1, SPLIT_VAL = 2, SPLIT_TEST = 3 };

typedef struct tool_sample {
    char *path;    /* as opened (relative to the working directory) */
    char *label;   /* class name as given (NULL: unlabelled) */
    int cls;       /* class index, -1 if none / unknown */
    int split;     /* SPLIT_* from a manifest, SPLIT_NONE otherwise */
    int line;      /* manifest line, 0 for folders */
    char *source;  /* manifest path or class folder (for messages) */
    int bad;       /* skipped (--skip-bad) */
} tool_sample;

typedef struct tool_dataset {
    tool_sample *s;
    int64_t n, cap;
    char **classes; /* sorted class names found (labelled data) */
    int n_classes;
    int manifest;   /* 1 if read from a CSV */
    int has_split;  /* manifest has a split column */
} tool_dataset;

/* Reads DATA: a folder with one sub-folder per class, or a CSV manifest. Labels required.
 * Returns 0 or -1 (message printed). pr (may be NULL): a terminal's progress line counting the
 * images a folder search has found, named cmd. */
int dataset_open_labelled(const char *path, tool_dataset *ds, struct tool_progress *pr,
                          const char *cmd);
/* For prediction: files, folders (searched recursively for images) or manifests (labels
 * optional). pr (may be NULL): a terminal's progress line counting the images the search of
 * the folders has found, named cmd. */
int dataset_open_inputs(char **paths, int n, tool_dataset *ds, struct tool_progress *pr,
                        const char *cmd);
void dataset_free(tool_dataset *ds);
/* The index of a sample of ds that is the existing file at path (the same last name and
 * inode), or -1 (path does not exist or is none of them): outputs are checked against it so
 * that nothing overwrites an input. */
int64_t dataset_holds(const tool_dataset *ds, const char *path);
/* Maps every sample's label to an index of `classes`; a label not in the list is an error
 * naming the file and line ("not seen in training"). */
int dataset_assign_classes(tool_dataset *ds, char **classes, int n_classes);

/* Loads the samples idx[0..n-1] into dst (n x channels x size x size), decoding with `threads`
 * threads. Bad files: an error (returns -1, message printed) unless skip_bad, in which case the
 * sample is marked bad, a warning is printed and its slot is zero. expect_channels: the
 * required channel count. */
typedef struct load_spec {
    int channels, size, pad;
    tool_norm norm;
    int threads;
    int skip_bad; /* 1: --skip-bad; -1: --skip-bad, the images checked already (train under
                   * mpirun): a bad image is an error, as with 0, without the hint to give it */
    int exact; /* 1: every image must be size x size already (no --size given) */
    int channels_from_data; /* 1: channels were read from the first image, not from a model */
    const char *first;      /* that first image (exact or channels_from_data), for messages */
    /* A terminal's progress line while decoding (NULL: none): "WHAT B+i of TOTAL images"
     * with i the images of this call done so far. */
    struct tool_progress *progress;
    const char *progress_what;
    int64_t progress_base, progress_total;
    /* With skip_bad: NULL, each bad image's warning is printed (in the order of idx); else
     * its text ("where: why", without "(skipped)") is written here with a NUL after it, for
     * dataset_say_skipped. */
    FILE *warn_to;
} load_spec;
int dataset_load(tool_dataset *ds, const int64_t *idx, int64_t n, const load_spec *spec,
                 float *dst, int64_t *bad_count);
/* The same for a model trained by the command (predict, eval): every image is prepared with the
 * model's own settings by cfnet_network_prepare_image, the library's preparation for host
 * programs (spec's channels, size and pad still apply; its norm is not used). */
int dataset_load_model(tool_dataset *ds, const int64_t *idx, int64_t n, const load_spec *spec,
                       const cfnet_network *net, float *dst, int64_t *bad_count);
/* Collective under mpirun (a plain call otherwise): rank 0 prints the warnings that each rank's
 * dataset_load wrote to its warn_to (text, len: this rank's), rank 0's first, then rank 1's
 * and so on, each as "warning: ... (skipped)": in input order when the ranks took contiguous
 * blocks in rank order. 0, or -1 on every rank (said by rank 0) when the other ranks'
 * warnings could not be gathered: the command must then fail, not end with status 0 and the
 * warnings lost. */
int dataset_say_skipped(const char *text, size_t len);
/* Reads the first good image to find channels and size (when not given); *first (may be NULL)
 * is its sample index, for messages that compare other images with it. */
int dataset_probe(tool_dataset *ds, const int64_t *idx, int64_t n, int skip_bad, int *channels,
                  int *height, int *width, int64_t *first);

/* ---- sampling (sampling.c) ------------------------------------------------------------------- */

/* Stratified validation split of a labelled dataset (every sample's cls set): per class, a
 * shuffle seeded by (seed, class) puts round(frac * n) of its samples in validation (at least
 * one when frac > 0 and n >= 2, never all); sets every sample's split to SPLIT_TRAIN or
 * SPLIT_VAL, except samples marked bad, which keep SPLIT_NONE. */
void split_stratified(tool_dataset *ds, double frac, uint64_t seed);
/* The visiting order of epoch `epoch` over the training samples tr[0..ntr-1]: ntr positions
 * into tr. Without balance a permutation; with balance every position draws a class uniformly
 * (among classes present) and takes the next sample of that class's shuffled cycle. Depends on
 * (seed, epoch) only. */
void epoch_order(const tool_dataset *ds, const int64_t *tr, int64_t ntr, uint64_t seed,
                 int balance, int epoch, int64_t *order);

/* ---- metrics (metrics.c) ---------------------------------------------------------------------- */

typedef struct tool_metrics {
    int k;
    int64_t *confusion; /* k x k, row = true, column = predicted */
    int64_t total, correct;
    double accuracy, balanced_accuracy, macro_f1;
    double *precision, *recall, *f1;
    int64_t *support;
    double loss; /* mean cross-entropy, NaN if not computed */
} tool_metrics;

void metrics_init(tool_metrics *m, int k);
/* metrics_init without exiting out of memory: -1, *m empty (NaN loss), nothing allocated */
int metrics_init_try(tool_metrics *m, int k);
void metrics_add(tool_metrics *m, int truth, int predicted);
void metrics_finish(tool_metrics *m);
int64_t metrics_predicted(const tool_metrics *m, int cls); /* column sum: times predicted */
void metrics_free(tool_metrics *m);
void metrics_print(const tool_metrics *m, char **classes, FILE *out);
/* The reports into an open stream: 0, or -1 when a write failed. */
int metrics_write_confusion_csv(const tool_metrics *m, char **classes, FILE *f);
int metrics_write_confusion_svg(const tool_metrics *m, char **classes, FILE *f);
int metrics_write_json(const tool_metrics *m, char **classes, FILE *f,
                       const char *model, const char *data);

/* ---- model metadata (model.c) ----------------------------------------------------------------- */

/* What the command stores in a model file besides the network. */
typedef struct tool_model_info {
    char **classes;
    int n_classes;
    int channels, size, pad;
    tool_norm norm;
    char arch[32];
} tool_model_info;

/* Writes info into the network's metadata. */
int model_store_info(cfnet_network *net, const tool_model_info *info);
/* Reads it back; missing keys are an error naming the model file. */
int model_load_info(const cfnet_network *net, const char *path, tool_model_info *info);
void model_info_free(tool_model_info *info);
/* A model is read from its file, never from standard input: "-" given for it (`name`: "MODEL",
 * "--resume: the checkpoint") is a usage error of cmd, said so (the loader's "cannot open '-'"
 * said nothing of why), and so is an empty name. 0, or EXIT_USAGE. */
int model_arg(const char *cmd, const char *name, const char *path);
/* Loads any model file (message printed on error): 0 or -1. */
int model_load(const char *path, cfnet_network **net);
/* After a load of path failed with st: what the file is when it is plainly no model ("a
 * folder", "an empty file", "a TIFF image", "a text file", ...: arguments in the wrong place),
 * for a message that says so instead of the loader's; NULL otherwise. */
const char *model_not_a_model(const char *path, cfnet_status st);
/* Loads a model made by `cfnet train` (message printed on error); model_close frees both. */
int model_open(const char *path, cfnet_network **net, tool_model_info *info);
void model_close(cfnet_network *net, tool_model_info *info);
/* FNV-1a of every parameter and state value of net's layers (with their counts), continuing
 * from h (0: start): the same on MPI ranks that loaded the same file, compared by predict,
 * eval and train --resume under mpirun. */
int64_t model_hash_values(const cfnet_network *net, int64_t h);

/* Runs the network on n prepared images (n x C x S x S) in batches; probs gets n x k. tta:
 * averages the four quarter turns. */
int model_probabilities(const cfnet_network *net, const float *images, int64_t n, int channels,
                        int size, int k, int tta, int64_t batch, float *probs);

/* ---- progress line (util.c) ------------------------------------------------------------------- */

typedef struct tool_progress {
    FILE *out;
    int tty;
    double t0;
    int64_t last_plain;
    double last_tick; /* when progress_tick last drew, 0 before its first line */
} tool_progress;
void progress_init(tool_progress *p, FILE *out);
/* Prints the current line: on a terminal it is redrawn with \r (and stays open: progress_done
 * ends it, progress_erase removes it, and any message ends it first); otherwise only when
 * `force`. */
void progress_line(tool_progress *p, int force, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void progress_done(tool_progress *p);
/* progress_line on a terminal only, drawn at most every 0.1 s (always the first time): for a
 * loop over thousands of files that would otherwise redraw the line thousands of times a
 * second. Nothing elsewhere (a log or a pipe), nothing under -q. */
void progress_tick(tool_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Erases the current line on a terminal (for a line that should not stay above the output). */
void progress_erase(tool_progress *p);

/* ---- commands ----------------------------------------------------------------------------------- */

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_crop(int argc, char **argv);

/* ---- crop (crop.c) ----------------------------------------------------------------------------- */

/* One cell of a label mask: its label, pixel count and the sums of its pixels' columns (x) and
 * rows (y), from which its centroid is (sum_x / area, sum_y / area). */
typedef struct crop_cell {
    uint32_t label;
    int64_t area, sum_x, sum_y;
} crop_cell;
/* The cells of lab (labels > 0) in one pass, sorted by label, into *cells (malloc'd, *n of
 * them); memory follows the number of cells, not the largest label. 0, or -1 with err (more
 * than 2^20 labels, out of memory). */
int crop_find_cells(const tool_labels *lab, crop_cell **cells, int64_t *n, char *err,
                    size_t errsize);
/* The first row and column of the size x size window centred on c's centroid: the window whose
 * centre (first + (size - 1)/2) is nearest to it, a tie going to the larger index; exact. */
void crop_window(const crop_cell *c, int size, int64_t *top, int64_t *left);
/* field's window at (top, left) into dst (channels x size x size), 0 outside the field and, with
 * isolate, wherever lab is not `label`. Returns 1 if the window leaves the field, else 0. */
int crop_extract(const tool_image *field, const tool_labels *lab, uint32_t label, int64_t top,
                 int64_t left, int size, int isolate, float *dst);

/* Tool version string (the library's version). */
#define TOOL_NAME "cfnet"

/* Interrupt flag set by SIGINT/SIGTERM during training. */
extern volatile int tool_interrupted;
void tool_install_signals(void);

/* MPI (mpi.c): under mpirun, when built with mpicc (CFNET_TOOL_MPI), the command runs on every
 * rank; otherwise one rank of one. tool_mpi_finish ends MPI and, if this rank failed, the whole
 * job (MPI_Abort), so no rank waits for a failed one. */
void tool_mpi_init(int *argc, char ***argv);
int tool_mpi_finish(int rc);
/* Says that this failure happens on every rank at the same point (a check of what all ranks
 * share, such as the batch against the rank count): tool_mpi_finish then ends MPI normally on
 * every rank instead of aborting the job, so the message that rank 0 prints is not lost. */
void tool_mpi_fail_together(void);
/* Out of memory (xmalloc and the others) on a rank of several: no vote, a report. This rank
 * makes a check-in as a failed rank, which meets the check-in that begins every other rank's
 * next collective or vote (or its final check-in); there every rank ends with status 1 and
 * the lowest failed rank's message ("rank R of N: out of memory for WHAT"; what NULL: "(setting
 * up the command)" before the start vote, nothing after), said once; what the run made is
 * removed (tool_fail_cleanup), MPI ends normally and the process exits. Returns -1 only where
 * it cannot (one process, or no communicator for the check-ins). */
int tool_mpi_report_oom(const char *what);
/* Collective, the start point of a command that runs on several ranks, before its first other
 * collective: every rank has set up its command (arguments, data, network) without a failure,
 * 0; or some rank failed before (its message printed once, by the lowest such rank), then the
 * status that rank ends with, and this rank must end with it too, saying nothing. Until then
 * every rank's stderr is held back (so that a failure of every rank is said once). */
int tool_mpi_started(void);
/* Collective, before tool_mpi_started, for a command that needs other collectives before its
 * start point (train --skip-bad's shared check of the images): 0 when no rank has failed so
 * far (stderr stays held back until tool_mpi_started); else this was the start vote, and the
 * status is the one to end with, as tool_mpi_started's. */
int tool_mpi_ready(void);
int tool_mpi_rank(void);
int tool_mpi_size(void);
/* Sum over the ranks (collective). */
int64_t tool_mpi_sum(int64_t v);
/* Collective: whether flag is set on some rank, carried by the check-in that begins every
 * meeting of the ranks (src/tool/mpi.c), so no all-reduce of its own: a training step's flags
 * (its held messages', tool_hold_end, and the interrupt's) add nothing to the step's sums. */
int tool_mpi_any(int flag);
/* Collective: -1 when v[0..n-1] is the same on every rank, else the index of the first value
 * that differs somewhere (the same answer on every rank). Settings that decide how many
 * collectives a command makes (--epochs) or which samples a rank takes (the inputs, --batch)
 * must agree, or one rank would wait forever for the others or compute from other data. */
int tool_mpi_agree(const int64_t *v, int n);
/* FNV-1a hash of the paths and classes of samples idx[0..n-1] of ds, continuing from h (start
 * with 0): what tool_mpi_agree compares to see that the ranks read the same data. */
int64_t tool_mpi_hash_samples(const tool_dataset *ds, const int64_t *idx, int64_t n, int64_t h);
/* Collective: rank 0 appends to `out` the text of ranks 1.., in rank order (rank 0 passes its
 * own length 0). Any bytes, not only text (eval gathers its loss terms so). 0 or -1. */
int tool_mpi_gather_text(const char *buf, size_t len, FILE *out);
/* Collective: rank 0 gets every rank's bytes, its own first, then ranks 1.. in rank order, in
 * *all (a heap buffer or NULL; free it), *all_len; the others get NULL, 0. No memory stream and
 * no CFNET_TEST_GATHER_MAX limit. 0, or -1 on every rank when any rank's part could not be
 * gathered (said). */
int tool_mpi_gather_all(const char *buf, size_t len, char **all, size_t *all_len);
/* Whether a gather was refused as too big (said once by rank 0; the same on every rank). */
int tool_mpi_gather_refused(void);
/* Collective under mpirun, after a part that each rank did on its own (its share of the
 * images), with the messages it held back meanwhile (tool_hold_messages) and whether it failed.
 * No rank failed: each rank writes its own messages, returns 0. One or more failed: rank 0
 * writes every rank's messages in rank order (one report, not lines of several ranks
 * interleaved), the others nothing; returns 1 on every rank, which end together (no abort).
 * One process: writes its messages, returns whether it failed. */
int tool_mpi_say_failures(int failed, const char *held, size_t len);
/* The messages of one rank's own part, held (tool_hold_messages) for tool_mpi_say_failures
 * under mpirun; nothing held on one process. */
typedef struct {
    FILE *f; /* the messages held meanwhile (NULL: one process, or no stream) */
    char *text;
    size_t len;
    /* no stream: its cause, said by rank 0 as held messages are (not by this rank while rank 0
     * writes the others') */
    char unheld[240];
} tool_held;
/* Starts holding this rank's messages (several ranks only). No memory stream: h->f is NULL
 * and the cause is kept for tool_hold_end; `when` (NULL or, say, " (step 3 of epoch 2)") is
 * added to it. The caller should then count this rank as failed. */
void tool_hold_begin(tool_held *h, const char *when);
/* Collective: ends the holding and says the failed ranks' messages (rank 0, in rank order:
 * tool_mpi_say_failures); nonzero on every rank when any rank failed. A rank whose held
 * messages could not be kept whole (the stream's fclose failed) counts as failed, its note
 * said after what was kept. */
int tool_hold_end(tool_held *h, int failed);
/* 1 when the process runs under an MPI launcher (any number of ranks, 1 included). */
int tool_mpi_active(void);
/* Collective: v[0..n-1] replaced by its sum over the ranks. 0 or -1. */
int tool_mpi_sum_doubles(double *v, int64_t n);
/* The same for counts, summed exactly (eval's confusion matrix). */
int tool_mpi_sum_counts(int64_t *v, int64_t n);
/* Distributed training with libcfnet_mpi (collective): checks that every rank has the same
 * network, broadcasts rank 0's and installs the all-reduce hook. 0, or -1 on every rank with
 * the failed ranks' messages said by rank 0 (libcfnet_mpi's group not created on one rank, for
 * lack of memory, included: cfnet_mpi_create agrees on it). */
int tool_mpi_attach(cfnet_network *net);
/* This rank's share [*offset, *offset + *count) of a global batch of global_n samples, set as
 * the network's batch position. 0, or -1 with a message (*count 0): this rank's own failure
 * of the step (tool_mpi_step_failed). Resets the step's flags either way. */
int tool_mpi_set_batch(cfnet_network *net, int64_t global_n, int64_t *offset, int64_t *count);
void tool_mpi_detach(cfnet_network *net);
/* Collective with the sums of the train step: this rank's step (or the loading of its share)
 * failed on its own; if the others may wait in one of the step's sums, it takes part in it so
 * that their step ends too (with CFNET_E_CANCELLED). 1 if it did. */
int tool_mpi_step_failed(void);
/* 1 when this step ended because another rank's failed (the sum hook returned
 * CFNET_E_CANCELLED) or this rank said its failure; reset by tool_mpi_set_batch. */
int tool_mpi_step_left(void);
/* All-reduce calls, bytes and seconds of the training hook so far. */
void tool_mpi_traffic(int64_t *calls, int64_t *bytes, double *seconds);

#endif
