"""Launch the spvis perception node: one node for one or more cameras.

    ros2 launch spvis_ros spvis.launch.py
    ros2 launch spvis_ros spvis.launch.py cameras:=front,rear \\
        image_topics:=/front/image_raw,/rear/image_raw device:=cuda precision:=float16

Arguments (``ros2 launch spvis_ros spvis.launch.py --show-args``):

- ``cameras``: comma-separated camera names (letters, digits, ``_``), default ``cam0``.
- ``image_topics``: comma-separated absolute input topics, one per camera, default
  ``/camera/image_raw``. Camera ``c`` reads ``c/image`` (raw) or ``c/image/compressed``
  (compressed); they are remapped to ``<topic>`` and ``<topic>/compressed``.
- ``namespace`` (``spvis``), ``checkpoint`` (``""`` = the packaged model), ``device``
  (``auto|cuda|cuda:N|cpu``), ``precision`` (``float32|float16|bfloat16``), ``transport``
  (``raw|compressed``), ``score_threshold`` (0.5), ``keep_seconds`` (5.0), ``max_gap_s`` (5.0),
  ``use_sim_time`` (false): passed to the node as parameters.
- ``fastdds_profile``: the Fast DDS XML profile for every process this launch starts from here
  on (``FASTDDS_DEFAULT_PROFILES_FILE``). Default: ``$FASTDDS_DEFAULT_PROFILES_FILE`` if set,
  else the shipped ``share/spvis_ros/config/fastdds_shm.xml`` (32 MB shared-memory segment, so
  best-effort 1080p images are not dropped). ``""`` = no profile (Fast DDS defaults).

The profile is set launch-wide, not only for the node, because it is the *publisher's*
shared-memory segment that carries an image: camera drivers started after this file (e.g. by a
parent launch file, after its include of this one) get it too. Processes started elsewhere need
``FASTDDS_DEFAULT_PROFILES_FILE`` in their own environment.

The launch module imports ``launch`` / ``launch_ros`` only inside functions, so
``node_settings`` (argument strings -> node configuration, with the checks) is importable and
tested without a ROS install (``test/test_launch_files.py``).
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from launch.action import Action

    from launch import LaunchContext, LaunchDescription

PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILE_CHOICE_VAR = "SPVIS_FASTDDS_PROFILE"  # read by spvis_ros.dds.apply_default_profile

PRECISIONS = ("float32", "float16", "bfloat16")
TRANSPORTS = ("raw", "compressed")
_CAMERA = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^(/[A-Za-z0-9_]+)+$")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class NodeSettings(NamedTuple):
    """What the launch arguments turn into: the node's namespace, parameter values (typed),
    topic remappings, and the Fast DDS profile path ("" = none).

    A NamedTuple, not a dataclass: launch executes this file as a module that is not in
    ``sys.modules``, and ``@dataclass`` fails there (it looks the module up).
    """

    namespace: str | None
    checkpoint: str
    device: str
    precision: str
    cameras: list[str]
    transport: str
    score_threshold: float
    keep_seconds: float
    max_gap_s: float
    use_sim_time: bool
    remappings: list[tuple[str, str]]
    fastdds_profile: str


def _split(name: str, value: str) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise ValueError(f"launch argument {name}={value!r}: must be a comma-separated list "
                         "without empty entries")
    return items


def _number(name: str, value: str, low: float, high: float, *, low_open: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"launch argument {name}={value!r}: must be a number") from None
    if (not math.isfinite(number) or not (low < number if low_open else low <= number)
            or not number <= high):
        bound = f"({low}" if low_open else f"[{low}"
        raise ValueError(f"launch argument {name}={value!r}: must be a finite number in "
                         f"{bound}, {high}]")
    return number


def node_settings(
    *,
    cameras: str,
    image_topics: str,
    namespace: str,
    checkpoint: str,
    device: str,
    precision: str,
    transport: str,
    score_threshold: str,
    keep_seconds: str,
    max_gap_s: str,
    use_sim_time: str,
    fastdds_profile: str,
) -> NodeSettings:
    """Check the launch argument strings and turn them into the node's configuration.

    Raises ``ValueError`` naming the argument and its value.
    """
    cams = _split("cameras", cameras)
    for cam in cams:
        if not _CAMERA.match(cam):
            raise ValueError(f"launch argument cameras={cameras!r}: {cam!r} is not a name of "
                             "letters, digits and _ starting with a letter")
    if len(set(cams)) != len(cams):
        raise ValueError(f"launch argument cameras={cameras!r}: names must be unique")
    topics = [t.rstrip("/") or t for t in _split("image_topics", image_topics)]
    if len(topics) != len(cams):
        raise ValueError(f"launch argument image_topics={image_topics!r}: {len(topics)} topic(s) "
                         f"for {len(cams)} camera(s) in cameras={cameras!r}; give one per camera")
    for topic in topics:
        if not _TOPIC.match(topic):
            raise ValueError(f"launch argument image_topics={image_topics!r}: {topic!r} is not an "
                             "absolute topic name (a relative one would resolve inside the "
                             "node's namespace)")
    device = device.strip()
    if not _DEVICE.match(device):
        raise ValueError(f"launch argument device={device!r}: must be auto, cuda, cuda:N or cpu")
    if precision not in PRECISIONS:
        raise ValueError(f"launch argument precision={precision!r}: must be one of "
                         f"{', '.join(PRECISIONS)}")
    if transport not in TRANSPORTS:
        raise ValueError(f"launch argument transport={transport!r}: must be one of "
                         f"{', '.join(TRANSPORTS)}")
    sim = use_sim_time.strip().lower()
    if sim not in _TRUE + _FALSE:
        raise ValueError(f"launch argument use_sim_time={use_sim_time!r}: must be true or false")
    profile = fastdds_profile.strip()
    if profile:
        profile = os.path.abspath(os.path.expanduser(profile))
        if not os.path.isfile(profile):
            raise ValueError(f"launch argument fastdds_profile={fastdds_profile!r}: no such file "
                             "(\"\" = no profile)")
    if transport == "raw":
        remaps = [(f"{cam}/image", topic) for cam, topic in zip(cams, topics, strict=True)]
    else:
        remaps = [(f"{cam}/image/compressed", f"{topic}/compressed")
                  for cam, topic in zip(cams, topics, strict=True)]
    return NodeSettings(
        namespace=namespace.strip() or None,
        checkpoint=checkpoint.strip(),
        device=device,
        precision=precision,
        cameras=cams,
        transport=transport,
        score_threshold=_number("score_threshold", score_threshold, 0.0, 1.0),
        keep_seconds=_number("keep_seconds", keep_seconds, 0.0, float("inf"), low_open=True),
        max_gap_s=_number("max_gap_s", max_gap_s, 0.0, float("inf"), low_open=True),
        use_sim_time=sim in _TRUE,
        remappings=remaps,
        fastdds_profile=profile,
    )


def _launch_setup(context: LaunchContext) -> list[Action]:
    """OpaqueFunction body: read the arguments, set the profile, create the node."""
    from launch.actions import SetEnvironmentVariable, UnsetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    settings = node_settings(
        cameras=LaunchConfiguration("cameras").perform(context),
        image_topics=LaunchConfiguration("image_topics").perform(context),
        namespace=LaunchConfiguration("namespace").perform(context),
        checkpoint=LaunchConfiguration("checkpoint").perform(context),
        device=LaunchConfiguration("device").perform(context),
        precision=LaunchConfiguration("precision").perform(context),
        transport=LaunchConfiguration("transport").perform(context),
        score_threshold=LaunchConfiguration("score_threshold").perform(context),
        keep_seconds=LaunchConfiguration("keep_seconds").perform(context),
        max_gap_s=LaunchConfiguration("max_gap_s").perform(context),
        use_sim_time=LaunchConfiguration("use_sim_time").perform(context),
        fastdds_profile=LaunchConfiguration("fastdds_profile").perform(context),
    )
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
            parameters=[{
                "checkpoint": settings.checkpoint,
                "device": settings.device,
                "precision": settings.precision,
                "cameras": settings.cameras,
                "transport": settings.transport,
                "score_threshold": settings.score_threshold,
                "keep_seconds": settings.keep_seconds,
                "max_gap_s": settings.max_gap_s,
                "use_sim_time": settings.use_sim_time,
            }],
            remappings=settings.remappings,
            output="screen",
            emulate_tty=True,
        )
    )
    return actions


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the node is created by an OpaqueFunction (list-valued args)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import EnvironmentVariable, PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    from launch import LaunchDescription

    shipped_profile = PathJoinSubstitution(
        [FindPackageShare("spvis_ros"), "config", "fastdds_shm.xml"])
    return LaunchDescription([
        DeclareLaunchArgument(
            "cameras", default_value="cam0",
            description="comma-separated camera names, e.g. front,rear"),
        DeclareLaunchArgument(
            "image_topics", default_value="/camera/image_raw",
            description="comma-separated absolute input image topics, one per camera"),
        DeclareLaunchArgument(
            "namespace", default_value="spvis", description="namespace of the node"),
        DeclareLaunchArgument(
            "checkpoint", default_value="",
            description="model checkpoint file; empty = the model shipped in the package"),
        DeclareLaunchArgument(
            "device", default_value="auto", description="auto | cuda | cuda:N | cpu"),
        DeclareLaunchArgument(
            "precision", default_value="float32", choices=list(PRECISIONS),
            description="inference precision (half types need CUDA)"),
        DeclareLaunchArgument(
            "transport", default_value="raw", choices=list(TRANSPORTS),
            description="raw: sensor_msgs/Image on <topic>; compressed: "
                        "sensor_msgs/CompressedImage on <topic>/compressed"),
        DeclareLaunchArgument(
            "score_threshold", default_value="0.5",
            description="publish instances with score >= this"),
        DeclareLaunchArgument(
            "keep_seconds", default_value="5.0",
            description="forget a track unseen this long (header-stamp seconds)"),
        DeclareLaunchArgument(
            "max_gap_s", default_value="5.0",
            description="a stamp jump larger than this starts a fresh tracker state"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable(PROFILE_VAR, default_value=shipped_profile),
            description="Fast DDS XML profile for the processes started from here on; default "
                        "$FASTDDS_DEFAULT_PROFILES_FILE, else the shipped fastdds_shm.xml; "
                        "empty = Fast DDS defaults"),
        OpaqueFunction(function=_launch_setup),
    ])
