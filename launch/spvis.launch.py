"""Launch the spvis perception node: one (lifecycle) node for one or more cameras.

    ros2 launch spvis_ros spvis.launch.py
    ros2 launch spvis_ros spvis.launch.py cameras:=front,rear \\
        image_topics:=/front/image_raw,/rear/image_raw device:=cuda precision:=float16
    ros2 launch spvis_ros spvis.launch.py params_file:=/path/spvis.yaml

Arguments (``ros2 launch spvis_ros spvis.launch.py --show-args``;
`spvis_ros.launch_arguments.launch_arguments()` lists them with their defaults):

- ``cameras``: comma-separated camera names (letters, digits, ``_``), default ``cam0``.
- ``image_topics``: comma-separated absolute base image topics, one per camera, default
  ``/camera/image_raw``. Camera ``c`` reads ``c/image_raw``, remapped to the topic; with
  ``transport:=compressed`` the node follows image_transport and subscribes to
  ``<topic>/compressed``.
- ``namespace`` (``spvis``; ``/`` = none), ``use_sim_time`` (false).
- ``params_file``: a YAML parameters file for the node (``/**:`` or ``/spvis/spvis:`` then
  ``ros__parameters:``). A launch argument given a value other than its default overrides the
  file; one left at its default is not passed, so the file (or the node's default) decides.
  ``cameras`` always comes from the launch argument (it goes with ``image_topics``).
- every node parameter (``autostart``, ``checkpoint`` (``~`` expanded; omit it for the
  packaged model), ``device``, ``precision``, ``backend``, ``onnx``, ``capture``, ``mask_refine``,
  ``batch_cameras``, ``transport``, ``input_reliability``, ``input_depth``,
  ``score_threshold``, ``max_instances``, ``keep_seconds``, ``max_gap_s``, ``class_filter``
  (comma-separated), ``mask_encoding``, ``id_prefix``, ``publish_*``, ``stale_input_s``):
  names, defaults, choices and checks come from the node's parameter table
  (``spvis_ros.params``), so they cannot drift from the node.
- ``fastdds_profile``: the Fast DDS XML profile for every process this launch starts from here
  on (``FASTDDS_DEFAULT_PROFILES_FILE``). Default: ``$FASTDDS_DEFAULT_PROFILES_FILE`` if set,
  else the shipped ``share/spvis_ros/config/fastdds_shm.xml`` (32 MB shared-memory segment, so
  best-effort 1080p images are not dropped). ``none`` = no profile (Fast DDS defaults); write
  ``none``, not ``""``: ``ros2 launch`` refuses empty argument values.
- ``shutdown_on_exit`` (true): see below.

``ros2 launch`` ignores argument names that no launch file declares; a name close to one of
ours (``score_treshold:=0.9``) is warned about.

The profile is set launch-wide, not only for the node, because it is the *publisher's*
shared-memory segment that carries an image: camera drivers started after this file (e.g. by a
parent launch file, after its include of this one) get it too.

When the node exits, the launch shuts down (``shutdown_on_exit:=true``, the default):
``ros2 launch`` then exits 0 if the node exited 0, and 1 otherwise (launch cannot pass the
node's own code on; the log names it, e.g. ``spvis_node exited with code 2`` for a bad
checkpoint). A supervisor sees the failure. A node ended by the launch's own shutdown (Ctrl-C:
SIGINT, then SIGTERM) is not a failure. With ``shutdown_on_exit:=false`` (a parent bringup that
must outlive the node) the exit is only logged.

The launch module imports ``launch`` / ``launch_ros`` only inside functions, so
`node_settings` (argument strings -> node configuration, with the checks) and `exit_outcome`
are importable and tested without a ROS install (``test/test_launch_files.py``).
"""

from __future__ import annotations

import os
import re
import signal
from typing import TYPE_CHECKING, Any, NamedTuple

from spvis_ros.launch_arguments import (
    NO_FILE,
    NODE_ARGUMENTS,
    PROFILE_VAR,
    LaunchArgument,
    declare_arguments,
    launch_arguments,
    params_file_names,
    undeclared_warnings,
)
from spvis_ros.params import SPECS, ParameterError, check_value, parse_text
from spvis_ros.transports import DEFAULT_BASE_TOPIC

if TYPE_CHECKING:
    from launch.action import Action
    from launch.events.process import ProcessExited

    from launch import LaunchContext, LaunchDescription

__all__ = ["NODE_ARGUMENTS", "LaunchArgument", "launch_arguments", "node_settings"]

PROFILE_CHOICE_VAR = "SPVIS_FASTDDS_PROFILE"  # read by spvis_ros.dds.apply_default_profile
NO_PROFILE = NO_FILE
_TOPIC = re.compile(r"^(/[A-Za-z0-9_]+)+$")
# Exit codes of a node ended by a signal the launch itself sends while shutting down (Ctrl-C:
# SIGINT, then SIGTERM after sigterm_timeout): -N when the process died of signal N, 128 + N
# when it exited with the shell's code for it.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOPPED_CODES = frozenset([-int(s) for s in _STOP_SIGNALS] + [128 + int(s) for s in _STOP_SIGNALS])


class NodeSettings(NamedTuple):
    """What the launch arguments turn into: the node's namespace, its parameter files (the
    ``params_file``) and parameters (typed: ``cameras`` and every argument whose value differs
    from its default; they override the files), topic remappings, the Fast DDS profile path
    ("" = none), and whether the node's exit ends the launch.

    A NamedTuple, not a dataclass: launch executes this file as a module that is not in
    ``sys.modules``, and ``@dataclass`` fails there (it looks the module up).
    """

    namespace: str | None
    parameter_files: list[str]
    parameters: dict[str, Any]
    remappings: list[tuple[str, str]]
    fastdds_profile: str
    shutdown_on_exit: bool


def _split(name: str, value: str) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise ValueError(f"launch argument {name}={value!r}: must be a comma-separated list "
                         "without empty entries")
    return items


def node_settings(**arguments: str) -> NodeSettings:
    """Check the launch argument strings (every name of `launch_arguments()`) and turn them into
    the node's configuration.

    Raises ``ValueError`` naming the argument and its value.
    """
    expected = {a.name for a in launch_arguments()}
    if set(arguments) != expected:
        missing, extra = sorted(expected - set(arguments)), sorted(set(arguments) - expected)
        raise ValueError(f"node_settings: missing arguments {missing}, unknown {extra}")
    try:
        # Only values that differ from the node's default: one left at its default must not
        # override params_file (launch cannot tell "given" from "defaulted").
        params = {}
        for name in NODE_ARGUMENTS:
            value = parse_text(name, arguments[name])
            if value != check_value(name, SPECS[name].default):
                params[name] = value
        cams = parse_text("cameras", arguments["cameras"])
        if _bool("use_sim_time", arguments["use_sim_time"]):
            params["use_sim_time"] = True
        shutdown_on_exit = _bool("shutdown_on_exit", arguments["shutdown_on_exit"])
    except ParameterError as exc:
        raise ValueError(str(exc)) from None
    params["cameras"] = cams  # always: the remappings below are made for these cameras
    topics = [t.rstrip("/") or t for t in _split("image_topics", arguments["image_topics"])]
    if len(topics) != len(cams):
        raise ValueError(f"launch argument image_topics={arguments['image_topics']!r}: "
                         f"{len(topics)} topic(s) for {len(cams)} camera(s) in cameras="
                         f"{arguments['cameras']!r}; give one per camera")
    for topic in topics:
        if not _TOPIC.match(topic):
            raise ValueError(f"launch argument image_topics={arguments['image_topics']!r}: "
                             f"{topic!r} is not an absolute topic name (a relative one would "
                             "resolve inside the node's namespace)")
    namespace = arguments["namespace"].strip()
    return NodeSettings(
        namespace=None if namespace in ("", "/") else namespace,
        parameter_files=_params_file(arguments["params_file"]),
        parameters=params,
        # The base topic only: the node appends the transport's suffix to the remapped base.
        remappings=[(f"{cam}/{DEFAULT_BASE_TOPIC}", topic)
                    for cam, topic in zip(cams, topics, strict=True)],
        fastdds_profile=_profile(arguments["fastdds_profile"]),
        shutdown_on_exit=shutdown_on_exit,
    )


def _params_file(text: str) -> list[str]:
    """[the params_file path] ([] = none); the file must exist and be a parameters file."""
    given = text.strip()
    if not given or given.lower() == NO_FILE:
        return []
    path = os.path.abspath(os.path.expanduser(given))
    if not os.path.isfile(path):
        raise ValueError(f"launch argument params_file={text!r}: no such file "
                         f"({NO_FILE!r} = no file)")
    params_file_names(path)  # raises ValueError naming the file when it is not one
    return [path]


def _bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ParameterError(f"launch argument {name}={text!r}: must be true or false")
    return value in ("true", "1", "yes", "on")


def _profile(text: str) -> str:
    """The profile path ("" = none) of the fastdds_profile argument."""
    profile = text.strip()
    if not profile or profile.lower() == NO_PROFILE:
        return ""
    path = os.path.abspath(os.path.expanduser(profile))
    if not os.path.isfile(path):
        raise ValueError(f"launch argument fastdds_profile={text!r}: no such file "
                         f"({NO_PROFILE!r} = no profile)")
    return path


def exit_outcome(returncode: int | None, shutting_down: bool = False) -> tuple[bool, str]:
    """(failed, message) for the node process exiting with ``returncode``. While the launch
    is shutting down (Ctrl-C), a node ended by the launch's SIGINT / SIGTERM did not fail."""
    if returncode == 0:
        return False, "spvis_node exited (code 0); shutting the launch down"
    if shutting_down and returncode in STOPPED_CODES:
        return False, (f"spvis_node stopped by the launch's shutdown (code {returncode}); "
                       "shutting the launch down")
    return True, (f"spvis_node exited with code {returncode}; shutting the launch down "
                  "(see the node's log above for why)")


class NodeExitedError(RuntimeError):
    """Raised by the on_exit handler so that ``ros2 launch`` exits non-zero."""


def _on_node_exit(event: ProcessExited, context: LaunchContext) -> list[Action]:
    """on_exit of the node: shut the launch down; fail it (exit 1) when the node failed."""
    from launch.actions import Shutdown

    failed, message = exit_outcome(event.returncode, shutting_down=context.is_shutdown)
    if failed:
        # An exception in an event handler makes LaunchService.run() shut everything down and
        # return 1, which `ros2 launch` exits with.
        raise NodeExitedError(message)
    return [Shutdown(reason=message)]


def _on_node_exit_logged(event: ProcessExited, context: LaunchContext) -> list[Action]:
    """on_exit with shutdown_on_exit:=false: log the exit; the launch goes on."""
    import launch.logging

    failed, message = exit_outcome(event.returncode, shutting_down=context.is_shutdown)
    message = message.replace("shutting the launch down", "the launch goes on "
                              "(shutdown_on_exit:=false)")
    logger = launch.logging.get_logger("spvis.launch")
    (logger.error if failed else logger.info)(message)
    return []


def _launch_setup(context: LaunchContext) -> list[Action]:
    """OpaqueFunction body: read the arguments, set the profile, create the node."""
    import launch.logging
    from launch.actions import SetEnvironmentVariable, UnsetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    logger = launch.logging.get_logger("spvis.launch")
    for warning in undeclared_warnings(context.launch_configurations):
        logger.warning(warning)
    settings = node_settings(**{a.name: LaunchConfiguration(a.name).perform(context)
                                for a in launch_arguments()})
    for path in settings.parameter_files:
        if "cameras" in params_file_names(path):
            logger.warning(f"params_file {path}: its 'cameras' is replaced by the launch "
                           f"argument cameras={','.join(settings.parameters['cameras'])} "
                           "(which goes with image_topics): give cameras:=... image_topics:=...")
    actions: list[Action] = []
    if settings.fastdds_profile:
        actions.append(SetEnvironmentVariable(PROFILE_VAR, settings.fastdds_profile))
    else:
        actions.append(UnsetEnvironmentVariable(PROFILE_VAR))
    # Tells spvis_ros.dds.apply_default_profile in the node what was chosen here ("" = none).
    actions.append(SetEnvironmentVariable(PROFILE_CHOICE_VAR, settings.fastdds_profile))
    actions.append(
        Node(
            package="spvis_ros",
            executable="spvis_node",
            name="spvis",
            namespace=settings.namespace,
            # Files first: the typed launch values after them win.
            parameters=[*settings.parameter_files, settings.parameters],
            remappings=settings.remappings,
            output="screen",
            emulate_tty=True,
            on_exit=_on_node_exit if settings.shutdown_on_exit else _on_node_exit_logged,
        )
    )
    return actions


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments of `launch_arguments()`; the node is created by an
    OpaqueFunction (list-valued arguments, checks)."""
    from launch.actions import OpaqueFunction

    from launch import LaunchDescription

    return LaunchDescription([*declare_arguments(), OpaqueFunction(function=_launch_setup)])
