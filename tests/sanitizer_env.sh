# Sourced by the script tests: sanitizer settings that match the libcfnet under test.
# Input (from `make check`): CFNET_SANITIZE (1 = ASan+UBSan, thread = TSan, empty = none),
# CFNET_BUILD, CC. Output:
#   SAN_KIND     asan, tsan or empty
#   SAN_CFLAGS   compile and link flags for programs that link a sanitized libcfnet
#   SAN_PRELOAD  sanitizer runtime(s) to LD_PRELOAD into an uninstrumented program (python3)
#   SAN_CC, SAN_CXX  C and C++ compilers of the same family as the library's
SAN_CC=${CC:-cc}
case "$SAN_CC" in
*clang*) SAN_CXX=$(echo "$SAN_CC" | sed 's/clang/clang++/') ;;
*) SAN_CXX=${CXX:-c++} ;;
esac
SAN_KIND=""
case "${CFNET_SANITIZE:-}" in
1) SAN_KIND=asan ;;
thread) SAN_KIND=tsan ;;
"") case "${CFNET_BUILD:-}" in */san*|san*) SAN_KIND=asan ;; */tsan*|tsan*) SAN_KIND=tsan ;; esac ;;
esac
# A coverage build (make coverage) needs the gcov runtime in programs that link libcfnet.a.
case "${CFNET_BUILD:-}" in */coverage|coverage) SAN_KIND=coverage ;; esac
SAN_CFLAGS=""
SAN_PRELOAD=""
san_is_clang=0
"$SAN_CC" --version 2>/dev/null | grep -q clang && san_is_clang=1
case "$SAN_KIND" in
asan)
    SAN_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"
    if [ $san_is_clang = 1 ]; then
        # clang's shared ASan runtime also carries the UBSan handlers.
        SAN_PRELOAD=$("$SAN_CC" -print-file-name="libclang_rt.asan-$(uname -m).so")
    else
        SAN_PRELOAD="$("$SAN_CC" -print-file-name=libasan.so) $("$SAN_CC" -print-file-name=libubsan.so)"
    fi
    ;;
coverage)
    SAN_CFLAGS="--coverage"
    ;;
tsan)
    SAN_CFLAGS="-fsanitize=thread"
    if [ $san_is_clang = 1 ]; then
        SAN_PRELOAD=$("$SAN_CC" -print-file-name="libclang_rt.tsan-$(uname -m).so")
    else
        SAN_PRELOAD=$("$SAN_CC" -print-file-name=libtsan.so)
    fi
    ;;
esac
