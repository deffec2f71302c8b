"""The parent side: plan the runs, spawn one fresh subprocess per conversion, collect figures.

Nothing here imports torch, TensorFlow or Keras: every framework runs in a child
(:mod:`benchmarks.worker`) started with ``--python`` (default: this interpreter).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.routes import Converter, Route, select_routes
from benchmarks.zoo import ModelSpec, cache_paths, get_model

REPO = Path(__file__).resolve().parent.parent
MiB = 2**20


@dataclass
class RunConfig:
    """Everything ``python -m benchmarks run`` was asked to do."""

    out_dir: Path
    python: str = sys.executable
    routes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    #: converter keys to run (modelconv always runs); empty: every converter of the route
    converters: list[str] = field(default_factory=list)
    quick: bool = False
    repeats: int = 3
    latency_runs: int = 20
    timeout: float = 900.0
    modelconv_verify: bool = False
    rebuild: bool = False
    keep_outputs: bool = False
    startup: bool = True

    @property
    def cache_dir(self) -> Path:
        """Model cache (per interpreter: torchvision may exist in one and not another)."""
        tag = "".join(c if c.isalnum() else "_" for c in str(Path(self.python).resolve()))[-60:]
        return self.out_dir / "cache" / tag


def log(msg: str) -> None:
    """Progress on stderr (stdout gets the tables)."""
    print(msg, file=sys.stderr, flush=True)


def child_env(family: str | None) -> dict[str, str]:
    """Environment of a worker: the repo importable, TF quiet, Keras on TensorFlow."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["USE_TF"] = "0"  # transformers must not pull TensorFlow into a torch process
    env.setdefault("HF_HUB_OFFLINE", "1")
    if family == "keras":
        env["KERAS_BACKEND"] = "tensorflow"
    return env


def spawn(task: dict[str, Any], python: str, family: str | None, timeout: float,
          log_file: Path, passthrough: bool = False) -> tuple[dict[str, Any], float]:
    """Run one worker task in a fresh process; returns (result, wall seconds)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mcbench-") as tmp:
        task = {**task, "result": str(Path(tmp) / "result.json")}
        task_file = Path(tmp) / "task.json"
        task_file.write_text(json.dumps(task))
        cmd = [python, "-m", "benchmarks.worker", str(task_file)]
        with open(log_file, "w") as fh:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=str(REPO), env=child_env(family),
                                    stdout=None if passthrough else fh, stderr=fh,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return ({"status": "error", "message": f"timed out after {timeout:g} s"},
                        time.perf_counter() - start)
            wall = time.perf_counter() - start
        result_path = Path(task["result"])
        if result_path.exists():
            return json.loads(result_path.read_text()), wall
    how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
    tail = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()][-1:]
    return {"status": "error", "message": f"worker {how}" + (f": {tail[0][:200]}" if tail
                                                               else "")}, wall


def plan(cfg: RunConfig) -> list[tuple[Route, list[ModelSpec]]]:
    """(route, models) pairs to run."""
    out = []
    for route in select_routes(cfg.routes):
        names = list(route.models)
        if cfg.models:
            names = [m for m in cfg.models if m in route.models]
        elif cfg.quick:
            names = [route.quick_model]
        if names:
            out.append((route, [get_model(n) for n in names]))
    if cfg.models:
        known = {m for r, ms in out for m in (s.name for s in ms)}
        missing = [m for m in cfg.models if m not in known]
        if missing:
            log(f"note: model(s) {', '.join(missing)} belong to none of the selected routes")
    return out


def build_models(cfg: RunConfig, specs: list[ModelSpec]) -> dict[str, dict[str, Any]]:
    """Cache every model (one builder subprocess per family); returns per-model info."""
    info: dict[str, dict[str, Any]] = {}
    for family in ("torch", "keras", "onnx"):
        todo = [s for s in specs if s.family == family]
        if not todo:
            continue
        log(f"building {family} models: {', '.join(s.name for s in todo)}")
        task = {"task": "build", "models": [s.to_dict() for s in todo],
                "cache_dir": str(cfg.cache_dir), "rebuild": cfg.rebuild}
        res, wall = spawn(task, cfg.python, family, cfg.timeout * 2,
                          cfg.out_dir / "logs" / f"build_{family}.log")
        models = res.get("models", {})
        for s in todo:
            info[s.name] = models.get(s.name, {"status": "error",
                                               "message": res.get("message", "build failed")})
        log(f"  built in {wall:.1f} s: " + ", ".join(
            f"{n}={info[n]['status']}" for n in (s.name for s in todo)))
    return info


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure(cfg: RunConfig, route: Route, spec: ModelSpec, conv: Converter,
            built: dict[str, Any]) -> dict[str, Any]:
    """Convert ``spec`` with ``conv`` ``repeats`` times, then evaluate the last output."""
    rec: dict[str, Any] = {
        "route": route.name, "model": spec.name, "converter": conv.key, "label": conv.label,
        "role": "modelconv" if conv.is_modelconv else "anchor", "impl": built.get("impl"),
    }
    if built.get("status") != "ok":
        return {**rec, "status": "error", "message": f"model build failed: {built.get('message')}"}
    work = cfg.out_dir / "work" / route.name / spec.name / conv.key
    runs: list[tuple[dict[str, Any], float]] = []
    repeats = 1 if cfg.quick else max(1, cfg.repeats)
    for rep in range(repeats):
        shutil.rmtree(work, ignore_errors=True)
        task = {"task": "convert", "source": route.source, "target": route.target,
                "converter": conv.key, "model": spec.to_dict(), "cache_dir": str(cfg.cache_dir),
                "out_dir": str(work), "modelconv_verify": cfg.modelconv_verify}
        logf = cfg.out_dir / "logs" / f"{route.name}__{spec.name}__{conv.key}__{rep}.log"
        res, wall = spawn(task, cfg.python, route.family, cfg.timeout, logf)
        if res.get("status") != "ok":
            log(f"  [{route.name}] {spec.name} {conv.key}: {res.get('status')}: "
                f"{str(res.get('message'))[:160]}")
            return {**rec, "status": res.get("status", "error"), "message": res.get("message"),
                    "peak_rss_mb": (res.get("peak_rss_bytes") or 0) / MiB or None,
                    "log": str(logf)}
        runs.append((res, wall))
        log(f"  [{route.name}] {spec.name} {conv.key} #{rep + 1}: convert "
            f"{res['convert_s']:.2f} s, process {wall:.2f} s, "
            f"RSS {res['peak_rss_bytes'] / MiB:.0f} MiB")
    last = runs[-1][0]
    rec.update({
        "status": "ok", "repeats": len(runs),
        "convert_s": _median([r["convert_s"] for r, _ in runs]),
        "process_s": _median([w for _, w in runs]),
        "peak_rss_mb": _median([r["peak_rss_bytes"] / MiB for r, _ in runs]),
        "convert_s_all": [round(r["convert_s"], 4) for r, _ in runs],
        "timings": last.get("extra", {}).get("timings"),
        "extra": {k: v for k, v in last.get("extra", {}).items() if k != "timings"},
        "versions": last.get("versions"),
    })
    output = Path(last["output"])
    rec["files"] = sorted(p.name for p in output.parent.rglob("*") if p.is_file())
    rec.update(evaluate_output(cfg, route, spec, conv, output))
    if not cfg.keep_outputs:
        shutil.rmtree(work, ignore_errors=True)
    return rec


def evaluate_output(cfg: RunConfig, route: Route, spec: ModelSpec, conv: Converter,
                    output: Path) -> dict[str, Any]:
    """Run the evaluation subprocess on one converted model."""
    paths = cache_paths(cfg.cache_dir, spec.name)
    task = {"task": "evaluate", "output": str(output), "inputs": str(paths.inputs),
            "reference": str(paths.reference), "runs": cfg.latency_runs}
    logf = cfg.out_dir / "logs" / f"{route.name}__{spec.name}__{conv.key}__eval.log"
    res, _ = spawn(task, cfg.python, None, cfg.timeout, logf)
    if res.get("status") != "ok":
        log(f"  [{route.name}] {spec.name} {conv.key}: evaluation failed: "
            f"{str(res.get('message'))[:160]}")
        return {"eval_status": "error", "eval_message": res.get("message"),
                "size_mb": _size_mb(output)}
    log(f"  [{route.name}] {spec.name} {conv.key}: {res['nodes']} nodes, "
        f"{res['latency_ms']:.2f} ms, max rel err {res['max_rel_err']:.2e}")
    return {"eval_status": "ok", "size_mb": res["size_bytes"] / MiB, "nodes": res["nodes"],
            "latency_ms": res["latency_ms"], "max_rel_err": res["max_rel_err"],
            "max_abs_err": res["max_abs_err"], "op_counts": res.get("op_counts"),
            "load_s": res.get("load_s")}


def _size_mb(output: Path) -> float | None:
    try:
        return sum(p.stat().st_size for p in output.parent.rglob("*") if p.is_file()) / MiB
    except OSError:
        return None


def run(cfg: RunConfig) -> dict[str, Any]:
    """The whole benchmark: build caches, convert and evaluate, time the startup."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pairs = plan(cfg)
    specs = list({s.name: s for _, ms in pairs for s in ms}.values())
    built = build_models(cfg, specs)
    records = []
    for route, models in pairs:
        log(f"route {route.name}")
        for spec in models:
            for conv in route.converters:
                if cfg.converters and not conv.is_modelconv and conv.key not in cfg.converters:
                    continue
                records.append(measure(cfg, route, spec, conv, built.get(spec.name, {})))
    startup: dict[str, Any] = {}
    if cfg.startup:
        from benchmarks.startup import measure_startup

        startup = measure_startup(cfg.python)
    return {
        "meta": {"python": cfg.python, "quick": cfg.quick,
                 "repeats": 1 if cfg.quick else cfg.repeats, "latency_runs": cfg.latency_runs,
                 "modelconv_verify": cfg.modelconv_verify, "cpus": os.cpu_count(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                 "wall_s": round(time.time() - started, 1),
                 "routes": [r.name for r, _ in pairs]},
        "models": {s.name: {**s.to_dict(), "build": built.get(s.name)} for s in specs},
        "records": records,
        "startup": startup,
    }
