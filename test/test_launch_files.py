"""Checks of launch/spvis.launch.py and launch/spvis_multi_camera.launch.py without a ROS install.

`launch` / `launch_ros` are not on PyPI, so ``ros2 launch`` cannot run here. These tests:

- byte-compile both files;
- load ``spvis.launch.py`` the way launch does (a module that is *not* in ``sys.modules``; e.g.
  ``@dataclass`` breaks there) and check that its arguments are the node's whole parameter table
  (`spvis_ros.params`: names, defaults, choices) plus the launch-only ones, that
  ``generate_launch_description`` and ``_launch_setup`` read exactly that list, and that the
  node is ``spvis_ros`` / ``spvis_node`` named ``spvis`` with an ``on_exit`` handler;
- test ``node_settings``, the pure function that turns the argument strings into parameters
  (only those that differ from their defaults, so that a ``params_file`` is not overridden by
  defaults), the parameter file, remappings and the Fast DDS profile, and ``exit_outcome`` (the
  node's exit code -> the launch's fate; a node stopped by the launch's own Ctrl-C shutdown did
  not fail);
- where ``launch`` and ``launch_ros`` are importable (a ROS machine), also build the launch
  descriptions, run the OpaqueFunction body against a real ``LaunchContext`` and the on_exit
  handler with real ``ProcessExited`` events.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import py_compile
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

from spvis_model.config import TrackerConfig
from spvis_ros import launch_arguments as launch_args
from spvis_ros.params import SPECS, launch_default

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "launch" / "spvis.launch.py"
MULTI = REPO / "launch" / "spvis_multi_camera.launch.py"
PROFILE = REPO / "config" / "fastdds_shm.xml"
LAUNCH_ONLY = {"cameras", "image_topics", "namespace", "use_sim_time", "params_file",
               "fastdds_profile", "shutdown_on_exit"}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == name:
                out.append(node)
    return out


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _load_like_launch(path: Path) -> ModuleType:
    """How launch loads a Python launch file: SourceFileLoader, module not in sys.modules."""
    loader = SourceFileLoader("python_launch_file", str(path))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def main_tree() -> ast.Module:
    return ast.parse(MAIN.read_text(), str(MAIN))


@pytest.fixture(scope="module")
def multi_tree() -> ast.Module:
    return ast.parse(MULTI.read_text(), str(MULTI))


@pytest.fixture(scope="module")
def launch_module() -> ModuleType:
    return _load_like_launch(MAIN)


@pytest.fixture(scope="module")
def multi_module() -> ModuleType:
    return _load_like_launch(MULTI)


@pytest.fixture(scope="module")
def default_args(launch_module) -> dict[str, str]:
    """The defaults of every argument as strings (the profile: the shipped file)."""
    return {a.name: a.default if a.default is not None else str(PROFILE)
            for a in launch_module.launch_arguments()}


@pytest.mark.parametrize("path", [MAIN, MULTI], ids=lambda p: p.name)
def test_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_arguments_are_the_parameter_table(launch_module):
    args = launch_module.launch_arguments()
    names = [a.name for a in args]
    assert len(names) == len(set(names)), "an argument declared twice"
    node_args = set(launch_module.NODE_ARGUMENTS)
    assert set(names) == node_args | LAUNCH_ONLY
    # Every node parameter can be set from the launch file (cameras with image_topics).
    assert node_args == set(SPECS) - {"cameras"}
    by_name = {a.name: a for a in args}
    for name in node_args:
        spec = SPECS[name]
        assert by_name[name].default == launch_default(name), name
        assert by_name[name].choices == spec.choices, name
        assert spec.doc in by_name[name].description, name
    assert by_name["keep_seconds"].default == str(float(TrackerConfig().keep_seconds))
    assert by_name["cameras"].default == "cam0"
    assert by_name["transport"].choices == ("raw", "compressed")
    assert by_name["fastdds_profile"].default is None  # a substitution, see below


def test_declarations_and_setup_read_launch_arguments(main_tree):
    """generate_launch_description declares one argument per launch_arguments() entry (through
    declare_arguments) and _launch_setup hands every one of them to node_settings: no
    hand-written second list."""
    generate = _function(main_tree, "generate_launch_description")
    assert [ast.unparse(c) for c in _calls(generate, "declare_arguments")] == [
        "declare_arguments()"]
    declare_tree = ast.parse(Path(launch_args.__file__).read_text())
    declare = _function(declare_tree, "declare_arguments")
    loops = [n for n in ast.walk(declare) if isinstance(n, ast.For)]
    assert any(ast.unparse(loop.iter) == "launch_arguments()" for loop in loops)
    assert len(_calls(declare, "DeclareLaunchArgument")) == 1
    setup = _function(main_tree, "_launch_setup")
    settings_call = _calls(setup, "node_settings")
    assert len(settings_call) == 1 and "launch_arguments()" in ast.unparse(settings_call[0])
    profile_default = ast.unparse(declare)
    assert "EnvironmentVariable(PROFILE_VAR" in profile_default
    assert "fastdds_shm.xml" in profile_default


def test_one_spvis_node_that_shuts_the_launch_down_on_exit(main_tree):
    nodes = _calls(main_tree, "Node")
    assert len(nodes) == 1, "spvis.launch.py starts exactly one node"
    node = nodes[0]
    for key, value in {"package": "spvis_ros", "executable": "spvis_node",
                       "name": "spvis"}.items():
        arg = _keyword(node, key)
        assert isinstance(arg, ast.Constant) and arg.value == value, f"Node {key}"
    # The params_file first: the typed launch values after it win.
    assert ast.unparse(_keyword(node, "parameters")) == (
        "[*settings.parameter_files, settings.parameters]")
    assert ast.unparse(_keyword(node, "remappings")) == "settings.remappings"
    assert ast.unparse(_keyword(node, "on_exit")) == (
        "_on_node_exit if settings.shutdown_on_exit else _on_node_exit_logged")


def test_exit_outcome(launch_module):
    assert launch_module.exit_outcome(0) == (
        False, "spvis_node exited (code 0); shutting the launch down")
    failed, message = launch_module.exit_outcome(2)
    assert failed and "spvis_node exited with code 2" in message
    assert launch_module.exit_outcome(-15)[0]
    assert issubclass(launch_module.NodeExitedError, RuntimeError)


@pytest.mark.parametrize("code", [-2, -15, 130, 143])
def test_a_node_stopped_by_the_launchs_own_shutdown_did_not_fail(launch_module, code):
    """Ctrl-C on `ros2 launch`: launch sends SIGINT (then SIGTERM) to the node; a node that
    died of it must not turn the ordinary stop into `ros2 launch` exit 1."""
    failed, message = launch_module.exit_outcome(code, shutting_down=True)
    assert not failed and f"stopped by the launch's shutdown (code {code})" in message
    # The same codes while the launch is running: something else killed the node.
    assert launch_module.exit_outcome(code, shutting_down=False)[0]
    # Other failures stay failures while shutting down.
    assert launch_module.exit_outcome(2, shutting_down=True)[0]
    assert launch_module.exit_outcome(-11, shutting_down=True)[0]


def test_node_settings_defaults(launch_module, default_args):
    """Arguments at their defaults are not passed (the node has the same defaults, and a
    params_file must not be overridden by them); cameras always is (with the remappings)."""
    s = launch_module.node_settings(**default_args)
    assert s.namespace == "spvis"
    assert s.remappings == [("cam0/image_raw", "/camera/image_raw")]
    assert s.parameters == {"cameras": ["cam0"]}
    assert s.parameter_files == []
    assert s.shutdown_on_exit is True
    assert s.fastdds_profile == str(PROFILE)
    for name in launch_module.NODE_ARGUMENTS:
        assert default_args[name] == launch_default(name), name
    assert default_args["keep_seconds"] == str(TrackerConfig().keep_seconds)


def test_every_node_parameter_from_launch_text_with_its_type(launch_module, default_args):
    """Every parameter of the node can be given as a launch argument and reaches the node with
    the parameter's type (a double stays a double when written as an integer)."""
    given = {"autostart": "false", "checkpoint": "/m.pt", "device": "cpu",
             "precision": "float16", "backend": "onnxruntime", "onnx": "/m.onnx",
             "capture": "graphs", "mask_refine": "none", "batch_cameras": "true",
             "transport": "compressed",
             "input_reliability": "reliable", "input_depth": "3", "score_threshold": "1",
             "max_instances": "7", "keep_seconds": "2", "max_gap_s": "1.5",
             "class_filter": "person, car", "mask_encoding": "mono8", "id_prefix": "robot1/",
             "publish_detections": "false", "publish_labels": "false",
             "publish_overlay": "false", "stale_input_s": "10"}
    assert set(given) == set(launch_module.NODE_ARGUMENTS)
    s = launch_module.node_settings(**{**default_args, **given})
    expected = {"autostart": False, "checkpoint": "/m.pt", "device": "cpu",
                "precision": "float16", "backend": "onnxruntime", "onnx": "/m.onnx",
                "capture": "graphs", "mask_refine": "none", "batch_cameras": True,
                "transport": "compressed",
                "input_reliability": "reliable", "input_depth": 3, "score_threshold": 1.0,
                "max_instances": 7, "keep_seconds": 2.0, "max_gap_s": 1.5,
                "class_filter": ["person", "car"], "mask_encoding": "mono8",
                "id_prefix": "robot1/", "publish_detections": False, "publish_labels": False,
                "publish_overlay": False, "stale_input_s": 10.0, "cameras": ["cam0"]}
    assert s.parameters == expected
    for name, value in expected.items():
        assert type(s.parameters[name]) is type(value), name


def test_params_file_goes_first_and_only_changed_arguments_override_it(launch_module,
                                                                      default_args, tmp_path):
    params = tmp_path / "spvis.yaml"
    params.write_text("/**:\n  ros__parameters:\n    score_threshold: 0.3\n"
                      "    backend: onnxruntime\n    max_instances: 5\n")
    s = launch_module.node_settings(**dict(default_args, params_file=str(params),
                                           max_instances="9"))
    assert s.parameter_files == [str(params)]
    # score_threshold and backend stay with the file; max_instances is overridden.
    assert s.parameters == {"cameras": ["cam0"], "max_instances": 9}
    assert launch_args.params_file_names(str(params)) == {
        "score_threshold", "backend", "max_instances"}
    for spelling in ("none", " NONE ", ""):
        assert launch_module.node_settings(
            **dict(default_args, params_file=spelling)).parameter_files == []


@pytest.mark.parametrize(("text", "message"), [
    ("", "no such file"),
    ("[1, 2]\n", "not a ROS parameters file"),
    ("/**:\n  score_threshold: 0.3\n", "not a ROS parameters file"),
    ("a: [\n", "cannot read it as YAML"),
])
def test_params_file_that_is_not_one_is_refused(launch_module, default_args, tmp_path, text,
                                                 message):
    path = tmp_path / "bad.yaml"
    if text:
        path.write_text(text)
    with pytest.raises(ValueError, match=f"launch argument params_file=.*{message}"):
        launch_module.node_settings(**dict(default_args, params_file=str(path)))


def test_misspelt_launch_arguments_are_warned_about():
    """ros2 launch ignores names no file declares: a close match to ours is named."""
    warnings = launch_args.undeclared_warnings(
        ["score_treshold", "cameras", "robot_description", "front_topic", "mask_encodng"])
    assert warnings == [
        "launch argument 'mask_encodng' is not an argument of spvis.launch.py and is ignored "
        "(did you mean mask_encoding?)",
        "launch argument 'score_treshold' is not an argument of spvis.launch.py and is "
        "ignored (did you mean score_threshold?)"]


def test_shutdown_on_exit_false(launch_module, default_args):
    s = launch_module.node_settings(**dict(default_args, shutdown_on_exit="false"))
    assert s.shutdown_on_exit is False
    with pytest.raises(ValueError, match="shutdown_on_exit"):
        launch_module.node_settings(**dict(default_args, shutdown_on_exit="maybe"))


def test_node_settings_two_cameras_compressed_remaps_the_base_topic(launch_module,
                                                                   default_args):
    args = dict(default_args, cameras=" front, rear ",
                image_topics="/f/image_raw,/r/image_raw/", transport="compressed",
                namespace="/", use_sim_time="True", device="cuda:1", autostart="false",
                mask_encoding="mono8", checkpoint="~/models/m.pt", fastdds_profile="none")
    s = launch_module.node_settings(**args)
    assert s.parameters["cameras"] == ["front", "rear"]
    assert "precision" not in s.parameters  # left at its default
    # image_transport naming: the base is remapped, the node appends /compressed itself.
    assert s.remappings == [("front/image_raw", "/f/image_raw"),
                            ("rear/image_raw", "/r/image_raw")]
    assert s.namespace is None
    assert s.parameters["use_sim_time"] is True
    assert s.parameters["autostart"] is False
    assert s.parameters["transport"] == "compressed"
    assert s.parameters["device"] == "cuda:1"
    assert s.parameters["mask_encoding"] == "mono8"
    assert s.parameters["checkpoint"] == os.path.expanduser("~/models/m.pt")
    assert s.fastdds_profile == ""


@pytest.mark.parametrize("spelling", ["none", "NONE", " None ", ""])
def test_fastdds_profile_none_disables_the_profile(launch_module, default_args, spelling):
    s = launch_module.node_settings(**dict(default_args, fastdds_profile=spelling))
    assert s.fastdds_profile == ""


def test_docs_never_advertise_an_empty_launch_argument():
    """ros2launch refuses `name:=""` ("malformed launch argument"); no doc may suggest it."""
    for path in (REPO / "README.md", REPO / "docs" / "ros.md", MAIN, MULTI):
        text = path.read_text()
        assert 'fastdds_profile:=""' not in text, path
        assert "fastdds_profile:=''" not in text, path
    assert "fastdds_profile:=none" in (REPO / "docs" / "ros.md").read_text()


@pytest.mark.parametrize(("changes", "message"), [
    ({"cameras": "a,b"}, "image_topics"),
    ({"cameras": "a,a", "image_topics": "/x,/y"}, "unique"),
    ({"cameras": "a,,b", "image_topics": "/x,/y,/z"}, "cameras"),
    ({"cameras": "1cam"}, "cameras"),
    ({"image_topics": "camera/image_raw"}, "absolute"),
    ({"device": "gpu"}, "launch argument device='gpu'"),
    ({"precision": "fp8"}, "launch argument precision='fp8': must be one of float32"),
    ({"transport": "theora"}, "transport"),
    ({"score_threshold": "high"}, "launch argument score_threshold='high': must be a number"),
    ({"score_threshold": "1.5"}, "score_threshold='1.5'"),
    ({"keep_seconds": "0"}, "keep_seconds"),
    ({"keep_seconds": "inf"}, "keep_seconds"),
    ({"score_threshold": "nan"}, "score_threshold"),
    ({"max_gap_s": "-1"}, "max_gap_s"),
    ({"use_sim_time": "maybe"}, "use_sim_time"),
    ({"autostart": "sometimes"}, "autostart"),
    ({"mask_encoding": "png"}, "mask_encoding"),
    ({"fastdds_profile": "/nonexistent/profile.xml"}, "fastdds_profile"),
    ({"params_file": "/nonexistent/spvis.yaml"}, "params_file"),
    ({"input_depth": "0"}, "input_depth"),
    ({"backend": "tensorrt"}, "backend"),
    ({"id_prefix": "{robot}/"}, "id_prefix"),
    ({"class_filter": "a,,b"}, "class_filter"),
])
def test_node_settings_rejects_bad_arguments(launch_module, default_args, changes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        launch_module.node_settings(**{**default_args, **changes})


def test_node_settings_needs_every_argument(launch_module, default_args):
    partial = dict(default_args)
    del partial["keep_seconds"]
    with pytest.raises(ValueError, match=r"missing arguments \['keep_seconds'\]"):
        launch_module.node_settings(**partial)


def test_multi_camera_example_includes_spvis_launch(multi_tree, multi_module, launch_module):
    """The example declares (so --show-args lists) and passes on every argument of
    spvis.launch.py but the two it sets itself."""
    assert "spvis.launch.py" in MULTI.read_text()
    includes = _calls(multi_tree, "IncludeLaunchDescription")
    assert len(includes) == 1
    main_names = {a.name for a in launch_module.launch_arguments()}
    assert set(multi_module.PASSED) == main_names - {"cameras", "image_topics"}
    launch_arguments = ast.unparse(_keyword(includes[0], "launch_arguments"))
    assert "('cameras', 'front,rear')" in launch_arguments
    assert "front_topic" in launch_arguments and "rear_topic" in launch_arguments
    assert "for name in PASSED" in launch_arguments
    generate = ast.unparse(_function(multi_tree, "generate_launch_description"))
    assert "declare_arguments(PASSED)" in generate


def _have(module: str) -> bool:
    # "launch.actions", not "launch": this repo's launch/ directory is itself importable as a
    # namespace package when the repository root is on sys.path.
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


_HAVE_LAUNCH = _have("launch.actions") and _have("launch_ros.actions")


@pytest.mark.skipif(not _HAVE_LAUNCH, reason="launch / launch_ros not installed (no ROS here)")
def test_with_real_launch(launch_module, multi_module, default_args):
    from launch.actions import SetEnvironmentVariable, Shutdown, UnsetEnvironmentVariable
    from launch.events.process import ProcessExited
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
    from launch_ros.actions import Node

    from launch import LaunchContext, LaunchDescription

    def text(value: object) -> str:
        return perform_substitutions(context, normalize_to_list_of_substitutions(value))

    description = launch_module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    assert {a.name for a in description.get_launch_arguments()} == set(default_args)
    multi = multi_module.generate_launch_description()
    assert {"front_topic", "rear_topic", *multi_module.PASSED} == {
        a.name for a in multi.get_launch_arguments()}

    for profile, env_action in ((str(PROFILE), SetEnvironmentVariable),
                                ("none", UnsetEnvironmentVariable)):
        context = LaunchContext()
        for name, value in dict(default_args, fastdds_profile=profile, cameras="front,rear",
                                image_topics="/f/image_raw,/r/image_raw").items():
            context.launch_configurations[name] = value
        actions = launch_module._launch_setup(context)
        assert isinstance(actions[0], env_action)
        nodes = [a for a in actions if isinstance(a, Node)]
        assert len(nodes) == 1
        assert text(nodes[0].node_package) == "spvis_ros"
        assert text(nodes[0].node_executable) == "spvis_node"

    def exited(code: int) -> ProcessExited:
        return ProcessExited(returncode=code, action=None, name="spvis_node", cmd=["x"],
                             cwd=None, env=None, pid=1)

    assert isinstance(launch_module._on_node_exit(exited(0), context)[0], Shutdown)
    with pytest.raises(launch_module.NodeExitedError, match="code 2"):
        launch_module._on_node_exit(exited(2), context)
    with pytest.raises(launch_module.NodeExitedError, match="code -2"):
        launch_module._on_node_exit(exited(-2), context)  # not shutting down: a failure
    assert launch_module._on_node_exit_logged(exited(2), context) == []
