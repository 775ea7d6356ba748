"""Example: one spvis node for two cameras, ``front`` and ``rear``.

    ros2 launch spvis_ros spvis_multi_camera.launch.py
    ros2 launch spvis_ros spvis_multi_camera.launch.py \\
        front_topic:=/cameras/front/image_raw rear_topic:=/cameras/rear/image_raw device:=cuda

Includes ``spvis.launch.py`` with ``cameras:=front,rear`` and the two topics. The node then
publishes ``/spvis/front/...`` and ``/spvis/rear/...``. The Fast DDS profile that
``spvis.launch.py`` sets applies to everything started after the include in this file: start
the camera drivers below it (they publish the images, and it is the publisher's shared-memory
segment that must be large enough).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from launch import LaunchDescription


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
            ("namespace", LaunchConfiguration("namespace")),
            ("device", LaunchConfiguration("device")),
            ("precision", LaunchConfiguration("precision")),
            ("transport", LaunchConfiguration("transport")),
            ("use_sim_time", LaunchConfiguration("use_sim_time")),
        ],
    )
    return LaunchDescription([
        DeclareLaunchArgument("front_topic", default_value="/front/image_raw",
                              description="image topic of the front camera"),
        DeclareLaunchArgument("rear_topic", default_value="/rear/image_raw",
                              description="image topic of the rear camera"),
        DeclareLaunchArgument("namespace", default_value="spvis"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="auto | cuda | cuda:N | cpu"),
        DeclareLaunchArgument("precision", default_value="float32",
                              choices=["float32", "float16", "bfloat16"]),
        DeclareLaunchArgument("transport", default_value="raw", choices=["raw", "compressed"]),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        spvis,
        # Camera drivers go here, after the include, so that they get the Fast DDS profile, e.g.
        # Node(package="usb_cam", executable="usb_cam_node_exe", namespace="front", ...).
    ])
