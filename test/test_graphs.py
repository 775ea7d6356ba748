"""The captured segmenter (spvis_model.graphs): CUDA graphs / torch.compile per input shape,
checked against eager, with loud per-stage fallbacks.

On the CPU: CUDA-graph capture falls back loudly and the results are eager's; compile runs
(Inductor's C++) and matches eager; the fallback logic (whole
forward first, then stage by stage; a stage that fails or disagrees runs eagerly, with a
warning naming it) runs with stand-in builders. On CUDA: real capture against eager."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from spvis_model.config import preset
from spvis_model.graphs import CaptureFallbackWarning, SegmenterGraphs, max_rel_diff, tree_map
from spvis_model.model import SPVIS


def tiny(seed: int = 0) -> SPVIS:
    torch.manual_seed(seed)
    cfg = preset("tiny")
    cfg.input.max_size = 96
    return SPVIS(cfg, pretrained_backbone=False).eval()


def frames(n: int = 4, h: int = 72, w: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for t in range(n):
        f = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        f[20:50, 10 + 6 * t: 40 + 6 * t] = (220, 40, 40)
        out.append(f)
    return out


def test_capture_on_cpu_falls_back_loudly_to_eager_results():
    eager, captured = tiny(), tiny()
    captured.capture("graphs")
    se, sc = eager.init_state(), captured.init_state()
    with pytest.warns(CaptureFallbackWarning, match="needs a CUDA device"):
        for i, f in enumerate(frames()):
            se, a = eager.step(se, f, 0.1 * i)
            sc, b = captured.step(sc, f, 0.1 * i)
            assert np.array_equal(a.ids, b.ids) and np.array_equal(a.masks, b.masks)
            assert np.array_equal(a.scores, b.scores)
    assert "segmenter: eager (capture mode 'graphs' needs a CUDA device" in \
        captured.segment_graphs.describe()
    with pytest.raises(ValueError, match="capture mode = 'cudagraph'"):
        captured.capture("cudagraph")
    assert captured.capture("eager").segment_graphs is None


def test_compile_on_cpu_matches_eager_and_says_so():
    """capture("compile") on the CPU: Inductor's default mode, checked against eager when
    built (MSDeformAttn between compiled graphs); the tracker sees the same instances."""
    eager, compiled = tiny(), tiny()
    compiled.capture("compile")
    se, sc = eager.init_state(), compiled.init_state()
    for i, f in enumerate(frames(3)):
        se, a = eager.step(se, f, 0.1 * i)
        sc, b = compiled.step(sc, f, 0.1 * i)
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.labels, b.labels)
        assert np.allclose(a.scores, b.scores, atol=1e-4)
        assert (a.masks ^ b.masks).sum() <= 0.001 * a.masks.size
    text = compiled.segment_graphs.describe()
    assert "segmenter: compiled" in text and "eager" not in text, text


def _builder(behaviour: dict[str, str]):
    """A stand-in for GraphedCallable: per stage (recognised by the module), "fail" raises
    like a capture that meets a host read, "wrong" returns outputs off by one, "ok" runs the
    stage eagerly (as a faithful capture would)."""

    def build(fn, example, pool, context):
        del pool
        name = type(fn).__name__
        what = behaviour.get(name, "ok")
        if what == "fail":
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

        def run(*args):
            with context():
                out = fn(*args)
            if what == "wrong":
                out = tree_map(lambda t: t + 1 if t.is_floating_point() else t, out)
            return out

        return run

    return build


def test_fallbacks_whole_then_stage_by_stage_each_named():
    model = tiny()
    images, _ = model.preprocess(frames(1)[0])
    with torch.inference_mode():
        want = model.segmenter(images)
    graphs = SegmenterGraphs(model.segmenter, "graphs", require_cuda=False, builders={
        "graphs": ("graph", _builder({"Segmenter": "fail", "MSDeformAttnPixelDecoder": "wrong"}))})
    with torch.inference_mode(), pytest.warns(CaptureFallbackWarning) as caught:
        got = graphs(images)
    texts = [str(w.message) for w in caught]
    assert any("pixel_decoder" in t and "differs from eager" in t for t in texts), texts
    assert not any("backbone" in t or "predictor" in t for t in texts), texts
    status = {s.stage: s for s in graphs.status(tuple(images.shape))}
    assert status["segmenter"].runs == "eager" and "RuntimeError" in status["segmenter"].reason
    assert status["backbone"].runs == "graph" and status["predictor"].runs == "graph"
    assert status["pixel_decoder"].runs == "eager"
    assert max_rel_diff(got, want) == 0.0
    # Built once per shape: the next call of that shape warns no more.
    with torch.inference_mode():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", CaptureFallbackWarning)
            again = graphs(images)
    assert max_rel_diff(again, want) == 0.0


def test_a_stage_that_fails_to_build_runs_eagerly_and_the_whole_graph_wins_when_it_can():
    model = tiny()
    images, _ = model.preprocess(frames(1)[0])
    graphs = SegmenterGraphs(model.segmenter, "graphs", require_cuda=False,
                             builders={"graphs": ("graph", _builder({}))})
    with torch.inference_mode():
        graphs(images)
    assert [s.runs for s in graphs.status(tuple(images.shape))] == ["graph"]
    graphs = SegmenterGraphs(model.segmenter, "compile", require_cuda=False, builders={
        "compile": ("compiled", _builder({"Segmenter": "fail", "MaskedAttentionDecoder": "fail"}))})
    with torch.inference_mode(), pytest.warns(CaptureFallbackWarning, match="predictor"):
        graphs(images)
    runs = {s.stage: s.runs for s in graphs.status(tuple(images.shape))}
    assert runs == {"segmenter": "eager", "backbone": "compiled", "pixel_decoder": "compiled",
                    "predictor": "eager"}


@pytest.mark.cuda
@pytest.mark.parametrize("name,precision", [("tiny", "float32"), ("lite0", "float32"),
                                            ("lite0", "bfloat16")])
def test_cuda_graphs_match_eager(name, precision):
    torch.manual_seed(0)
    cfg = preset(name)
    model = SPVIS(cfg, pretrained_backbone=False).cuda().eval().set_precision(precision)
    ref = SPVIS(cfg, pretrained_backbone=False).cuda().eval().set_precision(precision)
    ref.load_state_dict(model.state_dict())
    model.capture("graphs")
    clip = frames(4, 480, 640)
    sm, sr = model.init_state(), ref.init_state()
    tol = 1e-4 if precision == "float32" else 3e-2
    for i, f in enumerate(clip):  # the first frame builds, the rest replay on new data
        images, _ = model.preprocess(f)
        with torch.inference_mode():
            got, want = model.segment(images), ref.segment(images)
        assert max_rel_diff(got.decoder, want.decoder) <= tol
        sm, a = model.step(sm, f, 0.1 * i)
        sr, b = ref.step(sr, f, 0.1 * i)
        assert np.array_equal(a.ids, b.ids)
    status = model.segment_graphs.status(tuple(images.shape))
    assert any(s.runs == "graph" for s in status), model.segment_graphs.describe()
    print(model.segment_graphs.describe())


@pytest.mark.cuda
def test_cuda_compile_matches_eager():
    model = tiny()
    model = model.cuda().capture("compile")
    ref = tiny().cuda()
    images, _ = model.preprocess(frames(1)[0])
    with torch.inference_mode():
        got, want = model.segment(images), ref.segment(images)
    assert max_rel_diff(dataclasses.replace(got.decoder, aux_outputs=[]),
                        dataclasses.replace(want.decoder, aux_outputs=[])) <= 1e-3
    print(model.segment_graphs.describe())
