"""Untrusted source files run nothing: a malicious detectron2 .pkl is refused by the restricted
unpickler, a malicious .pth by torch.load(weights_only=True); the error names the global, and
the payload (which would create a file) never runs."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from spvis_model.cli import main
from spvis_model.importers import (
    ImportCheckpointError,
    UnsafeFileError,
    import_checkpoint,
    read_source_file,
)

FIXTURES = Path(__file__).parent / "fixtures" / "import"


class Payload:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalPayload:
    """Unpickling this calls builtins.exec(code)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def evil_state(marker: Path, kind: str) -> dict:
    payload = (Payload(f"touch {marker}") if kind == "system"
               else EvalPayload(f"open({str(marker)!r}, 'w').close()"))
    return {"model": {"backbone.stem.conv1.weight": np.zeros((4, 3, 7, 7), np.float32),
                      "sem_seg_head.predictor.query_feat.weight": payload},
            "__author__": "not Meta"}


@pytest.mark.parametrize("kind,expected_global", [("system", "system"), ("exec", "exec")])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pkl_runs_nothing(tmp_path, kind, expected_global, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final_evil.pkl"
    path.write_bytes(pickle.dumps(evil_state(marker, kind), protocol=protocol))
    with pytest.raises(UnsafeFileError, match=rf"refused to load global \w+\.{expected_global}"
                       ) as err:
        import_checkpoint(path, source="mask2former", backbone="r50", classes="coco",
                          out=tmp_path / "out.pt")
    assert err.value.global_name.endswith(expected_global)
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists()


def test_malicious_pth_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "minvis_evil.pth"
    torch.save({"model": {"backbone.stem.conv1.weight": torch.zeros(4, 3, 7, 7),
                          "sem_seg_head.predictor.query_feat.weight": Payload(f"touch {marker}")},
                "iteration": 3}, path)
    with pytest.raises(UnsafeFileError, match=r"refused to load global \w+\.system") as err:
        import_checkpoint(path, source="minvis", backbone="r50", classes="ytvis2019",
                          out=tmp_path / "out.pt")
    assert err.value.global_name.endswith("system")
    assert not marker.exists()


def test_malicious_pth_with_numpy_arrays_runs_nothing(tmp_path):
    """numpy arrays are allowed in a .pth too; the payload beside them is still refused."""
    marker = tmp_path / "pwned"
    path = tmp_path / "numpy_evil.pth"
    torch.save(evil_state(marker, "exec"), path)
    with pytest.raises(UnsafeFileError, match=r"refused to load global (builtins\.)?exec "):
        read_source_file(path)
    assert not marker.exists()


def test_pth_with_numpy_values_loads(tmp_path):
    path = tmp_path / "numpy_ok.pth"
    torch.save({"model": {"w": np.ones((2, 2), np.float32)},
                "trainer": {"iteration": np.int64(3)}}, path)
    src = read_source_file(path)
    assert torch.equal(src.tensors["w"], torch.ones(2, 2))
    assert src.top_level_dropped == ["trainer"]


def test_cli_reports_the_refused_global(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(evil_state(marker, "system"), protocol=2))
    rc = main(["import", str(path), "--from", "mask2former", "--backbone", "r50",
               "--classes", "coco", "--out", str(tmp_path / "out.pt")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "refused to load global" in err and "system" in err
    assert not marker.exists()


def test_pkl_with_torch_tensors_is_refused(tmp_path):
    """torch tensors pickle through torch rebuild functions: not plain data in a .pkl."""
    path = tmp_path / "tensors.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": torch.zeros(2)}}, protocol=2))
    with pytest.raises(UnsafeFileError, match=r"refused to load global torch\."):
        read_source_file(path)


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "objects.pkl"
    arr = np.array([1, "two"], dtype=object)
    path.write_bytes(pickle.dumps({"model": {"w": arr}}, protocol=2))
    with pytest.raises(ImportCheckpointError, match=r"key 'w' holds a numpy array of dtype "
                                                    r"object"):
        read_source_file(path)


def test_plain_numpy_pickles_load(tmp_path):
    """What the restricted unpickler must accept: arrays of every numeric dtype, numpy
    scalars, OrderedDict, strings, numbers, in protocols 2 and 4."""
    state = collections.OrderedDict(
        (f"k{i}", (np.arange(6) % 2).astype(dt).reshape(2, 3))
        for i, dt in enumerate((np.float32, np.float64, np.float16, np.int64, np.uint8,
                                np.bool_)))
    for protocol in (2, 4):
        path = tmp_path / f"ok{protocol}.pkl"
        path.write_bytes(pickle.dumps({"model": state, "__author__": "Meta",
                                       "iteration": np.int64(5)}, protocol=protocol))
        src = read_source_file(path)
        assert list(src.tensors) == list(state)
        for key, value in state.items():
            assert np.array_equal(src.tensors[key].numpy(), value)
        assert src.top_level_dropped == ["__author__", "iteration"]
        assert src.format == "detectron2-pkl"


def test_truncated_and_garbage_files_are_errors(tmp_path):
    good = (FIXTURES / "m2f_coco_r50.pkl").read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImportCheckpointError, match=r"cut\.pkl: not a readable pickle"):
        read_source_file(cut)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ImportCheckpointError, match=r"junk\.pth: not a readable torch file"):
        read_source_file(junk)


def test_a_refused_torch_pickle_is_one_line_without_torchs_retry_advice(tmp_path):
    # A zip archive torch accepts as a checkpoint, whose pickle uses an opcode the weights-only
    # unpickler does not take: torch's message advises weights_only=False; ours must not.
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(bad, "w") as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                data = b"\xdc" + data[1:]  # an opcode no unpickler knows
            out.writestr(item, data)
    with pytest.raises(ImportCheckpointError) as err:
        read_source_file(bad)
    text = str(err.value)
    assert text.startswith(f"{bad}: not a readable torch file (the weights-only unpickler "
                           "refused it: "), text
    assert "\n" not in text and "weights_only" not in text, text
