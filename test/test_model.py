"""The SPVIS model API: presets' shapes, step/Instances contract, bad input, checkpoints."""

from __future__ import annotations

import dataclasses
import pickle
import warnings

import numpy as np
import pytest
import torch

from spvis_model import build_model
from spvis_model.checkpoint import CheckpointError, read_checkpoint
from spvis_model.config import preset
from spvis_model.model import SPVIS


def small(name: str, max_size: int = 64) -> SPVIS:
    cfg = preset(name)
    cfg.input.max_size = max_size
    torch.manual_seed(0)
    return SPVIS(cfg, pretrained_backbone=False).eval()


@pytest.fixture(scope="module")
def tiny() -> SPVIS:
    return small("tiny", 96)


def frames(n: int, h: int = 75, w: int = 101, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("name,size", [("tiny", 128), ("lite0", 96), ("r50", 64)])
def test_preset_forward_shapes(name, size):
    model = small(name, size)
    cfg = model.cfg
    images, geom = model.preprocess(frames(1, 70, 90)[0])
    assert images.shape[-2:] == geom.padded and geom.padded[0] % 32 == 0
    with torch.no_grad():
        seg = model.segment(images)
    n, k = cfg.segmenter.num_queries, cfg.num_classes
    h4, w4 = geom.padded[0] // 4, geom.padded[1] // 4
    assert seg.decoder.pred_logits.shape == (1, n, k + 1)
    assert seg.decoder.pred_masks.shape == (1, n, h4, w4)
    assert seg.decoder.query_embed.shape == (1, n, cfg.segmenter.hidden_dim)
    assert seg.pixels.memory.shape[-1] == cfg.pixel_decoder.conv_dim
    _, inst = model.step(model.init_state(), frames(1, 70, 90)[0], 0.0)
    assert inst.masks.shape[1:] == (70, 90)


def test_init_state_first_id(tiny, trained_tiny):
    """A state started at first_id hands out ids from there (a stream that dropped its state
    goes on without reusing ids); bad values are refused naming the argument."""
    from synthetic_clip import crossing_clip

    state = trained_tiny.init_state(first_id=41)
    assert int(state.next_id) == 41
    for i, frame in enumerate(crossing_clip(2)[0]):
        state, inst = trained_tiny.step(state, frame, 0.5 * i)
    assert len(inst) == 2 and sorted(inst.ids.tolist()) == [41, 42]
    for bad in (0, -3, 2.5, True, "7"):
        with pytest.raises(ValueError, match="first_id = "):
            tiny.init_state(first_id=bad)


def test_step_returns_instances_at_frame_resolution(tiny):
    state = tiny.init_state()
    for i, frame in enumerate(frames(3)):
        state, inst = tiny.step(state, frame, 0.1 * i)
    assert inst.masks.dtype == bool and inst.masks.shape[1:] == (75, 101)
    assert inst.ids.dtype == np.int64 and len(set(inst.ids.tolist())) == len(inst)
    assert inst.boxes.shape == (len(inst), 4) and inst.scores.dtype == np.float32
    assert len(inst.label_names) == len(inst) and set(inst.label_names) <= {"object"}
    for box, mask in zip(inst.boxes, inst.masks, strict=True):
        ys, xs = np.nonzero(mask)
        assert (box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).all()
    # The same frame as a torch tensor gives the same result.
    _, inst2 = tiny.step(tiny.init_state(), torch.from_numpy(frames(1)[0]), 0.0)
    _, inst1 = tiny.step(tiny.init_state(), frames(1)[0], 0.0)
    assert np.array_equal(inst1.masks, inst2.masks)
    # A read-only frame (np.frombuffer over a message's bytes) is accepted without torch's
    # non-writable-array warning, and gives the same result.
    ro = np.frombuffer(frames(1)[0].tobytes(), np.uint8).reshape(75, 101, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, inst3 = tiny.step(tiny.init_state(), ro, 0.0)
    assert np.array_equal(inst1.masks, inst3.masks)


@pytest.mark.parametrize("frame,message", [
    (np.zeros((10, 10, 3), np.float32), "frame dtype float32: must be uint8"),
    (np.zeros((10, 10), np.uint8), r"frame shape \(10, 10\): must be \(H, W, 3\)"),
    (np.zeros((10, 10, 4), np.uint8), r"frame shape \(10, 10, 4\)"),
    (np.zeros((0, 10, 3), np.uint8), "empty image"),
    ([[1, 2, 3]], "frame must be a numpy array or torch tensor, got list"),
])
def test_bad_frames_raise_clear_errors(tiny, frame, message):
    with pytest.raises(ValueError, match=message):
        tiny.step(tiny.init_state(), frame, 0.0)


def test_stamp_validation(tiny):
    state, _ = tiny.step(tiny.init_state(), frames(1)[0], 5.0)
    with pytest.raises(ValueError, match=r"stamp = 4.0 is earlier than the state's last stamp 5.0"):
        tiny.step(state, frames(1)[0], 4.0)
    with pytest.raises(ValueError, match="stamp = nan: must be finite"):
        tiny.step(state, frames(1)[0], float("nan"))
    with pytest.raises(ValueError, match="stamp must be a number of seconds, got str"):
        tiny.step(state, frames(1)[0], "5")
    with pytest.raises(ValueError, match="a state from another model"):
        tiny.step(dataclasses.replace(state, query=state.query[:3]), frames(1)[0], 6.0)


def test_precision_needs_cuda_on_cpu_model(tiny):
    with pytest.raises(ValueError, match=r"precision = 'float16' needs the model on a CUDA"):
        tiny.set_precision("float16")
    with pytest.raises(ValueError, match="must be one of"):
        tiny.set_precision("int8")


def test_state_save_restore_mid_stream_gives_identical_outputs(tiny, tmp_path):
    clip = frames(8, seed=3)
    state = tiny.init_state()
    for i in range(4):
        state, _ = tiny.step(state, clip[i], i * 0.5)
    torch.save(state.to_dict(), tmp_path / "state.pt")
    straight = []
    for i in range(4, 8):
        state, inst = tiny.step(state, clip[i], i * 0.5)
        straight.append(inst)
    from spvis_model import TrackerState

    restored = TrackerState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True),
                                      like=tiny.init_state())
    for i in range(4, 8):
        restored, inst = tiny.step(restored, clip[i], i * 0.5)
        ref = straight[i - 4]
        assert np.array_equal(inst.ids, ref.ids) and np.array_equal(inst.masks, ref.masks)
        assert np.allclose(inst.scores, ref.scores)


def test_segment_clip_equals_online(tiny):
    clip = frames(3, seed=4)
    stamps = [0.0, 0.5, 1.0]
    offline = tiny.segment_clip(clip, stamps)
    state = tiny.init_state()
    for frame, stamp, off in zip(clip, stamps, offline, strict=True):
        state, inst = tiny.step(state, frame, stamp)
        assert np.array_equal(inst.ids, off.ids) and np.array_equal(inst.masks, off.masks)
    with pytest.raises(ValueError, match="3 frames but 2 stamps"):
        tiny.segment_clip(clip, stamps[:2])


def test_minvis_baseline_runs_with_one_slot_per_query():
    cfg = preset("tiny")
    cfg.input.max_size = 64
    cfg.tracker.association = "minvis"
    model = build_model(cfg).eval()
    state = model.init_state()
    for i, frame in enumerate(frames(3)):
        state, _ = model.step(state, frame, float(i))
    n = cfg.segmenter.num_queries
    assert set(state.ids[:n].tolist()) == set(range(1, n + 1))  # one fixed id per query slot


# --- checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_round_trip_and_half_storage(tiny, tmp_path):
    frame = frames(1)[0]
    _, ref = tiny.step(tiny.init_state(), frame, 0.0)
    tiny.save(tmp_path / "m.pt")
    loaded = SPVIS.from_checkpoint(tmp_path / "m.pt")
    _, got = loaded.step(loaded.init_state(), frame, 0.0)
    assert np.array_equal(got.masks, ref.masks) and np.array_equal(got.ids, ref.ids)
    tiny.save(tmp_path / "h.pt", half=True)
    assert (tmp_path / "h.pt").stat().st_size < 0.6 * (tmp_path / "m.pt").stat().st_size
    half = SPVIS.from_checkpoint(tmp_path / "h.pt")
    assert all(p.dtype == torch.float32 for p in half.parameters())


def test_bad_checkpoints_raise_clear_errors(tiny, tmp_path):
    tiny.save(tmp_path / "m.pt")
    payload = read_checkpoint(tmp_path / "m.pt")

    def write(name, data):
        torch.save(data, tmp_path / name)
        return tmp_path / name

    missing = dict(payload, state_dict=dict(payload["state_dict"]))
    key = next(iter(missing["state_dict"]))
    del missing["state_dict"][key]
    with pytest.raises(CheckpointError, match=rf"missing keys \(1\): {key}"):
        SPVIS.from_checkpoint(write("missing.pt", missing))
    shaped = dict(payload, state_dict=dict(payload["state_dict"]))
    shaped["state_dict"][key] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=rf"{key}: expected \[.*\], got \[3, 3\]"):
        SPVIS.from_checkpoint(write("shape.pt", shaped))
    with pytest.raises(CheckpointError, match=r"key 'format_version' = 99"):
        SPVIS.from_checkpoint(write("version.pt", dict(payload, format_version=99)))
    bad_cfg = dict(payload, config=dict(payload["config"], tracker={"max_tracks": -2}))
    with pytest.raises(CheckpointError, match=r"key 'config': .*max_tracks = -2"):
        SPVIS.from_checkpoint(write("config.pt", bad_cfg))
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable spvis checkpoint"):
        SPVIS.from_checkpoint(tmp_path / "garbage.pt")
    raw = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable"):
        SPVIS.from_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        SPVIS.from_checkpoint(tmp_path / "absent.pt")


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Exploit.marker}",))


def test_checkpoint_loading_runs_no_code(tmp_path):
    _Exploit.marker = str(tmp_path / "pwned")
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "spvis-checkpoint", "x": _Exploit()}, f)
    torch.save({"format": "spvis-checkpoint", "x": _Exploit()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(CheckpointError) as err:
            SPVIS.from_checkpoint(tmp_path / name)
        # One line, and never torch's advice to retry with weights_only=False.
        assert "\n" not in str(err.value) and "likely succeed" not in str(err.value), err.value
    assert "refused to load global posix.system" in str(err.value), err.value
    assert not (tmp_path / "pwned").exists()


def test_demo_checkpoint_says_so_and_settings_never_touch_the_config(tmp_path):
    from spvis_model.tracker.settings import TrackSettings
    from spvis_model.weights import demo_notice

    model = build_model("tiny").eval()
    assert demo_notice(model) is None
    model.save(tmp_path / "demo.pt", meta={"kind": "demo"})
    demo = SPVIS.from_checkpoint(tmp_path / "demo.pt")
    notice = demo_notice(demo)
    assert notice is not None and "DEMO model" in notice and "object" in notice
    assert "spvis import" in notice
    before = dataclasses.asdict(demo.cfg.tracker)
    frame = np.zeros((64, 64, 3), np.uint8)
    state = demo.init_state()
    state, _ = demo.step(state, frame, 0.0, TrackSettings(keep_seconds=123.0,
                                                          tentative_seconds=0.25))
    assert dataclasses.asdict(demo.cfg.tracker) == before


def test_score_calibration_maps_published_scores():
    from spvis_model.config import ConfigError
    from spvis_model.model import FrameGeometry
    from spvis_model.tracker.types import TrackStep

    model = build_model("tiny").eval()
    v = 2
    step = TrackStep(
        slots=torch.arange(v), ids=torch.tensor([1, 2]), visible=torch.tensor([True, True]),
        det_index=torch.tensor([0, 1]), class_logits=torch.zeros(v, 2),
        running_logits=torch.tensor([[2.0, 0.0], [2.0, 0.0]]),
        mask_logits=torch.full((v, 8, 8), 5.0), visibility=torch.ones(v),
        score=torch.tensor([0.6, 0.35]), first_seen=torch.zeros(v, dtype=torch.float64),
        query=torch.zeros(v, 64), refined=torch.zeros(v, 64))
    geom = FrameGeometry((32, 32), (32, 32), (32, 32))
    assert model.postprocess(step, geom).scores.tolist() == pytest.approx([0.6, 0.35])
    model.cfg.tracker.score_calibration = [1.0, -1.0]  # halves the odds
    inst = model.postprocess(step, geom)
    # 0.6 -> odds 1.5 * e^-1 -> 0.356; 0.35 -> 0.165, below output_score 0.3: not published
    assert inst.scores.tolist() == pytest.approx([0.3556], abs=1e-3)
    model.cfg.tracker.score_calibration = [0.0, 1.0]
    with pytest.raises(ConfigError, match=r"tracker\.score_calibration"):
        model.cfg.validate()
