"""The TensorFlow worker: TensorFlow only ever runs in this subprocess
(``python -m modelconv.workers.tf_worker``) whose KERAS_BACKEND is tensorflow: importing
TensorFlow next to Keras-on-torch crashed here.

Jobs are named in :data:`JOBS` by ``"module:function"`` strings and imported inside the
worker only, so this module depends on none of its callers: ``keras2`` (run a tf.keras .h5
with tf_keras), ``describe`` and ``savedmodel`` (describe/run a signature), ``tf2onnx``
(convert a SavedModel signature; used by the importer).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelconv.errors import MissingDependencyError, ModelLoadError, RunnerUnavailableError

WORKER_TIMEOUT = 900.0

#: job name -> "module:function"; the function takes the job spec and returns named arrays
JOBS = {
    "keras2": "modelconv.verification.runners_tf:_job_keras2",
    "describe": "modelconv.verification.runners_tf:_job_describe",
    "savedmodel": "modelconv.verification.runners_tf:_job_savedmodel",
    "tf2onnx": "modelconv.importers.tf.tf2onnx_route:tf2onnx_job",
}

Job = Callable[[dict[str, Any]], dict[str, np.ndarray]]


def tf_available() -> bool:
    """True when tensorflow is importable (checked without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def worker_env() -> dict[str, str]:
    """Environment for the TensorFlow worker process."""
    env = dict(os.environ)
    env.update({"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
                "CUDA_VISIBLE_DEVICES": "", "TF_ENABLE_ONEDNN_OPTS": "0",
                "PYTHONHASHSEED": "0"})
    return env


def run_worker(job: str, path: str, feeds: Sequence[np.ndarray] | None = None,
               **params: Any) -> dict[str, np.ndarray]:
    """Run ``job`` on ``path`` in the TensorFlow worker.

    Args:
        job: a key of :data:`JOBS`.
        path: the model file or folder the job reads.
        feeds: input arrays, passed to the job as ``arr_<i>`` in an .npz file.
        **params: JSON-serialisable job parameters.

    Returns:
        The arrays the job returned (runners use ``out<i>``).

    Raises:
        MissingDependencyError: TensorFlow is not installed.
        RunnerUnavailableError: the job said the model cannot be run.
        ModelLoadError: the worker failed (its last error line is quoted).
    """
    if not tf_available():
        raise MissingDependencyError("tensorflow", "tf", f"Running '{job}'")
    with tempfile.TemporaryDirectory(prefix="modelconv-tf-") as tmp:
        feeds_path = os.path.join(tmp, "feeds.npz")
        np.savez(feeds_path, *(feeds or []))
        out_path = os.path.join(tmp, "out.npz")
        spec = {"job": job, "path": path, "feeds": feeds_path, "out": out_path, **params}
        proc = subprocess.run(
            [sys.executable, "-m", "modelconv.workers.tf_worker", json.dumps(spec)],
            env=worker_env(), capture_output=True, text=True, timeout=WORKER_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0 or not os.path.exists(out_path):
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            err = next((ln for ln in reversed(lines) if ln.startswith("MODELCONV:")),
                       lines[-1] if lines else f"exit code {proc.returncode}")
            err = err.removeprefix("MODELCONV:").strip()
            if err.startswith(f"{RunnerUnavailableError.__name__}:"):
                raise RunnerUnavailableError(err.split(":", 1)[1].strip()[:500], path=path)
            raise ModelLoadError(f"TensorFlow worker failed ({job}): {err[:500]}", path=path)
        with np.load(out_path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def load_feeds(path: str) -> list[np.ndarray]:
    """Worker side: the input arrays :func:`run_worker` wrote, in order."""
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def resolve_job(name: str) -> Job:
    """Worker side: import the function :data:`JOBS` names for ``name``.

    Raises:
        KeyError: no such job.
    """
    module, _, attr = JOBS[name].partition(":")
    job: Job = getattr(importlib.import_module(module), attr)
    return job


def _worker_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    try:
        result = resolve_job(spec["job"])(spec)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:800]
        print(f"MODELCONV: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 1
    np.savez(spec["out"], **result)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
