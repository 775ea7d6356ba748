"""The Python API audit's defects (H1-H4, M1-M7, lows, the export audit's precision report),
one test each, on the tiny preset with small frames: each failed before its fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spvis_model.config import ConfigError, TrackerConfig, preset
from spvis_model.model import SPVIS, build_model
from spvis_model.tracker.settings import TrackSettings
from spvis_model.tracker.state import TrackerState

ROOT = Path(__file__).resolve().parent.parent
H, W = 48, 64


def small(**tracker: object) -> SPVIS:
    """The tiny preset at 64 px, random weights (seeded), tracker fields overridden."""
    cfg = preset("tiny")
    cfg.input.max_size = 64
    for name, value in tracker.items():
        setattr(cfg.tracker, name, value)
    torch.manual_seed(0)
    return SPVIS(cfg, pretrained_backbone=False).eval()


@pytest.fixture(scope="module")
def tiny() -> SPVIS:
    return small()


def frame(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- High --------------------------------------------------------------------------------------
def test_h1_time_backwards_advises_reset_not_init_state(tiny):
    state, _ = tiny.step(tiny.init_state(first_id=7), frame(), 100.0)
    with pytest.raises(ValueError, match="time went backwards") as err:
        tiny.step(state, frame(), 0.0)
    message = str(err.value)
    assert "state = state.reset()" in message and "keeps counting ids" in message
    assert "(model.init_state()) to start the stream again" not in message
    # Following the advice: the stream goes on from 0.0 without reusing an id.
    restarted, _ = tiny.step(state.reset(), frame(), 0.0)
    assert int(restarted.next_id) >= int(state.next_id) >= 7
    docs = (ROOT / "docs" / "model.md").read_text()
    assert "also the way to reset" not in docs
    assert "state = state.reset()" in docs


def test_h2_nanosecond_stamps_are_refused(tiny):
    for ns in (1.7e18, int(1.7e18), np.int64(1_700_000_000_123_456_789), -1.7e18, 1e12):
        with pytest.raises(ValueError, match="looks like nanoseconds") as err:
            tiny.step(tiny.init_state(), frame(), ns)
        assert f"stamp = {float(ns)!r}" in str(err.value)
        assert "1e9" in str(err.value)
    tiny.step(tiny.init_state(), frame(), 1.7e9)  # epoch seconds are fine
    tiny.step(tiny.init_state(), frame(), -1000.0)


def test_h2_epoch_second_stamps_keep_full_precision(tiny):
    """Stamps near 1.7e9 s give what stamps near 0 give: differences are taken in float64
    (a float32 stamp near 1.7e9 has a 128 s resolution). A guard: this already held."""
    frames = [frame(seed=i % 2) for i in range(6)]
    dts = [0.0, 0.04, 0.08, 1.08, 1.12, 1.16]
    for offset in (1.7e9, 1.7e9 + 0.123456):
        a, b = tiny.init_state(), tiny.init_state()
        for f, dt in zip(frames, dts, strict=True):
            a, ia = tiny.step(a, f, dt)
            b, ib = tiny.step(b, f, offset + dt)
            assert np.array_equal(ia.ids, ib.ids) and np.array_equal(ia.masks, ib.masks)
            np.testing.assert_allclose(ib.first_seen - offset, ia.first_seen, atol=1e-6)
        np.testing.assert_allclose((b.last_seen - offset)[b.live()], a.last_seen[a.live()],
                                   atol=1e-6)


def test_h3_state_remembers_its_frame_size(tiny, tmp_path):
    state = tiny.init_state()
    assert state.frame_size() is None and state.frame_hw.tolist() == [0, 0]
    layout = TrackerState.layout(16, 64, tiny.cfg.tracker.memory_size,
                                 tiny.cfg.tracker.mask_res, 2)
    assert list(layout) == [f.name for f in dataclasses.fields(TrackerState)]
    assert all((tuple(getattr(state, k).shape), getattr(state, k).dtype) == v
               for k, v in layout.items())
    state, _ = tiny.step(state, frame(), 0.0)
    assert state.frame_size() == (H, W) and state.frame_hw.tolist() == [H, W]
    # Another camera's size (or an aspect change, or a rotation) is refused, naming both.
    for h, w in ((64, 96), (H, 32), (W, H)):
        with pytest.raises(ValueError, match=f"frame is {w}x{h}, this state's stream is "
                                             f"{W}x{H}: one TrackerState per camera") as err:
            tiny.step(state, frame(h, w), 1.0)
        assert "state.reset() (ids continue)" in str(err.value)
    # reset(): tracks and size forgotten, ids continue; the new size is then the stream's.
    fresh = state.reset()
    assert fresh.frame_size() is None and int(fresh.next_id) == int(state.next_id)
    fresh, _ = tiny.step(fresh, frame(64, 96), 1.0)
    assert fresh.frame_size() == (64, 96)
    # Copies keep it; to_dict / from_dict keep it; a version-2 dict loads with no size yet.
    assert state.clone().frame_size() == (H, W) and state.to("cpu").frame_size() == (H, W)
    d = state.to_dict()
    assert d["format_version"] == 3 and d["frame_hw"].tolist() == [H, W]
    torch.save(d, tmp_path / "s.pt")
    back = TrackerState.from_dict(torch.load(tmp_path / "s.pt", weights_only=True),
                                  like=tiny.init_state())
    assert back.frame_size() == (H, W)
    with pytest.raises(ValueError, match="this state's stream is 64x48"):
        tiny.step(back, frame(64, 96), 2.0)
    old = {k: v for k, v in d.items() if k != "frame_hw"}
    old["format_version"] = 2
    v2 = TrackerState.from_dict(old, like=tiny.init_state())
    assert v2.frame_size() is None
    tiny.step(v2, frame(64, 96), 2.0)
    d["frame_hw"] = torch.tensor([0, 5])
    with pytest.raises(ValueError, match=r"frame_hw = \[0, 5\]: must be \(H, W\) > 0"):
        TrackerState.from_dict(d, like=tiny.init_state())


def test_h3_step_batch_refuses_a_state_of_another_size_naming_the_stream(tiny):
    a, _ = tiny.step(tiny.init_state(), frame(), 0.0)
    b, _ = tiny.step(tiny.init_state(), frame(64, 96), 0.0)
    with pytest.raises(ValueError, match=r"step_batch: stream 1: frame is 64x48, this state's "
                                         r"stream is 96x64"):
        tiny.step_batch([a, b], [frame(), frame()], [1.0, 1.0])
    out = tiny.step_batch([a, b.reset()], [frame(), frame()], [1.0, 1.0])
    assert [s.frame_size() for s, _ in out] == [(H, W), (H, W)]


def test_h4_track_settings_defaults_are_the_config_defaults(tiny):
    cfg = TrackerConfig()
    partial = TrackSettings(keep_seconds=30, tentative_seconds=1)
    assert partial.tentative_intervals == cfg.tentative_intervals == 3.0
    assert TrackSettings() == TrackSettings.from_config(cfg)
    changed = tiny.default_settings().replace(keep_seconds=30)
    assert changed == dataclasses.replace(tiny.default_settings(), keep_seconds=30.0)
    assert changed.tentative_intervals == tiny.cfg.tracker.tentative_intervals
    with pytest.raises(ValueError, match=r"TrackSettings\.keep_seconds = -1"):
        changed.replace(keep_seconds=-1)


# --- Medium ------------------------------------------------------------------------------------
def test_m1_state_of_a_model_with_other_classes_or_memory_is_a_value_error():
    one = small()
    cfg = preset("tiny")
    cfg.input.max_size = 64
    cfg.class_names = ["a", "b", "c"]
    three = SPVIS(cfg, pretrained_backbone=False).eval()
    assert one.init_state().query.shape == three.init_state().query.shape
    with pytest.raises(ValueError, match=r"state.class_logits is \(16, 2\) float32, this "
                                         r"model's states have \(16, 4\).*another model"):
        three.step(one.init_state(), frame(), 0.0)
    for field, value in (("memory_size", 2), ("mask_res", 16)):
        other = small(**{field: value})
        with pytest.raises(ValueError, match="a state from another model"):
            other.step(one.init_state(), frame(), 0.0)


def test_m2_settings_of_the_wrong_type_are_refused_naming_them(tiny):
    for bad in ({"keep_seconds": 5}, 5, "fast"):
        with pytest.raises(ValueError, match=r"settings = .*must be a TrackSettings"):
            tiny.step(tiny.init_state(), frame(), 0.0, settings=bad)
    with pytest.raises(ValueError, match=r"step_batch: stream 1: settings\[1\] = 3: must be"):
        tiny.step_batch([tiny.init_state()] * 2, [frame()] * 2, [0.0, 0.0], [None, 3])


def test_m3_track_scores_on_an_empty_frame_are_an_empty_array():
    model = small(score_model=[0.0, 1.0, 0.0], new_track_score=1.0)  # nothing is ever born
    _, inst = model.step(model.init_state(), frame(), 0.0)
    assert len(inst) == 0
    assert isinstance(inst.track_scores, np.ndarray)
    assert inst.track_scores.shape == (0,) and inst.track_scores.dtype == np.float32
    plain = small(new_track_score=1.0)
    assert plain.step(plain.init_state(), frame(), 0.0)[1].track_scores is None


def test_m4_save_keeps_the_checkpoint_meta(tmp_path):
    from spvis_model.weights import demo_notice

    model = small()
    model.save(tmp_path / "demo.pt", meta={"kind": "demo", "source_sha256": "ab" * 32})
    demo = SPVIS.from_checkpoint(tmp_path / "demo.pt")
    demo.save(tmp_path / "again.pt")
    again = SPVIS.from_checkpoint(tmp_path / "again.pt")
    assert again.meta == {"kind": "demo", "source_sha256": "ab" * 32}
    assert demo_notice(again) is not None
    demo.save(tmp_path / "cleared.pt", meta={})
    assert SPVIS.from_checkpoint(tmp_path / "cleared.pt").meta == {}


def test_m5_from_dict_uses_likes_device_and_step_checks_the_states_device(tiny):
    saved = tiny.init_state().to_dict()
    like = tiny.init_state().to("meta")
    assert TrackerState.from_dict(saved, like=like).query.device.type == "meta"
    assert TrackerState.from_dict(saved).query.device.type == "cpu"
    assert TrackerState.from_dict(saved, like=like, device="cpu").query.device.type == "cpu"
    with pytest.raises(ValueError, match=r"state.query is on meta, the model on cpu: .*"
                                         r"state.to\(model.device\)"):
        tiny.step(like, frame(), 0.0)


def test_m6_cast_weights_point_to_set_precision():
    model = small()
    for cast in (torch.nn.Module.double, torch.nn.Module.half, torch.nn.Module.bfloat16):
        cast(model)
        with pytest.raises(ValueError, match=r"set_precision\('float16' or 'bfloat16'\)"):
            model.step(model.init_state(), frame(), 0.0)
        model.float()
    model.step(model.init_state(), frame(), 0.0)


def test_m7_step_batch_errors_name_the_stream(tiny):
    late, _ = tiny.step(tiny.init_state(), frame(), 5.0)
    states = [tiny.init_state(), late, tiny.init_state()]
    with pytest.raises(ValueError, match=r"step_batch: stream 1: stamp = 1.0 is earlier"):
        tiny.step_batch(states, [frame()] * 3, [1.0, 1.0, 1.0])
    bad = [frame(), frame(), frame().astype(np.float32)]
    with pytest.raises(ValueError, match=r"step_batch: stream 2: frame dtype float32"):
        tiny.step_batch(states, bad, [6.0, 6.0, 6.0])
    with pytest.raises(ValueError, match=r"step_batch: stream 0: stamp = nan"):
        tiny.step_batch(states, [frame()] * 3, [float("nan"), 6.0, 6.0])


def test_export_precision_reports_what_the_backend_runs():
    """A float16 ONNX file run by onnxruntime (here a stand-in backend, so the runtime's own
    CUDA-only check for float16 files does not apply): `precision` says float16,
    set_precision accepts exactly that and names it otherwise."""

    class Float16Backend:
        precision = "float16"

        def describe(self) -> str:
            return "onnxruntime stand-in, model.onnx: grid_sample, float16"

    model = small()
    model.segment_backend = Float16Backend()
    assert model.precision == "float16"
    assert model.set_precision("float16") is model
    with pytest.raises(ValueError, match=r"precision = 'float32': .*exported file in float16"):
        model.set_precision("float32")
    model.segment_backend = None
    assert model.precision == "float32"


# --- Low ---------------------------------------------------------------------------------------
def test_l1_first_id_takes_numpy_integers_and_is_bounded(tiny):
    assert int(tiny.init_state(first_id=np.int64(5)).next_id) == 5
    assert int(tiny.init_state(first_id=2**62).next_id) == 2**62
    for bad in (2**62 + 1, 2**63, np.float64(5.0), np.bool_(True)):
        with pytest.raises(ValueError, match="first_id = "):
            tiny.init_state(first_id=bad)


def test_l2_numpy_scalars_accepted_by_settings_and_config(tmp_path):
    s = TrackSettings(keep_seconds=np.float32(5), tentative_seconds=np.int64(2),
                      tentative_intervals=np.float16(1))
    assert s == TrackSettings(5.0, 2.0, 1.0) and type(s.keep_seconds) is float
    cfg = preset("tiny")
    cfg.input.max_size = np.int64(64)
    cfg.tracker.keep_seconds = np.float32(30)
    cfg.tracker.score_calibration = [np.float32(1.0), np.float64(0.0)]
    model = SPVIS(cfg, pretrained_backbone=False)
    assert type(cfg.tracker.keep_seconds) is float and type(cfg.input.max_size) is int
    model.save(tmp_path / "m.pt")
    assert SPVIS.from_checkpoint(tmp_path / "m.pt").cfg.tracker.keep_seconds == 30.0


def test_l3_build_model_paths(tmp_path):
    from spvis_model.config import save_config

    save_config(preset("tiny"), tmp_path / "c.yaml")
    assert build_model(tmp_path / "c.yaml").cfg.name == "tiny"
    for name in ("model.pt", tmp_path / "m.pth"):
        with pytest.raises(ValueError, match=r"looks like a checkpoint; .*SPVIS.from_checkpoint"):
            build_model(name)


def test_l4_cpu_zero_is_the_cpu():
    from spvis_model.devices import resolve_device

    assert resolve_device("cpu:0") == torch.device("cpu")
    assert resolve_device(torch.device("cpu", 0)) == torch.device("cpu")


def test_l5_l6_save_checks_the_folder_and_the_config(tmp_path):
    model = small()
    target = tmp_path / "missing" / "x.pt"
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        model.save(target)
    assert str(target) in str(err.value) and ".tmp" not in str(err.value)
    model.cfg.tracker.output_score = 1.5
    with pytest.raises(ConfigError, match=r"model.cfg is invalid: tracker.output_score = 1.5"):
        model.save(tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists() and list(tmp_path.iterdir()) == []


def test_l7_from_dict_checks_values(tiny):
    like = tiny.init_state()

    def saved() -> dict:
        """A state with one active track, id 1 (next id 2), seen on a 48x64 frame."""
        d = like.to_dict()
        d["status"][0], d["ids"][0], d["next_id"] = 2, 1, torch.tensor(2)
        return d

    assert int(TrackerState.from_dict(saved(), like=like).ids[0]) == 1
    cases = [(lambda d: d["status"].__setitem__(1, 7), "field status: values"),
             (lambda d: d["query"].__setitem__((0, 0), float("nan")), "field query: holds NaN"),
             (lambda d: d["ids"].__setitem__(0, 9), r"field ids: live track id\(s\) \[9\]"),
             (lambda d: d.__setitem__("next_id", torch.tensor(0)), "field next_id = 0")]
    for edit, message in cases:
        d = saved()
        edit(d)
        with pytest.raises(ValueError, match=message):
            TrackerState.from_dict(d, like=like)


def test_l8_error_hints(tiny):
    chw = np.ascontiguousarray(frame().transpose(2, 0, 1))
    with pytest.raises(ValueError, match=r"looks like CHW .*permute\(1, 2, 0\)"):
        tiny.step(tiny.init_state(), chw, 0.0)
    with pytest.raises(ValueError, match=r"float32: must be uint8 RGB .*\* 255"):
        tiny.step(tiny.init_state(), frame().astype(np.float32) / 255, 0.0)
    with pytest.raises(ValueError, match=r"frame\[\.\.\., :3\]"):
        tiny.step(tiny.init_state(), np.zeros((H, W, 4), np.uint8), 0.0)
    with pytest.raises(ValueError, match=r"got str '12:00'"):
        tiny.step(tiny.init_state(), frame(), "12:00")


def test_l11_iterables_for_step_batch_and_segment_clip(tiny):
    frames = [frame(seed=i) for i in range(3)]
    stamps = [0.0, 0.1, 0.2]
    clip = tiny.segment_clip(frames, stamps)
    lazy = tiny.segment_clip((f for f in frames), iter(stamps))
    assert [i.ids.tolist() for i in lazy] == [i.ids.tolist() for i in clip]
    with pytest.raises(ValueError, match="differ in length"):
        tiny.segment_clip((f for f in frames), iter(stamps[:2]))
    with pytest.raises(ValueError, match=r"segment_clip: frames\[1\]: frame shape"):
        tiny.segment_clip([frames[0], frames[1][..., 0]], stamps[:2])
    out = tiny.step_batch((tiny.init_state() for _ in range(2)), iter(frames[:2]),
                          np.array([0.0, 0.0]), (s for s in [None, tiny.default_settings()]))
    assert len(out) == 2
    with pytest.raises(ValueError, match="states must be a sequence"):
        tiny.step_batch(tiny.init_state(), frames[:1], [0.0])
