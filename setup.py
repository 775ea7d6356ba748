"""Build and install spvis: the spvis_model / spvis_ros Python packages and the compiled op.

The extension ``spvis_model._C`` (csrc/) always gets the CPU kernels. The CUDA kernels are
compiled in when torch is a CUDA build and nvcc is found (``CUDA_HOME``), or when
``SPVIS_WITH_CUDA=1`` forces it; ``SPVIS_WITH_CUDA=0`` forces a CPU-only build.
``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures (e.g. "9.0" for the H100).

Install with the torch you run against already present and without build isolation:
``pip install -e . --no-build-isolation`` (``make setup`` does this).
"""

from __future__ import annotations

import os
import sys
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from torch.utils import cpp_extension

PACKAGE = "spvis_ros"
ROOT = Path(__file__).resolve().parent


def _want_cuda() -> bool:
    """Compile the CUDA kernels? SPVIS_WITH_CUDA=0/1 decides; else a CUDA torch and nvcc."""
    forced = os.environ.get("SPVIS_WITH_CUDA", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def _note(text: str) -> None:
    """A build note, on stderr: colcon (and other tools) parse setup.py's stdout as data."""
    print(f"spvis: {text}", file=sys.stderr, flush=True)


def _extension() -> cpp_extension.CppExtension:
    """The ``spvis_model._C`` extension: CPU kernels, plus the CUDA ones when wanted."""
    # Absolute paths: `colcon build --symlink-install` runs setup.py from the build directory,
    # which holds links to setup.py and the packages but not to csrc/ (ROOT follows the link).
    sources = [str(ROOT / "csrc" / "bindings.cpp"),
               str(ROOT / "csrc" / "cpu" / "ms_deform_attn_cpu.cpp")]
    cxx = ["-O3", "-std=c++17", "-fopenmp"]
    kwargs: dict = {
        "name": "spvis_model._C",
        "sources": sources,
        "extra_link_args": ["-fopenmp"],
        "define_macros": [],
    }
    if _want_cuda():
        _note("building MSDeformAttn with CPU and CUDA kernels")
        kwargs["sources"] = [*sources, str(ROOT / "csrc" / "cuda" / "ms_deform_attn_cuda.cu")]
        kwargs["define_macros"].append(("SPVIS_WITH_CUDA", None))
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": ["-O3", "-std=c++17"]}
        return cpp_extension.CUDAExtension(**kwargs)
    _note("building MSDeformAttn with CPU kernels only (no CUDA torch / nvcc)")
    kwargs["extra_compile_args"] = {"cxx": cxx}
    return cpp_extension.CppExtension(**kwargs)


setup(
    name=PACKAGE,
    version="0.1.0",
    description="SPVIS video instance segmentation as a ROS 2 perception node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["spvis_model", "spvis_model.*", "spvis_ros", "spvis_ros.*"]),
    package_data={"spvis_model": ["weights/*.pt", "classes/*.json"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.xml")),
    ],
    install_requires=["numpy", "pyyaml"],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "spvis = spvis_model.cli:main",
            "spvis_node = spvis_ros.node:main",
            "spvis-bag = spvis_ros.bag.cli:main",
        ],
    },
)
