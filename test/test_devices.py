"""One device check for the API, `spvis eval` and the node (spvis_model.devices): a device this
machine cannot serve is one clear line naming the field and the value, never a traceback from
inside `Module.to`, and never a silent move to the CPU."""

from __future__ import annotations

import pytest
import torch

from spvis_model.cli import main
from spvis_model.devices import resolve_device
from spvis_model.ops import with_cuda

CUDA = torch.cuda.is_available() and with_cuda()


@pytest.mark.parametrize("name", ["cpu", " cpu ", torch.device("cpu")])
def test_cpu_is_always_served(name):
    assert resolve_device(name) == torch.device("cpu")


def test_auto_takes_cuda_when_torch_sees_it():
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if torch.cuda.is_available() and not with_cuda():
        with pytest.raises(ValueError, match="built without CUDA kernels"):
            resolve_device("auto")
    else:
        assert resolve_device("auto") == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:-1", "cpu:1", "auto:0", "CUDA", "", "mps"])
def test_malformed_names_are_refused_with_the_forms(name):
    with pytest.raises(ValueError) as err:
        resolve_device(name, "--device")
    assert str(err.value) == f"--device = {name!r}: must be auto, cpu, cuda or cuda:N"


def test_a_non_string_is_refused():
    with pytest.raises(ValueError, match=r"^device = 3: must be a string"):
        resolve_device(3)  # type: ignore[arg-type]


def test_cuda_index_past_the_visible_devices_is_refused():
    with pytest.raises(ValueError) as err:
        resolve_device("cuda:99", "parameter device")
    message = str(err.value)
    assert message.startswith("parameter device = 'cuda:99': ")
    if CUDA:
        assert f"only {torch.cuda.device_count()} CUDA device(s) are visible" in message
    elif not torch.cuda.is_available():
        assert "torch sees no CUDA device (use cpu or auto)" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
# ids without the word "cuda": conftest skips every test whose keywords hold it.
@pytest.mark.parametrize("name", ["cuda", "cuda:0", torch.device("cuda", 0)],
                         ids=["plain", "index-0", "torch-device"])
def test_cuda_on_a_cpu_machine_is_refused(name):
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
def test_loading_a_checkpoint_on_cuda_here_names_the_device(tmp_path, trained_tiny):
    trained_tiny.save(tmp_path / "c.pt")
    from spvis_model.model import SPVIS
    with pytest.raises(ValueError, match=r"^device = 'cuda': torch sees no CUDA device"):
        SPVIS.from_checkpoint(tmp_path / "c.pt", device="cuda")


@pytest.mark.cuda
def test_cuda_names_resolve_on_a_cuda_machine():
    if not CUDA:
        pytest.skip("no CUDA device or no CUDA kernels")
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    last = torch.cuda.device_count() - 1
    assert resolve_device(f"cuda:{last}") == torch.device("cuda", last)


@pytest.mark.parametrize("device", ["cuda:99", "gpu"])
def test_eval_cli_refuses_a_device_it_cannot_use_in_one_line(tmp_path, capsys, device):
    # Before anything is read: the checkpoint and data need not exist for the refusal.
    argv = ["eval", "--checkpoint", str(tmp_path / "c.pt"), "--data", str(tmp_path / "d.json"),
            "--device", device]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"spvis eval: error: --device = {device!r}: " in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
def test_train_cli_refuses_cuda_here_before_reading_data(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("stage: 1\nsteps: 20\ndevice: cuda\n")
    argv = ["train", "--config", str(config), "--data", str(tmp_path / "missing.json"),
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"train config {config}: device = 'cuda': torch sees no CUDA device" in err, err
    assert not (tmp_path / "run").exists()
