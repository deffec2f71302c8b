"""keras.applications models (weights=None), an LSTM text classifier and a multi-input
multi-output functional model in every Keras file dialect -> ONNX, through the CLI and the
Python API, each checked against the source framework's own output within rel 1e-4.

Formats (``FORMATS``): Keras 2 (tf_keras) ``.h5`` and SavedModel (``model.save`` in the TF
format), Keras 3 legacy ``.h5``, ``.keras`` and SavedModel (``model.export``).

The source files and their reference outputs are built once per session in two
subprocesses (tests/builders/keras_dialect_build.py: one for tf_keras, one for Keras 3 on the
TensorFlow backend, run side by side) inside pytest's tmp folder, and removed afterwards;
this process never imports TensorFlow. Application models return logits
(``classifier_activation=None``) and get non-trivial BatchNormalization statistics, so the
comparison is not blunted by a saturated or flat softmax.

Each case converts with the source-runner verification that ``convert`` does by default
(Keras 3 files: Keras 3 on torch in this process; Keras 2 files: tf_keras, SavedModels:
TensorFlow, both in a worker), then runs the ONNX file in onnxruntime on the reference input:
``|onnx - ref| <= 1e-4 * max(1, max|ref|)`` and equal argmax. Routes alternate between
``modelconv.cli.main`` (JSON report) and ``modelconv.convert`` so that every format goes
through both.

Default (CI) subset, under four minutes on two cores: every format for MobileNetV2,
EfficientNetB0, ConvNeXtTiny, the text model and the multi-IO model, NASNetMobile in both
.h5 forms (the .keras files of the other applications are covered by
tests/keras/test_keras_models.py).
``MODELCONV_FULL_MATRIX=1`` runs all seven applications and the two hand-made models in all
five formats (45 cases, about nine minutes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelconv
from modelconv.cli import main
from tests.paths import TESTS
from tests.reference_npz import load_reference

pytestmark = [
    pytest.mark.models,
    pytest.mark.tf,
    pytest.mark.timeout(1800),  # the first case also builds the models
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),  # keras
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("tensorflow", "tf_keras", "keras")),
        reason="needs tensorflow, tf_keras and keras to build the source files"),
]

BUILDER = TESTS / "builders" / "keras_dialect_build.py"
FULL = os.environ.get("MODELCONV_FULL_MATRIX", "") not in ("", "0")

#: format id -> (builder dialect, builder format, file name pattern, reference tag)
FORMATS = {
    "keras2-h5": ("keras2", "h5", "{}.k2.h5", "k2"),
    "keras2-savedmodel": ("keras2", "savedmodel", "{}.k2_savedmodel", "k2"),
    "keras3-h5": ("keras3", "h5", "{}.k3.h5", "k3"),
    "keras3-keras": ("keras3", "keras", "{}.keras", "k3"),
    "keras3-savedmodel": ("keras3", "savedmodel", "{}.k3_savedmodel", "k3"),
}
APPS = ["MobileNetV2", "ResNet50", "EfficientNetB0", "DenseNet121", "InceptionV3",
        "NASNetMobile", "ConvNeXtTiny"]
MODELS = [*APPS, "TextLSTM", "MultiIO"]
#: default subset: model -> formats (FULL: every model in every format)
DEFAULT = {
    **{m: list(FORMATS) for m in ("MobileNetV2", "EfficientNetB0", "TextLSTM", "MultiIO")},
    "ConvNeXtTiny": list(FORMATS),
    "NASNetMobile": ["keras2-h5", "keras3-h5"],
}
#: cases whose source runner cannot load the file: verification is skipped, saying why
RUNNER_CANNOT_LOAD = {
    # Keras 3 writes `x + y` (an op, not a layer) into a legacy .h5 without its module;
    # its own h5 loader then takes it for the Add layer ("too many positional arguments")
    ("ConvNeXtTiny", "keras3-h5"),
}
@dataclass(frozen=True)
class Case:
    """One model in one format, converted through one route."""

    model: str
    fmt: str
    route: str  # "cli" or "api"

    @property
    def id(self) -> str:
        """The pytest id."""
        return f"{self.model}-{self.fmt}-{self.route}"


def _cases() -> list[Any]:
    params = []
    for i, model in enumerate(MODELS):
        for j, fmt in enumerate(FORMATS):
            if not FULL and fmt not in DEFAULT.get(model, []):
                continue
            case = Case(model, fmt, "cli" if (i + j) % 2 == 0 else "api")
            params.append(pytest.param(case, id=case.id))
    return params


CASES = _cases()


class Built:
    """The built source files (tmp folder) and how long building took."""

    def __init__(self, root: Path, seconds: float):
        self.root = root
        self.seconds = seconds

    def source(self, case: Case) -> Path:
        """The source file or folder of ``case``."""
        path = self.root / FORMATS[case.fmt][2].format(case.model)
        assert path.exists(), f"the builder did not write {path.name}"
        return path

    def reference(self, case: Case) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(inputs, outputs) by Keras input/output layer name, in model order."""
        return load_reference(self.root / f"{case.model}.{FORMATS[case.fmt][3]}.npz")


def _selected_cases(session: pytest.Session) -> list[Case]:
    """The cases of this module that this session runs (a -k filter builds less)."""
    chosen = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and isinstance(callspec.params.get("case"), Case):
            chosen.append(callspec.params["case"])
    return chosen


def _build_spec(cases: list[Case], dialect: str) -> dict[str, Any]:
    models: dict[str, list[str]] = {}
    for case in cases:
        want_dialect, fmt = FORMATS[case.fmt][:2]
        if want_dialect == dialect:
            formats = models.setdefault(case.model, [])
            if fmt not in formats:
                formats.append(fmt)
    return {"seed": 0, "models": models}


@pytest.fixture(scope="session")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Build every selected model in both dialects, in two subprocesses side by side."""
    from modelconv.workers.tf_worker import worker_env

    root = tmp_path_factory.mktemp("keras_dialects")
    cases = _selected_cases(request.session) or [p.values[0] for p in CASES]
    start = time.perf_counter()
    procs = []
    for dialect in ("keras2", "keras3"):
        spec = _build_spec(cases, dialect)
        if not spec["models"]:
            continue
        log = open(root / f"{dialect}.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([sys.executable, str(BUILDER), dialect, str(root),
                                 json.dumps(spec)], env=worker_env(), stdout=log,
                                stderr=subprocess.STDOUT, text=True)
        procs.append((dialect, proc, log))
    failed = []
    for dialect, proc, log in procs:
        try:
            proc.wait(timeout=1500)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if proc.returncode != 0:
            lines = (root / f"{dialect}.log").read_text().strip().splitlines()
            failed.append(f"{dialect} builder exited with {proc.returncode}:\n"
                          + "\n".join(lines[-15:]))
    if failed:
        pytest.fail("\n".join(failed))
    yield Built(root, time.perf_counter() - start)
    shutil.rmtree(root, ignore_errors=True)  # several GB with the full matrix


def _convert_cli(src: Path, dst: Path, report: Path, verifiable: bool = True) -> dict[str, Any]:
    # --debug: a ModelconvError propagates (with its type) instead of becoming exit code 2;
    # a conversion whose source Keras cannot load exits 3 (converted, not verified)
    assert main(["--debug", "convert", str(src), str(dst), "--quiet", "--rtol", "1e-4",
                 "--report", str(report)]) == (0 if verifiable else 3)
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def _convert_api(src: Path, dst: Path) -> dict[str, Any]:
    result = modelconv.convert(src, dst, rtol=1e-4)
    assert result.report is not None
    data: dict[str, Any] = json.loads(result.report.to_json())
    return data


def _by_name_or_position(names: list[str], ref: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The reference arrays for the ONNX graph's ``names``: by name when they all match
    Keras names, else in order (Keras 3 exports name outputs ``output_0``...)."""
    if all(n in ref for n in names):
        return [ref[n] for n in names]
    assert len(names) == len(ref), (names, list(ref))
    return list(ref.values())


def _check_against_reference(onnx_path: Path, ins: dict[str, np.ndarray],
                             outs: dict[str, np.ndarray]) -> float:
    """Run the ONNX file on the reference inputs; returns the largest relative error."""
    from modelconv.verification.runners import OnnxRuntimeRunner

    session = OnnxRuntimeRunner(onnx_path).session
    in_names = [i.name for i in session.get_inputs()]
    dtypes = {i.name: i.type for i in session.get_inputs()}
    feeds = {n: x.astype(np.int64) if dtypes[n] == "tensor(int64)" else x
             for n, x in zip(in_names, _by_name_or_position(in_names, ins), strict=True)}
    out_names = [o.name for o in session.get_outputs()]
    got = session.run(out_names, feeds)
    worst = 0.0
    for name, g, want in zip(out_names, got, _by_name_or_position(out_names, outs),
                             strict=True):
        assert g.shape == want.shape, name
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(g, want, atol=1e-4 * scale, rtol=0, err_msg=name)
        worst = max(worst, float(np.abs(g - want).max()) / scale)
        if want.shape[-1] > 1:
            assert np.array_equal(np.argmax(g, -1), np.argmax(want, -1)), name
    return worst


@pytest.mark.parametrize("case", CASES)
def test_convert(built: Built, case: Case, tmp_path: Path,
                 record_property: Any) -> None:
    src = built.source(case)
    dst = tmp_path / f"{case.model}.onnx"
    start = time.perf_counter()
    try:
        if case.route == "cli":
            report = _convert_cli(src, dst, tmp_path / "report.json",
                                  (case.model, case.fmt) not in RUNNER_CANNOT_LOAD)
        else:
            report = _convert_api(src, dst)
        if (case.model, case.fmt) in RUNNER_CANNOT_LOAD:
            assert report["skipped"] and "cannot load" in report["skip_reason"], report
        else:
            assert report["passed"] and not report["skipped"], report
            assert all(o["max_rel"] < 1e-4 for o in report["outputs"]), report
        record_property("convert_seconds", round(time.perf_counter() - start, 1))
        ins, outs = built.reference(case)
        record_property("max_rel", _check_against_reference(dst, ins, outs))
    finally:
        dst.unlink(missing_ok=True)  # up to 100 MB each; pytest keeps tmp folders around


def test_every_format_goes_through_both_routes() -> None:
    routes: dict[str, set[str]] = {}
    for param in CASES:
        case = param.values[0]
        routes.setdefault(case.fmt, set()).add(case.route)
    assert routes == {fmt: {"cli", "api"} for fmt in FORMATS}


#: SavedModel importer route per format: the Keras layer handlers for tf.keras files, the
#: TF graph converter for Keras 3 exports (the LSTMs' While loops unrolled); never tf2onnx
SAVEDMODEL_ROUTES = {"keras2-savedmodel": "savedmodel-keras",
                     "keras3-savedmodel": "savedmodel-graph"}


@pytest.mark.parametrize("case", [c for c in CASES
                                  if c.values[0].fmt in SAVEDMODEL_ROUTES])  # type: ignore[union-attr]
def test_savedmodel_route(built: Built, case: Any) -> None:
    """SavedModels take the TensorFlow-free routes."""
    from modelconv.importers.tf import import_savedmodel
    from modelconv.options import ConvertOptions

    sm = import_savedmodel(built.source(case), ConvertOptions())
    assert sm.format == SAVEDMODEL_ROUTES[case.fmt], sm.warnings
    assert not sm.warnings
