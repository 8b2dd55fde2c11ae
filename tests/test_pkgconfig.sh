#!/bin/sh
# Downstream builds: `make install` into a temporary prefix, then a C and a C++17 consumer
# (tests/consumers/) built with nothing but pkg-config output, each linked once against the
# shared library (`pkg-config --cflags --libs cfnet`) and once statically
# (`pkg-config --cflags --libs cfnet-static`, which names libcfnet.a itself); all four must run
# and print the right output. The compile flags must carry no dependency include path. Install
# without DESTDIR must say how programs find the library, and run ldconfig when the library
# directory is on the linker's search path, and name PKG_CONFIG_PATH and CMAKE_PREFIX_PATH for a
# prefix that pkg-config and CMake do not search (only then), and refuse a relative PREFIX or one
# with a space (install-python and uninstall-python too); a PREFIX with a
# trailing slash keeps the directories under it in the .pc files; install over an earlier
# release removes that release's library file and nothing else. A moved copy of the installed tree builds with
# `pkg-config --define-prefix`, and README.md's host program builds and runs as README says.
# Finally `make uninstall` must remove every installed file and every directory install
# created, and keep the ones that were there before.
# Environment (set by `make check`): CFNET_SANITIZE, CFNET_BUILD, CC (see tests/sanitizer_env.sh).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-pkgconfig.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix
out=$tmp/build
mkdir -p "$out" "$prefix/lib" # lib/ exists before the install, the rest is created by it

fail() { echo "test_pkgconfig: FAIL: $*" >&2; exit 1; }

# The same build variant (sanitizer, compiler) as the libraries under test.
. tests/sanitizer_env.sh
makevars="SANITIZE=${CFNET_SANITIZE:-} CC=$SAN_CC"
extra=$SAN_CFLAGS

# Run make afresh, not as a child of the `make check` that runs this script.
unset MAKEFLAGS MFLAGS MAKELEVEL || true
# A relative PREFIX would end up in cfnet.pc, relative to every consumer's own folder: install
# refuses it, naming the path, before it creates or writes anything.
rel=build/cfnet-relative-prefix.$$
# shellcheck disable=SC2086
if make --no-print-directory -s install PREFIX="$rel" $makevars >"$tmp/rel.log" 2>&1; then
    rm -rf "$rel"; fail "make install accepted the relative PREFIX $rel"
fi
if [ -e "$rel" ]; then rm -rf "$rel"; fail "make install with a relative PREFIX created $rel"; fi
grep -q "install: the directories must be absolute paths, not '$rel/" "$tmp/rel.log" ||
    { cat "$tmp/rel.log"; fail "make install with a relative PREFIX: no clear message"; }
# The recipes would split a path with a space: install and uninstall refuse it, touching nothing;
# so do install-python and uninstall-python (whose PYSITE is under PREFIX), for DESTDIR too.
for target in install uninstall install-python uninstall-python; do
    for var in PREFIX DESTDIR; do
        [ $var = PREFIX ] || case $target in *python) ;; *) continue ;; esac
        # shellcheck disable=SC2086
        if make --no-print-directory -s $target $var="$tmp/sp ace" $makevars >"$tmp/space.log" 2>&1; then
            fail "make $target accepted a $var with a space"
        fi
        grep -q "$target: PREFIX and DESTDIR and the directories cannot hold a space" "$tmp/space.log" ||
            { cat "$tmp/space.log"; fail "make $target with a space in $var: no clear message"; }
        [ ! -e "$tmp/sp" ] && [ ! -e "$tmp/sp ace" ] && [ ! -e ace ] ||
            fail "make $target with a space in $var created or left $tmp/sp, '$tmp/sp ace' or ./ace"
    done
done
# A PREFIX written with a trailing slash still has the LIBDIR and INCDIR set under it: the .pc
# files write them as ${prefix}/..., so --define-prefix finds a moved copy (not the old path).
slash=$tmp/slash
# shellcheck disable=SC2086
make --no-print-directory -s install PREFIX="$slash/" LIBDIR="$slash/lib" INCDIR="$slash/include" \
    $makevars >"$tmp/slash.log" 2>&1 || { cat "$tmp/slash.log"; fail "make install PREFIX=$slash/"; }
for pcname in cfnet cfnet-static; do
    # shellcheck disable=SC2016
    grep -qx 'libdir=${prefix}/lib' "$slash/lib/pkgconfig/$pcname.pc" &&
        grep -qx 'includedir=${prefix}/include' "$slash/lib/pkgconfig/$pcname.pc" ||
        { cat "$slash/lib/pkgconfig/$pcname.pc"; fail "PREFIX=$slash/: $pcname.pc's directories are not under \${prefix}"; }
done
# shellcheck disable=SC2086
make --no-print-directory -s uninstall PREFIX="$slash/" LIBDIR="$slash/lib" INCDIR="$slash/include" \
    $makevars >"$tmp/slash.log" 2>&1 || { cat "$tmp/slash.log"; fail "make uninstall PREFIX=$slash/"; }

# Installing over an earlier release of the same SONAME (0.1.0 under 0.2.0) removes its library
# file, which nothing loads any more and uninstall would never remove (ldconfig would even point
# the SONAME link back at it if it were newer); nothing else in the folder is touched, and
# uninstall removes what install installed. Staged with DESTDIR, which the removal must honour.
major=$(sed -n 's/^#define CFNET_VERSION_MAJOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h)
minor=$(sed -n 's/^#define CFNET_VERSION_MINOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h)
old=$major.1.0 # 0.1.0 under 0.2.0
[ "$minor" != 1 ] || old=$major.0.1
stage=$tmp/stage
slib=$stage/cfnet-upgrade-prefix/lib
mkdir -p "$slib"
echo "old release" > "$slib/libcfnet.so.$old" # the release before, as a real file
echo "newer release" > "$slib/libcfnet.so.$major.99.0"
ln -s "libcfnet.so.$old" "$slib/libcfnet.so.$major"
for keep in "libcfnet.so.$old.orig" "libcfnet.so.$((major + 1)).0.0" libcfnet.so.$major.x.1 \
            libother.so.$major.0.1 notes.txt; do
    echo "not ours" > "$slib/$keep"
done
ln -s notes.txt "$slib/libcfnet.so.$major.77.7" # a symlink of a release's name: not a real file
# shellcheck disable=SC2086
make --no-print-directory -s install PREFIX=/cfnet-upgrade-prefix DESTDIR="$stage" $makevars \
    >"$tmp/upgrade.log" 2>&1 || { cat "$tmp/upgrade.log"; fail "make install over an earlier release"; }
for gone in "libcfnet.so.$old" "libcfnet.so.$major.99.0"; do
    [ ! -e "$slib/$gone" ] || fail "make install left the earlier release's $gone"
    grep -q "make install: removed $slib/$gone " "$tmp/upgrade.log" ||
        { cat "$tmp/upgrade.log"; fail "make install did not say it removed $gone"; }
done
soname_target=$(readlink "$slib/libcfnet.so.$major")
case "$soname_target" in libcfnet.so.$major.*.*) [ -f "$slib/$soname_target" ] ;; *) false ;; esac ||
    fail "libcfnet.so.$major points at '$soname_target' after the install"
# shellcheck disable=SC2086
make --no-print-directory -s uninstall PREFIX=/cfnet-upgrade-prefix DESTDIR="$stage" $makevars \
    >"$tmp/upgrade.log" 2>&1 || { cat "$tmp/upgrade.log"; fail "make uninstall (upgrade)"; }
left=$(find "$slib" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort | tr '\n' ' ')
want="libcfnet.so.$old.orig libcfnet.so.$major.77.7 libcfnet.so.$major.x.1 libcfnet.so.$((major + 1)).0.0 libother.so.$major.0.1 notes.txt "
[ "$left" = "$want" ] || fail "after install over an earlier release and uninstall, lib/ holds: $left (expected: $want)"
[ "$(cat "$slib/notes.txt")" = "not ours" ] || fail "make install changed notes.txt"
[ -z "$(find "$stage" -mindepth 1 ! -path "$slib" ! -path "$slib/*" ! -path "$stage/cfnet-upgrade-prefix")" ] ||
    fail "make uninstall (upgrade) left: $(find "$stage" -mindepth 1 ! -path "$slib*")"
echo "test_pkgconfig: install over an earlier release removes its library file only: ok"

# A prefix that neither pkg-config nor CMake searches: install says how each finds it.
# shellcheck disable=SC2086
env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR -u CMAKE_PREFIX_PATH \
    make --no-print-directory -s install PREFIX="$prefix" $makevars >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install"; }
grep -q "make install: $prefix/lib is not on the dynamic linker's search path" "$tmp/install.log" ||
    { cat "$tmp/install.log"; fail "make install did not say how to find the library"; }
grep -q "PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs cfnet" "$tmp/install.log" ||
    { cat "$tmp/install.log"; fail "make install into a prefix pkg-config does not search did not say PKG_CONFIG_PATH"; }
grep -q "cmake -DCMAKE_PREFIX_PATH=$prefix " "$tmp/install.log" ||
    { cat "$tmp/install.log"; fail "make install into a prefix CMake does not search did not say CMAKE_PREFIX_PATH"; }
# With the library directory listed in ld.so.conf, install runs ldconfig (a stand-in here).
printf 'include %s/ld.so.conf.d/*.conf\n' "$tmp" > "$tmp/ld.so.conf"
mkdir -p "$tmp/ld.so.conf.d"
echo "$prefix/lib" > "$tmp/ld.so.conf.d/cfnet.conf"
printf '#!/bin/sh\ntouch "%s/ldconfig-ran"\n' "$tmp" > "$tmp/ldconfig"
chmod +x "$tmp/ldconfig"
# shellcheck disable=SC2086
# With the prefix on pkg-config's and CMake's paths (PKG_CONFIG_PATH; PREFIX/bin on PATH), no
# note about either.
LDSO_CONF=$tmp/ld.so.conf PKG_CONFIG_PATH=$prefix/lib/pkgconfig PATH="$prefix/bin:$PATH" \
    make --no-print-directory -s install PREFIX="$prefix" $makevars \
    LDCONFIG="$tmp/ldconfig" >"$tmp/install2.log" 2>&1 || { cat "$tmp/install2.log"; fail "make install (2)"; }
[ -e "$tmp/ldconfig-ran" ] && grep -q "make install: ran ldconfig" "$tmp/install2.log" ||
    { cat "$tmp/install2.log"; fail "make install did not run ldconfig for a library directory on the search path"; }
! grep -q "PKG_CONFIG_PATH\|CMAKE_PREFIX_PATH" "$tmp/install2.log" ||
    { cat "$tmp/install2.log"; fail "make install into a prefix on pkg-config's and CMake's paths named their variables"; }
# The CMake note names CMAKEDIR's own prefix (LIBDIR may be set apart from PREFIX), or cfnet_DIR
# for another layout, none for a prefix CMake searches (/opt); paths with a space come quoted.
note() { env -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR -u CMAKE_PREFIX_PATH LDSO_CONF=/dev/null \
    scripts/ldconfig-note "$1" "$1/pkgconfig" "$2"; }
note "$tmp/apart/lib" "$tmp/apart/lib/cmake/cfnet" > "$tmp/note1.log"
grep -qF "cmake -DCMAKE_PREFIX_PATH=$tmp/apart " "$tmp/note1.log" ||
    { cat "$tmp/note1.log"; fail "the CMake note did not name CMAKEDIR's prefix"; }
note "$tmp/apart/lib" "$tmp/cm/cfnet" > "$tmp/note2.log"
grep -qF "cmake -Dcfnet_DIR=$tmp/cm/cfnet" "$tmp/note2.log" ||
    { cat "$tmp/note2.log"; fail "the CMake note did not name cfnet_DIR for a CMAKEDIR outside the layouts"; }
note /opt/lib /opt/lib/cmake/cfnet > "$tmp/note3.log"
! grep -q "CMAKE_PREFIX_PATH" "$tmp/note3.log" ||
    { cat "$tmp/note3.log"; fail "the CMake note named /opt, which CMake searches"; }
note "$tmp/a b/lib" "$tmp/a b/lib/cmake/cfnet" > "$tmp/note4.log"
grep -qF "PKG_CONFIG_PATH='$tmp/a b/lib/pkgconfig' pkg-config" "$tmp/note4.log" &&
    grep -qF "cmake -DCMAKE_PREFIX_PATH='$tmp/a b' " "$tmp/note4.log" ||
    { cat "$tmp/note4.log"; fail "the notes did not quote a path with a space"; }
echo "test_pkgconfig: install notes for pkg-config and CMake: ok"

version=$(sed -n 's/^#define CFNET_VERSION_MAJOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h).$(
    sed -n 's/^#define CFNET_VERSION_MINOR \([0-9]*\).*/\1/p' include/cfnet/cfnet.h).$(
    sed -n 's/^#define CFNET_VERSION_PATCH \([0-9]*\).*/\1/p' include/cfnet/cfnet.h)
for f in include/cfnet/cfnet.h lib/libcfnet.so "lib/libcfnet.so.$version" lib/libcfnet.a \
         lib/pkgconfig/cfnet.pc lib/pkgconfig/cfnet-static.pc lib/cmake/cfnet/cfnetConfig.cmake \
         lib/cmake/cfnet/cfnetConfigVersion.cmake; do
    [ -e "$prefix/$f" ] || fail "make install did not install $f"
done

PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH
pc_version=$(pkg-config --modversion cfnet) || fail "pkg-config does not find cfnet"
[ "$pc_version" = "$version" ] || fail "cfnet.pc says $pc_version, the header $version"
# pkg-config's output with its spacing normalised.
# shellcheck disable=SC2046,SC2005
pc() { echo $(pkg-config "$@"); }
cflags=$(pc --cflags cfnet)
libs=$(pc --libs cfnet)
static_cflags=$(pc --cflags cfnet-static)
static_libs=$(pc --libs cfnet-static)
[ "$(pkg-config --modversion cfnet-static)" = "$version" ] || fail "cfnet-static.pc version"
echo "test_pkgconfig: cfnet $pc_version: cflags [$cflags] libs [$libs] static [$static_libs]"
# A consumer's compile line needs libcfnet's header and nothing else (no OpenBLAS include path).
[ "$cflags" = "-I$prefix/include" ] || fail "pkg-config --cflags cfnet is [$cflags], not [-I$prefix/include]"
[ "$static_cflags" = "$cflags" ] || fail "pkg-config --cflags cfnet-static is [$static_cflags]"
[ "$(pc --static --cflags cfnet)" = "$cflags" ] || fail "pkg-config --static --cflags cfnet leaks"
# Static linking names the archive, with or without --static.
case " $static_libs " in *" $prefix/lib/libcfnet.a "*) ;; *) fail "cfnet-static does not name libcfnet.a" ;; esac
[ "$(pc --static --libs cfnet-static)" = "$static_libs" ] || fail "cfnet-static: --static changes the libraries"

warn="-Wall -Wextra -Wpedantic -Werror"
status=0
build_and_run() { # name compiler std source link-flags
    name=$1 cc=$2 std=$3 src=$4 link=$5
    # shellcheck disable=SC2086
    $cc $std $warn $extra $cflags "tests/consumers/$src" -o "$out/$name" $link ||
        fail "$name: build"
    needed=$(readelf -d "$out/$name" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    case $name in
    *static*)
        case "$needed" in *libcfnet*) fail "$name needs a shared libcfnet: $needed" ;; esac
        output=$(env -u LD_LIBRARY_PATH "$out/$name") || fail "$name: run: $output"
        ;;
    *)
        case "$needed" in *"libcfnet.so.${version%%.*}"*) ;; *) fail "$name does not need libcfnet.so: $needed" ;; esac
        resolved=$(LD_LIBRARY_PATH=$prefix/lib ldd "$out/$name" | sed -n 's/.*libcfnet[^ ]* => \([^ ]*\).*/\1/p')
        [ "$resolved" = "$prefix/lib/libcfnet.so.${version%%.*}" ] ||
            fail "$name resolves libcfnet to '$resolved', not the installed copy"
        output=$(LD_LIBRARY_PATH=$prefix/lib "$out/$name") || fail "$name: run: $output"
        ;;
    esac
    echo "$output" | sed "s/^/  $name: /"
    echo "$output" | grep -qx "libcfnet $version (header $version)" || fail "$name: version line"
    echo "$output" | grep -q "^output 2 x 3, network output shape (3)" || fail "$name: shape"
    echo "$output" | grep -qx "consumer ok" || fail "$name: not ok"
    case $src in
    *.cpp) echo "$output" | grep -q "^callbacks ok: cancelled (2 steps kept)" ||
        fail "$name: the callback rule (catch inside, return non-zero)" ;;
    esac
}

build_and_run c-shared "$SAN_CC" -std=c11 consumer.c "$libs"
build_and_run c-static "$SAN_CC" -std=c11 consumer.c "$static_libs"
build_and_run cxx-shared "$SAN_CXX" -std=c++17 consumer.cpp "$libs"
build_and_run cxx-static "$SAN_CXX" -std=c++17 consumer.cpp "$static_libs"

# A moved copy of the installed tree (a plugin bundle, a relocatable package): the .pc files
# write their directories under ${prefix}, so `pkg-config --define-prefix` (pkgconf) derives
# them from where the .pc file now is, and the consumers build and run against the copy alone.
moved=$tmp/moved
cp -a "$prefix" "$moved"
for pcname in cfnet cfnet-static; do
    for var in libdir includedir; do
        [ "$(pkg-config --variable=$var $pcname)" = "$prefix/${var%dir}" ] ||
            fail "$pcname.pc: $var is $(pkg-config --variable=$var $pcname), not $prefix/${var%dir}"
    done
done
mcflags=$(PKG_CONFIG_PATH=$moved/lib/pkgconfig pc --define-prefix --cflags cfnet)
mlibs=$(PKG_CONFIG_PATH=$moved/lib/pkgconfig pc --define-prefix --libs cfnet)
mstatic=$(PKG_CONFIG_PATH=$moved/lib/pkgconfig pc --define-prefix --libs cfnet-static)
[ "$mcflags" = "-I$moved/include" ] || fail "moved tree: --define-prefix --cflags gives [$mcflags]"
case " $mlibs " in *" -L$moved/lib "*) ;; *) fail "moved tree: --define-prefix --libs gives [$mlibs]" ;; esac
case " $mstatic " in *" $moved/lib/libcfnet.a "*) ;; *) fail "moved tree: cfnet-static gives [$mstatic]" ;; esac
# shellcheck disable=SC2086
"$SAN_CC" -std=c11 $warn $extra $mcflags tests/consumers/consumer.c -o "$out/moved-shared" $mlibs \
    -Wl,-rpath,"$moved/lib" || fail "moved tree: shared build"
resolved=$(env -u LD_LIBRARY_PATH ldd "$out/moved-shared" | sed -n 's/.*libcfnet[^ ]* => \([^ ]*\).*/\1/p')
[ "$resolved" = "$moved/lib/libcfnet.so.${version%%.*}" ] || fail "moved-shared resolves libcfnet to '$resolved'"
env -u LD_LIBRARY_PATH "$out/moved-shared" | grep -qx "consumer ok" || fail "moved-shared: not ok"
# shellcheck disable=SC2086
"$SAN_CC" -std=c11 $warn $extra $mcflags tests/consumers/consumer.c -o "$out/moved-static" $mstatic ||
    fail "moved tree: static build"
env -u LD_LIBRARY_PATH "$out/moved-static" | grep -qx "consumer ok" || fail "moved-static: not ok"
echo "test_pkgconfig: a moved copy of the install builds with pkg-config --define-prefix: ok"

# README.md's host program, verbatim, built with the command README gives (shared and static).
awk '/^## A host program/ { a = 1 } a && /^```c/ { b = 1; next } b && /^```/ { exit } b' README.md \
    >"$out/host.c"
[ -s "$out/host.c" ] || fail "no C program under README.md's 'A host program'"
# shellcheck disable=SC2086
"$SAN_CC" $warn $extra "$out/host.c" $cflags $libs -o "$out/host" || fail "README host.c: shared build"
LD_LIBRARY_PATH=$prefix/lib "$out/host" || fail "README host.c: run"
# shellcheck disable=SC2086
"$SAN_CC" $warn $extra "$out/host.c" $cflags $static_libs -o "$out/host-static" ||
    fail "README host.c: static build"
env -u LD_LIBRARY_PATH "$out/host-static" || fail "README host.c (static): run"
echo "test_pkgconfig: README.md's host program, shared and static: ok"

# examples/minimal.c, built with the command README.md gives for it (it needs -lm: without it the
# link fails on exp and pow) and run with a model path in its own folder.
grep -qF 'cc examples/minimal.c $(pkg-config --cflags --libs cfnet) -lm' README.md ||
    fail "README.md no longer gives the build command of examples/minimal.c this test runs"
mkdir -p "$out/minimal"
# shellcheck disable=SC2086
"$SAN_CC" $warn $extra examples/minimal.c $cflags $libs -lm -o "$out/minimal/minimal" ||
    fail "examples/minimal.c: build as README.md says"
(cd "$out/minimal" && LD_LIBRARY_PATH=$prefix/lib ./minimal model.cfnet >minimal.out 2>&1) ||
    { cat "$out/minimal/minimal.out"; fail "examples/minimal.c: run"; }
grep -q "predictions match" "$out/minimal/minimal.out" || fail "examples/minimal.c: output"
echo "test_pkgconfig: examples/minimal.c, built as README.md says: ok"

# docs/guide.md's program, built with the command the guide gives for an installed libcfnet
# (`cc -std=c11 guide.c $(pkg-config --cflags --libs cfnet) -lm`) and run in its own folder.
grep -qF 'cc -std=c11 guide.c $(pkg-config --cflags --libs cfnet) -lm' docs/guide.md ||
    fail "docs/guide.md no longer gives the build command this test runs"
mkdir -p "$out/guide"
awk 'index($0, "<!-- tested: c ") == 1 { w = 1; next } w == 1 && /^```/ { w = 2; next }
     w == 2 && /^```/ { exit } w == 2' docs/guide.md >"$out/guide/guide.c"
[ -s "$out/guide/guide.c" ] || fail "no tested C program in docs/guide.md"
# shellcheck disable=SC2086
"$SAN_CC" -std=c11 $warn $extra "$out/guide/guide.c" $cflags $libs -lm -o "$out/guide/guide" ||
    fail "docs/guide.md's program: build with pkg-config"
(cd "$out/guide" && LD_LIBRARY_PATH=$prefix/lib ./guide >guide.out 2>&1) ||
    { cat "$out/guide/guide.out"; fail "docs/guide.md's program: run"; }
grep -q "reloaded network agrees on 90 of 90" "$out/guide/guide.out" || fail "docs/guide.md's program: output"
echo "test_pkgconfig: docs/guide.md's program, built as the guide says: ok"

# shellcheck disable=SC2086
make --no-print-directory -s uninstall PREFIX="$prefix" $makevars >"$tmp/uninstall.log" 2>&1 ||
    { cat "$tmp/uninstall.log"; fail "make uninstall"; }
left=$(find "$prefix" -mindepth 1 ! -path "$prefix/lib")
[ -z "$left" ] || fail "make uninstall left: $left"
[ -d "$prefix/lib" ] || fail "make uninstall removed $prefix/lib, which was there before the install"
echo "test_pkgconfig: install (ldconfig note and run), 4 consumers (C/C++17, shared/static), uninstall: ok"
