"""setup.py as colcon runs it (the robot install: `colcon build`, `--symlink-install`).

- colcon's ament_python identification runs ``run_setup('setup.py', script_args=('--dry-run',),
  stop_after='config')`` in a subprocess and parses its stdout with ``ast.literal_eval``
  (colcon_python_setup_py, `_get_setup_information`): anything else setup.py writes to stdout
  breaks the parse, and the package fails before anything is compiled.
- ``colcon build --symlink-install`` runs ``setup.py develop`` from the build directory, which
  holds links to setup.py, setup.cfg, the packages and the data_files folders, but not to
  ``csrc/``: the extension's sources must not be relative to the working directory.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# colcon's probe, as colcon_python_setup_py 0.2.9 writes it, reduced to the data we check. The
# extension's sources are printed on stderr (they are skipped in colcon's own data).
PROBE = "\n".join([
    "import sys",
    "from contextlib import suppress",
    "with suppress(ImportError):",
    "    from packaging.specifiers import SpecifierSet",
    "from distutils.core import run_setup",
    "dist = run_setup('setup.py', script_args=('--dry-run',), stop_after='config')",
    "data = {'name': dist.metadata.name, 'version': dist.metadata.version,",
    "        'packages': list(dist.packages), 'data_files': list(dist.data_files)}",
    "sys.stdout.buffer.write(repr(data).encode('utf-8'))",
    "import json",
    "print(json.dumps([s for e in dist.ext_modules for s in e.sources]), file=sys.stderr)",
])


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", SPVIS_WITH_CUDA="0")
    env.pop("DISTUTILS_DEBUG", None)  # colcon drops it too
    return env


def _probe(cwd: Path) -> tuple[str, str]:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=_env(),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, result.stderr


def test_colcon_probe_reads_only_the_setup_data_on_stdout():
    stdout, stderr = _probe(REPO)
    data = ast.literal_eval(stdout)  # what colcon does; a printed note makes this fail
    assert data["name"] == "spvis_ros" and data["version"] == "0.1.0"
    assert "spvis_ros" in data["packages"] and "spvis_model" in data["packages"]
    assert ("share/spvis_ros", ["package.xml"]) in [(d, list(f)) for d, f in data["data_files"]]
    # The build note is still shown, on stderr.
    assert "spvis: building MSDeformAttn with CPU kernels only" in stderr


def test_setup_py_name_prints_only_the_name():
    result = subprocess.run([sys.executable, "setup.py", "--name"], cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "spvis_ros\n"


def test_extension_sources_found_from_a_symlinked_build_directory(tmp_path):
    """The --symlink-install build directory: setup.py (and setup.cfg) are links into the source
    tree, csrc/ is not there. The sources must still name the real files."""
    build = tmp_path / "build" / "spvis_ros"
    build.mkdir(parents=True)
    for name in ("setup.py", "setup.cfg", "package.xml", "spvis_model", "spvis_ros"):
        (build / name).symlink_to(REPO / name)
    _, stderr = _probe(build)
    sources = json.loads(stderr.strip().splitlines()[-1])
    assert sources, stderr
    for source in sources:
        assert Path(source).is_absolute(), sources
        assert Path(source).is_file(), source
        assert Path(source).resolve().is_relative_to(REPO / "csrc"), source
