"""The shipped Fast DDS profile (``config/fastdds_shm.xml``): where it is and how to apply it.

With Fast DDS defaults the shared-memory (SHM) transport has a 512 KB segment per process, and
best-effort images of 640x480 and larger are mostly dropped between processes on one host. The
shipped profile replaces the default transports with the same two (SHM + UDPv4) but a 32 MB SHM
segment. It is the *publisher's* segment that carries a sample, so the profile matters in the
processes that publish images (camera drivers; this node for its overlay/labels images).

Fast DDS reads the profile from ``FASTDDS_DEFAULT_PROFILES_FILE`` when a process creates its
first DDS participant (``rclpy.init()``), so the variable must be set before that: in the
environment of a child process (:func:`apply_default_profile`) or in ``os.environ`` of this
process before ``rclpy.init()`` (:func:`use_default_profile`).

Choice of profile, first match wins:

1. ``FASTDDS_DEFAULT_PROFILES_FILE`` (or the deprecated ``FASTRTPS_DEFAULT_PROFILES_FILE``)
   already set and not empty: the user's own profile, left alone.
2. ``SPVIS_FASTDDS_PROFILE`` set: empty or ``none`` = no profile (Fast DDS defaults); otherwise
   the path of the profile to use (must exist; ``~`` is expanded). The launch file sets it from
   its ``fastdds_profile`` argument.
3. The shipped profile, :func:`fastdds_profile_path`.

No other variable is needed: measured with rmw_fastrtps_cpp 9.3 / Fast DDS 3.2, the profile's
transports take effect with ``ROS_AUTOMATIC_DISCOVERY_RANGE`` LOCALHOST, SUBNET, SYSTEM_DEFAULT
or unset, and with or without ``RMW_FASTRTPS_USE_QOS_FROM_XML`` (see docs/ros.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

PACKAGE = "spvis_ros"
PROFILE_NAME = "fastdds_shm.xml"
PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
LEGACY_PROFILE_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"
CHOICE_VAR = "SPVIS_FASTDDS_PROFILE"
NO_PROFILE = "none"  # SPVIS_FASTDDS_PROFILE / the launch argument: Fast DDS defaults


def _candidates() -> list[Path]:
    """Places the shipped profile may be, in the order they are tried."""
    here = Path(__file__).resolve().parent  # .../spvis_ros
    found: list[Path] = [here.parent / "config" / PROFILE_NAME]  # source tree, editable install
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_path
    except ImportError:
        pass
    else:
        # OSError: AMENT_PREFIX_PATH not set.
        with contextlib.suppress(PackageNotFoundError, ValueError, OSError):
            found.append(get_package_share_path(PACKAGE, print_warning=False) / "config"
                         / PROFILE_NAME)
    # Installed: <prefix>/lib/pythonX.Y/site-packages/spvis_ros -> <prefix>/share/spvis_ros.
    found.extend(parent / "share" / PACKAGE / "config" / PROFILE_NAME
                 for parent in here.parents)
    found.append(Path(sys.prefix) / "share" / PACKAGE / "config" / PROFILE_NAME)
    return found


def fastdds_profile_path() -> Path:
    """The shipped ``fastdds_shm.xml``: next to the package in a source tree or editable
    install, else ``share/spvis_ros/config`` of the install (found through the ament index when
    ``ament_index_python`` is importable, else relative to the package and ``sys.prefix``).

    Raises ``FileNotFoundError`` listing the places tried.
    """
    tried = _candidates()
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{PROFILE_NAME} of {PACKAGE} not found; tried: " + ", ".join(str(p) for p in tried))


def apply_default_profile(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` in which Fast DDS will load the profile chosen as described in the
    module docstring: ``FASTDDS_DEFAULT_PROFILES_FILE`` is set to the shipped profile (or to
    ``SPVIS_FASTDDS_PROFILE``) unless the user already set it. An empty
    ``FASTDDS_DEFAULT_PROFILES_FILE`` is removed (Fast DDS logs an error for it and then uses
    its defaults anyway).

    Raises ``FileNotFoundError`` naming ``SPVIS_FASTDDS_PROFILE`` when it names a missing file.
    """
    out = dict(env)
    if out.get(PROFILE_VAR) or out.get(LEGACY_PROFILE_VAR):
        return out
    out.pop(PROFILE_VAR, None)
    out.pop(LEGACY_PROFILE_VAR, None)
    choice = out.get(CHOICE_VAR)
    if choice is None:
        out[PROFILE_VAR] = str(fastdds_profile_path())
    elif choice.strip() and choice.strip().lower() != NO_PROFILE:
        path = Path(choice.strip()).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{CHOICE_VAR}={choice!r}: no such file")
        out[PROFILE_VAR] = str(path.resolve())
    return out


def use_default_profile(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Apply :func:`apply_default_profile` to ``environ`` (default ``os.environ``) in place and
    return the profile path in effect (``None``: Fast DDS defaults).

    Call it before ``rclpy.init()``: Fast DDS reads the variable when the first participant is
    created and never again.
    """
    target = os.environ if environ is None else environ
    new = apply_default_profile(target)
    for key in (PROFILE_VAR, LEGACY_PROFILE_VAR):
        if key not in new:
            target.pop(key, None)
    target.update(new)
    return new.get(PROFILE_VAR) or new.get(LEGACY_PROFILE_VAR) or None
