"""Build hook of the cfnet package (metadata is in pyproject.toml): the version is libcfnet's,
read from ../include/cfnet/cfnet.h, and written into the built package as cfnet/_version.py,
so an installed copy knows its version without the source tree."""
import os
import re

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, os.pardir, "include", "cfnet", "cfnet.h")


def header_version():
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    parts = [re.search(r"^#define CFNET_VERSION_%s (\d+)" % p, text, re.M)
             for p in ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        raise RuntimeError("%s: CFNET_VERSION_MAJOR/MINOR/PATCH not found" % HEADER)
    return ".".join(m.group(1) for m in parts)


VERSION = header_version()


class BuildPy(build_py):
    def run(self):
        super().run()
        path = os.path.join(self.build_lib, "cfnet", "_version.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write('"""Written at build time from include/cfnet/cfnet.h."""\n')
            f.write("__version__ = %r\n" % VERSION)


setup(version=VERSION, cmdclass={"build_py": BuildPy})
