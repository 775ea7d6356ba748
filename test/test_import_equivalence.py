"""`spvis import` reproduces the reference implementations: each fixture is random weights in a
published layout (Mask2Former COCO .pkl, MinVIS / DVIS / DVIS++ .pth) at reduced sizes, with
the class and mask logits the reference code computed on fixed frames (see
test/fixtures/import/provenance.json). The imported spvis segmenter must give the same logits
(float32, max |ours - ref| <= 1e-4 x max |ref| per tensor), and the imported checkpoint must run
through `SPVIS.from_checkpoint` + `step` like any other."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spvis_model.cli import main
from spvis_model.importers import load_class_list, read_source_file
from spvis_model.importers.zoo import PIXEL_MEAN, PIXEL_STD
from spvis_model.model import SPVIS

FIXTURES = Path(__file__).parent / "fixtures" / "import"
PROVENANCE = json.loads((FIXTURES / "provenance.json").read_text())
REL_TOL = 1e-4

# (fixture file, --from, --backbone, --classes, the source's test-time shorter side)
CASES = [
    ("m2f_coco_r50.pkl", "mask2former", "r50", "coco", 800),
    ("m2f_coco_r101.pkl", "mask2former", "r101", "coco", 800),
    ("m2f_coco_swin_t.pkl", "mask2former", "swin-t", "coco", 800),
    ("minvis_ytvis19_r50.pth", "minvis", "r50", "ytvis2019", 360),
    ("dvis_offline_ovis_r50.pth", "dvis", "r50", "ovis", 360),
    ("dvisplus_online_ytvis21_r50.pth", "dvis", "r50", "ytvis2021", 480),
]


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Import every fixture once with the `spvis import` command line."""
    out_dir = tmp_path_factory.mktemp("imported")
    done = {}
    for name, source, backbone, classes, _ in CASES:
        out = out_dir / (Path(name).stem + ".pt")
        rc = main(["import", str(FIXTURES / name), "--from", source, "--backbone", backbone,
                   "--classes", classes, "--out", str(out)])
        assert rc == 0, name
        done[name] = out
    return done


@pytest.mark.parametrize("name,source,backbone,classes,min_size", CASES,
                         ids=[c[0].split(".")[0] for c in CASES])
def test_imported_segmenter_matches_reference(imported, name, source, backbone, classes,
                                              min_size):
    model = SPVIS.from_checkpoint(imported[name])
    expected = np.load(FIXTURES / (Path(name).stem + ".expected.npz"))
    info = next(f for f in PROVENANCE["fixtures"] if f["weights"] == name)

    # Provenance and configuration stored in the checkpoint.
    digest = hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()
    assert model.meta["source_sha256"] == digest == info["sha256"]
    assert model.meta["source_file"] == name
    assert (model.meta["from"], model.meta["backbone"], model.meta["classes"]) == (
        source, backbone, classes)
    assert model.meta["kind"] == "imported"
    assert model.class_names == load_class_list(classes).names
    assert model.cfg.segmenter.num_queries == info["queries"]
    inp = model.cfg.input
    assert (inp.min_size, inp.max_size, inp.channel_order) == (min_size, 1333, "rgb")
    assert inp.pixel_mean == PIXEL_MEAN == info["pixel_mean"]
    assert inp.pixel_std == PIXEL_STD == info["pixel_std"]

    # The frames are 96 x 128: a shorter side of 96 means no resize, as in the reference run.
    model.cfg.input.min_size = 96
    for t, frame in enumerate(expected["frames"]):
        images, geom = model.preprocess(frame)
        assert geom.resized == geom.padded == (96, 128)
        with torch.inference_mode():
            dec = model.segment(images).decoder
        logits = torch.from_numpy(expected["pred_logits"][t])
        masks = torch.from_numpy(expected["pred_masks"][t])
        assert dec.pred_logits[0].shape == logits.shape
        assert dec.pred_masks[0].shape == masks.shape
        assert rel_err(dec.pred_logits[0], logits) <= REL_TOL, (name, t, "class logits")
        assert rel_err(dec.pred_masks[0], masks) <= REL_TOL, (name, t, "mask logits")


@pytest.mark.parametrize("name", [c[0] for c in CASES], ids=[c[0].split(".")[0] for c in CASES])
def test_every_source_key_is_loaded_or_dropped(imported, name):
    source = read_source_file(FIXTURES / name)
    model = SPVIS.from_checkpoint(imported[name])
    dropped = model.meta["dropped"]
    n_dropped = sum(n for reason, n in dropped.items() if not reason.startswith("top-level"))
    n_segmenter = len(model.segmenter.state_dict())
    assert n_segmenter + n_dropped == len(source.tensors)
    assert any("criterion" in reason for reason in dropped)
    if name.startswith("dvis"):
        assert any("DVIS referring tracker" in reason for reason in dropped)
    if name.startswith("dvis_offline"):
        assert any("temporal refiner" in reason for reason in dropped)
    if name.startswith("dvisplus"):
        assert any("DVIS++" in reason for reason in dropped)


def test_imported_checkpoint_steps_frames_with_real_class_names(imported):
    """What the node does with a checkpoint, without ROS: load, step a stream, name classes."""
    model = SPVIS.from_checkpoint(imported["minvis_ytvis19_r50.pth"])
    model.cfg.input.min_size = 96  # keep the CPU test small; the stored rule is 360 / 1333
    model.cfg.tracker.output_score = 0.0  # random weights: publish whatever the tracker has
    frames = np.load(FIXTURES / "minvis_ytvis19_r50.expected.npz")["frames"]
    state = model.init_state()
    names = set()
    for i in range(4):
        state, inst = model.step(state, frames[i % 2], 0.2 * i)
        assert inst.masks.shape[1:] == frames.shape[1:3]
        names.update(inst.label_names)
    assert names <= set(load_class_list("ytvis2019").names)
    assert model.default_settings() is not None


def test_import_is_deterministic(tmp_path):
    """The tracker's (untrained) initialisation is seeded: two imports give equal weights."""
    outs = []
    for i in range(2):
        out = tmp_path / f"m{i}.pt"
        assert main(["import", str(FIXTURES / "m2f_coco_r50.pkl"), "--from", "mask2former",
                     "--backbone", "r50", "--classes", "coco", "--out", str(out)]) == 0
        outs.append(SPVIS.from_checkpoint(out).state_dict())
    assert outs[0].keys() == outs[1].keys()
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
