"""Per-op matrix of the TensorFlow-free SavedModel graph importer (modelconv.importers.tf)
against TensorFlow itself.

Every op with a handler in ``modelconv.importers.tf.graph.core.OPS`` that a ``tf.function`` can
produce on CPU appears in at least one case (``test_every_registered_op_is_covered`` checks
that from the saved graphs), the layout-sensitive ones (convolutions, pools, FusedBatchNorm,
BiasAdd, Resize, element-wise ops, reductions, slicing, padding, concatenation... after a
convolution, whose output the importer holds channels-first) in several variants.

The cases live in tests/builders/tf_graph_ops_build.py: a small ``tf.Module`` each (weights as
``tf.Variable`` s, so they go through the checkpoint) with a ``tf.function`` whose input
signature has a None batch dimension, saved as ``serving_default``, plus TensorFlow's
outputs on a seeded batch-2 input. They are built once per session in ONE subprocess inside
pytest's tmp folder; this process never imports TensorFlow.

Each case goes through ``convert_signature`` (so that a refused op fails the case at once,
naming the op, instead of falling back to tf2onnx) and ``modelconv.convert`` (which must
report the graph route), then the ONNX file runs in onnxruntime on the reference input:
``max|onnx - tf| <= 1e-4 * max(1, max|tf|)`` per output, exact equality for integer and
bool outputs. Cases marked ``cnn`` (conv -> element-wise -> pool) must change the layout at
the graph boundary only: at most one Transpose per rank-4 graph input and output.

Ops the graph route must refuse (``Cumsum``, which has no handler; ``FloorMod`` of computed
floats, which ONNX's ``Mod`` cannot express; a training-mode ``FusedBatchNormV3``, whose
``is_training`` attribute is left out of the graph because True is its default) make
``convert_signature`` raise UnsupportedOpsError naming the op, and ``modelconv.convert``
still converts the Cumsum model through tf2onnx, with a warning naming the graph route.

``test_every_handler_declares_the_attributes_of_its_ops`` holds every handler's attribute
declarations (consume or refuse, ``core.tf_op(attrs=, fixed=)``) against TensorFlow's OpDefs,
read in a subprocess.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import modelconv
from modelconv.errors import UnsupportedOpsError
from tests.paths import TESTS
from tests.reference_npz import load_reference

pytestmark = [
    pytest.mark.tf,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                       reason="needs tensorflow to build the SavedModels"),
]

BUILDER = TESTS / "builders" / "tf_graph_ops_build.py"
GRAPH_FORMAT = "savedmodel-graph"
SIGNATURE = "serving_default"
RTOL = 1e-4
#: registered ops that no tf.function produces on CPU, and why (none at present: for
#: example tf.nn.conv1d is ExpandDims + Conv2D + Squeeze, covered by the conv1d case)
NOT_PRODUCIBLE: dict[str, str] = {}


def _case_table() -> ModuleType:
    """The builder's case table (importing it does not import TensorFlow)."""
    spec = importlib.util.spec_from_file_location("tf_graph_ops_build", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


TABLE = _case_table()
CASES = [name for name, c in TABLE.CASES.items() if c.unsupported is None]
UNSUPPORTED = [name for name, c in TABLE.CASES.items() if c.unsupported is not None]


class Built:
    """The built SavedModels and references (tmp folder), and the builder's errors."""

    def __init__(self, root: Path, names: list[str], errors: dict[str, str], seconds: float):
        self.root = root
        self.names = names
        self.errors = errors
        self.seconds = seconds

    def folder(self, name: str) -> Path:
        """The SavedModel folder of case ``name`` (fails with TensorFlow's error if the
        builder could not make it)."""
        if name in self.errors:
            pytest.fail(f"TensorFlow could not build case {name}:\n{self.errors[name]}")
        path = self.root / name
        assert (path / "saved_model.pb").is_file(), f"the builder did not write {name}"
        return path

    def reference(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(inputs, TensorFlow's outputs) by signature key."""
        return load_reference(self.root / f"{name}.npz")


def _selected(session: pytest.Session) -> list[str]:
    """The cases this session runs (a -k filter builds less)."""
    chosen: list[str] = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("name") if callspec is not None else None
        if isinstance(name, str) and name in TABLE.CASES and name not in chosen:
            chosen.append(name)
        if getattr(item, "originalname", None) == "test_every_registered_op_is_covered":
            chosen.extend(n for n in TABLE.CASES if n not in chosen)
    return chosen


@pytest.fixture(scope="session")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every selected case, built by tests/builders/tf_graph_ops_build.py in one subprocess."""
    import json

    root = tmp_path_factory.mktemp("tf_graph_ops")
    names = _selected(request.session) or list(TABLE.CASES)
    from modelconv.workers.tf_worker import worker_env

    # KERAS_BACKEND=tensorflow: other test modules set it to torch in this process, and
    # tf.saved_model.save importing Keras-on-torch next to TensorFlow crashes the builder
    env = worker_env()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(BUILDER), str(root), *names], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"the builder exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    errors = json.loads((root / "errors.json").read_text())
    yield Built(root, names, errors, time.perf_counter() - start)
    shutil.rmtree(root, ignore_errors=True)


def _run_onnx(path: Path, ins: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert sorted(names) == sorted(ins), (names, list(ins))
    outs = [o.name for o in session.get_outputs()]
    return dict(zip(outs, session.run(outs, {n: ins[n] for n in names}), strict=True))


def _compare(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    bad = []
    for key, ref in want.items():
        out = got[key]
        if out.shape != ref.shape or out.dtype != ref.dtype:
            bad.append(f"{key}: {out.dtype}{list(out.shape)}, TensorFlow "
                       f"{ref.dtype}{list(ref.shape)}")
        elif ref.dtype.kind in "biu":
            if not np.array_equal(out, ref):
                bad.append(f"{key}: {int(np.sum(out != ref))} of {ref.size} values differ")
        elif ref.size:
            tol = RTOL * max(1.0, float(np.abs(ref).max()))
            err = float(np.abs(out.astype(np.float64) - ref).max())
            if not err <= tol:  # NaN fails too
                bad.append(f"{key}: max |onnx - tf| = {err:.3g} > {tol:.3g}")
    assert not bad, "outputs differ from TensorFlow's:\n" + "\n".join(bad)


def _transposes(path: Path) -> tuple[int, int]:
    """(Transpose nodes, rank-4 graph inputs + outputs) of the ONNX file."""
    import onnx

    graph = onnx.load(str(path)).graph
    count = sum(1 for node in graph.node if node.op_type == "Transpose")
    boundary = [v for v in [*graph.input, *graph.output]
                if len(v.type.tensor_type.shape.dim) == 4]
    return count, len(boundary)


@pytest.mark.parametrize("name", CASES)
def test_op(built: Built, name: str, tmp_path: Path) -> None:
    from modelconv.importers.tf.graph.convert import convert_signature

    folder = built.folder(name)
    converted = convert_signature(folder, SIGNATURE)  # a refused op fails here, named
    assert converted.outputs, name
    dst = tmp_path / "m.onnx"
    result = modelconv.convert(folder, dst, verify=False)
    assert result.source_format == GRAPH_FORMAT, result.warnings
    ins, outs = built.reference(name)
    _compare(_run_onnx(dst, ins), outs)
    if TABLE.CASES[name].cnn:
        count, boundary = _transposes(dst)
        assert count <= boundary, (f"{count} Transpose nodes for {boundary} rank-4 graph "
                                   "inputs/outputs: the layout changes inside the graph")


def test_every_registered_op_is_covered(built: Built) -> None:
    """Each registered op appears in the graph of a case (or is listed as unproducible)."""
    from modelconv.importers.tf.files.saved_model import reachable_ops, read_saved_model
    from modelconv.importers.tf.graph.core import OPS  # the package import registers every op

    assert set(NOT_PRODUCIBLE) <= set(OPS.keys())
    seen: set[str] = set()
    for name in CASES:
        if name not in built.errors:
            seen.update(reachable_ops(read_saved_model(built.root / name, name))[0])
    missing = set(OPS.keys()) - seen - set(NOT_PRODUCIBLE)
    assert not missing, f"registered ops no case produces: {sorted(missing)}"
    assert not set(NOT_PRODUCIBLE) & seen, "an op listed as unproducible is produced"


_OPDEF_ATTRS = """
import json, sys
from tensorflow.python.framework import op_def_registry

def default(a):
    if not a.HasField("default_value"):
        return ["none"]
    v = a.default_value
    kind = v.WhichOneof("value")
    if kind == "list":
        return ["list", list(v.list.i) or list(v.list.s) or list(v.list.type)]
    if kind == "s":
        return ["s", v.s.decode()]
    return [kind, getattr(v, kind)]

out = {}
for name in sys.argv[1:]:
    op = op_def_registry.get(name)
    out[name] = None if op is None else {a.name: default(a) for a in op.attr}
print(json.dumps(out))
"""


def test_every_handler_declares_the_attributes_of_its_ops() -> None:
    """Consume or refuse, checked against TensorFlow's op definitions: every attribute of
    every registered op is declared by its handler (read, meaningless, or fixed), a fixed
    attribute's one value is TensorFlow's default (what a SavedModel leaves out), and a
    handler declares nothing that none of its ops has (a misspelt declaration)."""
    import json

    from modelconv.importers.tf.graph.core import OP_ATTRS, OPS
    from modelconv.workers.tf_worker import worker_env

    assert set(OP_ATTRS) == set(OPS.keys())
    proc = subprocess.run([sys.executable, "-c", _OPDEF_ATTRS, *OPS.keys()], env=worker_env(),
                          capture_output=True, text=True, timeout=300, check=True)
    opdefs: dict[str, dict[str, list[Any]] | None] = json.loads(proc.stdout.splitlines()[-1])
    problems = []
    groups: dict[int, list[str]] = {}
    for op, spec in OP_ATTRS.items():
        groups.setdefault(id(spec), []).append(op)
        defs = opdefs[op]
        if defs is None:
            problems.append(f"{op}: TensorFlow has no such op")
            continue
        undeclared = set(defs) - spec.attrs - set(spec.fixed)
        if undeclared:
            problems.append(f"{op}: undeclared {sorted(undeclared)}")
        for name, value in spec.fixed.items():
            if name not in defs:  # another op of the handler has it (checked below)
                continue
            kind, *default = defs[name]
            shown = value.decode() if isinstance(value, bytes) else value
            if kind == "none" or default[0] != shown:
                problems.append(f"{op}: {name} fixed at {value!r}, TensorFlow's default "
                                f"is {kind} {default}")
    for ops in groups.values():
        spec = OP_ATTRS[ops[0]]
        known = set().union(*(opdefs[o] or {} for o in ops))
        extra = (spec.attrs | set(spec.fixed)) - known
        if extra:
            problems.append(f"{'/'.join(ops)}: declares {sorted(extra)}, which none has")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_op_is_refused(built: Built, name: str) -> None:
    from modelconv.importers.tf.graph.convert import convert_signature

    op = TABLE.CASES[name].unsupported
    with pytest.raises(UnsupportedOpsError) as info:
        convert_signature(built.folder(name), SIGNATURE)
    assert any(key.split(" ")[0] == op for key in info.value.unsupported), \
        info.value.unsupported
    assert op in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None, reason="needs tf2onnx")
def test_unsupported_op_falls_back_to_tf2onnx(built: Built, tmp_path: Path) -> None:
    name = "unsupported_cumsum"
    dst = tmp_path / "m.onnx"
    result = modelconv.convert(built.folder(name), dst, verify=False)
    assert result.source_format == "savedmodel"
    assert any("graph route" in w and "Cumsum" in w for w in result.warnings), \
        result.warnings
    ins, outs = built.reference(name)
    _compare(_run_onnx(dst, ins), outs)
