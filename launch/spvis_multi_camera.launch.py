"""Example: one spvis node for two cameras, ``front`` and ``rear``.

    ros2 launch spvis_ros spvis_multi_camera.launch.py
    ros2 launch spvis_ros spvis_multi_camera.launch.py \\
        front_topic:=/cameras/front/image_raw rear_topic:=/cameras/rear/image_raw device:=cuda

Includes ``spvis.launch.py`` with ``cameras:=front,rear`` and ``image_topics`` made of this
file's ``front_topic`` (default ``/front/image_raw``) and ``rear_topic`` (``/rear/image_raw``).
Every other argument of ``spvis.launch.py`` is declared here too, with its default, choices and
description (``--show-args`` lists them all), and passed through unchanged. The node then
publishes ``/spvis/front/...`` and ``/spvis/rear/...``; the vision_msgs ids carry the camera
(``front/17``). The Fast DDS profile that ``spvis.launch.py`` sets applies to everything
started after the include in this file: start the camera drivers below it (they publish the
images, and it is the publisher's shared-memory segment that must be large enough).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spvis_ros.launch_arguments import declare_arguments, launch_arguments

if TYPE_CHECKING:
    from launch import LaunchDescription

# Set by this example from its own arguments.
SET_HERE = ("cameras", "image_topics")
# Every other argument of spvis.launch.py: declared here and passed through.
PASSED = tuple(a.name for a in launch_arguments() if a.name not in SET_HERE)


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
    return LaunchDescription([
        DeclareLaunchArgument("front_topic", default_value="/front/image_raw",
                              description="absolute base image topic of the front camera"),
        DeclareLaunchArgument("rear_topic", default_value="/rear/image_raw",
                              description="absolute base image topic of the rear camera"),
        *declare_arguments(PASSED),
        spvis,
        # Camera drivers go here, after the include, so that they get the Fast DDS profile, e.g.
        # Node(package="usb_cam", executable="usb_cam_node_exe", namespace="front", ...).
    ])
