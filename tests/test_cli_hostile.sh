#!/bin/sh
# The `cfnet` command under hostile conditions: outputs that cannot be written (a full device,
# a pipe where a file is renamed into place), standard output on a full device, a signal during
# training and --resume from what it leaves, and (as root) a file system that fills up while the
# model is saved. Every case: one clear message, the documented exit status, earlier files
# left whole.
set -eu
name=cli_hostile
# shellcheck source=tests/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"

d="$out/data"
expect 0 "" "$cfnet" synth "$d" --classes 3 --per-class 12 --test-per-class 4 --size 16 -q
common="--size 16 --width 4 --batch 8 --threads 1 --seed 2"
m="$out/m.safetensors"
# shellcheck disable=SC2086
expect 0 "" "$cfnet" train "$d/train" -o "$m" --epochs 1 $common -q

# ---- writes that fail ---------------------------------------------------------------------------
if [ -c /dev/full ]; then
    ln -s /dev/full "$out/full.csv"
    # a --log that cannot be written stops the run with the reason (it used to end with status 0)
    # shellcheck disable=SC2086
    expect 1 "full.csv: cannot write epoch 1: No space left on device; .*log.last.safetensors holds epoch 1" "$cfnet" train "$d/train" \
        -o "$out/log.safetensors" --epochs 1 $common -q --log "$out/full.csv"
    # standard output on a full device: a report, a summary or a help text that was not written
    # is an error, not a success
    for cmd in "eval $m $d/test" "eval $m $d/test --json" "info $m" "--help" "train --help"; do
        set +e
        # shellcheck disable=SC2086 # the command and its arguments
        "$cfnet" $cmd >/dev/full 2>"$out/err.txt"
        st=$?
        set -e
        [ $st = 1 ] || fail "cfnet $cmd >/dev/full: exit $st (expected 1)"
        grep -q "standard output: write failed" "$out/err.txt" ||
            fail "cfnet $cmd >/dev/full: no message: $(cat "$out/err.txt")"
    done
    # ... and eval --out's files are not committed then: an existing folder keeps its earlier
    # report (the report failed at the exit, after the commit, and left the new files in place)
    for json in "" --json; do
        rm -rf "$out/evfull"
        mkdir "$out/evfull"
        echo old >"$out/evfull/metrics.json"
        set +e
        # shellcheck disable=SC2086 # --json or nothing
        "$cfnet" eval "$m" "$d/test" --out "$out/evfull" $json -q >/dev/full 2>"$out/err.txt"
        st=$?
        set -e
        [ $st = 1 ] || fail "eval --out $json >/dev/full: exit $st (expected 1)"
        [ "$(grep -c "standard output: write failed: No space left on device" "$out/err.txt")" = 1 ] ||
            fail "eval --out $json >/dev/full: $(cat "$out/err.txt")"
        [ "$(ls -A "$out/evfull")" = metrics.json ] && [ "$(cat "$out/evfull/metrics.json")" = old ] ||
            { ls -lA "$out/evfull"; fail "eval --out $json >/dev/full replaced the earlier report"; }
    done
    # predict's own message, once
    set +e
    "$cfnet" predict "$m" "$d/test" -q >/dev/full 2>"$out/err.txt"
    st=$?
    set -e
    [ $st = 1 ] || fail "predict >/dev/full: exit $st"
    [ "$(grep -c "write failed" "$out/err.txt")" = 1 ] || fail "predict >/dev/full: $(cat "$out/err.txt")"
fi

# predict -o under a file size limit names the failing write's own reason, even where a call
# after it changes errno: a preloaded free() does, as POSIX allowed before 2024 (the message
# read errno after the row, and said "Invalid argument"). Rows of 4 KB paths ("./" repeated)
# put the failing flush inside the path's write, before the row's free(). Not under the
# sanitizers, whose runtime must come first among the preloaded libraries.
case "${CFNET_SANITIZE:-}:${CFNET_BUILD:-build/default}" in
:*san*) plain=0 ;;
:*) plain=1 ;;
*) plain=0 ;;
esac
if [ "$plain" = 1 ] && command -v "${CC:-cc}" >/dev/null 2>&1; then
    cat >"$out/errshim.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
void free(void *p)
{
    static void (*real)(void *);
    if (!real) real = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real(p);
    errno = EINVAL;
}
EOF
    "${CC:-cc}" -shared -fPIC -o "$out/errshim.so" "$out/errshim.c" -ldl
    # paths of about 4090 bytes (PATH_MAX is 4096) in a manifest: the header and the first
    # path fill stdio's buffer
    one=$out/data/test/class00/0000.tif
    dots=$(printf './%.0s' $(seq $(((4088 - ${#one}) / 2))))
    for i in 1 2 3; do echo "${dots}data/test/class00/0000.tif"; done >"$out/long.csv"
    limited() { (trap '' XFSZ; ulimit -f 1; exec "$@"); }
    expect 1 "limit\.csv: write failed: File too large \(the file is unchanged\)" limited \
        env LD_PRELOAD="$out/errshim.so" "$cfnet" predict -q "$m" "$out/long.csv" -o "$out/limit.csv"
    [ ! -e "$out/limit.csv" ] || fail "predict under a size limit left $out/limit.csv"

    # faults at set moments, injected by a preloaded library: an open of a file named enxio.csv
    # fails with ENXIO (as for a FIFO that no process reads, or a device not there), and the
    # first flush of a stream on /dev/full first raises SIGINT (a signal that comes while the
    # log is written)
    cat >"$out/faultshim.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <stdlib.h>
#include <unistd.h>
static int enxio(const char *path)
{
    size_t n = strlen(path);
    return n >= 10 && !strcmp(path + n - 10, "/enxio.csv");
}
static int open_as(int which, const char *path, int flags, int mode)
{
    static int (*real[2])(const char *, int, ...);
    if (!real[which])
        real[which] = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, which ? "open64" : "open");
    if (enxio(path)) {
        errno = ENXIO;
        return -1;
    }
    return real[which](path, flags, mode);
}
int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int mode = flags & (O_CREAT | O_TMPFILE) ? va_arg(ap, int) : 0;
    va_end(ap);
    return open_as(0, path, flags, mode);
}
int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int mode = flags & (O_CREAT | O_TMPFILE) ? va_arg(ap, int) : 0;
    va_end(ap);
    return open_as(1, path, flags, mode);
}
int fflush(FILE *f)
{
    static int (*real)(FILE *);
    static int raised;
    struct stat st;
    if (!real) real = (int (*)(FILE *))dlsym(RTLD_NEXT, "fflush");
    if (f && !raised && fstat(fileno(f), &st) == 0 && S_ISCHR(st.st_mode) &&
        st.st_rdev == makedev(1, 7)) {
        raised = 1;
        raise(SIGINT);
    }
    return real(f);
}
/* with FAULT_FSYNC_SIGINT set, the first fsync of a .safetensors file (a model being saved)
 * first raises SIGINT */
int fsync(int fd)
{
    static int (*real)(int);
    static int raised;
    char link[64], target[4096];
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = 0;
    if (getenv("FAULT_FSYNC_SIGINT") && !raised && strstr(target, ".safetensors")) {
        raised = 1;
        raise(SIGINT);
    }
    return real(fd);
}
EOF
    "${CC:-cc}" -shared -fPIC -o "$out/faultshim.so" "$out/faultshim.c" -ldl
    # an output whose open fails with ENXIO, through a link to a file not there yet, is said with
    # the open's reason (the stat that looks for a FIFO after ENXIO set errno, ENOENT, and the
    # message said the link led to a missing target)
    ln -s "$out/enxio-target.csv" "$out/enxio.csv"
    expect 2 "^cfnet predict: -o: .*/enxio.csv: cannot create: No such device or address$" \
        env LD_PRELOAD="$out/faultshim.so" "$cfnet" predict -q "$m" "$d/test" -o "$out/enxio.csv"
    lacks "symbolic link" "an output whose open failed with ENXIO said as a link to nothing"
    # a --log that cannot be written (a full device) while SIGINT comes: the write's failure,
    # status 1, the signal said after it (it was status 130 and "interrupted after epoch 1; ...",
    # as for a signal that ended a wait for a FIFO's reader)
    if [ -c /dev/full ]; then
        ln -s /dev/full "$out/fullsig.csv"
        # shellcheck disable=SC2086
        expect 1 "fullsig.csv: cannot write epoch 1: No space left on device; .*fullsig.last.safetensors holds epoch 1" \
            env LD_PRELOAD="$out/faultshim.so" "$cfnet" train "$d/train" -o "$out/fullsig.safetensors" \
            --epochs 3 $common -q --log "$out/fullsig.csv"
        grep -q "^cfnet: error: interrupted after epoch 1 too; the run ends for the error above$" "$out/last.txt" ||
            fail "a --log write that failed as SIGINT came: the signal not said: $(cat "$out/last.txt")"
        lacks "^cfnet: error: interrupted after epoch 1;" "a --log write that failed as SIGINT came: said as an interrupted run"
    fi
    # SIGINT while the last epoch is saved: the run still ends whole (the model, the checkpoint,
    # the log line), says so, and ends with the status of an interrupted run, 130, so that a
    # script's `train && ...` stops (it ended with status 0, the signal unsaid)
    s="$out/lastsig"
    rm -f "$s".*
    # shellcheck disable=SC2086
    expect 130 "^cfnet: error: interrupted after the last epoch \(1\) was saved: the run is complete, .*lastsig.safetensors and .*lastsig.last.safetensors are whole \(nothing to resume\)$" \
        env FAULT_FSYNC_SIGINT=1 LD_PRELOAD="$out/faultshim.so" "$cfnet" train "$d/train" \
        -o "$s.safetensors" --epochs 1 $common -q --log "$s.csv"
    [ "$(wc -l <"$out/last.txt")" = 1 ] || fail "SIGINT in the last save: $(cat "$out/last.txt")"
    expect 0 "\"epoch\":1," "$cfnet" info "$s.last.safetensors"
    expect 0 "" "$cfnet" info "$s.safetensors"
    [ "$(wc -l <"$s.csv")" = 2 ] || fail "SIGINT in the last save: the log: $(cat "$s.csv")"
    ls "$s".*tmp* >/dev/null 2>&1 && fail "SIGINT in the last save: a temporary file left"
else
    skip_env test_cli_hostile "the failing write's reason and the injected faults (ENXIO, a signal in the log's flush or in the model's save)" "a sanitizer build, or no C compiler"
fi

# eval --out under a file size limit of 3000 bytes: predictions.csv's first 4 KB flush fails.
# Where a row ends at the end of stdio's buffer, the failing flush is the row's last one and
# the buffer is empty at the commit, whose flush then succeeds: the message took the reason
# from errno, which other calls had set since ("write failed: Success"). The file's size for
# one row is measured first (without a limit), then rows whose path length steps one byte at a
# time across the buffer's end (glibc: st_blksize, the file's size one past it) are written:
# each says "File too large", or no reason, and one must be at the boundary (the window was
# guessed from the output folder's name, and missed it: the check was always skipped).
# shellcheck disable=SC2016
fsize='import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
os.execvp(sys.argv[1], sys.argv[1:])'
edge_row() { # edge_row PAIRS SEP: the manifest $out/edge.csv with one image, "./" PAIRS times
    dots=$(printf './%.0s' $(seq "$1"))
    echo "${dots}data${2}test/class00/0000.tif,class00" >"$out/edge.csv"
}
: >"$out/blk"
blk=$(stat -c %o "$out/blk" 2>/dev/null || echo 0)
if [ "$blk" = 4096 ] && getconf GNU_LIBC_VERSION >/dev/null 2>&1; then
    p0=1900
    edge_row $p0 /
    rm -rf "$out/edge"
    expect 0 "" "$cfnet" eval -q "$m" "$out/edge.csv" --out "$out/edge"
    s0=$(wc -c <"$out/edge/predictions.csv")
    noreason=0
    for target in $(seq 4090 4102); do # the file's size, one byte at a time
        gap=$((target - s0))
        sep=/
        [ $((gap % 2)) = 0 ] || sep=//
        edge_row $((p0 + gap / 2)) $sep
        rm -rf "$out/edge"
        expect 1 "edge/predictions.csv: write failed(: File too large)? \(the earlier files are unchanged\)" \
            "$py" -c "$fsize" "$cfnet" eval -q "$m" "$out/edge.csv" --out "$out/edge"
        grep -q "write failed (the earlier" "$out/last.txt" && noreason=$((noreason + 1))
        [ ! -e "$out/edge" ] || fail "eval --out under a size limit left $out/edge"
    done
    [ $noreason -gt 0 ] ||
        fail "eval --out under a size limit: no row ended at stdio's buffer boundary (sizes 4090-4102 from $s0)"
else
    skip_env test_cli_hostile "eval --out's failed write at stdio's buffer boundary" \
        "not glibc's stdio with a 4096-byte buffer (st_blksize $blk)"
fi

# the plot's PNG is renamed into place like the model: a pipe (or, through a link, a device)
# of that name is refused before training, never replaced by a file
fake="$out/fakebin"
mkdir -p "$fake" "$out/other"
# shellcheck disable=SC2016 # the fake program's argument: IN (the PNG goes to standard output)
printf '#!/bin/sh\ncat "$1"\n' >"$fake/rsvg-convert"
chmod +x "$fake/rsvg-convert"
mkfifo "$out/pipe.png" "$out/other/fifo"
ln -s other/fifo "$out/link.png"
for p in pipe link; do
    # shellcheck disable=SC2086
    expect 2 "the plot's PNG .*$p.png. is not a regular file" env PATH="$fake:$PATH" "$cfnet" train \
        "$d/train" -o "$out/png.safetensors" --epochs 1 $common -q --plot "$out/$p.svg"
done
[ -p "$out/pipe.png" ] || fail "train --plot replaced a pipe named like the PNG by a file"
[ -p "$out/other/fifo" ] || fail "train --plot replaced the pipe a link named like the PNG points to"
# a PNG that is a file is still converted through the fake program
# shellcheck disable=SC2086
expect 0 "" env PATH="$fake:$PATH" "$cfnet" train "$d/train" -o "$out/png.safetensors" --epochs 1 \
    $common -q --plot "$out/ok.svg"
cmp -s "$out/ok.svg" "$out/ok.png" || fail "the fake conversion did not write ok.png"
# the converter gets the temporary file as its standard output and no other descriptor of it
# (the lock's duplicate is close-on-exec)
if [ -d /proc/self/fd ]; then
    # shellcheck disable=SC2016 # the fake program's argument: IN
    printf '#!/bin/sh\nls -l /proc/$$/fd | cat >"%s/fds.txt"\ncat "$1"\n' "$out" >"$fake/rsvg-convert"
    # shellcheck disable=SC2086
    expect 0 "" env PATH="$fake:$PATH" "$cfnet" train "$d/train" -o "$out/png.safetensors" \
        --epochs 1 $common -q --plot "$out/fd.svg"
    grep -q " 1 -> .*fd.png.tmp" "$out/fds.txt" || fail "the converter's output is not the temporary file"
    grep -v " 1 -> " "$out/fds.txt" | grep "fd.png.tmp" &&
        fail "the converter inherited another descriptor of the temporary file"
fi

# wait_lines FILE N PID: waits (at most 60 s) until FILE has N lines, or PID has ended.
wait_lines() {
    n=0
    while [ "$( (wc -l <"$1") 2>/dev/null || echo 0)" -lt "$2" ] && kill -0 "$3" 2>/dev/null &&
        [ $n -lt 600 ]; do
        sleep 0.1
        n=$((n + 1))
    done
}
# finish PID: waits (at most 60 s) for PID to end, else kills it (killed=1); its status in st.
finish() {
    n=0
    while kill -0 "$1" 2>/dev/null && [ $n -lt 600 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    killed=0
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1"
        killed=1
    fi
    set +e
    wait "$1"
    st=$?
    set -e
}

# ---- a signal during training --------------------------------------------------------------------
# SIGINT and SIGTERM stop after the current step with status 130; the checkpoint holds the last
# finished epoch and --resume continues from it; no temporary file is left, and the model is
# always a whole file.
# SIGHUP (the terminal closed) too, unless it is ignored (nohup); env --default-signal gives the
# run the default disposition whatever this script inherited.
for sig in INT TERM HUP; do
    s="$out/sig$sig"
    rm -f "$s".*
    # shellcheck disable=SC2086
    env --default-signal=HUP "$cfnet" train "$d/train" -o "$s.safetensors" --epochs 100000 $common \
        -q --log "$s.csv" 2>"$s.err" &
    pid=$!
    wait_lines "$s.csv" 3 $pid # two epochs logged
    kill -"$sig" $pid
    finish $pid
    [ $st = 130 ] || fail "SIG$sig during train: exit $st (expected 130)"
    grep -q "interrupted during epoch [0-9]*; .*sig$sig.last.safetensors holds epoch [0-9]* (continue with --resume)" \
        "$s.err" || fail "SIG$sig: message: $(cat "$s.err")"
    ls "$out"/sig"$sig".*tmp* >/dev/null 2>&1 && fail "SIG$sig left a temporary file"
    expect 0 "" "$cfnet" info "$s.safetensors"
    done_epochs=$(sed -n 's/.*holds epoch \([0-9]*\).*/\1/p' "$s.err")
    expect 0 "\"epoch\":$done_epochs," "$cfnet" info "$s.last.safetensors"
    # shellcheck disable=SC2086
    expect 0 "epochs $((done_epochs + 1)) to $((done_epochs + 1))" "$cfnet" train "$d/train" \
        -o "$s.safetensors" --epochs $((done_epochs + 1)) $common --resume "$s.last.safetensors" \
        --log "$s.csv"
    [ "$(wc -l <"$s.csv")" = $((done_epochs + 2)) ] || fail "SIG$sig: the log after --resume: $(wc -l <"$s.csv") lines"
done

# a message being written when the signal comes, to a stderr pipe that nobody reads for now (a
# log collector that lags): it arrives whole once the pipe is read. The handlers were installed
# without SA_RESTART, so that write(2) failed with EINTR and stdio dropped the line (an epoch's
# line missing). The helper fills the pipe (a FIFO, through a descriptor of its own) once epoch 1
# is logged (training's handler installed), waits until the run is blocked writing to it, sends
# SIGINT, then drains it: every epoch up to the one the checkpoint holds must have its line.
if [ -x /usr/bin/python3 ]; then
    s="$out/sigpipe"
    rm -f "$s".*
    cat >"$out/sigpipe.py" <<'EOF'
import errno, os, signal, subprocess, sys, time
cfnet, data, model, log, fifo = sys.argv[1:6]
common = sys.argv[6:]
os.mkfifo(fifo)
rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
wfd = os.open(fifo, os.O_WRONLY)  # the run's stderr, blocking
p = subprocess.Popen([cfnet, "train", data, "-o", model, "--epochs", "100000", "--log", log]
                     + common, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=wfd)
os.close(wfd)
def lines(path):
    try:
        with open(path) as f:
            return f.read().count("\n")
    except OSError:
        return 0
t0 = time.time()
while lines(log) < 2 and p.poll() is None and time.time() - t0 < 60:
    time.sleep(0.05)
if p.poll() is not None or lines(log) < 2:
    print("the run ended or logged no epoch: status %s" % p.poll()); p.kill(); sys.exit(1)
# fill the pipe through a descriptor of our own (O_NONBLOCK is the description's, not the run's)
ffd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
for size in (65536, 4096, 1):
    while True:
        try:
            os.write(ffd, b"#" * size)
        except BlockingIOError:
            break
# wait until the run is blocked writing its next line: it waits in pipe_write (where /proc
# shows it), and its log stops growing
def wchan():
    try:
        with open("/proc/%d/wchan" % p.pid) as f:
            return f.read().strip()
    except OSError:
        return ""
t0 = time.time()
n, since = lines(log), time.time()
while time.time() - t0 < 60:
    time.sleep(0.05)
    if lines(log) != n:
        n, since = lines(log), time.time()
    w = wchan()  # pipe_write, anon_pipe_write (Linux 6.x), or hidden ("0", "")
    if "pipe_write" in w and time.time() - since > 0.3:
        break
    if time.time() - since > 5:
        break
p.send_signal(signal.SIGINT)
time.sleep(0.5)
os.close(ffd)
os.set_blocking(rfd, True)
out = b""
while True:
    b = os.read(rfd, 65536)
    if not b:
        break
    out += b
st = p.wait()
sys.stdout.write(out.replace(b"#", b"").decode("utf-8", "replace"))
sys.stdout.write("status %d\n" % st)
EOF
    # shellcheck disable=SC2086
    /usr/bin/python3 "$out/sigpipe.py" "$cfnet" "$d/train" "$s.safetensors" "$s.csv" "$s.fifo" \
        $common >"$s.err" 2>&1 || fail "the stderr pipe helper: $(tail -5 "$s.err")"
    grep -q "^status 130$" "$s.err" || fail "SIGINT while stderr is blocked: $(tail -3 "$s.err")"
    held=$(sed -n 's/^cfnet: error: interrupted during epoch [0-9]*; .*sigpipe.last.safetensors holds epoch \([0-9]*\) (continue with --resume)$/\1/p' "$s.err")
    if [ -z "$held" ]; then
        fail "SIGINT while stderr is blocked: no whole 'interrupted' line: $(tail -3 "$s.err")"
    else
        e=1
        while [ $e -le "$held" ]; do
            grep -q "^epoch $e/100000  train loss .* s (total .*)$" "$s.err" ||
                fail "SIGINT while stderr is blocked: the line of epoch $e (of $held saved) is lost"
            e=$((e + 1))
        done
    fi
fi

# under nohup SIGHUP stays ignored: the run goes on (two more epochs logged), then SIGTERM ends it
s="$out/nohup"
# shellcheck disable=SC2086
nohup "$cfnet" train "$d/train" -o "$s.safetensors" --epochs 100000 $common -q --log "$s.csv" \
    >/dev/null 2>"$s.err" &
pid=$!
wait_lines "$s.csv" 3 $pid
kill -HUP $pid
wait_lines "$s.csv" $(($(wc -l <"$s.csv") + 2)) $pid
kill -0 $pid 2>/dev/null || fail "SIGHUP ended a run started under nohup"
kill -TERM $pid 2>/dev/null || true
finish $pid

# a --log or --plot that is a FIFO no process reads: the run waits for a reader after epoch 1
# (its open of the FIFO blocked, restarted after training's handler, so SIGTERM did nothing),
# and SIGTERM ends it as during training, status 130, epoch 1 kept in the checkpoint
for opt in log plot; do
    s="$out/fifo$opt"
    rm -f "$s".*
    mkfifo "$s.fifo"
    # shellcheck disable=SC2086
    "$cfnet" train "$d/train" -o "$s.safetensors" --epochs 3 $common -q --$opt "$s.fifo" 2>"$s.err" &
    pid=$!
    n=0
    while [ ! -e "$s.last.safetensors" ] && kill -0 $pid 2>/dev/null && [ $n -lt 600 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    sleep 0.3 # (waiting for a reader of the FIFO by now)
    kill -TERM $pid
    n=0
    while kill -0 $pid 2>/dev/null && [ $n -lt 100 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    finish $pid
    [ $killed = 0 ] || fail "--$opt FIFO without a reader: SIGTERM did not end the run"
    [ $st = 130 ] || fail "--$opt FIFO without a reader, SIGTERM: exit $st (expected 130): $(cat "$s.err")"
    grep -q "fifo$opt.fifo: interrupted while waiting for a process to read this FIFO" "$s.err" &&
        grep -q "interrupted after epoch 1; .*fifo$opt.last.safetensors holds epoch 1 (continue with --resume)" "$s.err" ||
        fail "--$opt FIFO, SIGTERM: message: $(cat "$s.err")"
    [ -p "$s.fifo" ] || fail "--$opt FIFO: the FIFO was replaced"
    ls "$s".*tmp* >/dev/null 2>&1 && fail "--$opt FIFO, SIGTERM: a temporary file left"
    expect 0 "\"epoch\":1," "$cfnet" info "$s.last.safetensors"
done
# wait_fifo PID: waits (at most 60 s) until PID waits for a process to read its FIFO: its own
# CPU time stands still while its main thread keeps waking up (the wait polls every 50 ms).
wait_fifo() {
    n=0
    while kill -0 "$1" 2>/dev/null && [ $n -lt 200 ]; do
        c1=$(cut -d' ' -f14,15 "/proc/$1/stat" 2>/dev/null) || break
        v1=$(sed -n 's/^voluntary_ctxt_switches:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null) || break
        sleep 0.3
        c2=$(cut -d' ' -f14,15 "/proc/$1/stat" 2>/dev/null) || break
        v2=$(sed -n 's/^voluntary_ctxt_switches:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null) || break
        [ "$c1" = "$c2" ] && [ $((v2 - v1)) -ge 3 ] && return 0
        n=$((n + 1))
    done
}
# predict -o FIFO and export MODEL FIFO without a reader: SIGINT, SIGTERM or SIGHUP while they
# wait ends them as it ends train's wait, status 130 and the message (only train had a handler:
# they were killed outright, status 130/143 from the shell and no message); the FIFO stays,
# nothing else is written. env --default-signal: a background job's SIGINT is ignored otherwise.
for c in predict export; do
    for sig in INT TERM HUP; do
        s="$out/fifo$c$sig"
        rm -f "$s".*
        mkfifo "$s.fifo"
        if [ $c = predict ]; then
            env --default-signal=INT,TERM,HUP "$cfnet" predict -q "$m" "$d/test" -o "$s.fifo" \
                >"$s.out" 2>"$s.err" &
            label=-o
        else
            env --default-signal=INT,TERM,HUP "$cfnet" export -q "$m" "$s.fifo" >"$s.out" 2>"$s.err" &
            label=OUT.onnx
        fi
        pid=$!
        wait_fifo $pid
        kill -"$sig" $pid
        finish $pid
        [ $killed = 0 ] || fail "$c to a FIFO without a reader: SIG$sig did not end it"
        [ $st = 130 ] || fail "$c to a FIFO without a reader, SIG$sig: exit $st (expected 130): $(cat "$s.err")"
        grep -q "^cfnet: error: $label: .*fifo$c$sig.fifo: interrupted while waiting for a process to read this FIFO$" "$s.err" ||
            fail "$c to a FIFO, SIG$sig: message: $(cat "$s.err")"
        [ "$(wc -l <"$s.err")" = 1 ] || fail "$c to a FIFO, SIG$sig: more than one line: $(cat "$s.err")"
        [ -p "$s.fifo" ] || fail "$c to a FIFO, SIG$sig: the FIFO was replaced"
        [ ! -s "$s.out" ] || fail "$c to a FIFO, SIG$sig: wrote to standard output: $(cat "$s.out")"
        [ "$(ls "$s".*)" = "$(printf '%s\n' "$s.err" "$s.fifo" "$s.out")" ] ||
            fail "$c to a FIFO, SIG$sig: files left: $(ls "$s".*)"
    done
done
# ... and eval --out DIR with a FIFO among its files (it waits the same way): the message is an
# error, not a usage error's (it said "cfnet eval: --out: ..." and "(see 'cfnet eval --help')")
s="$out/fifoeval"
rm -rf "$s" "$s".*
mkdir "$s"
mkfifo "$s/metrics.json"
env --default-signal=INT,TERM,HUP "$cfnet" eval -q "$m" "$d/test" --out "$s" >"$s.out" 2>"$s.err" &
pid=$!
wait_fifo $pid
kill -INT $pid
finish $pid
[ $killed = 0 ] || fail "eval --out with a FIFO without a reader: SIGINT did not end it"
[ $st = 130 ] || fail "eval --out with a FIFO, SIGINT: exit $st (expected 130): $(cat "$s.err")"
[ "$(cat "$s.err")" = "cfnet: error: --out: $s/metrics.json: interrupted while waiting for a process to read this FIFO" ] ||
    fail "eval --out with a FIFO, SIGINT: message: $(cat "$s.err")"
[ -p "$s/metrics.json" ] && [ "$(ls "$s")" = metrics.json ] ||
    fail "eval --out with a FIFO, SIGINT: the folder: $(ls -l "$s")"
# ... and with a reader, export and predict write through the FIFO
s="$out/fifoexp"
rm -f "$s".*
mkfifo "$s.fifo"
cat "$s.fifo" >"$s.got" &
reader=$!
expect 0 "" "$cfnet" export -q "$m" "$s.fifo"
wait $reader || fail "the reader of export's FIFO failed"
expect 0 "" "$cfnet" export -q "$m" "$s.onnx"
cmp -s "$s.got" "$s.onnx" || fail "export through a FIFO: not the file export writes"
mkfifo "$s.pfifo"
cat "$s.pfifo" >"$s.pgot" &
reader=$!
expect 0 "" "$cfnet" predict -q "$m" "$d/test" -o "$s.pfifo"
wait $reader || fail "the reader of predict's FIFO failed"
head -1 "$s.pgot" | grep -q "^path,predicted," || fail "predict through a FIFO: $(head -2 "$s.pgot")"

# --log - writes the log to standard output, as '-' is for the other commands' outputs (it
# wrote a file named '-'); the progress and the messages stay on standard error. A resumed run
# appends: no header.
s="$out/logout"
rm -rf "$s"
mkdir "$s"
abs_cfnet=$(cd "$(dirname "$cfnet")" && pwd)/$(basename "$cfnet")
abs_d=$(cd "$d" && pwd)
# shellcheck disable=SC2086
(cd "$s" && "$abs_cfnet" train "$abs_d/train" -o m.safetensors --epochs 2 $common --log - >out.csv 2>err.txt) ||
    fail "train --log -: $(cat "$s/err.txt")"
[ ! -e "$s/-" ] || fail "train --log - wrote a file named '-'"
[ "$(wc -l <"$s/out.csv")" = 3 ] && head -1 "$s/out.csv" | grep -q "^epoch,train_loss," &&
    sed -n 3p "$s/out.csv" | grep -q "^2," || fail "train --log -: standard output: $(cat "$s/out.csv")"
grep -q "^epoch,\|^[0-9]*,[0-9.]*," "$s/err.txt" && fail "train --log -: log lines on standard error"
# shellcheck disable=SC2086
(cd "$s" && "$abs_cfnet" train "$abs_d/train" -o m.safetensors --epochs 3 $common -q --log - \
    --resume m.last.safetensors >res.csv 2>err.txt) || fail "train --log - --resume: $(cat "$s/err.txt")"
[ "$(cat "$s/res.csv" | cut -d, -f1)" = 3 ] || fail "train --log - --resume: $(cat "$s/res.csv")"
[ "$(ls "$s")" = "$(printf '%s\n' err.txt m.last.safetensors m.safetensors out.csv res.csv)" ] ||
    fail "train --log -: files: $(ls "$s")"
# ... and a log that standard output cannot take is a failure, the checkpoint holding the epoch
if [ -c /dev/full ]; then
    set +e
    # shellcheck disable=SC2086
    (cd "$s" && "$abs_cfnet" train "$abs_d/train" -o lfull.safetensors --epochs 2 $common -q \
        --log - >/dev/full 2>err.txt) # (in a folder of its own: it wrote a file named '-')
    st=$?
    set -e
    [ $st = 1 ] || fail "train --log - >/dev/full: exit $st (expected 1)"
    grep -q "^cfnet: error: standard output: cannot write epoch 1: No space left on device; .*lfull.last.safetensors holds epoch 1" \
        "$s/err.txt" || fail "train --log - >/dev/full: $(cat "$s/err.txt")"
    [ ! -e "$s/-" ] || fail "train --log - >/dev/full wrote a file named '-'"
fi

# ... and with a reader, the log goes through the FIFO
s="$out/fiforead"
rm -f "$s".*
mkfifo "$s.fifo"
cat "$s.fifo" >"$s.got" &
reader=$!
# shellcheck disable=SC2086
expect 0 "" "$cfnet" train "$d/train" -o "$s.safetensors" --epochs 2 $common -q --log "$s.fifo"
wait $reader || fail "the reader of the --log FIFO failed"
[ "$(wc -l <"$s.got")" = 3 ] && head -1 "$s.got" | grep -q "^epoch,train_loss" ||
    fail "the log through a FIFO: $(cat "$s.got")"

# resuming with settings the checkpoint decides: they are named as ignored, and the run goes on
# with the checkpoint's (the architecture stays cfnet)
# shellcheck disable=SC2086
expect 0 "sigINT.last.safetensors: the run's settings come from the checkpoint; --arch, --width, --size, --batch, --lr, --seed are ignored" \
    "$cfnet" train "$d/train" -o "$out/sigINT.safetensors" --epochs 100000 $common --arch cnn --lr 1 \
    --resume "$out/sigINT.last.safetensors" --patience 1
expect 0 "conic" "$cfnet" info "$out/sigINT.safetensors"

# resuming with images of another channel count names both counts
expect 0 "" "$cfnet" synth "$out/one" --classes 3 --per-class 3 --test-per-class 0 --size 16 --channels 1 -q
# shellcheck disable=SC2086
expect 1 "images have 1 channel, the checkpoint 2" "$cfnet" train "$out/one/train" -o "$out/sigINT.safetensors" \
    --epochs 100 $common --resume "$out/sigINT.last.safetensors"

# resuming on other images of the same classes: a warning with both splits' sizes
expect 0 "" "$cfnet" synth "$out/fewer" --classes 3 --per-class 6 --test-per-class 0 --size 16 -q
cp "$out/sigINT.last.safetensors" "$out/other.last.safetensors"
# shellcheck disable=SC2086
expect 0 "fewer/train has 15 training and 3 validation images, the run of .*other.last.safetensors had 33 and 3: not the same DATA" \
    "$cfnet" train "$out/fewer/train" -o "$out/other.safetensors" --epochs 1000000 --threads 1 \
    --resume "$out/other.last.safetensors" --patience 1
lacks "improved for 1 epochs" "early stop: '1 epochs'"

# ---- two runs writing the same model ------------------------------------------------------------
# A run that finds the other's files in place of its own before its next save stops with status
# 1 (both went on before, leaving a model of one run beside the checkpoint of the other). Which
# one stops first depends on how their saves interleave; the other is then alone, and stopped
# here. Files are told apart by size and time, not by inode number, which a file system reuses
# for the other run's next file.
t="$out/twice"
# shellcheck disable=SC2086
"$cfnet" train "$d/train" -o "$t.safetensors" --epochs 100000 $common -q --log "$t.csv" 2>"$t.err" &
pid=$!
wait_lines "$t.csv" 3 $pid
# shellcheck disable=SC2086
"$cfnet" train "$d/train" -o "$t.safetensors" --epochs 100000 $common -q --seed 5 2>"$t.err2" &
pid2=$!
n=0
while kill -0 $pid 2>/dev/null && kill -0 $pid2 2>/dev/null && [ $n -lt 600 ]; do
    sleep 0.1
    n=$((n + 1))
done
if kill -0 $pid 2>/dev/null; then first=$pid2 other=$pid err=$t.err2; else first=$pid other=$pid2 err=$t.err; fi
finish $first
[ $killed = 0 ] || fail "two runs on one model: both went on training for a minute"
[ $st = 1 ] || fail "a run whose model another run replaced: exit $st (expected 1)"
grep -q "twice.*safetensors was replaced by another program during training (another 'cfnet train -o .*twice.safetensors' at the same time?)" \
    "$err" || fail "two runs on one model: message: $(cat "$err")"
kill -TERM $other 2>/dev/null || true
finish $other

# ---- a file system that fills up (root only: a small tmpfs) ------------------------------------
if [ "$(id -u)" = 0 ] && command -v mount >/dev/null 2>&1; then
    small=$(mktemp -d)
    if mount -t tmpfs -o size=200k tmpfs "$small" 2>/dev/null; then
        cp "$m" "$out/m.last.safetensors" "$small/"
        cp "$m" "$small/before.safetensors"
        cp "$out/sigINT.csv" "$small/log.csv"
        avail=$(df -k --output=avail "$small" | tail -1)
        dd if=/dev/zero of="$small/fill" bs=1k count=$((avail - 4)) 2>/dev/null || true
        # shellcheck disable=SC2086
        expect 1 "m.safetensors: cannot save: .*No space left on device" "$cfnet" train "$d/train" \
            -o "$small/m.safetensors" --epochs 1 $common -q --seed 9 --log "$small/log.csv"
        cmp -s "$small/m.safetensors" "$small/before.safetensors" || fail "a full disk changed the model"
        cmp -s "$small/log.csv" "$out/sigINT.csv" || fail "a run that saved nothing replaced the earlier log"
        ls "$small"/*tmp* >/dev/null 2>&1 && fail "a full disk left a temporary file"
        echo "old" >"$small/p.csv" || true
        expect 1 "p.csv: write failed: No space left on device \(the file is unchanged\)" "$cfnet" \
            predict "$m" "$d/test" -o "$small/p.csv" -q
        [ "$(cat "$small/p.csv")" = old ] || fail "a full disk changed predict's earlier CSV"
        # eval --out: the four files replace the earlier report together or not at all. With
        # two pages free each file alone would fit (it used to rename each as soon as it was
        # written: a new metrics.json beside an old predictions.csv); all four do not.
        rm -f "$small/fill" "$small/p.csv"
        "$cfnet" eval "$m" "$d/test" --out "$small/rep" -q >/dev/null
        for f in metrics.json confusion.csv confusion.svg predictions.csv; do
            cp "$small/rep/$f" "$out/rep.$f"
        done
        avail=$(df -k --output=avail "$small" | tail -1)
        dd if=/dev/zero of="$small/fill" bs=1k count=$((avail - 8)) 2>/dev/null || true
        expect 1 "write failed: No space left on device \(the earlier files are unchanged\)" "$cfnet" \
            eval "$out/sigINT.safetensors" "$d/test" --out "$small/rep" -q
        for f in metrics.json confusion.csv confusion.svg predictions.csv; do
            cmp -s "$small/rep/$f" "$out/rep.$f" || fail "a full disk changed the earlier report's $f"
        done
        ls "$small"/rep/*tmp* >/dev/null 2>&1 && fail "a full disk left a temporary file in the report"
        umount "$small"
        full_disk="the full-disk checks ran on a 200 KB tmpfs"
    else
        skip_env test_cli_hostile "the full-disk checks" "mounting a tmpfs failed"
        full_disk="without the full-disk checks"
    fi
    rmdir "$small"
else
    skip_env test_cli_hostile "the full-disk checks" "they need root and mount, for a small tmpfs"
    full_disk="without the full-disk checks"
fi

# ---- a FIFO where a model or an image is read -------------------------------------------------
# (timeout ends a hang: each of these waited for a writer forever before)
img=$(find "$d/test" -name '*.tif' | head -n 1)
mkfifo "$out/fifo.tif"
# crop's MASK a FIFO: refused as not a regular file, not opened to wait for a writer
expect 1 "fifo.tif: not a regular file" timeout -s KILL 60 "$cfnet" crop "$img" "$out/fifo.tif" -o "$out/cropfifo"
# a file that is checked and then read: a FIFO put in its place between the check and the read
# (strace holds the read's open back for 5 s while it is swapped, 3 s after the start: the
# check must come first, so the start-up, under a sanitizer and strace on a loaded host, has
# 3 s) is not read. `predict FILE`
# alone looks into FILE to tell an image from a model; eval loads MODEL, then looks into what
# did not load as one
if strace -f -qq -o /dev/null true 2>/dev/null; then
    for cmd in predict eval; do
        rm -f "$out/swap.tif"
        cp "$img" "$out/swap.tif"
        (sleep 3 && rm "$out/swap.tif" && mkfifo "$out/swap.tif") &
        swapper=$!
        if [ $cmd = predict ]; then
            want=2 says="cfnet predict: missing INPUTS" open=1 args=""
        else
            want=1 says="swap.tif: not a model file|swap.tif: cannot load the model" open=2 args="$d/test"
        fi
        # shellcheck disable=SC2086
        expect $want "$says" timeout -s KILL 60 env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
            strace -f -qq -o /dev/null -P "$out/swap.tif" -e trace=open,openat \
            -e inject=open,openat:delay_enter=5000000:when=$open "$cfnet" $cmd "$out/swap.tif" $args
        wait $swapper || fail "the swap of $cmd's file for a FIFO failed"
        [ -p "$out/swap.tif" ] || fail "$cmd's file was not swapped for a FIFO"
    done
else
    skip_env test_cli_hostile "a FIFO swapped in after a check" "strace cannot trace here"
fi

if [ $fails -ne 0 ]; then
    echo "test_cli_hostile: $fails failures"
    exit 1
fi
echo "test_cli_hostile: all checks passed ($full_disk)"
