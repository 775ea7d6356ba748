"""The node process under the conditions a robot meets and the happy-path tests do not:

- Ctrl-C on ``ros2 launch``: a second SIGINT lands while the node is cleaning up (exit 0, no
  traceback);
- a rclpy without pre-set parameter callbacks (Humble's): the node starts, says once what that
  changes, and live parameters still work;
- an unexpected exception in the publish path: the inference worker survives, that camera is
  reset with its ids going on, the error is logged and counted in diagnostics;
- a float16 ONNX export on a CPU-only machine: the start-up error names the real cause.

Real node processes over loopback with a unique ROS_DOMAIN_ID (test/ros_helpers/node_harness.py).
Conditions that cannot be made from outside the process (an older rclpy, a bug in the publish
path) are made by a small start script that changes one thing in the node's own process and
then runs the unchanged ``spvis_ros.node.main``; nothing in the node knows about it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synthetic_clip import crossing_clip

sys.path.insert(0, str(Path(__file__).parent / "ros_helpers"))
from node_harness import (
    ROOT,
    Driver,
    NodeProcess,
    rgb_image,
    ros_env,
    unique_domain,
)
from node_harness import (
    set_parameter as _set,
)

pytestmark = pytest.mark.ros

STARTED = "spvis: active"
NO_PRE_SET = "this rclpy has no pre-set parameter callbacks"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny model: loads in a moment; enough where no detection is checked."""
    from spvis_model.config import preset
    from spvis_model.model import SPVIS

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    SPVIS(preset("tiny")).save(path)
    return path


@pytest.fixture(scope="module")
def trained_checkpoint(trained_tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trained") / "trained.pt"
    trained_tiny.save(path)
    return path


class ArgsNode(NodeProcess):
    """Like NodeProcess (environment, log, stop), but with the command line given: `command`
    then `ros_args` after ``--ros-args``."""

    def __init__(self, command: list[str], ros_args: list[str], domain: int, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*command, "--ros-args", *ros_args], cwd=ROOT,
                                     env=ros_env(domain), stdout=self._log,
                                     stderr=subprocess.STDOUT)


class ScriptNode(ArgsNode):
    """The process runs `script` (which ends by calling the node's main) with `params`."""

    def __init__(self, script: Path, domain: int, log: Path, params: dict[str, str]) -> None:
        ros_args = [arg for k, v in params.items() for arg in ("-p", f"{k}:={v}")]
        super().__init__([sys.executable, str(script)], ros_args, domain, log)


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "start_node.py"
    # This checkout's packages first, as `python -m spvis_ros.node` from ROOT has them.
    path.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n{body}\n"
                    "from spvis_ros.node import main\nsys.exit(main())\n")
    return path


def _no_traceback(log: str) -> None:
    for text in ("Traceback", "KeyboardInterrupt", "Exception ignored", "race condition"):
        assert text not in log, log[-4000:]


# --- H3: Ctrl-C on ros2 launch ------------------------------------------------------------------
def test_second_sigint_during_cleanup_still_exits_0_without_traceback(tiny_checkpoint, tmp_path):
    """What Ctrl-C on ``ros2 launch`` does to the node: SIGINT from the terminal, then launch's
    own SIGINT while the node is still shutting down. Here SIGINT keeps coming every 5 ms until
    the process has ended, so some land in every phase of the cleanup."""
    node = NodeProcess(unique_domain(), tmp_path / "node.log",
                       {"checkpoint": str(tiny_checkpoint), "device": "cpu"})
    try:
        node.wait_for_log(STARTED)
        sent = 0
        deadline = time.monotonic() + 30
        while node.proc.poll() is None and time.monotonic() < deadline:
            node.proc.send_signal(signal.SIGINT)
            sent += 1
            time.sleep(0.005)
        code = node.proc.wait(timeout=10)
    finally:
        node.stop()
    log = node.log()
    assert sent >= 2, log
    assert code == 0, f"exit {code} after {sent} SIGINTs:\n{log[-4000:]}"
    _no_traceback(log)


def test_sigint_during_start_exits_0_without_traceback(tiny_checkpoint, tmp_path):
    """Ctrl-C while the node is still loading its model: a clean exit too."""
    node = NodeProcess(unique_domain(), tmp_path / "node.log",
                       {"checkpoint": str(tiny_checkpoint), "device": "cpu"})
    try:
        node.wait_for_log("spvis: node created")
        node.proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        node.proc.send_signal(signal.SIGINT)
        code = node.proc.wait(timeout=60)
    finally:
        node.stop()
    log = node.log()
    assert code == 0, log[-4000:]
    _no_traceback(log)
    assert NO_PRE_SET not in log  # this rclpy has them


# --- M1: rclpy without add_pre_set_parameters_callback (Humble) ---------------------------------
def test_without_pre_set_callbacks_the_node_runs_and_says_what_changes(tiny_checkpoint, tmp_path):
    """Humble's rclpy has no add_pre_set_parameters_callback (Iron added it). The node must not
    crash in its constructor: it logs once what is missing and what that means, and live
    parameters still go through its checks; only an integer for a double is now refused."""
    script = _script(tmp_path, "import rclpy.node\n"
                               "del rclpy.node.Node.add_pre_set_parameters_callback")
    domain = unique_domain()
    node = ScriptNode(script, domain, tmp_path / "node.log", {
        "checkpoint": str(tiny_checkpoint), "device": "cpu",
        "score_threshold": "1"})  # at start an integer still works: the node reads it itself
    driver = Driver(domain, ["cam0"])
    try:
        node.wait_for_log(STARTED)
        log = node.log()
        assert log.count(NO_PRE_SET) == 1, log
        assert "an integer given for a double parameter is refused by rclpy" in log
        assert _set(driver, "score_threshold", 0.4).successful
        assert not _set(driver, "score_threshold", 1).successful  # rclpy's type check
        zero = _set(driver, "keep_seconds", 0.0)  # the node's own check still answers
        assert not zero.successful
        assert "keep_seconds = 0.0: must be a finite number" in zero.reason
    finally:
        driver.close()
        code = node.stop()
    assert code == 0, node.log()[-4000:]
    assert "Traceback" not in node.log()


# --- M3: an unexpected exception in the publish path ---------------------------------------------
def test_unexpected_error_in_a_frame_resets_that_camera_and_the_worker_goes_on(
        trained_checkpoint, tmp_path):
    """The third InstanceArray cannot be built (a TypeError, as a bug would raise): that frame
    is lost, the error is logged with the camera and stamp, cam0's tracks are reset with new
    ids, diagnostics report it (ERROR, errors = 1), and every later frame is answered."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    script = _script(tmp_path, "\n".join([
        "import spvis_ros.messages as messages",
        "real = messages.instance_array",
        "calls = [0]",
        "def flaky(*args, **kwargs):",
        "    calls[0] += 1",
        "    if calls[0] == 3:",
        "        raise TypeError('injected by the test: a bug in the publish path')",
        "    return real(*args, **kwargs)",
        "messages.instance_array = flaky",
    ]))
    domain = unique_domain()
    node = ScriptNode(script, domain, tmp_path / "node.log", {
        "checkpoint": str(trained_checkpoint), "device": "cpu", "input_reliability": "reliable",
        "input_depth": "10", "score_threshold": "0.3", "cameras": "[cam0,cam1]"})
    driver = Driver(domain, ["cam0", "cam1"])
    diags = driver.subscribe(DiagnosticArray, "/diagnostics")

    def cam0() -> list:
        return [s for a in diags for s in a.status if s.name.endswith(": camera cam0")]

    try:
        node.wait_for_log(STARTED)
        driver.wait_connected()
        # Diagnostics flowing before the fault (a status says it for the 5 s after it).
        assert driver.spin_until(cam0, 30), "no diagnostics"
        frames, _ = crossing_clip(frames=8)
        outs = [driver.send("cam0", rgb_image(frame, 10.0 + 0.5 * t), timeout=10.0 if t != 2
                            else 4.0) for t, frame in enumerate(frames)]
        assert outs[2] is None
        assert all(out is not None for k, out in enumerate(outs) if k != 2), outs
        before = {int(i.id) for i in outs[1].instances}
        after = {int(i.id) for i in outs[3].instances}
        assert before and after and min(after) > max(before), (before, after)
        # The other camera was never touched.
        assert driver.send("cam1", rgb_image(frames[0], 20.0)) is not None
        node.wait_for_log("camera cam0: frame at stamp 11.000 failed with an unexpected error, "
                          "tracks reset; ids continue from")
        assert "TypeError: injected by the test" in node.log()
        assert driver.spin_until(lambda: any(
            s.level == DiagnosticStatus.ERROR and "unexpected error" in s.message
            for s in cam0()), 10), [(s.level, s.message) for s in cam0()[-5:]]
        values = {kv.key: kv.value for kv in cam0()[-1].values}
        assert values["errors"] == "1" and "TypeError" in values["last_error"], values
        # The status names the node (/diagnostics is global; two spvis nodes each have a cam0).
        assert cam0()[-1].name == "/spvis: camera cam0"
    finally:
        driver.close()
        code = node.stop()
    assert code == 0, node.log()[-4000:]


# --- float16 ONNX export on a CPU-only machine ---------------------------------------------------
def test_float16_export_on_cpu_names_the_real_cause(tiny_checkpoint, tmp_path):
    """`spvis export --precision float16` files run on CUDA only: on device cpu the node must
    say that, and what to do, instead of blaming the checkpoint parameter."""
    pytest.importorskip("onnxruntime")
    from spvis_model.cli import main as spvis_main

    onnx = tmp_path / "tiny_fp16.onnx"
    assert spvis_main(["export", str(tiny_checkpoint), "--onnx", str(onnx), "--precision",
                       "float16", "--size", "96x64"]) == 0
    for precision in ("float32", "float16"):
        node = NodeProcess(unique_domain(), tmp_path / f"{precision}.log", {
            "checkpoint": str(tiny_checkpoint), "backend": "onnxruntime", "onnx": str(onnx),
            "device": "cpu", "precision": precision})
        code = node.proc.wait(timeout=90)
        log = node.log()
        node.stop()
        assert code == 2, log
        assert "Traceback" not in log, log
        assert "parameter checkpoint" not in log, log  # the checkpoint is fine
        # The cause (a float16 file, CUDA only, the device is cpu) and both ways out (export
        # float32, or a CUDA device): spvis_model's backend refuses the file on load, and the
        # node names the backend parameter, not the checkpoint.
        cause = next(line for line in log.splitlines() if "cannot start" in line)
        for text in (str(onnx), "float16", "CUDA", "cpu", "float32", "cuda"):
            assert text in cause, cause


# --- M2: the documented parameters file ---------------------------------------------------------
def _documented_params_file() -> str:
    """The YAML block of docs/ros.md marked as the params-file example."""
    text = (ROOT / "docs" / "ros.md").read_text()
    marker = "<!-- params-file example:"
    assert marker in text, "docs/ros.md lost its params-file example"
    block = text.split(marker, 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    return block


def test_documented_params_file_example_starts_the_node(tiny_checkpoint, tmp_path):
    """`--params-file` as launch_ros passes a params_file (and as users write one): the node
    takes every value with its type (an integer for a double too); a later `-p` (what the launch
    file's typed arguments become) wins over the file."""
    pytest.importorskip("onnxruntime")
    from rcl_interfaces.srv import GetParameters

    from spvis_model.cli import main as spvis_main

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    assert spvis_main(["export", str(ckpt), "--onnx", str(ckpt.with_suffix(".onnx")),
                       "--size", "96x64"]) == 0
    params = tmp_path / "spvis.yaml"
    params.write_text(_documented_params_file())
    domain = unique_domain()
    node = ArgsNode([sys.executable, "-m", "spvis_ros.node"],
                    ["--params-file", str(params), "-p", f"checkpoint:={ckpt}",
                     "-p", "score_threshold:=0.25"], domain, tmp_path / "node.log")
    driver = Driver(domain, ["front", "rear"])
    try:
        node.wait_for_log(STARTED, timeout=90)
        log = node.log()
        assert "cameras ['front', 'rear']" in log and "segmenter backend onnxruntime" in log, log
        assert "input QoS reliable depth 2" in log, log
        names = ["backend", "device", "input_depth", "score_threshold", "keep_seconds",
                 "class_filter", "id_prefix", "publish_overlay"]
        got = driver.call(GetParameters, "/spvis/get_parameters",
                          GetParameters.Request(names=names)).values
        values = dict(zip(names, got, strict=True))
        assert values["backend"].string_value == "onnxruntime"
        assert values["device"].string_value == "cpu"
        assert values["input_depth"].integer_value == 2
        assert values["score_threshold"].double_value == 0.25  # -p after the file wins
        assert values["keep_seconds"].double_value == 30.0  # `30` in the file
        assert list(values["class_filter"].string_array_value) == ["disk"]
        assert values["id_prefix"].string_value == ""
        assert values["publish_overlay"].bool_value is False
        assert "unknown parameter" not in log and "Traceback" not in log, log
    finally:
        driver.close()
        code = node.stop()
    assert code == 0, node.log()[-4000:]
