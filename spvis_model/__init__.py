"""spvis_model: the SPVIS video instance segmentation model in pure PyTorch.

Never imports rclpy: the ROS side (spvis_ros) converts messages and calls into this package.
"""

__version__ = "0.1.0"
