"""Checks of launch/spvis.launch.py and launch/spvis_multi_camera.launch.py without a ROS install.

`launch` / `launch_ros` are not on PyPI, so ``ros2 launch`` cannot run here. These tests:

- byte-compile both files;
- read them with ``ast``: every ``LaunchConfiguration`` name is declared in the same file, the
  documented arguments are declared with their documented defaults, the node is
  ``spvis_ros`` / ``spvis_node`` named ``spvis``, its parameter names are ones the node knows,
  and the multi-camera example only passes arguments ``spvis.launch.py`` declares;
- load ``spvis.launch.py`` the way launch does (a module that is *not* in ``sys.modules``; e.g.
  ``@dataclass`` breaks there) and test ``node_settings``, the pure function that turns the
  argument strings into parameters, remappings and the Fast DDS profile;
- where ``launch`` and ``launch_ros`` are importable (a ROS machine), also build the launch
  descriptions and run the OpaqueFunction body against a real ``LaunchContext``.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import py_compile
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "launch" / "spvis.launch.py"
MULTI = REPO / "launch" / "spvis_multi_camera.launch.py"
PROFILE = REPO / "config" / "fastdds_shm.xml"

NODE_PARAMETERS = {
    "checkpoint", "device", "precision", "cameras", "transport", "score_threshold",
    "max_instances", "keep_seconds", "max_gap_s", "class_filter", "publish_labels",
    "publish_overlay", "input_reliability", "input_depth", "use_sim_time",
}
PASSED_PARAMETERS = {
    "checkpoint", "device", "precision", "cameras", "transport", "score_threshold",
    "keep_seconds", "max_gap_s", "use_sim_time",
}
DOCUMENTED_DEFAULTS = {
    "cameras": "cam0",
    "image_topics": "/camera/image_raw",
    "namespace": "spvis",
    "checkpoint": "",
    "device": "auto",
    "precision": "float32",
    "transport": "raw",
    "score_threshold": "0.5",
    "keep_seconds": "5.0",
    "max_gap_s": "5.0",
    "use_sim_time": "false",
    "fastdds_profile": None,  # a substitution: $FASTDDS_DEFAULT_PROFILES_FILE or the shipped file
}
DEFAULT_ARGS = {k: v for k, v in DOCUMENTED_DEFAULTS.items() if v is not None}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == name:
                out.append(node)
    return out


def _first_str_arg(call: ast.Call) -> str:
    assert call.args and isinstance(call.args[0], ast.Constant), ast.dump(call)
    assert isinstance(call.args[0].value, str), ast.dump(call)
    return call.args[0].value


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _declared(tree: ast.AST) -> dict[str, ast.expr | None]:
    declared: dict[str, ast.expr | None] = {}
    for call in _calls(tree, "DeclareLaunchArgument"):
        name = _first_str_arg(call)
        assert name not in declared, f"argument {name} declared twice"
        declared[name] = _keyword(call, "default_value")
    return declared


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


@pytest.mark.parametrize("path", [MAIN, MULTI], ids=lambda p: p.name)
def test_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.parametrize("path", [MAIN, MULTI], ids=lambda p: p.name)
def test_every_launch_configuration_is_declared(path):
    tree = ast.parse(path.read_text(), str(path))
    declared = _declared(tree)
    used = {_first_str_arg(c) for c in _calls(tree, "LaunchConfiguration")}
    assert used, "no LaunchConfiguration found"
    assert used <= set(declared), f"used but not declared: {sorted(used - set(declared))}"
    assert set(declared) <= used, f"declared but never used: {sorted(set(declared) - used)}"
    assert _calls(tree, "generate_launch_description") == []  # defined, not called
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in tree.body)


def test_documented_arguments_and_defaults(main_tree):
    declared = _declared(main_tree)
    assert set(declared) == set(DOCUMENTED_DEFAULTS)
    for name, default in DOCUMENTED_DEFAULTS.items():
        node = declared[name]
        if default is None:
            assert isinstance(node, ast.Call), f"{name}: expected a substitution default"
            continue
        assert isinstance(node, ast.Constant) and node.value == default, (
            f"{name}: default {ast.unparse(node) if node else None!r}, documented {default!r}")
    profile_default = ast.unparse(declared["fastdds_profile"])
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in profile_default or "PROFILE_VAR" in profile_default
    assert "fastdds_shm.xml" in MAIN.read_text()


def test_one_spvis_node_with_known_parameters(main_tree, launch_module):
    nodes = _calls(main_tree, "Node")
    assert len(nodes) == 1, "spvis.launch.py starts exactly one node"
    node = nodes[0]
    for key, value in {"package": "spvis_ros", "executable": "spvis_node",
                       "name": "spvis"}.items():
        arg = _keyword(node, key)
        assert isinstance(arg, ast.Constant) and arg.value == value, f"Node {key}"
    params = _keyword(node, "parameters")
    assert isinstance(params, ast.List) and params.elts, "parameters=[{...}] literal expected"
    names = set()
    for elt in params.elts:
        assert isinstance(elt, ast.Dict), "parameters must be dict literals (checked statically)"
        for key, value in zip(elt.keys, elt.values, strict=True):
            assert isinstance(key, ast.Constant) and isinstance(key.value, str)
            names.add(key.value)
            # Each value is the NodeSettings field of the same name.
            assert isinstance(value, ast.Attribute) and value.attr == key.value, ast.unparse(value)
    assert names <= NODE_PARAMETERS, f"unknown to the node: {sorted(names - NODE_PARAMETERS)}"
    assert names == PASSED_PARAMETERS
    assert names <= set(launch_module.NodeSettings._fields)
    assert _keyword(node, "remappings") is not None


def test_node_settings_reads_exactly_the_declared_arguments(main_tree, launch_module):
    declared = set(_declared(main_tree))
    signature = set(inspect.signature(launch_module.node_settings).parameters)
    assert signature == declared
    setup = next(n for n in main_tree.body
                 if isinstance(n, ast.FunctionDef) and n.name == "_launch_setup")
    passed = {k.arg for c in _calls(setup, "node_settings") for k in c.keywords}
    assert passed == declared


def test_node_settings_defaults(launch_module):
    s = launch_module.node_settings(**DEFAULT_ARGS, fastdds_profile=str(PROFILE))
    assert s.namespace == "spvis"
    assert s.cameras == ["cam0"]
    assert s.remappings == [("cam0/image", "/camera/image_raw")]
    assert (s.checkpoint, s.device, s.precision, s.transport) == ("", "auto", "float32", "raw")
    assert (s.score_threshold, s.keep_seconds, s.max_gap_s) == (0.5, 5.0, 5.0)
    assert all(isinstance(v, float) for v in (s.score_threshold, s.keep_seconds, s.max_gap_s))
    assert s.use_sim_time is False
    assert s.fastdds_profile == str(PROFILE)


def test_node_settings_two_cameras_compressed(launch_module, tmp_path):
    args = dict(DEFAULT_ARGS, cameras=" front, rear ", image_topics="/f/image_raw,/r/image_raw/",
                transport="compressed", namespace="", use_sim_time="True", device="cuda:1")
    s = launch_module.node_settings(**args, fastdds_profile="")
    assert s.cameras == ["front", "rear"]
    assert s.remappings == [("front/image/compressed", "/f/image_raw/compressed"),
                            ("rear/image/compressed", "/r/image_raw/compressed")]
    assert s.namespace is None
    assert s.use_sim_time is True
    assert s.device == "cuda:1"
    assert s.fastdds_profile == ""


@pytest.mark.parametrize(("changes", "message"), [
    ({"cameras": "a,b"}, "image_topics"),
    ({"cameras": "a,a", "image_topics": "/x,/y"}, "unique"),
    ({"cameras": "a,,b", "image_topics": "/x,/y,/z"}, "cameras"),
    ({"cameras": "1cam"}, "cameras"),
    ({"image_topics": "camera/image_raw"}, "absolute"),
    ({"device": "gpu"}, "device"),
    ({"precision": "fp8"}, "precision"),
    ({"transport": "theora"}, "transport"),
    ({"score_threshold": "high"}, "score_threshold"),
    ({"score_threshold": "1.5"}, "score_threshold"),
    ({"keep_seconds": "0"}, "keep_seconds"),
    ({"keep_seconds": "inf"}, "keep_seconds"),
    ({"score_threshold": "nan"}, "score_threshold"),
    ({"max_gap_s": "-1"}, "max_gap_s"),
    ({"use_sim_time": "maybe"}, "use_sim_time"),
    ({"fastdds_profile": "/nonexistent/profile.xml"}, "fastdds_profile"),
])
def test_node_settings_rejects_bad_arguments(launch_module, changes, message):
    args = {**DEFAULT_ARGS, "fastdds_profile": "", **changes}
    with pytest.raises(ValueError, match=message):
        launch_module.node_settings(**args)


def test_multi_camera_example_includes_spvis_launch(multi_tree, main_tree):
    assert "spvis.launch.py" in MULTI.read_text()
    includes = _calls(multi_tree, "IncludeLaunchDescription")
    assert len(includes) == 1
    launch_arguments = _keyword(includes[0], "launch_arguments")
    assert isinstance(launch_arguments, (ast.List, ast.Tuple))
    passed = {}
    for pair in launch_arguments.elts:
        assert isinstance(pair, ast.Tuple) and isinstance(pair.elts[0], ast.Constant)
        passed[pair.elts[0].value] = pair.elts[1]
    assert set(passed) <= set(_declared(main_tree)), "passes arguments spvis.launch.py lacks"
    cameras = passed["cameras"]
    assert isinstance(cameras, ast.Constant) and cameras.value == "front,rear"
    topics = ast.unparse(passed["image_topics"])
    assert "front_topic" in topics and "rear_topic" in topics
    defaults = {k: v.value for k, v in _declared(multi_tree).items()
                if isinstance(v, ast.Constant)}
    assert defaults["front_topic"].startswith("/") and defaults["rear_topic"].startswith("/")


def _have(module: str) -> bool:
    # "launch.actions", not "launch": this repo's launch/ directory is itself importable as a
    # namespace package when the repository root is on sys.path.
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


_HAVE_LAUNCH = _have("launch.actions") and _have("launch_ros.actions")


@pytest.mark.skipif(not _HAVE_LAUNCH, reason="launch / launch_ros not installed (no ROS here)")
def test_with_real_launch(main_tree, multi_tree, launch_module):
    from launch.actions import SetEnvironmentVariable, UnsetEnvironmentVariable
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
    from launch_ros.actions import Node

    from launch import LaunchContext, LaunchDescription

    def text(value: object) -> str:
        return perform_substitutions(context, normalize_to_list_of_substitutions(value))

    for path, tree in ((MAIN, main_tree), (MULTI, multi_tree)):
        description = _load_like_launch(path).generate_launch_description()
        assert isinstance(description, LaunchDescription)
        names = {a.name for a in description.get_launch_arguments()}
        assert names == set(_declared(tree)), path.name

    for profile, env_action in ((str(PROFILE), SetEnvironmentVariable),
                                ("", UnsetEnvironmentVariable)):
        context = LaunchContext()
        for name, value in dict(DEFAULT_ARGS, fastdds_profile=profile,
                                cameras="front,rear",
                                image_topics="/f/image_raw,/r/image_raw").items():
            context.launch_configurations[name] = value
        actions = launch_module._launch_setup(context)
        assert isinstance(actions[0], env_action)
        nodes = [a for a in actions if isinstance(a, Node)]
        assert len(nodes) == 1
        assert text(nodes[0].node_package) == "spvis_ros"
        assert text(nodes[0].node_executable) == "spvis_node"
