"""Finding and loading libcfnet; version and status names agree with the header."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import cfnet
from cfnet_testutil import REPO

HEADER = os.path.join(REPO, "include", "cfnet", "cfnet.h")


def header_text():
    with open(HEADER) as f:
        return f.read()


def run_python(code, env):
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


class LibraryTest(unittest.TestCase):
    def test_version_matches_header(self):
        text = header_text()
        ver = [int(re.search(r"#define CFNET_VERSION_%s (\d+)" % k, text).group(1))
               for k in ("MAJOR", "MINOR", "PATCH")]
        self.assertEqual(cfnet.version(), "%d.%d.%d" % tuple(ver))
        self.assertEqual(cfnet.version_number(), ver[0] * 10000 + ver[1] * 100 + ver[2])

    def test_uses_cfnet_library_variable(self):
        want = os.path.realpath(os.environ["CFNET_LIBRARY"])
        self.assertEqual(os.path.realpath(cfnet.library_path()), want)

    def test_status_enum_and_names_match_library(self):
        for st in cfnet.Status:
            self.assertEqual(cfnet.status_string(st), cfnet._errors.STATUS_NAMES[int(st)])
        for st, cls in cfnet._errors.ERRORS.items():
            self.assertTrue(issubclass(cls, cfnet.CfnetError))
            self.assertIn(st, [int(s) for s in cfnet.Status])
        self.assertEqual(cfnet.status_string(-100), "unknown status")

    def test_enums_match_header(self):
        text = header_text()
        for enum_cls, prefix in [(cfnet.LayerKind, "CFNET_LAYER_"), (cfnet.Option, "CFNET_OPTION_"),
                                 (cfnet.Padding, "CFNET_PADDING_"), (cfnet.Interp, "CFNET_INTERP_"),
                                 (cfnet.PoolMode, "CFNET_POOL_"), (cfnet.Mode, "CFNET_MODE_"),
                                 (cfnet.Limit, "CFNET_LIMIT_"), (cfnet.Family, "CFNET_FAMILY_"),
                                 (cfnet.Status, "CFNET_")]:
            for m in enum_cls:
                if enum_cls is cfnet.Status and m.name == "OK":
                    name = "CFNET_OK"
                else:
                    name = prefix + m.name
                found = re.search(r"\b%s = (-?\d+)" % name, text)
                self.assertIsNotNone(found, name)
                self.assertEqual(int(found.group(1)), int(m), name)
        for m in cfnet.Optimizer:
            self.assertRegex(text, r"#define CFNET_OPTIMIZER_%s %d\b" % (m.name, m))
        for m in cfnet.AugRotation:
            self.assertRegex(text, r"#define CFNET_AUG_ROTATION_%s %d\b" % (m.name, m))
        self.assertRegex(text, r"#define CFNET_SAVE_OPTIMIZER %du\b" % cfnet.SAVE_OPTIMIZER)
        self.assertRegex(text, r"#define CFNET_SAVE_ALLOW_NONFINITE %du\b" % cfnet.SAVE_ALLOW_NONFINITE)
        self.assertRegex(text, r"#define CFNET_MAX_DIMS %d\b" % cfnet.MAX_DIMS)
        for k in cfnet.LayerKind:
            self.assertEqual(cfnet.kind_name(k), k.name.lower())

    def test_every_public_name_has_a_docstring(self):
        # help(cfnet.X) is the reference the README points to: nothing public left bare.
        import inspect
        bare = []
        for name in cfnet.__all__:
            obj = getattr(cfnet, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not inspect.getdoc(obj) or (inspect.isclass(obj) and obj.__doc__ is None):
                bare.append(name)
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    fn = member.__func__ if isinstance(member, classmethod) else member
                    if (inspect.isfunction(fn) or isinstance(fn, property)) and not fn.__doc__:
                        bare.append(name + "." + attr)
        self.assertEqual(bare, [])

    def test_import_does_not_load_the_library(self):
        env = dict(os.environ, CFNET_LIBRARY="/nonexistent/libcfnet.so")
        r = run_python("import cfnet, cfnet._lib as L; assert L._lib is None; print('ok')", env)
        self.assertEqual(r.stdout.strip(), "ok", r.stderr)

    def test_bad_cfnet_library_is_an_error_not_a_fallback(self):
        env = dict(os.environ, CFNET_LIBRARY="/nonexistent/libcfnet.so")
        r = run_python("import cfnet\ntry:\n    cfnet.version()\nexcept OSError as e:\n"
                       "    print('OSError', e)\n", env)
        self.assertIn("OSError", r.stdout, r.stderr)
        self.assertIn("CFNET_LIBRARY", r.stdout)

    def test_pkg_config_then_build_tree(self):
        # An "installed" copy of the library in a folder of its own, which pkg-config names:
        # it comes before the build tree's lib/libcfnet.so (README.md says so; a checkout's
        # Python runs an installed libcfnet unless CFNET_LIBRARY is set).
        code = "import cfnet, os; print(os.path.realpath(cfnet.library_path()))"
        with tempfile.TemporaryDirectory() as d:
            libdir = os.path.join(d, "lib")
            os.mkdir(libdir)
            shutil.copy(os.environ["CFNET_LIBRARY"], os.path.join(libdir, "libcfnet.so"))
            with open(os.path.join(d, "cfnet.pc"), "w") as f:
                f.write("prefix=/x\nlibdir=%s\nincludedir=/x\n\nName: cfnet\nDescription: t\n"
                        "Version: %s\nLibs: -L${libdir} -lcfnet\n" % (libdir, cfnet.version()))
            env = {k: v for k, v in os.environ.items() if k != "CFNET_LIBRARY"}
            env["PKG_CONFIG_LIBDIR"] = d
            env["PKG_CONFIG_PATH"] = ""
            r = run_python(code, env)
            self.assertEqual(r.stdout.strip(), os.path.realpath(os.path.join(libdir, "libcfnet.so")),
                             r.stderr)
            # No pkg-config entry: the build tree (lib/ beside python/).
            os.remove(os.path.join(d, "cfnet.pc"))
            r = run_python(code, env)
            tree = os.path.join(REPO, "lib", "libcfnet.so")
            if os.path.exists(tree):
                self.assertEqual(r.stdout.strip(), os.path.realpath(tree), r.stderr)

    def test_since_table_matches_the_version_script(self):
        # _lib.SINCE (the functions a 0.1 library may lack) is src/cfnet.map's later nodes.
        with open(os.path.join(REPO, "src", "cfnet.map")) as f:
            text = f.read()
        want = {}
        for node, body in re.findall(r"CFNET_(\d+\.\d+) \{(.*?)\}", text, re.S):
            if node != "0.1":
                for name in re.findall(r"\b(cfnet_\w+);", body):
                    if name in cfnet._lib.PROTOTYPES:
                        want[name] = tuple(int(x) for x in node.split("."))
        self.assertEqual(cfnet._lib.SINCE, want)


def compiler():
    for cc in (os.environ.get("CC", "").split() or [None])[:1] + ["cc", "gcc", "clang"]:
        if cc and shutil.which(cc):
            return cc
    return None


OLD_LIB_C = """
unsigned cfnet_version_number(void) { return %d; }
const char *cfnet_version_string(void) { return "%s"; }
"""


class FallbackTest(unittest.TestCase):
    """A libcfnet that pkg-config names but that the binding cannot use (an older version, one
    lacking functions, a file that is no library) is passed over for the next candidate, here
    the build tree of a copy of the package; with none usable, the error names each candidate
    and why it was refused. An unusable $CFNET_LIBRARY stays an error."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.tmp.name
        cc = compiler()
        if cc is None:
            raise unittest.SkipTest("no C compiler to build the old libraries")
        # tree/python/cfnet: a copy of the package whose "build tree" is tree/lib
        cls.tree = os.path.join(d, "tree")
        shutil.copytree(os.path.join(REPO, "python", "cfnet"),
                        os.path.join(cls.tree, "python", "cfnet"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        cls.dirs = {}
        for name, number, text in (("old", 9, "0.0.9"), ("major", 10000, "1.0.0"),
                                   ("lacking", 100, "0.1.0")):
            libdir = os.path.join(d, name)
            os.mkdir(libdir)
            src = os.path.join(d, name + ".c")
            with open(src, "w") as f:
                f.write(OLD_LIB_C % (number, text))
            subprocess.run([cc, "-shared", "-fPIC", "-o", os.path.join(libdir, "libcfnet.so"),
                            src], check=True, timeout=120)
            cls.dirs[name] = libdir
        libdir = os.path.join(d, "text")
        os.mkdir(libdir)
        with open(os.path.join(libdir, "libcfnet.so"), "w") as f:
            f.write("INPUT(-lcfnet_not_a_library)\n")
        cls.dirs["text"] = libdir
        # An old library with libcfnet's soname: unloaded when refused ("soname"), or linked
        # with -z nodelete, so that it stays loaded ("nodelete"); and "system", a directory
        # holding the library under test by its soname, put on LD_LIBRARY_PATH.
        for name, flags in (("soname", []), ("nodelete", ["-Wl,-z,nodelete"])):
            libdir = os.path.join(d, name)
            os.mkdir(libdir)
            subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libcfnet.so.0"] + flags
                           + ["-o", os.path.join(libdir, "libcfnet.so"),
                              os.path.join(d, "old.c")], check=True, timeout=120)
            cls.dirs[name] = libdir
        cls.system = os.path.join(d, "system")
        os.mkdir(cls.system)
        shutil.copy(os.environ["CFNET_LIBRARY"], os.path.join(cls.system, "libcfnet.so.0"))
        os.symlink("libcfnet.so.0", os.path.join(cls.system, "libcfnet.so"))  # find_library's
        cls.bin = os.path.join(d, "bin")
        os.mkdir(cls.bin)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_tree(self, libdir, build_tree, cfnet_library=None, system=None):
        """cfnet.library_path() of the package copy, with a pkg-config on PATH that names
        libdir; the copy's build tree holds the library under test when build_tree."""
        pc = os.path.join(self.bin, "pkg-config")
        with open(pc, "w") as f:
            f.write("#!/bin/sh\n[ \"$*\" = \"--variable=libdir cfnet\" ] || exit 1\n"
                    "echo '%s'\n" % libdir)
        os.chmod(pc, 0o755)
        lib = os.path.join(self.tree, "lib")
        shutil.rmtree(lib, ignore_errors=True)
        if build_tree:
            os.mkdir(lib)
            shutil.copy(os.environ["CFNET_LIBRARY"], os.path.join(lib, "libcfnet.so"))
        env = {k: v for k, v in os.environ.items() if k != "CFNET_LIBRARY"}
        if cfnet_library:
            env["CFNET_LIBRARY"] = cfnet_library
        env["PATH"] = self.bin + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = os.path.join(self.tree, "python")
        if system:
            env["LD_LIBRARY_PATH"] = system
        code = ("import os, cfnet\ntry:\n    print('OK', os.path.realpath(cfnet.library_path()))"
                "\nexcept OSError as e:\n    print('OSError', e)\n")
        r = run_python(code, env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_unusable_pkg_config_library_falls_back_to_the_build_tree(self):
        tree = os.path.realpath(os.path.join(self.tree, "lib", "libcfnet.so"))
        for name in ("old", "major", "lacking", "text"):
            with self.subTest(name):
                self.assertEqual(self.run_tree(self.dirs[name], True), "OK " + tree)

    def test_error_names_every_candidate_and_why(self):
        import ctypes.util
        if ctypes.util.find_library("cfnet"):
            self.skipTest("a libcfnet on the dynamic linker's path would be found last")
        old = os.path.join(self.dirs["old"], "libcfnet.so")
        out = self.run_tree(self.dirs["old"], False)
        self.assertTrue(out.startswith("OSError no usable libcfnet"), out)
        self.assertIn("pkg-config: %s (version 0.0.9; this binding needs 0.x with x >= 1)" % old,
                      out)
        self.assertIn("build tree: ", out)
        self.assertIn("lib/libcfnet.so (absent)", out)
        self.assertIn("system: none on the dynamic linker's search path", out)
        for name, why in (("major", "version 1.0.0; this binding needs 0.x"),
                          ("lacking", "version 0.1.0 lacks "),
                          ("text", "not loadable: ")):
            out = self.run_tree(self.dirs[name], False)
            self.assertIn("pkg-config: %s (%s"
                          % (os.path.join(self.dirs[name], "libcfnet.so"), why), out)

    def test_refused_library_of_the_same_soname_does_not_hide_the_system_one(self):
        # The system's library is found by its soname, libcfnet.so.0, the soname of the refused
        # one too: dlopen must not answer with the refused library, unloaded or (nodelete) not.
        import ctypes.util
        if ctypes.util.find_library("cfnet"):
            self.skipTest("a libcfnet on the dynamic linker's path would be found instead")
        for name in ("soname", "nodelete"):
            with self.subTest(name):
                # library_path() is the file, or the soname the linker was asked for
                out = self.run_tree(self.dirs[name], False, system=self.system)
                self.assertTrue(out.startswith("OK ") and out.endswith("/libcfnet.so.0"), out)

    def test_unusable_cfnet_library_is_an_error(self):
        # The build tree holds a good library, but the user asked for another.
        for name, why in (("old", "version 0.0.9"), ("lacking", "lacks "),
                          ("text", "not loadable")):
            with self.subTest(name):
                path = os.path.join(self.dirs[name], "libcfnet.so")
                out = self.run_tree(self.dirs["old"], True, cfnet_library=path)
                self.assertTrue(out.startswith("OSError CFNET_LIBRARY=%s: " % path), out)
                self.assertIn(why, out)


if __name__ == "__main__":
    unittest.main()
