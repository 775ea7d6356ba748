"""The bookkeeping of scripts/gpu_check.sh: environment facts, each part's status, and the
report (markdown) plus the raw results (one JSON file) in the output folder.

    python scripts/gpu_check_report.py env WORK                 # WORK/env.json
    python scripts/gpu_check_report.py finish WORK PART RC SECONDS BUDGET [NOTE]
    python scripts/gpu_check_report.py skip WORK PART NOTE
    python scripts/gpu_check_report.py report WORK OUT

The work folder holds what the parts wrote: ``meta.json`` (written by gpu_check.sh: dry run or
not, start time, deadline, the planned parts and their budgets), ``env.json``,
``status/PART.json``, ``raw/PART/*.json`` (and the pytest JUnit XML), ``logs/PART.log``.
``finish`` turns a part's exit status into passed / failed / timed out (124 or 137, from
`timeout`), checks what the part must have produced (a part that exits 0 without its results
has failed), writes ``status/PART.json`` and rewrites the report, so the output folder is
current after every part, also when the whole run is stopped.

The output folder gets three files: ``report.md``, ``results.json`` (environment, statuses, and
every raw result), ``log.txt`` (every part's log, each cut to its first and last 600 KiB).
Only the standard library and, for ``env``, torch are imported.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

LOG_KEEP = 600 * 1024  # bytes kept from the start and from the end of each part's log
PARTS_TITLE = {
    "env": "environment and wheels", "build": "build the extension",
    "cuda-tests": "cuda-marked tests", "model": "bench/model.py, all presets",
    "capture": "step with CUDA graphs / compile", "node-path": "node-equivalent path, batching",
    "syncs": "host syncs per step", "train": "AMP training, stage 1 and 2, torchrun",
    "msda": "bench/msda.py", "export": "bench/export.py (onnxruntime)",
}
GOAL_PRECISION = "bfloat16"


# --- reading ------------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    """A JSON file's contents, or None when it is missing or not JSON (a part stopped while
    writing it)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def junit_summary(path: Path) -> dict[str, Any] | None:
    """Counts and failures from a pytest JUnit XML file (None when missing or unreadable)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed: list[dict[str, str]] = []
    skip_reasons: dict[str, int] = {}
    for case in root.iter("testcase"):
        counts["tests"] += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for kind in ("failure", "error"):
            for el in case.findall(kind):
                counts["failures" if kind == "failure" else "errors"] += 1
                text = (el.get("message") or el.text or "").strip()
                failed.append({"test": name, "kind": kind, "message": text[:1500]})
        for el in case.findall("skipped"):
            counts["skipped"] += 1
            reason = (el.get("message") or "").strip()[:200]
            skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
    counts["passed"] = (counts["tests"] - counts["failures"] - counts["errors"]
                        - counts["skipped"])
    return {**counts, "failed": failed, "skip_reasons": skip_reasons}


def raw_results(work: Path, part: str) -> dict[str, Any]:
    """{file name: contents} of everything a part left in raw/PART (JSON parsed, JUnit XML
    summarised)."""
    folder = work / "raw" / part
    out: dict[str, Any] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json":
            out[path.name] = read_json(path)
        elif path.suffix == ".xml":
            out[path.name] = junit_summary(path)
    return out


# --- env ----------------------------------------------------------------------------------------
def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"not available ({type(exc).__name__})"
    return (proc.stdout or proc.stderr).strip()


def cmd_env(work: Path) -> int:
    """Write work/env.json: Python, torch, CUDA, GPU, nvcc, driver, cores, onnxruntime and the
    imports the parts need."""
    import importlib
    import os
    import platform

    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(), "executable": sys.executable,
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0),
                   capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count,
                   driver=_run(["nvidia-smi", "--query-gpu=driver_version",
                                "--format=csv,noheader"]).splitlines()[0:1],
                   bf16_supported=torch.cuda.is_bf16_supported())
    nvcc = shutil.which("nvcc")
    env["nvcc"] = _run([nvcc, "--version"]).splitlines()[-1:] if nvcc else None
    imports: dict[str, str] = {}
    for name in ("numpy", "scipy", "cv2", "yaml", "tqdm", "matplotlib", "pycocotools",
                 "pytest", "onnx", "onnxruntime", "sensor_msgs.msg", "std_msgs.msg",
                 "vision_msgs.msg", "spvis_msgs.msg", "builtin_interfaces.msg"):
        try:
            mod = importlib.import_module(name)
            imports[name] = str(getattr(mod, "__version__", "ok"))
        except Exception as exc:  # any import failure is a fact for the report
            imports[name] = f"missing ({type(exc).__name__}: {str(exc)[:120]})"
    env["imports"] = imports
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        env["onnxruntime_providers"] = None
    (work / "env.json").write_text(json.dumps(env, indent=1))
    print(f"[gpu-check] python {env['python']}, torch {env['torch']} (CUDA {env['torch_cuda']}),"
          f" {env.get('gpu', 'no CUDA device')}, {env['cpu_count']} cores; imports: "
          + ", ".join(f"{k} {'ok' if not v.startswith('missing') else 'MISSING'}"
                      for k, v in imports.items()), flush=True)
    return 0


# --- statuses -----------------------------------------------------------------------------------
def meta(work: Path) -> dict[str, Any]:
    return read_json(work / "meta.json") or {}


def check_part(work: Path, part: str, dry: bool) -> str:
    """What is wrong with a part that exited 0 ('' when nothing): each part must have left its
    results, and on a GPU the cuda tests must have run, not skipped."""
    raw = raw_results(work, part)
    if part == "cuda-tests":
        junit = raw.get("junit.xml")
        if not junit:
            return "no JUnit results"
        if junit["failures"] or junit["errors"]:
            return f"{junit['failures']} failed, {junit['errors']} errors"
        if not dry and (junit["skipped"] or not junit["passed"]):
            reasons = "; ".join(junit["skip_reasons"])
            return f"{junit['skipped']} skipped on a CUDA machine ({reasons})"
        return ""
    expected = {"model": ["model.json"], "capture": ["capture.json"],
                "node-path": ["node_path.json"], "syncs": ["syncs.json"],
                "train": ["stage1.json", "stage2.json"], "msda": ["msda.json"],
                "export": ["export.json"], "env": [], "build": []}.get(part, [])
    missing = [name for name in expected if not raw.get(name)]
    if missing:
        return f"exited 0 but wrote no {', '.join(missing)}"
    if part == "train":
        for name in expected:
            r = raw[name]
            if not r.get("trainer_distributed") or r.get("steps_logged") != r.get("steps"):
                return f"{name}: trainer_distributed {r.get('trainer_distributed')}, steps " \
                       f"logged {r.get('steps_logged')} of {r.get('steps')}"
            if not dry and (r.get("backend") != "nccl" or not r.get("amp")):
                return f"{name}: backend {r.get('backend')}, amp {r.get('amp')}: not NCCL + AMP"
    return ""


def cmd_finish(work: Path, part: str, rc: int, seconds: float, budget: float,
               note: str = "") -> int:
    """Record a part that ran: status from its exit code and its results; then the report."""
    dry = bool(meta(work).get("dry_run"))
    if rc in (124, 137):
        status, note = "timed out", note or f"stopped at its budget of {budget:.0f} s"
    elif rc != 0:
        status, note = "failed", note or f"exit status {rc}"
    else:
        problem = check_part(work, part, dry)
        status, note = ("failed", problem) if problem else ("passed", note)
    record = {"part": part, "status": status, "rc": rc, "seconds": round(seconds, 1),
              "budget_s": budget, "note": note, "ended_unix": time.time()}
    (work / "status").mkdir(exist_ok=True)
    (work / "status" / f"{part}.json").write_text(json.dumps(record, indent=1))
    return 0


def cmd_skip(work: Path, part: str, note: str) -> int:
    record = {"part": part, "status": "skipped", "rc": None, "seconds": 0.0, "budget_s": None,
              "note": note, "ended_unix": time.time()}
    (work / "status").mkdir(exist_ok=True)
    (work / "status" / f"{part}.json").write_text(json.dumps(record, indent=1))
    return 0


# --- the report ---------------------------------------------------------------------------------
def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def model_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = results.get("model", {}).get("model.json") or []
    return rows if isinstance(rows, list) else []


def find_row(rows: list[dict[str, Any]], preset: str, precision: str) -> dict[str, Any] | None:
    for r in rows:
        if r.get("preset") == preset and r.get("precision") == precision:
            return r
    return None


def best_step(rows: list[dict[str, Any]], preset: str, precision: str
              ) -> tuple[str, dict[str, Any]] | None:
    """The fastest whole-step timing (mode, stats) for a preset and precision, over the model
    and capture parts' results."""
    best: tuple[str, dict[str, Any]] | None = None
    for r in rows:
        if r.get("preset") != preset or r.get("precision") != precision:
            continue
        for mode, st in (r.get("step") or {}).items():
            if best is None or st["median_s"] < best[1]["median_s"]:
                best = (mode, st)
    return best


def goals(results: dict[str, Any], dry: bool) -> list[tuple[str, str, str, str]]:
    """(goal, target, measured, verdict) rows for the issue's goals."""
    prec = GOAL_PRECISION if not dry else "float32"
    steps = model_rows(results) + (results.get("capture", {}).get("capture.json") or [])
    out: list[tuple[str, str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        if ok is None:
            return "not measured"
        if dry:
            return "n/a (dry run)"
        return "**met**" if ok else "**not met**"

    def step_goal(preset: str, target_ms: float, p99_ms: float | None) -> None:
        found = best_step(steps, preset, prec)
        if found is None:
            out.append((f"{preset}: `step` median ({prec})", f"≤ {target_ms:g} ms", "-",
                        verdict(None)))
            return
        mode, st = found
        modes = sorted({m for r in steps if r.get("preset") == preset
                        and r.get("precision") == prec for m in r.get("step") or {}})
        eager32 = next((r["step"]["eager"] for r in steps if r.get("preset") == preset
                        and r.get("precision") == "float32" and "eager" in (r.get("step") or {})),
                       None)
        ratio = "" if eager32 is None else (
            f"; eager float32 {_ms(eager32['median_s'])} ms, "
            f"{eager32['median_s'] / st['median_s']:.2f}x this")
        out.append((f"{preset}: `step` median ({prec}, best of {', '.join(modes)})",
                    f"≤ {target_ms:g} ms",
                    f"{_ms(st['median_s'])} ms ({mode}, {1 / st['median_s']:.0f} fps){ratio}",
                    verdict(st["median_s"] * 1e3 <= target_ms)))
        if p99_ms is not None:
            out.append((f"{preset}: `step` p99 ({prec}, {mode})", f"≤ {p99_ms:g} ms",
                        f"{_ms(st['p99_s'])} ms over {st['frames']} frames",
                        verdict(st["p99_s"] * 1e3 <= p99_ms)))

    step_goal("lite0" if not dry else "tiny", 8.0, 12.0)
    row = find_row(model_rows(results), "lite0" if not dry else "tiny", prec)
    share = _get(row, "tracks64", "share_of_segmenter")
    out.append(("tracker share of the segmenter at 64 tracks", "≤ 10%",
                "-" if share is None else f"{100 * share:.1f}% (tracker "
                f"{_ms(row['tracks64']['tracker_s'])} ms, segmenter {_ms(row['segmenter_s'])} ms)",
                verdict(None if share is None else share <= 0.10)))
    syncs = results.get("syncs", {}).get("syncs.json") or {}
    real = syncs.get("cuda_sync_debug_per_step")
    counted = _get(syncs, "counts", "step", "median")
    if real:
        med = sorted(real)[len(real) // 2]
        measured = f"median {med}, max {max(real)} (set_sync_debug_mode, {len(real)} steps)"
        ok: bool | None = max(real) <= 1
    elif counted is not None:
        measured = f"{counted} counted host round trips per step (CPU count, not CUDA)"
        ok = None if not dry else counted <= 1
    else:
        measured, ok = "-", None
    out.append(("device→host syncs per frame", "≤ 1", measured, verdict(ok)))
    if not dry:
        step_goal("r50", 25.0, None)
        swin = best_step(steps, "swin-l", prec)
        out.append(("Swin-L (random weights) measured", "reported",
                    "-" if swin is None else f"{_ms(swin[1]['median_s'])} ms ({swin[0]})",
                    "measured" if swin else "not measured"))
    node = results.get("node-path", {}).get("node_path.json") or []
    multi = [r for r in node if r.get("cameras", 1) > 1 and r.get("vs_one_camera")]
    if multi:
        r = max(multi, key=lambda r: r["vs_one_camera"])
        out.append((f"{r['cameras']} cameras batched vs one (node path)", "≥ 3x",
                    f"{r['vs_one_camera']:.2f}x ({r['aggregate_fps']:.0f} vs "
                    f"{r['aggregate_fps'] / r['vs_one_camera']:.0f} frames/s, {r['capture']}, "
                    f"{r.get('model_name', '')})",
                    verdict(r["vs_one_camera"] >= 3.0 if r["cameras"] >= 4 else None)))
    else:
        out.append(("4 cameras batched vs one", "≥ 3x", "-", verdict(None)))
    train = results.get("train", {})
    for stage in (1, 2):
        r = train.get(f"stage{stage}.json")
        if r:
            out.append((f"training stage {stage}: steps/s", "reported",
                        f"{r.get('steps_per_s') or 0:.2f} steps/s (batch {r.get('batch_size')}, "
                        f"amp {r.get('amp')}, {r.get('backend')}, DDP "
                        f"{'yes' if r.get('trainer_distributed') else 'no'})",
                        "measured" if not dry else "n/a (dry run)"))
        else:
            out.append((f"training stage {stage}: steps/s", "reported", "-", "not measured"))
    return out


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def section_model(results: dict[str, Any]) -> list[str]:
    rows = []
    for r in model_rows(results):
        t64 = r.get("tracks64") or {}
        eager = _get(r, "step", "eager") or {}
        rows.append([r["preset"], r["precision"], "x".join(map(str, reversed(r.get("input", [])))),
                     _ms(r.get("backbone_s")), _ms(r.get("pixel_decoder_s")),
                     _ms(r.get("decoder_s")), _ms(r.get("segmenter_s")),
                     _ms(t64.get("tracker_s")),
                     "-" if "share_of_segmenter" not in t64 else
                     f"{100 * t64['share_of_segmenter']:.1f}%",
                     _ms(eager.get("median_s")), _ms(eager.get("p99_s")),
                     "-" if not eager else f"{1 / eager['median_s']:.0f}"])
    if not rows:
        return []
    return ["## bench/model.py: stages, tracker share, eager step", "",
            *table(["preset", "precision", "input", "backbone ms", "pixel dec. ms",
                    "decoder ms", "segmenter ms", "tracker@64 ms", "tracker share",
                    "step median ms", "step p99 ms", "fps"], rows), ""]


def section_capture(results: dict[str, Any]) -> list[str]:
    data = results.get("capture", {}).get("capture.json") or []
    rows = []
    for r in data:
        for mode, st in (r.get("step") or {}).items():
            rows.append([r["preset"], r["precision"], mode, _ms(st["median_s"]),
                         _ms(st["p90_s"]), _ms(st["p99_s"]), f"{1 / st['median_s']:.0f}",
                         st.get("capture", "").replace("\n", "<br>") or "eager"])
    if not rows:
        return []
    return ["## The step with the segmenter captured (bench/model.py --capture)", "",
            *table(["preset", "precision", "mode", "median ms", "p90 ms", "p99 ms", "fps",
                    "what ran"], rows), ""]


def section_node(results: dict[str, Any]) -> list[str]:
    data = results.get("node-path", {}).get("node_path.json") or []
    rows = [[r.get("model_name", ""), r.get("precision", ""), r["capture"], r["cameras"],
             f"{r['total']['median_ms']:.2f}", f"{r['total']['p99_ms']:.2f}",
             f"{r['convert']['median_ms']:.2f}", f"{r['model']['median_ms']:.2f}",
             f"{r['messages']['median_ms']:.2f}", f"{r['aggregate_fps']:.1f}",
             "-" if not r.get("vs_one_camera") else f"{r['vs_one_camera']:.2f}x",
             r.get("instances_published", "")] for r in data]
    if not rows:
        return []
    return ["## Node-equivalent path, one camera and batched (bench/node_path.py)", "",
            *table(["model", "precision", "capture", "cameras", "per frame ms", "p99 ms",
                    "convert ms", "model ms", "messages ms", "frames/s", "vs one camera",
                    "instances"], rows), ""]


def section_syncs(results: dict[str, Any]) -> list[str]:
    s = results.get("syncs", {}).get("syncs.json")
    if not s:
        return []
    lines = ["## Host syncs per step (bench/tracker_syncs.py)", "",
             f"{s.get('preset')} on {s.get('device')}, {s.get('frames')} frames. Counted host "
             "round trips (spvis_model.syncs) per frame:", ""]
    rows = [[k, c["median"], c["min"], c["max"],
             "; ".join(f"{site} x{n:.2f}" for site, n in list(c["by_site"].items())[:4])]
            for k, c in (s.get("counts") or {}).items()]
    lines += table(["part", "median", "min", "max", "top sites"], rows)
    if s.get("cuda_sync_debug_per_step"):
        lines += ["", "CUDA `set_sync_debug_mode('warn')` warnings per step: "
                  f"{s['cuda_sync_debug_per_step']}"]
    return [*lines, ""]


def section_train(results: dict[str, Any]) -> list[str]:
    rows = []
    for stage in (1, 2):
        r = results.get("train", {}).get(f"stage{stage}.json")
        if r:
            rows.append([stage, r.get("backend"), r.get("world_size"),
                         "yes" if r.get("trainer_distributed") else "no", r.get("amp"),
                         r.get("init") or r.get("model_config"), r.get("steps"),
                         r.get("batch_size"), r.get("clip_len"),
                         "-" if not r.get("steps_per_s") else f"{r['steps_per_s']:.2f}",
                         f"{r.get('loss_first', 0):.4g} → {r.get('loss_last', 0):.4g}",
                         f"{r.get('seconds', 0):.0f}"])
    if not rows:
        return []
    return ["## Training under torchrun (bench/train_check.py amp)", "",
            *table(["stage", "backend", "world", "DDP", "amp", "from", "steps", "batch",
                    "clip", "steps/s", "loss first → last", "seconds"], rows), ""]


def section_msda(results: dict[str, Any]) -> list[str]:
    data = results.get("msda", {}).get("msda.json") or []
    rows = [[r["batch"], r["dtype"], r["pass"], _ms(r["ours_s"]), _ms(r["reference_s"]),
             f"{r['reference_s'] / r['ours_s']:.1f}x",
             f"{r['ours_bytes'] / max(r['reference_bytes'], 1):.2f}"] for r in data]
    if not rows:
        return []
    return ["## MSDeformAttn (bench/msda.py)", "",
            *table(["B", "dtype", "pass", "ours ms", "reference ms", "speed-up",
                    "memory ratio"], rows), ""]


def section_export(results: dict[str, Any]) -> list[str]:
    data = results.get("export", {}).get("export.json") or []
    rows = [[r["preset"], r["input"], f"{r['eager_ms']:.2f}", f"{r['ort_ms']:.2f}",
             f"{r['speedup']:.2f}x", f"{r['logit_diff']:.1e}", r["provider"]] for r in data]
    if not rows:
        return []
    return ["## Segmenter: eager vs onnxruntime (bench/export.py)", "",
            *table(["preset", "input", "eager ms", "onnxruntime ms", "eager/ort",
                    "max abs dlogit", "provider"], rows), ""]


def section_tests(results: dict[str, Any]) -> list[str]:
    j = results.get("cuda-tests", {}).get("junit.xml")
    if not j:
        return []
    lines = ["## cuda-marked tests", "",
             f"{j['tests']} tests: {j['passed']} passed, {j['failures']} failed, "
             f"{j['errors']} errors, {j['skipped']} skipped."]
    for reason, n in j["skip_reasons"].items():
        lines.append(f"- skipped x{n}: {reason}")
    for f in j["failed"]:
        lines += [f"- **{f['kind']}** `{f['test']}`:", "", "```",
                  f["message"][:1500], "```"]
    return [*lines, ""]


def log_tail(work: Path, part: str, n: int = 25) -> list[str]:
    path = work / "logs" / f"{part}.log"
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[:300] for line in text[-n:]]


def cmd_report(work: Path, out: Path) -> int:
    """Write out/report.md, out/results.json and out/log.txt from the work folder."""
    m = meta(work)
    dry = bool(m.get("dry_run"))
    env = read_json(work / "env.json") or {}
    planned: list[str] = m.get("parts", [])
    statuses = {p: read_json(work / "status" / f"{p}.json") for p in planned}
    results = {p: raw_results(work, p) for p in planned}
    elapsed = time.time() - float(m.get("started_unix", time.time()))
    out.mkdir(parents=True, exist_ok=True)

    counts: dict[str, int] = {}
    part_rows = []
    for p in planned:
        st = statuses.get(p)
        status = st["status"] if st else "not run (yet)"
        counts[status] = counts.get(status, 0) + 1
        part_rows.append([f"`{p}`", PARTS_TITLE.get(p, ""), f"**{status}**" if st and
                          status not in ("passed", "skipped") else status,
                          "" if not st else f"{st['seconds']:.0f}",
                          "" if not st or st["budget_s"] is None else f"{st['budget_s']:.0f}",
                          "" if not st else str(st.get("note", "")).replace("|", "/")[:300]])
    where = env.get("gpu") or "CPU (no CUDA device)"
    title = "dry run on the CPU" if dry else where
    started = datetime.datetime.fromtimestamp(float(m.get("started_unix", time.time())),
                                              tz=datetime.timezone.utc)
    lines = [f"# spvis GPU check: {title}", "",
             f"Started {started:%Y-%m-%d %H:%M} UTC; {elapsed:.0f} s of a "
             f"{float(m.get('deadline_s', 0)):.0f} s deadline. Python {env.get('python')}, torch "
             f"{env.get('torch')} (CUDA {env.get('torch_cuda')}), {where}"
             + (f" (compute capability {env['capability']}, {env.get('gpu_memory_gib')} GiB, "
                f"driver {', '.join(env.get('driver') or [])})" if env.get("gpu") else "")
             + f", nvcc {' '.join(env.get('nvcc') or ['none'])}, {env.get('cpu_count')} cores.",
             ""]
    if dry:
        lines += ["**Dry run**: the same script on the CPU at tiny sizes. Its numbers only show "
                  "that every part runs and reports; they say nothing about the goals.", ""]
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines += ["## Parts", "", *table(["part", "what", "status", "seconds", "budget s", "note"],
                                     part_rows), "", f"Parts: {summary}.", ""]
    lines += ["## Goals" + (" (H200, 640x480, bf16 unless said; ratios against eager float32 "
                            "in the same run)" if not dry else ""), "",
              *table(["goal", "target", "measured", "verdict"],
                     [list(g) for g in goals(results, dry)]), ""]
    for section in (section_tests, section_model, section_capture, section_node,
                    section_syncs, section_train, section_msda, section_export):
        lines += section(results)
    imports = env.get("imports") or {}
    if imports:
        lines += ["## Environment", "", "Imports: " + ", ".join(
            f"{k} {v}" for k, v in imports.items()) + ".",
            f"onnxruntime providers: {env.get('onnxruntime_providers')}.", ""]
    failed = [p for p in planned if statuses.get(p) and statuses[p]["status"]
              in ("failed", "timed out")]
    for p in failed:
        lines += [f"## Log tail: {p}", "", "```", *log_tail(work, p), "```", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(
        {"meta": m, "env": env, "elapsed_s": elapsed, "status": statuses, "results": results},
        indent=1, default=str))
    with open(out / "log.txt", "w") as f:
        for p in planned:
            path = work / "logs" / f"{p}.log"
            if not path.is_file():
                continue
            data = path.read_bytes()
            if len(data) > 2 * LOG_KEEP:
                data = (data[:LOG_KEEP] + f"\n[... {len(data) - 2 * LOG_KEEP} bytes cut ...]\n"
                        .encode() + data[-LOG_KEEP:])
            f.write(f"===== {p} =====\n")
            f.write(data.decode(errors="replace"))
            f.write("\n")
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "env" and len(args) == 1:
        return cmd_env(Path(args[0]))
    if cmd == "finish" and len(args) in (5, 6):
        return cmd_finish(Path(args[0]), args[1], int(args[2]), float(args[3]), float(args[4]),
                          args[5] if len(args) == 6 else "")
    if cmd == "skip" and len(args) == 3:
        return cmd_skip(Path(args[0]), args[1], args[2])
    if cmd == "report" and len(args) == 2:
        return cmd_report(Path(args[0]), Path(args[1]))
    print(f"gpu_check_report.py: bad arguments {argv!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
