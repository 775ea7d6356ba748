"""spvis_model: the SPVIS video instance segmentation model in pure PyTorch.

Never imports rclpy: the ROS side (spvis_ros) converts messages and calls into this package.

    from spvis_model import build_model
    model = build_model("tiny")
    state = model.init_state()
    state, instances = model.step(state, frame_rgb_uint8, stamp_seconds)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from spvis_model.config import ModelConfig
    from spvis_model.instances import Instances
    from spvis_model.model import SPVIS, build_model
    from spvis_model.tracker.state import TrackerState

__all__ = ["SPVIS", "Instances", "ModelConfig", "TrackerState", "build_model"]


def __getattr__(name: str) -> Any:
    # Lazy: `import spvis_model` stays cheap (the CLI's `info` and the op tests need no model).
    if name in ("SPVIS", "build_model"):
        from spvis_model import model

        return getattr(model, name)
    if name == "ModelConfig":
        from spvis_model.config import ModelConfig

        return ModelConfig
    if name == "Instances":
        from spvis_model.instances import Instances

        return Instances
    if name == "TrackerState":
        from spvis_model.tracker.state import TrackerState

        return TrackerState
    raise AttributeError(f"module 'spvis_model' has no attribute {name!r}")
