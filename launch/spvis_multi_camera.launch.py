"""Example: one spvis node for two cameras, ``front`` and ``rear``.

    ros2 launch spvis_ros spvis_multi_camera.launch.py
    ros2 launch spvis_ros spvis_multi_camera.launch.py \\
        front_topic:=/cameras/front/image_raw rear_topic:=/cameras/rear/image_raw device:=cuda

Includes ``spvis.launch.py`` with ``cameras:=front,rear`` and the two topics; the other
arguments of this file are passed through unchanged, with the defaults and choices of
``spvis.launch.py`` (which takes them from the node's parameter table). The node then publishes
``/spvis/front/...`` and ``/spvis/rear/...``; the vision_msgs ids carry the camera
(``front/17``). The Fast DDS profile that ``spvis.launch.py`` sets applies to everything
started after the include in this file: start the camera drivers below it (they publish the
images, and it is the publisher's shared-memory segment that must be large enough).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spvis_ros.params import SPECS, launch_default

if TYPE_CHECKING:
    from launch import LaunchDescription

# Arguments of spvis.launch.py passed through (name -> default), besides cameras/image_topics.
PASSED = ("namespace", "device", "precision", "transport", "use_sim_time", "autostart")
DEFAULTS = {"namespace": "spvis", "use_sim_time": "false"}


def generate_launch_description() -> LaunchDescription:
    """Declare the example's arguments and include spvis.launch.py for front and rear."""
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, ThisLaunchFileDir

    from launch import LaunchDescription

    spvis = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([ThisLaunchFileDir(),
                                                            "spvis.launch.py"])),
        launch_arguments=[
            ("cameras", "front,rear"),
            ("image_topics", [LaunchConfiguration("front_topic"), ",",
                              LaunchConfiguration("rear_topic")]),
            *[(name, LaunchConfiguration(name)) for name in PASSED],
        ],
    )
    declared = [
        DeclareLaunchArgument("front_topic", default_value="/front/image_raw",
                              description="base image topic of the front camera"),
        DeclareLaunchArgument("rear_topic", default_value="/rear/image_raw",
                              description="base image topic of the rear camera"),
    ]
    for name in PASSED:
        spec = SPECS.get(name)
        default = DEFAULTS[name] if spec is None else launch_default(name)
        kwargs = {"description": spec.doc if spec is not None else f"see spvis.launch.py: {name}"}
        if spec is not None and spec.choices:
            kwargs["choices"] = list(spec.choices)
        declared.append(DeclareLaunchArgument(name, default_value=default, **kwargs))
    return LaunchDescription([
        *declared,
        spvis,
        # Camera drivers go here, after the include, so that they get the Fast DDS profile, e.g.
        # Node(package="usb_cam", executable="usb_cam_node_exe", namespace="front", ...).
    ])
