"""Model configuration: presets, YAML round trip, validation naming the field."""

from __future__ import annotations

import pytest

from spvis_model.config import ConfigError, ModelConfig, load_config, preset, save_config


@pytest.mark.parametrize("name", ["tiny", "lite0", "r50"])
def test_presets_validate_and_round_trip(name, tmp_path):
    cfg = preset(name)
    assert cfg.backbone.name == name
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_yaml_preset_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\ntracker:\n  keep_seconds: 2.5\nclass_names: [a, b]\n")
    cfg = load_config(path)
    assert cfg.tracker.keep_seconds == 2.5 and cfg.num_classes == 2
    assert cfg.segmenter == preset("tiny").segmenter


@pytest.mark.parametrize("yaml_text,message", [
    ("preset: tiny\ntracker:\n  keep_seconds: -1\n", r"tracker\.keep_seconds = -1: must be"),
    ("preset: tiny\ntracker:\n  association: greedy\n", r"tracker\.association = 'greedy'"),
    ("preset: tiny\nbackbone:\n  name: vgg\n", r"backbone\.name = 'vgg'"),
    ("preset: tiny\nsegmenter:\n  num_queries: 0\n", r"segmenter\.num_queries = 0"),
    ("preset: tiny\npixel_decoder:\n  norm_groups: 7\n", r"pixel_decoder\.norm_groups = 7"),
    ("preset: tiny\ntracker:\n  detect_score: 1.5\n", r"tracker\.detect_score = 1\.5"),
    ("preset: tiny\ntracker:\n  nms_measure: iou\n", r"tracker\.nms_measure = 'iou'"),
    ("preset: tiny\ntracker:\n  score_masks: high\n", r"tracker\.score_masks = 'high'"),
    ("preset: tiny\ntracker:\n  birth_masks: all\n", r"tracker\.birth_masks = 'all'"),
    ("preset: tiny\ntracker:\n  max_tracks: 4\n  association: minvis\n",
     r"tracker\.max_tracks = 4: must be >= segmenter\.num_queries"),
    ("preset: tiny\ntracker:\n  keep_secs: 3\n", r"unknown field\(s\) \['keep_secs'\]"),
    ("preset: tiny\nclass_names: []\n", r"class_names = \[\]"),
    ("preset: huge\n", r"unknown preset 'huge'"),
    ("- a\n- b\n", r"must be a YAML mapping"),
])
def test_invalid_values_name_the_field(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(err.value).startswith(f"config {path}")  # names the YAML file


def test_non_utf8_yaml_names_the_file(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"\xff\xfepreset: tiny\n")
    with pytest.raises(ConfigError, match=rf"cannot read config {path}: not UTF-8 text \(byte "
                                          r"0xff at offset 0\)"):
        load_config(path)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path)
    assert not (tmp_path / "pwned").exists()


def test_from_dict_rejects_wrong_section_type():
    data = preset("tiny").to_dict()
    data["tracker"] = 5
    with pytest.raises(ConfigError, match="tracker must be a mapping"):
        ModelConfig.from_dict(data)
