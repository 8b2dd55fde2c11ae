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


if __name__ == "__main__":
    unittest.main()
