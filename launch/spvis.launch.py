"""Launch the spvis perception node: one (lifecycle) node for one or more cameras.

    ros2 launch spvis_ros spvis.launch.py
    ros2 launch spvis_ros spvis.launch.py cameras:=front,rear \\
        image_topics:=/front/image_raw,/rear/image_raw device:=cuda precision:=float16

Arguments (``ros2 launch spvis_ros spvis.launch.py --show-args``; `launch_arguments()` lists
them with their defaults):

- ``cameras``: comma-separated camera names (letters, digits, ``_``), default ``cam0``.
- ``image_topics``: comma-separated absolute base image topics, one per camera, default
  ``/camera/image_raw``. Camera ``c`` reads ``c/image_raw``, remapped to the topic; with
  ``transport:=compressed`` the node follows image_transport and subscribes to
  ``<topic>/compressed``.
- ``namespace`` (``spvis``; ``/`` = none), ``use_sim_time`` (false).
- the node parameters ``autostart``, ``checkpoint`` (``~`` expanded; omit it for the packaged
  model), ``device``, ``precision``, ``transport``, ``score_threshold``, ``keep_seconds``,
  ``max_gap_s`` and ``mask_encoding``: names, defaults, choices and checks come from the node's
  parameter table (``spvis_ros.params``), so they cannot drift from the node.
- ``fastdds_profile``: the Fast DDS XML profile for every process this launch starts from here
  on (``FASTDDS_DEFAULT_PROFILES_FILE``). Default: ``$FASTDDS_DEFAULT_PROFILES_FILE`` if set,
  else the shipped ``share/spvis_ros/config/fastdds_shm.xml`` (32 MB shared-memory segment, so
  best-effort 1080p images are not dropped). ``none`` = no profile (Fast DDS defaults); write
  ``none``, not ``""``: ``ros2 launch`` refuses empty argument values.

The profile is set launch-wide, not only for the node, because it is the *publisher's*
shared-memory segment that carries an image: camera drivers started after this file (e.g. by a
parent launch file, after its include of this one) get it too.

When the node exits, the launch shuts down: ``ros2 launch`` then exits 0 if the node exited 0,
and 1 otherwise (launch cannot pass the node's own code on; the log names it, e.g. ``spvis_node
exited with code 2`` for a bad checkpoint). A supervisor sees the failure.

The launch module imports ``launch`` / ``launch_ros`` only inside functions, so
`launch_arguments` and `node_settings` (argument strings -> node configuration, with the
checks) are importable and tested without a ROS install (``test/test_launch_files.py``).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from spvis_ros.params import SPECS, ParameterError, launch_default, parse_text
from spvis_ros.transports import DEFAULT_BASE_TOPIC

if TYPE_CHECKING:
    from launch.action import Action
    from launch.events.process import ProcessExited

    from launch import LaunchContext, LaunchDescription

PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILE_CHOICE_VAR = "SPVIS_FASTDDS_PROFILE"  # read by spvis_ros.dds.apply_default_profile
NO_PROFILE = "none"
# Node parameters offered as launch arguments (their defaults, choices and docs: spvis_ros.params).
NODE_ARGUMENTS = ("autostart", "checkpoint", "device", "precision", "transport",
                  "score_threshold", "keep_seconds", "max_gap_s", "mask_encoding")
_TOPIC = re.compile(r"^(/[A-Za-z0-9_]+)+$")


class LaunchArgument(NamedTuple):
    """One launch argument: name, default ("" = none; None = computed by a substitution),
    description, choices."""

    name: str
    default: str | None
    description: str
    choices: tuple[str, ...] = ()


class NodeSettings(NamedTuple):
    """What the launch arguments turn into: the node's namespace, its parameters (typed), topic
    remappings, and the Fast DDS profile path ("" = none).

    A NamedTuple, not a dataclass: launch executes this file as a module that is not in
    ``sys.modules``, and ``@dataclass`` fails there (it looks the module up).
    """

    namespace: str | None
    parameters: dict[str, Any]
    remappings: list[tuple[str, str]]
    fastdds_profile: str


def launch_arguments() -> list[LaunchArgument]:
    """Every argument of this file, in declaration order."""
    args = [
        LaunchArgument("cameras", launch_default("cameras"),
                       "comma-separated camera names, e.g. front,rear"),
        LaunchArgument("image_topics", "/camera/image_raw",
                       "comma-separated absolute base image topics, one per camera (compressed: "
                       "<topic>/compressed is read)"),
        LaunchArgument("namespace", "spvis", "namespace of the node ('/' = none)"),
        LaunchArgument("use_sim_time", "false", "use /clock (bag replay): true or false"),
    ]
    for name in NODE_ARGUMENTS:
        spec = SPECS[name]
        constraint = spec.constraint_text() or ("true or false" if spec.kind == "bool" else "")
        doc = spec.doc + (f" ({constraint})" if constraint and not spec.choices else "")
        args.append(LaunchArgument(name, launch_default(name), doc, spec.choices))
    args.append(LaunchArgument(
        "fastdds_profile", None,
        "Fast DDS XML profile for the processes started from here on; default "
        "$FASTDDS_DEFAULT_PROFILES_FILE, else the shipped fastdds_shm.xml; 'none' = Fast DDS "
        "defaults"))
    return args


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
        params = {name: parse_text(name, arguments[name]) for name in NODE_ARGUMENTS}
        cams = parse_text("cameras", arguments["cameras"])
        params["use_sim_time"] = _bool("use_sim_time", arguments["use_sim_time"])
    except ParameterError as exc:
        raise ValueError(str(exc)) from None
    params["cameras"] = cams
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
        parameters=params,
        # The base topic only: the node appends the transport's suffix to the remapped base.
        remappings=[(f"{cam}/{DEFAULT_BASE_TOPIC}", topic)
                    for cam, topic in zip(cams, topics, strict=True)],
        fastdds_profile=_profile(arguments["fastdds_profile"]),
    )


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


def exit_outcome(returncode: int | None) -> tuple[bool, str]:
    """(failed, message) for the node process exiting with ``returncode``."""
    if returncode == 0:
        return False, "spvis_node exited (code 0); shutting the launch down"
    return True, (f"spvis_node exited with code {returncode}; shutting the launch down "
                  "(see the node's log above for why)")


class NodeExitedError(RuntimeError):
    """Raised by the on_exit handler so that ``ros2 launch`` exits non-zero."""


def _on_node_exit(event: ProcessExited, context: LaunchContext) -> list[Action]:
    """on_exit of the node: shut the launch down; fail it (exit 1) when the node failed."""
    from launch.actions import Shutdown

    del context
    failed, message = exit_outcome(event.returncode)
    if failed:
        # An exception in an event handler makes LaunchService.run() shut everything down and
        # return 1, which `ros2 launch` exits with.
        raise NodeExitedError(message)
    return [Shutdown(reason=message)]


def _launch_setup(context: LaunchContext) -> list[Action]:
    """OpaqueFunction body: read the arguments, set the profile, create the node."""
    from launch.actions import SetEnvironmentVariable, UnsetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    settings = node_settings(**{a.name: LaunchConfiguration(a.name).perform(context)
                                for a in launch_arguments()})
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
            parameters=[settings.parameters],
            remappings=settings.remappings,
            output="screen",
            emulate_tty=True,
            on_exit=_on_node_exit,
        )
    )
    return actions


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments of `launch_arguments()`; the node is created by an
    OpaqueFunction (list-valued arguments, checks)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import EnvironmentVariable, PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    from launch import LaunchDescription

    shipped_profile = PathJoinSubstitution(
        [FindPackageShare("spvis_ros"), "config", "fastdds_shm.xml"])
    entities: list[Any] = []
    for arg in launch_arguments():
        default: Any = arg.default
        if arg.name == "fastdds_profile":
            default = EnvironmentVariable(PROFILE_VAR, default_value=shipped_profile)
        kwargs: dict[str, Any] = {"default_value": default, "description": arg.description}
        if arg.choices:
            kwargs["choices"] = list(arg.choices)
        entities.append(DeclareLaunchArgument(arg.name, **kwargs))
    entities.append(OpaqueFunction(function=_launch_setup))
    return LaunchDescription(entities)
