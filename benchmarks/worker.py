"""The subprocess side: ``python -m benchmarks.worker TASK.json``.

Tasks (the JSON's "task" key): ``build`` (cache models), ``convert`` (one conversion),
``evaluate`` (measure one converted model), ``profile`` (cProfile one modelconv conversion).
The result is written as JSON to the task's "result" path; a crash (segfault, OOM kill)
leaves no result and the parent reports the exit status instead.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.zoo import CachePaths, ModelSpec, cache_paths, make_inputs


def peak_rss_bytes() -> int:
    """Peak resident set size of this process or of the largest subprocess it waited for
    (a converter may shell out, e.g. to tf2onnx). Linux reports KiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, kids)) * 1024


def self_rss_bytes() -> int:
    """Peak RSS of this process alone."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "executable": sys.executable}
    for name in ("torch", "torchvision", "keras", "tensorflow", "transformers"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    return out


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def _outputs_dict(value: Any) -> dict[str, np.ndarray]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return {f"out{i}": np.asarray(v.detach().numpy() if hasattr(v, "detach") else v)
            for i, v in enumerate(items)}


def build_torch(spec: ModelSpec, paths: CachePaths, scale: bool = False) -> dict[str, Any]:
    """Build, run and save one torch model (state_dict as safetensors)."""
    import torch
    from safetensors.torch import save_file

    from benchmarks.zoo_torch import build_module, random_init_

    module, impl = build_module(spec, empty=scale)
    if scale:
        random_init_(module)
    inputs = make_inputs(spec)
    with torch.no_grad():
        ref = module(*[torch.from_numpy(inputs[i.name]) for i in spec.inputs])
    _save_npz(paths.inputs, inputs)
    _save_npz(paths.reference, _outputs_dict(ref))
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(paths.torch_weights))
    weights = sum(v.numel() * v.element_size() for v in state.values())
    return {"impl": impl, "weights_bytes": int(weights),
            "params": int(sum(p.numel() for p in module.parameters()))}


def build_keras(spec: ModelSpec, paths: CachePaths) -> dict[str, Any]:
    """Build, run and save one Keras model as .keras, .h5 and a SavedModel folder, plus its
    tf_keras twin's SavedModel (with keras_metadata.pb)."""
    from benchmarks.zoo_keras import build_keras as make

    model = make(spec)
    inputs = make_inputs(spec)
    arrays = [inputs[i.name] for i in spec.inputs]
    ref = model(arrays[0] if len(arrays) == 1 else arrays, training=False)
    _save_npz(paths.inputs, inputs)
    _save_npz(paths.reference, _outputs_dict([np.asarray(r) for r in (
        ref if isinstance(ref, (list, tuple)) else [ref])]))
    model.save(str(paths.keras_file))
    notes: dict[str, Any] = {"impl": "keras.applications" if spec.name != "k_lstm" else "keras",
                             "params": int(model.count_params())}
    try:
        model.save(str(paths.keras_h5))
    except Exception as exc:  # the .h5 copy is informational only
        notes["h5_error"] = f"{type(exc).__name__}: {exc}"[:200]
    model.export(str(paths.savedmodel), verbose=False)
    try:
        from benchmarks.zoo_keras import build_tfkeras_twin

        twin = build_tfkeras_twin(spec, model.get_weights())
        twin.save(str(paths.tfkeras_savedmodel), save_format="tf")
        got = twin(arrays[0] if len(arrays) == 1 else arrays, training=False)
        want = ref[0] if isinstance(ref, (list, tuple)) else ref
        notes["tfkeras_max_abs_diff"] = float(np.max(np.abs(np.asarray(
            got[0] if isinstance(got, (list, tuple)) else got) - np.asarray(want))))
    except Exception as exc:  # the tfkeras-savedmodel route then reports the missing folder
        notes["tfkeras_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return notes


def build_onnx(spec: ModelSpec, paths: CachePaths) -> dict[str, Any]:
    """Build, run (onnxruntime) and save one ONNX model."""
    import onnx
    import onnxruntime as ort

    from benchmarks.zoo_onnx import build_onnx as make

    model = make(spec)
    onnx.save(model, str(paths.onnx_file))
    inputs = make_inputs(spec)
    sess = ort.InferenceSession(str(paths.onnx_file), providers=["CPUExecutionProvider"])
    _save_npz(paths.inputs, inputs)
    _save_npz(paths.reference, _outputs_dict(sess.run(None, inputs)))
    return {"impl": "onnx.helper", "params": 0}


def task_build(task: dict[str, Any]) -> dict[str, Any]:
    """Build every model of the task that is not cached with the same fingerprint."""
    results: dict[str, Any] = {}
    for raw in task["models"]:
        spec = ModelSpec.from_dict(raw)
        paths = cache_paths(Path(task["cache_dir"]), spec.name)
        fingerprint = {"spec": spec.to_dict(), "python": sys.executable,
                       **({"tfkeras_twin": 1} if spec.family == "keras" else {})}
        if paths.marker.exists() and not task.get("rebuild"):
            old = json.loads(paths.marker.read_text())
            if old.get("fingerprint") == fingerprint:
                results[spec.name] = {**old["info"], "status": "ok", "cached": True}
                continue
        paths.root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            if spec.family == "torch":
                info = build_torch(spec, paths, scale=bool(task.get("scale")))
            elif spec.family == "keras":
                info = build_keras(spec, paths)
            else:
                info = build_onnx(spec, paths)
        except Exception as exc:
            results[spec.name] = {"status": "error", "message": _message(exc),
                                  "traceback": traceback.format_exc()[-3000:]}
            continue
        info["build_s"] = round(time.perf_counter() - start, 3)
        info["versions"] = _versions()
        paths.marker.write_text(json.dumps({"fingerprint": fingerprint, "info": info}))
        results[spec.name] = {**info, "status": "ok", "cached": False}
    return {"status": "ok", "models": results}


def _job(task: dict[str, Any]) -> Any:
    from benchmarks.converters import Job

    spec = ModelSpec.from_dict(task["model"])
    return Job(source=task["source"], target=task["target"], converter=task["converter"],
               spec=spec, paths=cache_paths(Path(task["cache_dir"]), spec.name),
               out_dir=Path(task["out_dir"]), python=sys.executable,
               modelconv_verify=bool(task.get("modelconv_verify")))


def task_convert(task: dict[str, Any]) -> dict[str, Any]:
    """One timed conversion; peak RSS is this whole process's."""
    from benchmarks.converters import Unavailable, run_job

    try:
        outcome = run_job(_job(task))
    except Unavailable as exc:
        return {"status": "unavailable", "message": str(exc)}
    except BaseException as exc:
        return {"status": "error", "message": _message(exc),
                "traceback": traceback.format_exc()[-4000:], "peak_rss_bytes": peak_rss_bytes()}
    return {"status": "ok", "output": str(outcome.output), "convert_s": outcome.convert_s,
            "peak_rss_bytes": peak_rss_bytes(), "self_peak_rss_bytes": self_rss_bytes(),
            "extra": outcome.extra, "versions": _versions()}


def task_evaluate(task: dict[str, Any]) -> dict[str, Any]:
    """Size, node count, 1-thread latency and error of one converted model."""
    from benchmarks.evaluate import evaluate

    try:
        res = evaluate(Path(task["output"]), Path(task["inputs"]), Path(task["reference"]),
                       int(task["runs"]))
    except BaseException as exc:
        return {"status": "error", "message": _message(exc),
                "traceback": traceback.format_exc()[-4000:]}
    return {"status": "ok", **res}


def task_profile(task: dict[str, Any]) -> dict[str, Any]:
    """cProfile one modelconv conversion; prints the top entries and the stage timings."""
    import cProfile
    import pstats

    from benchmarks import converters

    job = _job(task)
    prof = cProfile.Profile()
    converters.PROFILER = prof  # enabled around the timed converter call only
    outcome = converters.run_job(job)
    print(f"\n== cProfile: modelconv {job.source}->{job.target} on {job.spec.name} "
          f"(top {task.get('top', 25)} by cumulative time) ==")
    stats = pstats.Stats(prof, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(int(task.get("top", 25)))
    timings = outcome.extra.get("timings", {})
    print("== modelconv per-stage timings (ConversionResult.timings) ==")
    for stage, secs in timings.items():
        print(f"  {stage:10s} {secs:9.3f} s")
    print(f"  converter call {outcome.convert_s:.3f} s, peak RSS "
          f"{peak_rss_bytes() / 2**20:.0f} MiB, output {outcome.output}")
    if task.get("stats_file"):
        stats.dump_stats(task["stats_file"])
    return {"status": "ok", "convert_s": outcome.convert_s, "timings": timings,
            "peak_rss_bytes": peak_rss_bytes()}


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:400] if text else type(exc).__name__


TASKS = {"build": task_build, "convert": task_convert, "evaluate": task_evaluate,
         "profile": task_profile}


def main(argv: list[str]) -> int:
    """Run the task file ``argv[0]``; write its result JSON atomically."""
    task = json.loads(Path(argv[0]).read_text())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = TASKS[task["task"]](task)
    out = Path(task["result"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
