"""spvis ROS 2 side: the perception node, message conversion and bag tools."""
