#!/bin/sh
# Documentation checks:
#   1. The programs in docs/guide.md marked "<!-- tested: c" / "<!-- tested: python" compile
#      and run against the library just built (C: warnings are errors); the numpy-only model
#      reader ("<!-- tested: python-reader") reads the model the Python program saved; README.md's
#      Python example ("<!-- tested: readme-python") runs; python/README.md's examples
#      ("<!-- tested: pyreadme-") run on generated images, `cfnet synth` data and a model of
#      `cfnet train`.
#   1d. Calls of the C API written in README.md and docs/*.md pass the header's number of
#      arguments (tests/docs_calls.py).
#   1f. Relative links between the pages resolve, #anchors included, and line anchors (#L12)
#       of other files (tests/docs_links.py).
#   1g. Commands that run Python from a checkout set CFNET_LIBRARY (tests/docs_checkout_python.py).
#   2. If doxygen is installed: the API reference builds from the header (docs/Doxyfile) with
#      every public function documented and no documentation warnings.
# Environment (set by `make check`): CFNET_LIBDIR, CFNET_SANITIZE, CFNET_BUILD, CC.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
libdir=${CFNET_LIBDIR:-$top/lib}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfnet-docs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_docs: FAIL: $*" >&2; exit 1; }

# The fenced block that follows the marker line.
extract() { # marker file
    awk -v m="$1" '
        index($0, m) == 1 { want = 1; next }
        want == 1 && /^```/ { want = 2; next }
        want == 2 && /^```/ { exit }
        want == 2 { print }' "$2"
}

. tests/sanitizer_env.sh
. tests/skip_lib.sh
asan_options=""
[ "$SAN_KIND" = asan ] && asan_options=detect_leaks=0

# 1a. The C walkthrough.
extract "<!-- tested: c " docs/guide.md >"$tmp/guide.c"
[ -s "$tmp/guide.c" ] || fail "no tested C program in docs/guide.md"
# shellcheck disable=SC2086
"$SAN_CC" -std=c11 -Wall -Wextra -Wpedantic -Werror $SAN_CFLAGS -Iinclude "$tmp/guide.c" \
    -o "$tmp/guide" -L"$libdir" -lcfnet -Wl,-rpath,"$libdir" -lm || fail "guide.c does not build"
(cd "$tmp" && ./guide >"$tmp/guide.out" 2>&1) || { cat "$tmp/guide.out"; fail "guide.c failed"; }
grep -q "reloaded network agrees on 90 of 90" "$tmp/guide.out" || { cat "$tmp/guide.out"; fail "guide.c output"; }
echo "test_docs: guide C program: $(grep 'quarter turns' "$tmp/guide.out")"

# 1b. The Python walkthrough (Debian's python3 with numpy).
if [ "$SAN_KIND" = tsan ]; then
    skip_env test_docs "the Python walkthrough" "the interpreter is not instrumented for ThreadSanitizer"
else
py=""
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import numpy' >/dev/null 2>&1; then
        py=$cand
        break
    fi
done
[ -n "$py" ] || fail "no python3 with numpy (apt-get install python3-numpy)"
extract "<!-- tested: python " docs/guide.md >"$tmp/guide.py"
[ -s "$tmp/guide.py" ] || fail "no tested Python program in docs/guide.md"
(cd "$tmp" && CFNET_LIBRARY="$libdir/libcfnet.so" PYTHONPATH="$top/python" \
    PYTHONDONTWRITEBYTECODE=1 LD_PRELOAD="$SAN_PRELOAD" ASAN_OPTIONS="$asan_options" \
    "$py" guide.py >"$tmp/guide_py.out" 2>&1) || { cat "$tmp/guide_py.out"; fail "guide.py failed"; }
echo "test_docs: guide Python program: $(grep 'quarter turns' "$tmp/guide_py.out")"
# 1c. The numpy-only reader, on the model the Python program saved, without libcfnet.
extract "<!-- tested: python-reader" docs/guide.md >"$tmp/reader.py"
[ -s "$tmp/reader.py" ] || fail "no tested model reader in docs/guide.md"
reader_out=$(cd "$tmp" && env -u CFNET_LIBRARY -u PYTHONPATH -u LD_PRELOAD \
    PYTHONDONTWRITEBYTECODE=1 "$py" reader.py 2>&1) || { echo "$reader_out"; fail "reader failed"; }
[ "$reader_out" = "(8, 1, 3, 3)" ] || fail "reader printed: $reader_out"
echo "test_docs: numpy-only model reader: weight shape $reader_out"
# 1e. README.md's Python example: it runs as written (PYTHONPATH=python, the build tree's
# library) and prints the loss and an invariance at the level of float rounding: 6.2e-7 as
# written (6.9e-7 on 4 or more threads); over network seeds 1-200, data seeds 0-9 and 1-2
# threads 1.8e-7 to 1.9e-6, which README.md says; the bound is twice that worst case.
extract "<!-- tested: readme-python" README.md >"$tmp/readme.py"
[ -s "$tmp/readme.py" ] || fail "no tested Python example in README.md"
readme_out=$(cd "$tmp" && CFNET_LIBRARY="$libdir/libcfnet.so" PYTHONPATH="$top/python" \
    PYTHONDONTWRITEBYTECODE=1 LD_PRELOAD="$SAN_PRELOAD" ASAN_OPTIONS="$asan_options" \
    "$py" readme.py 2>&1) || { echo "$readme_out"; fail "README.md's Python example failed"; }
# It saves under a name of its own: "Your own images" above trains model.safetensors with cfnet
# train, and a reader who runs both in one folder would lose the trained classifier.
[ -s "$tmp/readme_model.safetensors" ] || fail "README.md's Python example saved no readme_model.safetensors"
[ ! -e "$tmp/model.safetensors" ] || fail "README.md's Python example overwrites model.safetensors, the model cfnet train writes"
echo "$readme_out" | awk 'NF == 2 && $1 + 0 > 0 && $2 + 0 >= 0 && $2 + 0 < 4e-6 { ok = 1 } END { exit !ok }' ||
    fail "README.md's Python example printed: $readme_out"
echo "test_docs: README.md's Python example: loss and invariance $readme_out"
# 1h. python/README.md's examples ("<!-- tested: pyreadme-"), as written, from a folder beside
# the checkout, on what they take as given: generated images and labels for the first two
# (`import cfnet` and `cancel_requested` before the second, which goes on from the first), a
# `cfnet synth data` folder and a model of `cfnet train` (model_from_cfnet_train.safetensors) for
# the TIFF one, that model as model.safetensors and the test TIFFs as images for the last.
tool=${CFNET_TOOL:-}
if [ -z "$tool" ]; then
    if [ "${CFNET_BUILD:-build/default}" = build/default ]; then tool=$top/bin/cfnet; else tool=$top/$CFNET_BUILD/bin/cfnet; fi
fi
mkdir "$tmp/pyreadme"
for tag in use fit tiff prepare; do
    extract "<!-- tested: pyreadme-$tag " python/README.md >"$tmp/pyreadme/$tag.py"
    [ -s "$tmp/pyreadme/$tag.py" ] || fail "no tested example pyreadme-$tag in python/README.md"
done
cat >"$tmp/pyreadme/given.py" <<'EOF'
import numpy as np
rng = np.random.default_rng(0)
images = rng.random((60, 1, 16, 16), dtype=np.float32)
labels = np.arange(60) % 3
test_images, test_labels = images[:20], labels[:20]
EOF
printf 'import numpy as np, cfnet\nimages = np.random.default_rng(1).random((50, 2, 64, 64), dtype=np.float32)\nlabels = np.arange(50) %% 5\ncancel_requested = lambda: False\n' >"$tmp/pyreadme/given_fit.py"
printf 'import glob, cfnet, tifffile\nimages = [tifffile.imread(f) for f in sorted(glob.glob("data/test/*/*.tif"))]\n' >"$tmp/pyreadme/given_prepare.py"
pyreadme() { # name files...: runs the files as one script in $tmp/pyreadme
    name=$1; shift
    (cd "$tmp/pyreadme" && cat "$@" >"run_$name.py" && CFNET_LIBRARY="$libdir/libcfnet.so" \
        PYTHONPATH="$top/python" PYTHONDONTWRITEBYTECODE=1 LD_PRELOAD="$SAN_PRELOAD" \
        ASAN_OPTIONS="$asan_options" "$py" "run_$name.py" >"$name.out" 2>&1) ||
        { cat "$tmp/pyreadme/$name.out"; fail "python/README.md's example pyreadme-$name failed"; }
}
pyreadme use given.py use.py
pyreadme fit given_fit.py fit.py
if "$py" -c 'import tifffile' 2>/dev/null; then
    (cd "$tmp/pyreadme" && "$tool" synth data --classes 3 --per-class 6 --test-per-class 3 -q &&
        "$tool" train data/train -o model_from_cfnet_train.safetensors --epochs 1 >train.out 2>&1) ||
        { cat "$tmp/pyreadme/train.out"; fail "cfnet synth and train for python/README.md's examples"; }
    pyreadme tiff tiff.py
    grep -q "^\['class00', 'class01', 'class02'\] percentile 1 99.8$" "$tmp/pyreadme/tiff.out" ||
        fail "python/README.md's example pyreadme-tiff printed: $(cat "$tmp/pyreadme/tiff.out")"
    cp "$tmp/pyreadme/model_from_cfnet_train.safetensors" "$tmp/pyreadme/model.safetensors"
    (echo 'print(probs.shape)') >"$tmp/pyreadme/shape.py"
    pyreadme prepare given_prepare.py prepare.py shape.py
    grep -qx "(9, 3)" "$tmp/pyreadme/prepare.out" ||
        fail "python/README.md's example pyreadme-prepare printed: $(cat "$tmp/pyreadme/prepare.out")"
    echo "test_docs: python/README.md's examples run"
else
    skip_missing test_docs "python/README.md's TIFF examples" python3-tifffile
    echo "test_docs: python/README.md's first two examples run"
fi
fi

# 1d. Calls of the C API in the pages have the header's number of arguments (a page that shows
# cfnet_layer_dense_create(out_features) without its &layer does not compile when copied).
# The checker first rejects a copy of README.md with one argument dropped.
docs_py=$(command -v /usr/bin/python3 || command -v python3) || fail "no python3"
sed 's/cfnet_network_create(1, 28, 28, \/\*seed\*\/ 42, &net)/cfnet_network_create(1, 28, 28, \&net)/' \
    README.md >"$tmp/README.md"
if cmp -s README.md "$tmp/README.md" ||
    "$docs_py" tests/docs_calls.py include/cfnet/cfnet.h "$tmp/README.md" >/dev/null; then
    fail "tests/docs_calls.py accepted a call with an argument dropped"
fi
"$docs_py" tests/docs_calls.py include/cfnet/cfnet.h README.md docs/*.md python/README.md \
    bindings/julia/README.md SECURITY.md ||
    fail "calls of the C API in the documentation"

# 1f. The relative links between the pages name files that exist and headings the target page
# has (tests/docs_links.py; GitHub's anchors). The checker first rejects a copy of README.md with
# a link to a missing page and one to a missing heading.
mkdir "$tmp/links" "$tmp/links/docs"
cp docs/format.md "$tmp/links/docs/"
sed 's|(docs/cli.md)|(docs/no-such-page.md)|; s|(docs/format.md)|(docs/format.md#no-such-heading)|' \
    README.md >"$tmp/links/README.md"
links_out=$(cd "$tmp/links" && "$docs_py" "$top/tests/docs_links.py" README.md 2>&1) &&
    fail "tests/docs_links.py accepted broken links"
case $links_out in
*"no-such-page.md: no such file"*"docs/format.md has no heading with the anchor #no-such-heading"*) ;;
*) fail "tests/docs_links.py did not name the broken links: $links_out" ;;
esac
# GitHub's anchors for the headings our pages have (a superscript, an arrow, ×, –, µ, code
# spans with `&`, entities, repeats, a repeat of a "foo-1"), and the places where no heading or
# link is: fenced code in a list, indented code, an HTML comment; links with titles, <...> and
# reference definitions. Each okN link must pass, each badN must be named.
cat >"$tmp/links/slugs.md" <<'EOF'
# Page

## Lifting, Z² → p4: `cfnet_layer_p4_lift_create(out, &layer)`

## A &amp; B <br> _emphasis_ and snake_case

## Foo

## Foo

## Foo 1

## 1 µs × 2 – fast

1. A step:

   ```sh
   # inside-a-list-fence
   ```

Text.

    # indented-code-heading

<!--
## in-a-comment
-->

[ok1](#lifting-z--p4-cfnet_layer_p4_lift_createout-layer)
[ok2](#a--b--emphasis-and-snake_case)
[ok3](#foo-1)
[ok4](#foo-1-1)
[ok5](#1-µs--2--fast)
[ok6](<slugs.md#foo> "title")
[bad1](#lifting-z²--p4-cfnet_layer_p4_lift_createout-layer)
[bad2](#inside-a-list-fence)
[bad3](#indented-code-heading)
[bad4](#in-a-comment)
[bad5](bad5.md 'title')
[bad6](<bad6.md>)
[bad7][r]
[bad8](bad8.md (title))
[bad9](bad 9.md)
[ok7](code.c#L2)
[ok8](<code.c#L1-L3> "title")
[ok9][c]
[bad10](code.c#L4)
[bad11](code.c#L2-L9)
[bad12](code.c#main)
[bad13](code.c#L3-L1)
[bad14](code.c#L0)
[bad15](docs#L1)
[bad16](blob.bin#L1)
[ok10](sub/#sub-page)
[ok11](sub#a-section)
[ok12](<sub/#a-section-1> "title")
[bad17](sub/#no-such-section)
[bad18](docs/#format)
[bad19](sub/#L1)
[bad20](sub/#in-sub-code)

[r]: bad7.md
[c]: code.c#L3
EOF
# Links to a file that is not Markdown: a #fragment is a line anchor within the file's lines
# (the last line here has no newline).
printf 'int a;\nint b;\nint c;' >"$tmp/links/code.c"
# A link to a folder shows its README.md (GitHub): a #fragment is a heading of that page; docs/
# here has none.
mkdir "$tmp/links/sub"
# shellcheck disable=SC2016
printf '# Sub page\n\n## A section\n\n## A section\n\n```sh\n# in-sub-code\n```\n' >"$tmp/links/sub/README.md"
printf 'x\000y\n' >"$tmp/links/blob.bin"
slugs_out=$(cd "$tmp/links" && "$docs_py" "$top/tests/docs_links.py" slugs.md 2>&1) &&
    fail "tests/docs_links.py accepted the broken links of slugs.md"
for id in "#lifting-z²--p4" "#inside-a-list-fence" "#indented-code-heading" "#in-a-comment" \
    "bad5.md: no such" "bad6.md: no such" "bad7.md: no such" "bad8.md: no such" \
    "cannot read: ](bad 9.md)" "code.c#L4: #L4: code.c has 3 lines" \
    "code.c#L2-L9: #L2-L9: code.c has 3 lines" "#main is not a line anchor" \
    "#L3-L1: the range ends before it starts" "#L0 is not a line anchor" \
    "docs#L1: docs is a folder without a README.md" "blob.bin#L1: blob.bin is a binary file" \
    "sub/#no-such-section: sub is a folder, and its README.md has no heading with the anchor #no-such-section" \
    "docs/#format: docs is a folder without a README.md" "sub/#L1: sub is a folder, and its" \
    "sub/#in-sub-code: sub is a folder, and its"; do
    case $slugs_out in *"$id"*) ;; *) fail "tests/docs_links.py did not name $id: $slugs_out" ;; esac
done
[ "$(printf '%s\n' "$slugs_out" | wc -l)" -eq 20 ] ||
    fail "tests/docs_links.py rejected good links of slugs.md: $slugs_out"
pages="README.md docs/*.md docs/results/*/*.md python/README.md bindings/julia/README.md SECURITY.md CHANGELOG.md"
# shellcheck disable=SC2086
"$docs_py" tests/docs_links.py $pages || fail "links in the documentation"
echo "test_docs: the links between the pages resolve"

# 1g. Every command of the pages that runs Python from a checkout (examples/python, python/tests)
# chooses the library just built with CFNET_LIBRARY, and passes it to the ranks under mpirun
# (tests/docs_checkout_python.py): an installed libcfnet that pkg-config finds comes first
# otherwise. The checker first names the commands of a page that do not.
mkdir "$tmp/py"
cat >"$tmp/py/page.md" <<'EOF'
Good: `CFNET_LIBRARY=$PWD/lib/libcfnet.so /usr/bin/python3 examples/python/train.py`,
`CFNET_LIBRARY=lib/libcfnet.so mpirun -x CFNET_LIBRARY -np 2 python3 examples/python/mpi_train.py`,
`examples/python/train.py` (a name, not a command), `python3 -m venv env`.

    export CFNET_LIBRARY=$PWD/lib/libcfnet.so PYTHONPATH=$PWD/python
    /usr/bin/python3 examples/python/train.py

Bad: `mpirun -np 2 /usr/bin/python3 examples/python/bad1.py`,
`CFNET_LIBRARY=lib/libcfnet.so mpirun -np 2 python3 examples/python/bad2.py`,
`PYTHONPATH=python /usr/bin/python3 -m unittest discover -s python/tests -p bad3.py`.

```sh
/usr/bin/python3 examples/python/bad4.py   # the export above is in another block
```

<!-- `python3 examples/python/in-a-comment.py` -->

A command continued on the next line is one command:

```sh
CFNET_LIBRARY=$PWD/lib/libcfnet.so mpirun -x CFNET_LIBRARY --oversubscribe \
    -np 2 /usr/bin/python3 examples/python/mpi_train.py
export CFNET_LIBRARY=$PWD/lib/libcfnet.so
mpirun -np 2 \
    /usr/bin/python3 examples/python/bad5.py
```

Code blocks in list items, nested at any depth, and mpiexec as mpirun:

1. Train:

   ```sh
   CFNET_LIBRARY=$PWD/lib/libcfnet.so /usr/bin/python3 examples/python/train.py
   /usr/bin/python3 examples/python/bad6.py
   ```

   - On two ranks (this fence is indented by five spaces):

     ```sh
     export CFNET_LIBRARY=$PWD/lib/libcfnet.so
     mpiexec -x CFNET_LIBRARY -n 2 /usr/bin/python3 examples/python/mpi_train.py
     mpiexec -n 2 /usr/bin/python3 examples/python/bad7.py
     ```

     ~~~
     /usr/bin/python3 examples/python/bad8.py
     ~~~

   - An indented code block in the item:

         /usr/bin/python3 -m unittest discover -s python/tests -p bad9.py

2. `CFNET_LIBRARY=lib/libcfnet.so mpiexec -n 2 python3 examples/python/bad10.py`,
   `CFNET_LIBRARY=lib/libcfnet.so mpiexec -x CFNET_LIBRARY -n 2 python3 examples/python/mpi_train.py`.
- An item whose text a fence at the margin ends:
```sh
echo the fence ends the item
```

    /usr/bin/python3 examples/python/bad11.py

* * *

    /usr/bin/python3 examples/python/bad12.py

```text
    ```
/usr/bin/python3 examples/python/bad13.py
```
EOF
py_out=$("$docs_py" tests/docs_checkout_python.py "$tmp/py/page.md" 2>&1) &&
    fail "tests/docs_checkout_python.py accepted commands without CFNET_LIBRARY"
for id in "bad1.py\` sets no CFNET_LIBRARY" "bad2.py\` does not pass CFNET_LIBRARY to the ranks" \
    "bad3.py\` sets no" "bad4.py   # the export above is in another block\` sets no" \
    "page.md:24: \`mpirun -np 2 /usr/bin/python3 examples/python/bad5.py\` does not pass" \
    "page.md:34: \`/usr/bin/python3 examples/python/bad6.py\` sets no" \
    "bad7.py\` does not pass CFNET_LIBRARY to the ranks (mpiexec -x CFNET_LIBRARY)" \
    "page.md:46: \`/usr/bin/python3 examples/python/bad8.py\` sets no" \
    "page.md:51: \`/usr/bin/python3 -m unittest discover -s python/tests -p bad9.py\` sets no" \
    "bad10.py\` does not pass CFNET_LIBRARY to the ranks (mpiexec" \
    "bad11.py\` sets no" "bad12.py\` sets no" "bad13.py\` sets no"; do
    case $py_out in *"$id"*) ;; *) fail "tests/docs_checkout_python.py did not name $id: $py_out" ;; esac
done
[ "$(printf '%s\n' "$py_out" | wc -l)" -eq 13 ] ||
    fail "tests/docs_checkout_python.py rejected good commands: $py_out"
"$docs_py" tests/docs_checkout_python.py README.md docs/*.md python/README.md ||
    fail "commands running Python from a checkout without CFNET_LIBRARY"
echo "test_docs: the commands that run Python from a checkout set CFNET_LIBRARY"

# 2. The API reference.
if ! command -v doxygen >/dev/null 2>&1; then
    skip_missing test_docs "the API reference's check" doxygen
    exit 0
fi
# As `make docs`, into a temporary directory...
(cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $tmp/api") | doxygen - >"$tmp/doxygen.log" 2>&1 ||
    { cat "$tmp/doxygen.log"; fail "doxygen"; }
[ -s "$tmp/api/html/index.html" ] && [ -s "$tmp/api/html/cfnet_8h.html" ] ||
    fail "doxygen wrote no HTML for the header"
if [ -s "$tmp/doxygen.log" ]; then
    cat "$tmp/doxygen.log"
    fail "doxygen warnings"
fi
# ...and once more treating the header as documented, so that doxygen reports every public
# function that has no documentation comment of its own (undocumented macros and types are
# listed for information).
filter=$(sed -n 's/^FILTER_PATTERNS *= *\*\.h=//p' docs/Doxyfile | sed 's/^"//; s/"$//')
(cat docs/Doxyfile
 echo "OUTPUT_DIRECTORY = $tmp/api2"
 echo "EXTRACT_ALL = NO"
 echo "INPUT = include/cfnet/cfnet.h"
 echo "USE_MDFILE_AS_MAINPAGE ="
 echo "FILTER_PATTERNS = *.h=\"$filter -e '1s|^|/** @file */|'\"") | doxygen - >"$tmp/doxygen2.log" 2>&1 || true
undocumented=$(grep "(function) of file cfnet.h is not documented" "$tmp/doxygen2.log" || true)
others=$(grep "warning:" "$tmp/doxygen2.log" | grep -v "is not documented" || true)
[ -z "$undocumented" ] || fail "undocumented functions: $undocumented"
[ -z "$others" ] || fail "documentation warnings: $others"
n=$(grep -c "is not documented" "$tmp/doxygen2.log" || true)
echo "test_docs: API reference builds; every function documented ($n macros/types without a comment)"
