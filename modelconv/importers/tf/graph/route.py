"""The graph route (format ``savedmodel-graph``, no TensorFlow): any SavedModel whose
signature uses only ops with a handler, converted op by op from its TF graph
(:mod:`modelconv.importers.tf.graph.convert`), variables read from the tensor bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelconv.errors import ModelconvError, UnsafeModelError
from modelconv.formats import SourceModel
from modelconv.importers.tf.files.saved_model import read_saved_model
from modelconv.importers.tf.graph.convert import convert_signature
from modelconv.importers.tf.safety import refuse_unsafe_ops
from modelconv.ir.info import TensorSpec, infer_int_ranges
from modelconv.options import ConvertOptions
from modelconv.workers import tf_worker

GRAPH_FORMAT = "savedmodel-graph"


def import_graph(path: Path, options: ConvertOptions
                 ) -> SourceModel | tuple[str, ModelconvError | None]:
    """The signature converted op by op from the TF graph, or why not.

    Args:
        path: the SavedModel folder.
        options: the conversion options (``signature`` is converted).

    Returns:
        The converted model, or ``(reason, error)``: why not, and the error to raise when
        tf2onnx is not available either.

    Raises:
        UnsafeModelError: the SavedModel can run file/process ops.
    """
    display = str(path)
    refuse_unsafe_ops(read_saved_model(path, display), display)
    try:
        converted = convert_signature(path, options.signature, display)
    except UnsafeModelError:
        raise
    except ModelconvError as exc:
        return f"the graph route cannot convert it ({exc.message})", exc
    specs = [TensorSpec(name, dtype, shape) for name, dtype, shape in converted.inputs]
    return native_source(converted.model, GRAPH_FORMAT, path, options.signature, specs,
                         converted.outputs)


def native_source(model: Any, fmt: str, path: Path, signature: str, specs: list[TensorSpec],
                  outputs: list[str]) -> SourceModel:
    """A SourceModel converted without TensorFlow; TensorFlow runs it for verification when
    installed (else verification is skipped, saying why).

    Args:
        model: the converted IR model.
        fmt: the source format recorded (``savedmodel-graph`` or ``savedmodel-keras``).
        path: the SavedModel folder.
        signature: the signature the model was converted from (the runner runs it).
        specs: the signature's inputs, in the model's order.
        outputs: the signature's output keys, in the model's order.

    Returns:
        The SourceModel, with a TensorFlow runner factory or the reason there is none.
    """
    make_runner = None
    reason = None
    if tf_worker.tf_available():
        def make_runner() -> Any:
            from modelconv.verification.runners_tf import TFSavedModelRunner

            return TFSavedModelRunner(path, signature, specs, outputs)
    else:
        reason = ("running the SavedModel to verify the conversion needs TensorFlow "
                  "(pip install 'modelconv[tf]')")
    return SourceModel(model=model, format=fmt, path=str(path), make_runner=make_runner,
                       runner_unavailable=reason, int_ranges=infer_int_ranges(model.graph))
