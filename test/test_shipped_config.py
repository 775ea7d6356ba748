"""The shipped checkpoint's tracker settings are the ones configs/model_lite0_synthetic.yaml
documents (that file carries the reasons and the validation numbers; the checkpoint is what
runs). Calibration is written by bench/calibrate.py only, so it is not in the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from spvis_model.checkpoint import read_checkpoint
from spvis_model.config import ModelConfig
from spvis_model.weights import default_checkpoint

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "model_lite0_synthetic.yaml"


def test_shipped_tracker_settings_match_the_documented_config():
    documented = yaml.safe_load(CONFIG.read_text())["tracker"]
    shipped = ModelConfig.from_dict(read_checkpoint(default_checkpoint())["config"]).tracker
    assert documented, CONFIG
    for name, value in documented.items():
        assert getattr(shipped, name) == value, (name, getattr(shipped, name), value)
    # The frame-interval limit of error correction (docs/model.md): on at >= 20 fps only.
    assert shipped.use_correction and shipped.correction_max_interval == 0.05
