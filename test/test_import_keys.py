"""The importer's checks: every key mapped or deliberately dropped (else an error naming it),
the architecture and backbone read from shapes, class lists, clip-level models refused, and
the preprocessing each source was evaluated with (detectron2's resize rule) stored and used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spvis_model.cli import main
from spvis_model.config import InputConfig, ModelConfig, preset
from spvis_model.importers import (
    CLASS_LISTS,
    ImportCheckpointError,
    import_checkpoint,
    load_class_list,
    read_source_file,
)
from spvis_model.model import SPVIS

FIXTURES = Path(__file__).parent / "fixtures" / "import"


def save_variant(tmp_path: Path, fixture: str, edit, name: str = "variant.pth") -> Path:
    """The fixture's tensors, edited by ``edit(dict)``, saved as a detectron2-style .pth."""
    tensors = dict(read_source_file(FIXTURES / fixture).tensors)
    edit(tensors)
    path = tmp_path / name
    torch.save({"model": tensors, "iteration": 1}, path)
    return path


def run_import(path: Path, tmp_path: Path, source: str = "mask2former", backbone: str = "r50",
               classes: str = "coco", **kw):
    return import_checkpoint(path, source=source, backbone=backbone, classes=classes,
                             out=tmp_path / "out.pt", **kw)


# --- keys ----------------------------------------------------------------------------------------

def test_unknown_key_is_an_error_naming_it(tmp_path):
    path = save_variant(tmp_path, "m2f_coco_r50.pkl",
                        lambda t: t.update({"sem_seg_head.extra_head.weight": torch.zeros(2)}))
    with pytest.raises(ImportCheckpointError, match=r"'sem_seg_head\.extra_head\.weight'"):
        run_import(path, tmp_path)
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_source_key(tmp_path, value):
    key = "sem_seg_head.predictor.query_feat.weight"

    def poison(t: dict) -> None:
        t[key] = t[key].clone()
        t[key][0, 3] = value

    path = save_variant(tmp_path, "m2f_coco_r50.pkl", poison)
    with pytest.raises(ImportCheckpointError,
                       match=rf"variant\.pth: key '{key}' has 1 non-finite \(NaN/inf\) values"):
        run_import(path, tmp_path)
    assert not (tmp_path / "out.pt").exists()


def test_bad_out_paths_are_refused_up_front_with_one_line(tmp_path, capsys):
    source = str(FIXTURES / "m2f_coco_r50.pkl")
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    args = ["import", source, "--from", "mask2former", "--backbone", "r50", "--classes", "coco"]
    assert main([*args, "--out", str(tmp_path / "missing" / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert err == (f"spvis import: error: --out {str(tmp_path / 'missing' / 'x.pt')!r}: folder "
                   f"{str(tmp_path / 'missing')!r} does not exist\n")
    assert main([*args, "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spvis import: error: --out {str(folder)!r} is a folder")
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.pt"]  # no *.tmp


def test_missing_key_is_an_error_naming_it(tmp_path):
    path = save_variant(tmp_path, "m2f_coco_r50.pkl",
                        lambda t: t.pop("sem_seg_head.predictor.decoder_norm.weight"))
    with pytest.raises(ImportCheckpointError,
                       match=r"missing keys \(1\): sem_seg_head\.predictor\.decoder_norm\.weight"):
        run_import(path, tmp_path)


def test_shape_mismatch_names_the_key_and_shapes(tmp_path):
    key = "sem_seg_head.pixel_decoder.adapter_1.weight"
    path = save_variant(tmp_path, "m2f_coco_r50.pkl",
                        lambda t: t.update({key: torch.zeros(32, 15, 1, 1)}))
    with pytest.raises(ImportCheckpointError,
                       match=r"pixel_decoder\.adapter_1\.weight: expected \[32, 16, 1, 1\], "
                             r"got \[32, 15, 1, 1\]"):
        run_import(path, tmp_path)


def test_keys_of_another_source_are_refused(tmp_path):
    with pytest.raises(ImportCheckpointError, match=r"key 'tracker\..*DVIS referring tracker.*"
                                                    r"--from dvis"):
        run_import(FIXTURES / "dvis_offline_ovis_r50.pth", tmp_path, source="minvis",
                   classes="ovis")


def test_unknown_top_level_entry_is_refused(tmp_path):
    tensors = read_source_file(FIXTURES / "m2f_coco_r50.pkl").tensors
    path = tmp_path / "extra.pth"
    torch.save({"model": tensors, "ema_model": {}}, path)
    with pytest.raises(ImportCheckpointError, match=r"unknown top-level entry 'ema_model'"):
        run_import(path, tmp_path)


def test_detectron2_trainer_entries_are_dropped(tmp_path):
    """detectron2's DefaultTrainer saves {"model", "trainer": {...}, "iteration"} (and older
    versions "optimizer", "scheduler"): all dropped, listed in the report."""
    tensors = read_source_file(FIXTURES / "minvis_ytvis19_r50.pth").tensors
    path = tmp_path / "model_final.pth"
    torch.save({"model": tensors, "iteration": 7,
                "trainer": {"iteration": 7, "hooks": {"LRScheduler": {"_last_lr": [1e-4]}},
                            "_trainer": {"optimizer": {"state": {}, "param_groups": []}}},
                "optimizer": {"state": {}, "param_groups": []}, "scheduler": {"last_epoch": 7}},
               path)
    result = run_import(path, tmp_path, source="minvis", classes="ytvis2019")
    for key in ("trainer", "iteration", "optimizer", "scheduler"):
        assert result.dropped[f"top-level entry {key!r} (not the model)"] == 1


def test_bare_state_dict_imports(tmp_path):
    tensors = read_source_file(FIXTURES / "m2f_coco_r50.pkl").tensors
    path = tmp_path / "bare.pth"
    torch.save(tensors, path)
    result = run_import(path, tmp_path)
    assert result.loaded == len(tensors) - 1  # all but criterion.empty_weight


def test_stored_pixel_mean_is_used(tmp_path):
    mean = torch.tensor([100.0, 110.0, 120.0]).view(3, 1, 1)
    path = save_variant(tmp_path, "m2f_coco_r50.pkl", lambda t: t.update({"pixel_mean": mean}))
    result = run_import(path, tmp_path)
    assert result.config.input.pixel_mean == [100.0, 110.0, 120.0]
    model = SPVIS.from_checkpoint(result.out)
    assert model.pixel_mean.flatten().tolist() == [100.0, 110.0, 120.0]


# --- architecture --------------------------------------------------------------------------------

def test_architecture_comes_from_the_shapes(tmp_path):
    result = run_import(FIXTURES / "m2f_coco_r101.pkl", tmp_path, backbone="r101")
    cfg = result.config
    assert (cfg.backbone.name, cfg.backbone.width) == ("r101", 4)
    pd, sg = cfg.pixel_decoder, cfg.segmenter
    assert (pd.conv_dim, pd.mask_dim, pd.num_encoder_layers, pd.ffn_dim, pd.n_points) == (
        32, 32, 2, 64, 4)
    assert (sg.hidden_dim, sg.num_queries, sg.dec_layers, sg.dim_feedforward, sg.nheads) == (
        32, 10, 4, 64, 8)
    text = "\n".join(result.architecture)
    assert "segmenter.num_queries = 10 (from sem_seg_head.predictor.query_feat.weight" in text
    assert "backbone.res4.blocks = 23" in text


def test_swin_heads_and_window_come_from_the_shapes(tmp_path):
    result = run_import(FIXTURES / "m2f_coco_swin_t.pkl", tmp_path, backbone="swin-t")
    assert result.config.backbone.width == 8
    assert result.config.backbone.num_heads == [1, 2, 4, 8]
    assert any("window = 7" in line for line in result.architecture)


@pytest.mark.parametrize("fixture,backbone,message", [
    ("m2f_coco_r50.pkl", "r101", r"--backbone r101 expects \(3, 4, 23, 3\).*\(3, 4, 6, 3\) "
                                 r"\(looks like r50\)"),
    ("m2f_coco_r101.pkl", "r50", r"looks like r101"),
    ("m2f_coco_r50.pkl", "swin-t", r"--backbone swin-t but the checkpoint's backbone is a ResNet"),
    ("m2f_coco_swin_t.pkl", "r50", r"--backbone r50 but the checkpoint's backbone is a Swin"),
    ("m2f_coco_swin_t.pkl", "swin-s", r"expects depths \(2, 2, 18, 2\) and window 7, the "
                                      r"checkpoint has depths \(2, 2, 6, 2\) and window 7 "
                                      r"\(looks like swin-t\)"),
    ("m2f_coco_swin_t.pkl", "swin-l", r"window 12.*looks like swin-t"),
])
def test_wrong_backbone_is_named(tmp_path, fixture, backbone, message):
    with pytest.raises(ImportCheckpointError, match=message):
        run_import(FIXTURES / fixture, tmp_path, backbone=backbone)


def test_unknown_options_are_refused(tmp_path):
    with pytest.raises(ImportCheckpointError, match=r"--from 'detr'"):
        run_import(FIXTURES / "m2f_coco_r50.pkl", tmp_path, source="detr")
    with pytest.raises(ImportCheckpointError, match=r"--backbone 'vit-l'"):
        run_import(FIXTURES / "m2f_coco_r50.pkl", tmp_path, backbone="vit-l")
    with pytest.raises(ImportCheckpointError, match=r"input\.min_size = -5"):
        run_import(FIXTURES / "m2f_coco_r50.pkl", tmp_path, min_size=-5)
    for nheads in (0, -1):  # 0 was a ZeroDivisionError in the shape reader
        with pytest.raises(ImportCheckpointError, match=rf"--nheads {nheads}: must be an "
                                                        "integer >= 1"):
            run_import(FIXTURES / "m2f_coco_r50.pkl", tmp_path, nheads=nheads)


def test_cli_nheads_zero_exits_2_with_one_line(tmp_path, capsys):
    assert main(["import", str(FIXTURES / "m2f_coco_r50.pkl"), "--from", "mask2former",
                 "--backbone", "r50", "--classes", "coco", "--out", str(tmp_path / "o.pt"),
                 "--nheads", "0"]) == 2
    assert capsys.readouterr().err == ("spvis import: error: --nheads 0: must be an integer "
                                       ">= 1 (published models use 8)\n")


# --- clip-level video models ---------------------------------------------------------------------

def test_clip_level_model_refused_by_zoo_file_name(tmp_path):
    path = tmp_path / "model_final_34112b.pkl"
    path.write_bytes((FIXTURES / "m2f_coco_r50.pkl").read_bytes())
    with pytest.raises(ImportCheckpointError,
                       match=r"ytvis_2019/video_maskformer2_R50_bs16_8ep.*clip-level"):
        run_import(path, tmp_path)


def test_clip_level_model_refused_by_video_class_head(tmp_path):
    path = save_variant(tmp_path, "minvis_ytvis19_r50.pth", lambda t: None, name="video.pth")
    with pytest.raises(ImportCheckpointError, match=r"--from mask2former, but the class head has "
                                                    r"40 classes.*clip-level.*--from minvis"):
        run_import(path, tmp_path, classes="ytvis2019")
    # The same file is fine as what it is.
    assert run_import(path, tmp_path, source="minvis", classes="ytvis2019").loaded > 0


# --- classes -------------------------------------------------------------------------------------

def test_builtin_class_lists():
    coco = load_class_list("coco")
    assert len(coco.names) == 80 and coco.names[0] == "person" and coco.names[-1] == "toothbrush"
    assert coco.ids[:3] == [1, 2, 3] and coco.ids[-1] == 90 and len(set(coco.ids)) == 80
    assert {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}.isdisjoint(coco.ids)  # COCO's unused ids
    assert coco.names[coco.ids.index(44)] == "bottle"
    y19, y21, ovis = (load_class_list(k) for k in ("ytvis2019", "ytvis2021", "ovis"))
    assert len(y19.names) == len(y21.names) == 40 and len(ovis.names) == 25
    assert y19.names[:2] == ["person", "giant_panda"] and y19.names[-1] == "tennis_racket"
    assert y21.names[:2] == ["airplane", "bear"] and y21.names[-1] == "zebra"
    assert ovis.names[0] == "Person" and ovis.ids == list(range(1, 26))
    assert set(CLASS_LISTS) == {"coco", "ytvis2019", "ytvis2021", "ovis"}


def test_class_list_files(tmp_path):
    txt = tmp_path / "mine.txt"
    txt.write_text("# my classes\ncar\n\ntruck\n")
    assert load_class_list(txt).names == ["car", "truck"]
    js = tmp_path / "mine.json"
    js.write_text(json.dumps({"categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}]}))
    cl = load_class_list(js)
    assert (cl.names, cl.ids) == (["a", "b"], [7, 9])
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(["a", "b", "a"]))
    with pytest.raises(ImportCheckpointError, match=r"name 'a' at index 2 is repeated"):
        load_class_list(dup)
    with pytest.raises(ImportCheckpointError, match=r"--classes 'nope': not one of coco"):
        load_class_list("nope")


def test_class_count_must_match_the_class_head(tmp_path):
    with pytest.raises(ImportCheckpointError, match=r"class head has 80 classes.*--classes "
                                                    r"ytvis2019 has 40"):
        run_import(FIXTURES / "m2f_coco_r50.pkl", tmp_path, classes="ytvis2019")


def test_classes_file_names_the_published_classes(tmp_path):
    names = [f"thing{i}" for i in range(80)]
    path = tmp_path / "names.json"
    path.write_text(json.dumps(names))
    result = run_import(FIXTURES / "m2f_coco_r50.pkl", tmp_path, classes=str(path))
    assert SPVIS.from_checkpoint(result.out).class_names == names


# --- preprocessing -------------------------------------------------------------------------------

def test_resize_rule_equals_detectron2():
    """InputConfig.resized with min_size > 0 against ResizeShortestEdge.get_output_shape."""
    cases = json.loads((FIXTURES / "resize_rule.json").read_text())
    assert len(cases) >= 30
    for c in cases:
        cfg = InputConfig(max_size=c["max_size"], min_size=c["min_size"])
        assert list(cfg.resized(*c["in"])) == c["out"], c


def test_default_rule_is_unchanged():
    """min_size 0 (every existing checkpoint): the longer side becomes max_size."""
    cfg = InputConfig(max_size=640)
    assert cfg.resized(480, 640) == (480, 640)
    assert cfg.resized(1080, 1920) == (360, 640)
    assert cfg.resized(100, 50) == (640, 320)


def test_preprocess_follows_the_input_config():
    cfg = preset("tiny")
    cfg.input = InputConfig(max_size=1333, min_size=48, pixel_mean=[10.0, 20.0, 30.0],
                            pixel_std=[2.0, 4.0, 8.0], channel_order="bgr")
    model = SPVIS(cfg)
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    x, geom = model.preprocess(frame)
    assert geom.resized == (48, 64) and geom.padded == (64, 64)
    bgr = torch.from_numpy(frame[:, :, ::-1].copy()).permute(2, 0, 1).float()
    want = (bgr - torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)) / torch.tensor(
        [2.0, 4.0, 8.0]).view(3, 1, 1)
    assert torch.allclose(x[0, :, :48, :64], want)
    assert (x[0, :, 48:] == 0).all()
    _, geom = model.preprocess(np.zeros((480, 640, 3), np.uint8))
    assert geom.resized == (48, 64)  # shorter side 480 -> 48


def test_bad_input_config_names_the_field():
    data = preset("tiny").to_dict()
    data["input"]["channel_order"] = "rgba"
    with pytest.raises(ValueError, match=r"input\.channel_order = 'rgba'"):
        ModelConfig.from_dict(data)
    data = preset("tiny").to_dict()
    data["input"]["pixel_std"] = [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"input\.pixel_std = \[1\.0, 0\.0, 1\.0\]"):
        ModelConfig.from_dict(data)
    data = preset("tiny").to_dict()
    data["backbone"]["width"] = 8
    with pytest.raises(ValueError, match=r"backbone\.width = 8: must be 0 for backbone 'tiny'"):
        ModelConfig.from_dict(data)


def test_old_configs_without_the_new_fields_load():
    data = preset("r50").to_dict()
    del data["input"]["min_size"], data["input"]["pixel_mean"], data["input"]["pixel_std"]
    del data["input"]["channel_order"], data["backbone"]["width"], data["backbone"]["num_heads"]
    cfg = ModelConfig.from_dict(data)
    assert cfg == preset("r50")


@pytest.mark.parametrize("fixture,source,classes,override,expected", [
    ("minvis_ytvis19_r50.pth", "minvis", "ytvis2019", None, 360),
    ("dvis_offline_ovis_r50.pth", "dvis", "ovis", 720, 720),
])
def test_min_size_default_and_override(tmp_path, fixture, source, classes, override, expected):
    args = ["import", str(FIXTURES / fixture), "--from", source, "--backbone", "r50",
            "--classes", classes, "--out", str(tmp_path / "m.pt")]
    if override:
        args += ["--min-size", str(override)]
    assert main(args) == 0
    assert SPVIS.from_checkpoint(tmp_path / "m.pt").cfg.input.min_size == expected


def test_half_storage(tmp_path, capsys):
    assert main(["import", str(FIXTURES / "m2f_coco_r50.pkl"), "--from", "mask2former",
                 "--backbone", "r50", "--classes", "coco", "--out", str(tmp_path / "h.pt"),
                 "--half"]) == 0
    report = capsys.readouterr().out
    assert "dropped" in report and "criterion.empty_weight" in report
    assert "spvis_node --ros-args -p checkpoint:=" in report
    model = SPVIS.from_checkpoint(tmp_path / "h.pt")
    assert model.meta["from"] == "mask2former"
