"""Point the ROS 2 PyPI wheels' exported CMake targets at this interpreter's include dirs.

The ``ros-*`` wheels on PyPI were built under ``/opt/python/cp3XX-cp3XX`` (manylinux). Their
exported ``<pkg>__rosidl_generator_py`` targets in ``<prefix>/share/*/cmake/*.cmake`` keep that
builder's Python and NumPy include directories in ``INTERFACE_INCLUDE_DIRECTORIES``, so any
package that generates Python bindings against them (our ``msg/``) fails to configure or compile.

Run with the venv's own interpreter: ``<venv>/bin/python ros_fix_cmake_paths.py <venv>``.
Rewrites only the two known builder paths, so running it again changes nothing (idempotent).
Prints one summary line; exits non-zero if a builder path is still left afterwards.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

# The wheel builder's interpreter include dir, e.g. /opt/python/cp311-cp311/include/python3.11
PY_INCLUDE_RE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
# The wheel builder's NumPy include dir (NumPy 2 layout; NumPy 1 had numpy/core/include).
NUMPY_INCLUDE_RE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_?core/include"
)
BUILDER_RE = re.compile(r"/opt/python/cp3\d+-cp3\d+")


def target_paths() -> tuple[str, str]:
    """Return this interpreter's (Python include dir, NumPy include dir)."""
    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    for path in (py_include, np_include):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"include directory does not exist: {path}")
    return py_include, np_include


def fix_prefix(prefix: Path) -> tuple[int, list[Path]]:
    """Rewrite builder include paths under ``prefix/share/*/cmake``.

    Returns the number of files changed and the files that still mention a builder path.
    """
    py_include, np_include = target_paths()
    changed = 0
    leftovers: list[Path] = []
    for cmake_file in sorted(prefix.glob("share/*/cmake/*.cmake")):
        text = cmake_file.read_text(encoding="utf-8")
        if "/opt/python/" not in text:
            continue
        new = NUMPY_INCLUDE_RE.sub(lambda _m: np_include, text)
        new = PY_INCLUDE_RE.sub(lambda _m: py_include, new)
        if new != text:
            cmake_file.write_text(new, encoding="utf-8")
            changed += 1
        if BUILDER_RE.search(new):
            leftovers.append(cmake_file)
    return changed, leftovers


def main(argv: list[str]) -> int:
    """Command-line entry point: ``ros_fix_cmake_paths.py PREFIX``."""
    if len(argv) != 2:
        print(f"usage: {argv[0]} PREFIX", file=sys.stderr)
        return 2
    prefix = Path(argv[1]).resolve()
    if not (prefix / "share").is_dir():
        print(f"error: {prefix}/share does not exist (ROS wheels not installed?)", file=sys.stderr)
        return 1
    try:
        changed, leftovers = fix_prefix(prefix)
    except (KeyError, FileNotFoundError) as exc:
        print(f"error: cannot determine include paths: {exc}", file=sys.stderr)
        return 1
    if leftovers:
        for path in leftovers:
            print(f"error: builder path still present in {path}", file=sys.stderr)
        return 1
    print(f"rewrote builder include paths in {changed} cmake file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
