"""The arguments of ``launch/spvis.launch.py``, shared with the examples that include it.

Every node parameter (`spvis_ros.params.PARAMETERS`) is a launch argument, with the table's
default, choices and description, plus the launch-only ones: ``cameras`` / ``image_topics``
(parameter and remappings together), ``namespace``, ``use_sim_time``, ``params_file`` (a YAML
parameters file), ``fastdds_profile`` and ``shutdown_on_exit``.

Importable without ROS (launch and launch_ros are imported inside the functions that build
launch actions), so the launch files' logic is tested without a ROS install.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from spvis_ros.params import PARAMETERS, SPECS, launch_default

PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
NO_FILE = "none"
# Node parameters offered as launch arguments: all but `cameras`, which is launch-only
# (it goes with `image_topics`, which sets the remappings).
NODE_ARGUMENTS: tuple[str, ...] = tuple(s.name for s in PARAMETERS if s.name != "cameras")


class LaunchArgument(NamedTuple):
    """One launch argument: name, default ("" = none; None = computed by a substitution),
    description, choices."""

    name: str
    default: str | None
    description: str
    choices: tuple[str, ...] = ()


def launch_arguments() -> list[LaunchArgument]:
    """Every argument of spvis.launch.py, in declaration order."""
    args = [
        LaunchArgument("cameras", launch_default("cameras"),
                       "comma-separated camera names, e.g. front,rear"),
        LaunchArgument("image_topics", "/camera/image_raw",
                       "comma-separated absolute base image topics, one per camera (compressed: "
                       "<topic>/compressed is read)"),
        LaunchArgument("namespace", "spvis", "namespace of the node ('/' = none)"),
        LaunchArgument("use_sim_time", "false", "use /clock (bag replay): true or false"),
        LaunchArgument("params_file", "",
                       "YAML parameters file for the node (ros__parameters under /** or "
                       "/<namespace>/spvis); a launch argument given a value other than its "
                       "default overrides the file; empty or 'none' = no file"),
    ]
    for name in NODE_ARGUMENTS:
        spec = SPECS[name]
        constraint = spec.constraint_text() or ("true or false" if spec.kind == "bool" else "")
        if spec.kind == "string_array":
            constraint = "comma-separated"
        doc = spec.doc + (f" ({constraint})" if constraint and not spec.choices else "")
        args.append(LaunchArgument(name, launch_default(name), doc, spec.choices))
    args += [
        LaunchArgument(
            "fastdds_profile", None,
            "Fast DDS XML profile for the processes started from here on; default "
            "$FASTDDS_DEFAULT_PROFILES_FILE, else the shipped fastdds_shm.xml; 'none' = Fast DDS "
            "defaults"),
        LaunchArgument(
            "shutdown_on_exit", "true",
            "true: when the node exits the launch shuts down (exit 1 if the node failed); "
            "false: the rest of the launch (e.g. a parent bringup) goes on, the exit is logged"),
    ]
    return args


def declare_arguments(names: Iterable[str] | None = None) -> list[Any]:
    """``DeclareLaunchArgument`` actions for `launch_arguments()` (only `names`, if given),
    with their defaults, choices and descriptions; ``fastdds_profile`` defaults to
    ``$FASTDDS_DEFAULT_PROFILES_FILE``, else the shipped profile."""
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import EnvironmentVariable, PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    wanted = None if names is None else set(names)
    shipped_profile = PathJoinSubstitution(
        [FindPackageShare("spvis_ros"), "config", "fastdds_shm.xml"])
    declared = []
    for arg in launch_arguments():
        if wanted is not None and arg.name not in wanted:
            continue
        default: Any = arg.default
        if arg.name == "fastdds_profile":
            default = EnvironmentVariable(PROFILE_VAR, default_value=shipped_profile)
        kwargs: dict[str, Any] = {"default_value": default, "description": arg.description}
        if arg.choices:
            kwargs["choices"] = list(arg.choices)
        declared.append(DeclareLaunchArgument(arg.name, **kwargs))
    return declared


def undeclared_warnings(configurations: Iterable[str]) -> list[str]:
    """Warnings for launch configurations that look like a misspelt argument of ours.

    ``ros2 launch`` accepts any ``name:=value`` and ignores names no file declares, so
    ``score_treshold:=0.9`` would pass silently. Only close matches are reported: a parent
    launch file may carry unrelated configurations."""
    declared = [a.name for a in launch_arguments()]
    out = []
    for name in sorted(set(configurations) - set(declared)):
        close = difflib.get_close_matches(name, declared, n=1, cutoff=0.8)
        if close:
            out.append(f"launch argument {name!r} is not an argument of spvis.launch.py and is "
                       f"ignored (did you mean {close[0]}?)")
    return out


def params_file_names(path: str) -> set[str]:
    """The parameter names a ROS parameters file sets, under any node key (``/**``,
    ``/spvis/spvis``, ...). Raises ValueError naming the file when it is not such a file."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"launch argument params_file={path!r}: cannot read it as YAML "
                         f"({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("ros__parameters"), dict)
            for v in data.values()):
        raise ValueError(f"launch argument params_file={path!r}: not a ROS parameters file "
                         "(expected <node>: {ros__parameters: {name: value, ...}}, e.g. "
                         "/**: {ros__parameters: {score_threshold: 0.3}})")
    names: set[str] = set()
    for entry in data.values():
        names.update(_flatten(entry["ros__parameters"]))
    return names


def _flatten(params: dict, prefix: str = "") -> list[str]:
    """Parameter names of a ros__parameters mapping (nested mappings are dotted names)."""
    out = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, f"{name}.")
        else:
            out.append(name)
    return out
