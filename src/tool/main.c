/* `cfnet`: train, evaluate and apply rotation-invariant classifiers on folders of images. */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char main_help[] =
    "Usage: cfnet COMMAND [options]   (cfnet COMMAND --help for each command's options)\n"
    "\n"
    "Commands:\n"
    "  synth DIR                  write the synthetic biomarker images (a dataset to try things)\n"
    "  train DATA -o MODEL        train a classifier on a folder of class folders or a CSV manifest\n"
    "  eval MODEL DATA            accuracy, per-class metrics and confusion matrix on labelled data\n"
    "  predict MODEL INPUTS...    a CSV of class probabilities for images, folders or manifests\n"
    "  info MODEL                 architecture, classes, normalisation and training state\n"
    "  export MODEL OUT.onnx      the model as an ONNX model (ONNX Runtime, BioImage Model Zoo)\n"
    "  crop FIELD MASK -o DIR     one image per cell from fields of view and their label masks\n"
    "\n"
    "Images: TIFF (8/16-bit unsigned, 32-bit float; pages or samples are channels) and PNG.\n"
    "Exit status: 0 success, 1 runtime error (bad file, training failure), 2 usage error.\n"
    "  -V, --version   print the version\n"
    "  -h, --help      this help\n"
    "Documentation: docs/cli.md, man cfnet.\n";

/* Standard output is flushed before the exit status is decided: a report, a JSON summary or a
 * help text that did not reach a full disk (or /dev/full) is an error, not a success. A
 * command that already failed keeps its own status (and its own message). */
static int finish(int rc)
{
    errno = 0;
    int bad = fflush(stdout) != 0;
    int err = errno;
    if ((bad || ferror(stdout)) && rc == EXIT_OK) {
        if (err)
            tool_error("standard output: write failed: %s", strerror(err));
        else
            tool_error("standard output: write failed");
        rc = EXIT_RUNTIME;
    }
    return rc;
}

static int run(int argc, char **argv)
{
    if (argc < 2) {
        fputs(main_help, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(main_help, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("cfnet %s (libcfnet %s)\n", CFNET_VERSION_STRING, cfnet_version_string());
        return EXIT_OK;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"synth", cmd_synth}, {"train", cmd_train}, {"eval", cmd_eval},
                {"predict", cmd_predict}, {"info", cmd_info}, {"export", cmd_export},
                {"crop", cmd_crop}};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(cmd, cmds[i].name)) {
            tool_mpi_init(&argc, &argv);
            if (tool_mpi_size() > 1 && strcmp(cmd, "predict") && strcmp(cmd, "train") &&
                strcmp(cmd, "eval")) {
                /* N copies would each do the whole job and write the same files */
                if (tool_mpi_rank() == 0) /* a usage error of cmd, said as the others are */
                    (void)tool_usage_error(cmd, "does not run on several MPI ranks (only train, eval "
                                           "and predict do; distributed training: "
                                           "docs/distributed.md); run it as one process");
                tool_mpi_fail_together();
                return tool_mpi_finish(EXIT_USAGE);
            }
            return tool_mpi_finish(cmds[i].fn(argc - 1, argv + 1));
        }
    fputs("cfnet: unknown command '", stderr); /* as typed: a control character as U+FFFD */
    tool_put_visible(stderr, cmd, strlen(cmd));
    fputs("'\n(see 'cfnet --help')\n", stderr);
    return EXIT_USAGE;
}

/* OpenBLAS starts one thread per further processor when it is loaded, before main, and each
 * allocates its 128 MiB working buffer at once, retrying forever when that fails: under a
 * ulimit -v or -d such a thread spins, and exit waits for it, a hang. The command runs OpenBLAS
 * on one thread anyway (tool_blas_single_thread), so under such a limit, unless the user chose a
 * number, it starts itself again with OPENBLAS_NUM_THREADS=1, which OpenBLAS reads when it is
 * loaded (the environment cannot be changed earlier than main: glibc sets it up after an
 * executable's preinit_array). */
extern void openblas_set_num_threads(int n) __attribute__((weak));

/* Whether /proc/self/exe is this program: not when it was started through the dynamic loader
 * (`ld.so cfnet ...`), where it is the loader, which would take argv[1] for the program. */
static int self_exe_is_program(void)
{
    const char *fn = (const char *)getauxval(AT_EXECFN);
    struct stat a, b;
    return fn && stat("/proc/self/exe", &a) == 0 && stat(fn, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static void no_blas_threads(char **argv)
{
    struct rlimit as, data;
    if (!openblas_set_num_threads || getenv("OPENBLAS_NUM_THREADS")) return;
    int limited = (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) ||
                  (getrlimit(RLIMIT_DATA, &data) == 0 && data.rlim_cur != RLIM_INFINITY);
    if (!limited || !self_exe_is_program() || setenv("OPENBLAS_NUM_THREADS", "1", 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_NUM_THREADS"); /* not started again: runs on as before */
}

int main(int argc, char **argv)
{
    no_blas_threads(argv);
    return finish(run(argc, argv));
}
