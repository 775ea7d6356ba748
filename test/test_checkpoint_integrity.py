"""Checkpoints that must be refused with a CheckpointError (never another exception, never a
silent load): garbage files, flipped bits, NaN weights; and old checkpoints without a checksum
that must still load."""

from __future__ import annotations

import random
import warnings
import zipfile

import numpy as np
import pytest
import torch

from spvis_model.checkpoint import (
    CHECKSUM_KEY,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    weights_checksum,
)
from spvis_model.config import preset
from spvis_model.model import SPVIS
from spvis_model.weights import default_checkpoint


@pytest.fixture(scope="module")
def tiny() -> SPVIS:
    torch.manual_seed(0)
    cfg = preset("tiny")
    cfg.class_names = ["disk", "square"]
    return SPVIS(cfg).eval()


@pytest.fixture
def saved(tiny, tmp_path):
    path = tmp_path / "m.pt"
    tiny.save(path)
    return path


def _only_checkpoint_errors(path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warnings on the way (they used to be printed)
        with pytest.raises(CheckpointError, match=str(path.name)):
            load_checkpoint(path)


def test_etc_passwd_and_text_files(tmp_path):
    _only_checkpoint_errors(__import__("pathlib").Path("/etc/passwd"))
    (tmp_path / "notes.pt").write_text("weights: none\n")
    _only_checkpoint_errors(tmp_path / "notes.pt")


def test_1024_random_small_files_raise_only_checkpoint_errors(tmp_path):
    """Random 65-byte files used to escape as IndexError / KeyError from the unpickler (62 and
    9 of 1024); half of them here start with a torch magic so they reach the unpickler."""
    rng = random.Random(13)
    magics = (b"PK\x03\x04", b"\x80\x02\x8a\x0a")
    for i in range(1024):
        data = bytes(rng.randrange(256) for _ in range(65))
        if i % 2:
            data = magics[i // 2 % 2] + data[4:]
        path = tmp_path / f"r{i}.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError):
            read_checkpoint(path)


def test_zip_that_is_not_a_torch_file_and_truncated_checkpoint(saved, tmp_path):
    with zipfile.ZipFile(tmp_path / "other.pt", "w") as z:
        z.writestr("readme.txt", "hello")
    _only_checkpoint_errors(tmp_path / "other.pt")
    data = saved.read_bytes()
    for cut in (10, len(data) // 3, len(data) - 20):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        _only_checkpoint_errors(tmp_path / "cut.pt")


def test_state_dict_with_non_tensors_is_refused(saved, tmp_path):
    payload = read_checkpoint(saved)
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key] = 3
    torch.save(payload, tmp_path / "int.pt")
    with pytest.raises(CheckpointError, match=rf"state_dict entry '{key}' is a int"):
        load_checkpoint(tmp_path / "int.pt")


def test_checksum_is_written_and_verified(saved, tiny):
    payload = read_checkpoint(saved)
    assert payload[CHECKSUM_KEY] == weights_checksum(payload["state_dict"])
    assert payload[CHECKSUM_KEY] == weights_checksum(
        {k: v.detach() for k, v in tiny.state_dict().items()})
    loaded = load_checkpoint(saved)
    assert weights_checksum(loaded.state_dict()) == payload[CHECKSUM_KEY]


def _float_keys(payload) -> list[str]:
    return [k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel()]


def test_one_flipped_bit_is_caught_by_the_checksum(saved, tmp_path):
    """A single flipped mantissa bit keeps every value finite and the shapes right: only the
    checksum can tell."""
    payload = read_checkpoint(saved)
    key = _float_keys(payload)[5]
    tensor = payload["state_dict"][key].clone()
    raw = tensor.reshape(-1).view(torch.int32)
    raw[0] ^= 1
    assert torch.isfinite(tensor).all()
    payload["state_dict"][key] = tensor
    torch.save(payload, tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError, match=r"do not match their checksum.*corrupt or was "
                                              "edited"):
        load_checkpoint(tmp_path / "flipped.pt")


def test_bit_flip_in_the_file_bytes_is_caught(saved, tmp_path):
    """Flip one bit inside a stored tensor of the file itself (the zip stores tensors raw)."""
    payload = read_checkpoint(saved)
    key = _float_keys(payload)[3]
    needle = payload["state_dict"][key].reshape(-1)[:8].numpy().tobytes()
    data = bytearray(saved.read_bytes())
    at = data.find(needle)
    assert at > 0, "tensor bytes not found in the file"
    data[at + 2] ^= 0x10
    (tmp_path / "bytes.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"bytes\.pt"):
        load_checkpoint(tmp_path / "bytes.pt")


def test_nan_weights_are_refused_naming_the_tensor(tiny, tmp_path):
    # A model whose weights went NaN (a diverged run) saved normally: the checksum matches.
    nan_model = SPVIS(tiny.cfg).eval()
    nan_model.load_state_dict(tiny.state_dict())
    key = [k for k, v in nan_model.state_dict().items() if v.is_floating_point()][7]
    with torch.no_grad():
        nan_model.state_dict()[key].view(-1)[0] = float("nan")
    nan_model.save(tmp_path / "one_nan.pt")
    with pytest.raises(CheckpointError, match=rf"tensor '{key}' has 1 non-finite \(NaN/inf\)"):
        load_checkpoint(tmp_path / "one_nan.pt")
    with torch.no_grad():
        for value in nan_model.state_dict().values():
            if value.is_floating_point():
                value.fill_(float("nan"))
    nan_model.save(tmp_path / "all_nan.pt")
    with pytest.raises(CheckpointError, match=r"non-finite.*and [0-9]+ more tensors"):
        load_checkpoint(tmp_path / "all_nan.pt")
    # Half storage: inf from a float32 value too large for float16 is caught the same way.
    with torch.no_grad():
        for value in nan_model.state_dict().values():
            if value.is_floating_point():
                value.fill_(0.5)
        nan_model.state_dict()[key].view(-1)[0] = 1e6
    nan_model.save(tmp_path / "half_inf.pt", half=True)
    with pytest.raises(CheckpointError, match=rf"tensor '{key}' has 1 non-finite"):
        load_checkpoint(tmp_path / "half_inf.pt")


def test_old_checkpoints_without_a_checksum_still_load(saved, tmp_path):
    payload = read_checkpoint(saved)
    del payload[CHECKSUM_KEY]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt") is not None
    shipped = read_checkpoint(default_checkpoint())
    model = load_checkpoint(default_checkpoint())
    if CHECKSUM_KEY in shipped:  # once re-saved with model.save
        assert weights_checksum(shipped["state_dict"]) == shipped[CHECKSUM_KEY]
    assert np.isfinite(next(model.parameters()).detach().numpy()).all()


def test_failed_save_leaves_no_temp_file(tiny, tmp_path):
    (tmp_path / "folder.pt").mkdir()  # os.replace onto a folder fails after torch.save
    with pytest.raises(IsADirectoryError):
        tiny.save(tmp_path / "folder.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.pt"]
    with pytest.raises(FileNotFoundError):  # a missing folder
        tiny.save(tmp_path / "missing" / "m.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.pt"]
