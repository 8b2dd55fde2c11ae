#!/bin/sh
# The default of `cfnet train --max-memory`: a quarter of the smallest of the physical memory,
# the cgroup memory limit (v2 memory.max or v1 memory.limit_in_bytes, a parent's too) and the
# ulimit -v / -d limits, named in the messages. Cgroups are faked through the test hook
# CFNET_TEST_CGROUP_ROOT (a folder standing for /sys/fs/cgroup, its file self-cgroup for
# /proc/self/cgroup and its file mountinfo, where there is one, for /proc/self/mountinfo), so
# the checks do not depend on the machine's own cgroups.
set -eu
name=cli_memory
# shellcheck source=tests/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"

# the default is named before the data is read: a missing folder shows it without training
nodata="$out/none"
# cg NAME LINES...: a fake cgroup root $out/NAME whose self-cgroup holds LINES
cg() {
    r="$out/$1"
    shift
    mkdir -p "$r"
    printf '%s\n' "$@" >"$r/self-cgroup"
}
train_in() { # train_in ROOT ARGS...: cfnet train on nothing under the fake cgroup root ROOT
    r=$1
    shift
    CFNET_TEST_CGROUP_ROOT="$r" "$cfnet" train "$nodata" -o "$out/m.safetensors" "$@"
}

# cgroup v2, nested: the parent's 2 GiB limit applies to the child's 4 GiB one
cg v2 "0::/job/step"
: >"$out/v2/cgroup.controllers"
mkdir -p "$out/v2/job/step"
echo 2147483648 >"$out/v2/job/memory.max"
echo 4294967296 >"$out/v2/job/step/memory.max"
expect 1 "^--max-memory 512 MiB, the default: a quarter of the cgroup memory limit \(2\.0 GiB\)" \
    train_in "$out/v2"
# "max" means no limit: the child's own 1 GiB then
echo max >"$out/v2/job/memory.max"
echo 1073741824 >"$out/v2/job/step/memory.max"
expect 1 "^--max-memory 256 MiB, the default: a quarter of the cgroup memory limit \(1\.0 GiB\)" \
    train_in "$out/v2"
# "max" everywhere: the physical memory, not said (as without a limit)
echo max >"$out/v2/job/step/memory.max"
expect 1 "no such file" train_in "$out/v2"
lacks "max-memory" "cgroup v2 'max' everywhere named a default"

# cgroup v1 beside a cgroup v2 hierarchy without the memory controller (root/unified), the
# unlimited value of v1 (9223372036854771712) at the top
cg v1 "5:devices:/job" "4:cpu,memory:/job/step" "0::/job"
mkdir -p "$out/v1/memory/job/step" "$out/v1/unified/job"
: >"$out/v1/unified/cgroup.controllers"
echo 9223372036854771712 >"$out/v1/memory/memory.limit_in_bytes"
echo 9223372036854771712 >"$out/v1/memory/job/memory.limit_in_bytes"
echo 805306368 >"$out/v1/memory/job/step/memory.limit_in_bytes"
expect 1 "^--max-memory 192 MiB, the default: a quarter of the cgroup memory limit \(768 MiB\)" \
    train_in "$out/v1"
# a container seeing the host's path with its own cgroup mounted at the top: the top's limit
cg v1host "4:memory:/docker/abc"
mkdir -p "$out/v1host/memory"
echo 1073741824 >"$out/v1host/memory/memory.limit_in_bytes"
expect 1 "^--max-memory 256 MiB, the default: a quarter of the cgroup memory limit" \
    train_in "$out/v1host"

# cgroup v1 where /proc/self/mountinfo puts it (the file "mountinfo" of the fake root; its mount
# points are folders of the test): the memory controller is found by file system type "cgroup"
# and the super option "memory", not at ROOT/memory, which holds a 64 MiB decoy each time
# mi ROOT LINES...: ROOT/mountinfo holding LINES, and the decoy ROOT/memory
mi() {
    r="$1"
    shift
    printf '%s\n' "$@" >"$r/mountinfo"
    mkdir -p "$r/memory"
    echo 67108864 >"$r/memory/memory.limit_in_bytes"
}
other="25 1 0:22 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
26 1 0:23 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu"
# combined with another controller (mounted as cpuacct,memory): its 768 MiB
cg comb "4:cpuacct,memory:/job"
mkdir -p "$out/comb/cpuacct,memory/job"
echo 805306368 >"$out/comb/cpuacct,memory/job/memory.limit_in_bytes"
mi "$out/comb" "$other" \
    "27 1 0:24 / $out/comb/cpuacct,memory rw,nosuid,nodev shared:9 - cgroup cgroup rw,cpuacct,memory"
expect 1 "^--max-memory 192 MiB, the default: a quarter of the cgroup memory limit \(768 MiB\)" \
    train_in "$out/comb"
# a mount point of its own, with a space (\040 in mountinfo): its 1 GiB
cg custom "7:memory:/"
mkdir -p "$out/custom/my cgroups/mem"
echo 1073741824 >"$out/custom/my cgroups/mem/memory.limit_in_bytes"
mi "$out/custom" "$other" "30 1 0:25 / $out/custom/my\\040cgroups/mem rw - cgroup none rw,memory"
expect 1 "^--max-memory 256 MiB, the default: a quarter of the cgroup memory limit \(1\.0 GiB\)" \
    train_in "$out/custom"
# no cgroup v1 memory mount: no cgroup limit (the decoy is not read)
cg nomem "4:memory:/job"
mi "$out/nomem" "$other"
expect 1 "no such file" train_in "$out/nomem"
lacks "max-memory" "a cgroup v1 limit was read without a memory mount in mountinfo"
# the mount's root (field 4) is the container's cgroup /docker/abc: the process's /docker/abc/job
# is the folder job below the mount point, whose 512 MiB is below the container's 2 GiB
cg croot "4:memory:/docker/abc/job"
mkdir -p "$out/croot/mem/job"
echo 2147483648 >"$out/croot/mem/memory.limit_in_bytes"
echo 536870912 >"$out/croot/mem/job/memory.limit_in_bytes"
mi "$out/croot" "$other" "31 1 0:26 /docker/abc $out/croot/mem ro,nosuid - cgroup cgroup rw,memory"
expect 1 "^--max-memory 128 MiB, the default: a quarter of the cgroup memory limit \(512 MiB\)" \
    train_in "$out/croot"
# a path outside the mount's root (/docker/abcdef is not below /docker/abc): the mount point's own
cg croot "4:memory:/docker/abcdef/job"
expect 1 "^--max-memory 512 MiB, the default: a quarter of the cgroup memory limit \(2\.0 GiB\)" \
    train_in "$out/croot"

# cgroup v2 where mountinfo puts it, seen from a container sharing the host's cgroup names: the
# mount's root is the container's cgroup, so the process's .../docker-abc.scope/job is the folder
# job below the mount point (512 MiB below the container's 2 GiB), not ROOT's 64 MiB decoy
cg v2c "0::/system.slice/docker-abc.scope/job"
: >"$out/v2c/cgroup.controllers"
echo 67108864 >"$out/v2c/memory.max"
mkdir -p "$out/v2c/cg/job"
echo 2147483648 >"$out/v2c/cg/memory.max"
echo 536870912 >"$out/v2c/cg/job/memory.max"
printf '%s\n' "40 1 0:30 /system.slice/docker-abc.scope $out/v2c/cg ro,nosuid - cgroup2 cgroup2 rw" \
    >"$out/v2c/mountinfo"
expect 1 "^--max-memory 128 MiB, the default: a quarter of the cgroup memory limit \(512 MiB\)" \
    train_in "$out/v2c"
# mountinfo without a cgroup2 mount: no v2 limit (the decoy is not read)
printf '%s\n' "26 1 0:23 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu" >"$out/v2c/mountinfo"
expect 1 "no such file" train_in "$out/v2c"
lacks "max-memory" "a cgroup v2 limit was read without a cgroup2 mount in mountinfo"

# a v2-only host: the cgroup2 mount's root is "/" (at /sys/fs/cgroup; here a folder of the
# test), the process's whole path lies below it: the 768 MiB of its user slice, not ROOT's decoy
cg v2h "0::/user.slice/user-1000.slice/session-2.scope"
: >"$out/v2h/cgroup.controllers"
echo 67108864 >"$out/v2h/memory.max"
mkdir -p "$out/v2h/fs/user.slice/user-1000.slice/session-2.scope"
echo 805306368 >"$out/v2h/fs/user.slice/user-1000.slice/memory.max"
echo max >"$out/v2h/fs/user.slice/user-1000.slice/session-2.scope/memory.max"
printf '%s\n' "22 1 0:21 / /sys rw - sysfs sysfs rw" \
    "30 22 0:26 / $out/v2h/fs rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot" \
    >"$out/v2h/mountinfo"
expect 1 "^--max-memory 192 MiB, the default: a quarter of the cgroup memory limit \(768 MiB\)" \
    train_in "$out/v2h"
# a hybrid host: cgroup2 at .../unified beside v1 controllers, the v1 memory mount elsewhere:
# v2's 1 GiB from the unified mount (the v1 mount's 2 GiB is larger)
cg hyb "4:memory:/job" "0::/job"
mkdir -p "$out/hyb/uni/job" "$out/hyb/mem/job"
echo 1073741824 >"$out/hyb/uni/job/memory.max"
echo 2147483648 >"$out/hyb/mem/job/memory.limit_in_bytes"
mi "$out/hyb" "30 1 0:27 / $out/hyb rw - tmpfs tmpfs rw,mode=755" \
    "34 30 0:31 / $out/hyb/mem rw,relatime - cgroup cgroup rw,memory" \
    "40 30 0:37 / $out/hyb/uni rw,relatime - cgroup2 cgroup2 rw"
expect 1 "^--max-memory 256 MiB, the default: a quarter of the cgroup memory limit \(1\.0 GiB\)" \
    train_in "$out/hyb"
# two cgroup2 mounts, the hierarchy's root and a container's cgroup bound elsewhere: the one whose
# root holds the process's path most closely, whichever comes first (512 MiB, the job's own)
cg two "0::/system.slice/docker-abc.scope/job"
mkdir -p "$out/two/all/system.slice/docker-abc.scope/job" "$out/two/ctr/job"
echo 67108864 >"$out/two/all/system.slice/memory.max"
echo 536870912 >"$out/two/ctr/job/memory.max"
for order in 1 2; do
    a="40 1 0:30 / $out/two/all rw - cgroup2 cgroup2 rw"
    b="41 1 0:30 /system.slice/docker-abc.scope $out/two/ctr rw - cgroup2 cgroup2 rw"
    if [ $order = 1 ]; then printf '%s\n' "$a" "$b"; else printf '%s\n' "$b" "$a"; fi >"$out/two/mountinfo"
    expect 1 "^--max-memory 128 MiB, the default: a quarter of the cgroup memory limit \(512 MiB\)" \
        train_in "$out/two"
done

# long lines are read whole: a v1 memory mount point of 2,250 spaces (9,000 bytes escaped in
# mountinfo) gives its 1 GiB
sp=$(printf '%250s' '')
lp="$out/long/$sp/$sp/$sp/$sp/$sp/$sp/$sp/$sp/$sp"
cg long "4:memory:/"
mkdir -p "$lp"
echo 1073741824 >"$lp/memory.limit_in_bytes"
mi "$out/long" "$other" "32 1 0:27 / $(printf '%s' "$lp" | sed 's/ /\\040/g') rw - cgroup none rw,memory"
expect 1 "^--max-memory 256 MiB, the default: a quarter of the cgroup memory limit \(1\.0 GiB\)" \
    train_in "$out/long"
# a /proc/self/cgroup line past 4 KiB (a cgroup named "x:memory:" far down): the whole path is
# the process's cgroup (the 1 GiB of its /job), its tail is not read as a line of its own naming
# the cgroup /d (a 64 MiB decoy)
pad=$(printf '%4080s' '' | tr ' ' 'p')
cg lcg "4:memory:/job/$pad/x:memory:/d"
mkdir -p "$out/lcg/memory/job" "$out/lcg/memory/d"
echo 1073741824 >"$out/lcg/memory/job/memory.limit_in_bytes"
echo 67108864 >"$out/lcg/memory/d/memory.limit_in_bytes"
expect 1 "^--max-memory 256 MiB, the default: a quarter of the cgroup memory limit \(1\.0 GiB\)" \
    train_in "$out/lcg"

# unreadable or malformed files fall back silently to the physical memory
cg bad "0::/job" "4:memory:/job"
: >"$out/bad/cgroup.controllers"
mkdir -p "$out/bad/job/memory.max" "$out/bad/memory/job"
echo "12 bytes" >"$out/bad/memory/job/memory.limit_in_bytes"
expect 1 "no such file" train_in "$out/bad"
lacks "max-memory|cgroup|warning" "unreadable cgroup files were reported"
mkdir -p "$out/empty"
expect 1 "no such file" train_in "$out/empty"
lacks "max-memory|cgroup|warning" "a missing self-cgroup was reported"
# a given --max-memory is not replaced
expect 1 "no such file" train_in "$out/v1" --max-memory 1G
lacks "max-memory" "a given --max-memory was replaced by the cgroup default"

# streaming under the default from a cgroup limit says so: 10 images of 2 x 128 x 128 (1.25 MiB)
# above a quarter of 4 MiB, trained in chunks of the 8 images (two batches of 4) that fit
d="$out/data"
expect 0 "" "$cfnet" synth "$d" --classes 2 --per-class 5 --test-per-class 0 --size 32 -q
cg small "0::/"
: >"$out/small/cgroup.controllers"
echo 4194304 >"$out/small/memory.max"
expect 0 "above --max-memory 1 MiB \(the default: a quarter of the cgroup memory limit \(4 MiB\)\): streaming them from disk in chunks of 8" \
    env CFNET_TEST_CGROUP_ROOT="$out/small" "$cfnet" train "$d/train" -o "$out/s.safetensors" \
    --epochs 1 --batch 4 --threads 2 --width 4 --size 128 --pad --val 0.2

# started through the dynamic loader (ld.so cfnet ...) under a ulimit -v: /proc/self/exe is the
# loader, so the command does not start itself again through it (the loader took the command
# for the program: "synth: cannot open shared object file")
ldso=$(ldd "$cfnet" 2>/dev/null | awk '$1 ~ /^\/.*ld-linux|^\/.*\/ld64|^\/.*ld-musl/ { print $1; exit }')
if [ -n "$ldso" ] && ldd "$cfnet" 2>/dev/null | grep -q openblas &&
    case "${CFNET_SANITIZE:-}:${CFNET_BUILD:-build/default}" in :*san*) false ;; :*) true ;; *) false ;; esac; then
    expect 0 "" sh -c 'ulimit -v 4194304 && exec "$0" "$@"' "$ldso" "$cfnet" synth "$out/ldso" \
        --classes 2 --per-class 1 --test-per-class 0 --size 32 -q
fi

# ulimit -v and -d (getrlimit): 4 GiB, below a quarter of the physical memory where it has 16
# GiB or more. Not under the sanitizers, which reserve more address space than that (nor the
# OpenBLAS checks below, whose limits are far smaller).
case "${CFNET_SANITIZE:-}:${CFNET_BUILD:-build/default}" in
:*san*) plain=0 ;;
:*) plain=1 ;;
*) plain=0 ;;
esac
physkib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
if [ "$plain" = 0 ]; then
    skip_env test_cli_memory "the ulimit and OpenBLAS checks" "sanitizers or a non-plain build"
    rlimits="without the ulimit and OpenBLAS checks"
elif [ "$physkib" -ge 16777216 ]; then
    # under an empty fake cgroup root (no limit), so that a container's own limit below 4 GiB
    # on the machine running the tests cannot be the one named
    mkdir -p "$out/nocgroup"
    expect 1 "^--max-memory 1024 MiB, the default: a quarter of the ulimit -v address-space limit \(4\.0 GiB\)" \
        sh -c 'ulimit -v 4194304 && exec env CFNET_TEST_CGROUP_ROOT="$1" "$0" train "$2" -o "$3"' \
        "$cfnet" "$out/nocgroup" "$nodata" "$out/m.safetensors"
    expect 1 "^--max-memory 768 MiB, the default: a quarter of the ulimit -d data-size limit \(3\.0 GiB\)" \
        sh -c 'ulimit -d 3145728 && exec env CFNET_TEST_CGROUP_ROOT="$1" "$0" train "$2" -o "$3"' \
        "$cfnet" "$out/nocgroup" "$nodata" "$out/m.safetensors"
    # the smallest limit wins: the 1 GiB cgroup under a 4 GiB ulimit -v
    expect 1 "^--max-memory 256 MiB, the default: a quarter of the cgroup memory limit" \
        sh -c 'ulimit -v 4194304 && exec env CFNET_TEST_CGROUP_ROOT="$1" "$0" train "$2" -o "$3"' \
        "$cfnet" "$out/v1host" "$nodata" "$out/m.safetensors"
    rlimits="ulimit checked"
else
    skip_env test_cli_memory "the 4 GiB ulimit default checks" "under 16 GiB of memory"
    rlimits="without the 4 GiB ulimit default checks"
fi

# OpenBLAS allocates a 128 MiB buffer per thread and retries a failed allocation forever:
# under a small ulimit -v the run hung (at exit, joining OpenBLAS's thread spinning since
# the library was loaded, or in the first product). Now the command starts no OpenBLAS
# thread under a limit, refuses when the buffer has no room, and else takes it before
# training, so a later failure is libcfnet's "out of memory". timeout only ends a hang.
# These limits (117 to 440 MiB) are far below any machine's memory: no 16 GiB gate.
if [ "$plain" = 1 ] && ldd "$cfnet" 2>/dev/null | grep -q openblas; then
    vd="$out/vdata"
    expect 0 "" "$cfnet" synth "$vd" --classes 2 --per-class 50 --test-per-class 0 --size 32 -q
    vtrain() { # vtrain KIB SIZE: train on vd under ulimit -v KIB at --size SIZE
        sh -c 'ulimit -v "$1" && shift && exec timeout -s KILL 60 "$@"' sh "$1" "$cfnet" \
            train "$vd/train" -o "$out/v.safetensors" --epochs 1 --threads 2 --width 4 \
            --size "$2" --pad
    }
    expect 1 "cfnet: error: the ulimit -v limit of 117 MiB leaves less than 160 MiB for OpenBLAS's working buffer \(128 MiB; OpenBLAS retries a failed allocation forever, so the run would hang\): raise the limit, or give a smaller --max-memory" \
        vtrain 120000 64
    expect 0 "best validation" vtrain 250000 64
    expect 1 "cfnet: error: training: out of memory" vtrain 450000 256
    # eval and predict run the same products: they hung under these limits too
    vrun() { # vrun KIB ARGS...: cfnet ARGS under ulimit -v KIB
        k=$1
        shift
        sh -c 'ulimit -v "$1" && shift && exec timeout -s KILL 60 "$@"' sh "$k" "$cfnet" "$@"
    }
    for c in eval predict; do
        expect 1 "cfnet: error: the ulimit -v limit of 117 MiB leaves less than 160 MiB for OpenBLAS's working buffer \(128 MiB; OpenBLAS retries a failed allocation forever, so the run would hang\): raise the limit\$" \
            vrun 120000 "$c" "$out/v.safetensors" "$vd/train"
    done
    expect 0 "accuracy" vrun 250000 eval "$out/v.safetensors" "$vd/train"
    expect 0 "predicted 100 images" vrun 250000 predict "$out/v.safetensors" "$vd/train" \
        -o "$out/v.csv"
    rlimits="$rlimits, OpenBLAS checked"
elif [ "$plain" = 1 ]; then
    skip_env test_cli_memory "the OpenBLAS checks" "not linked with OpenBLAS: make BLAS=..."
    rlimits="$rlimits, without the OpenBLAS checks"
fi

if [ $fails -ne 0 ]; then
    echo "test_cli_memory: $fails failures"
    exit 1
fi
echo "test_cli_memory: all checks passed ($rlimits)"
