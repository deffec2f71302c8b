"""Options that would have no effect are refused, never ignored.

Three moments, each with what is known then: the source format (:func:`check_source`, in
``load``), the target and whether verification runs (:func:`check_target`, in ``convert``),
and the imported model's input signature (:func:`check_signature`: ``--batch-size`` needs a
dynamic leading dim, every ``--dim`` name must be a dim of an input).
"""

from __future__ import annotations

from collections.abc import Sequence

from modelconv.errors import OptionsError
from modelconv.ir.info import TensorSpec
from modelconv.options import ConvertOptions

#: the CLI spelling of each option (the Python name is shown next to it)
FLAGS = {
    "model": "--model", "input_shapes": "--input-shape", "input_dtypes": "--input-dtype",
    "example_inputs": "example_inputs", "dynamic_batch": "--dynamic-batch",
    "dynamic_dims": "dynamic_dims", "signature": "--signature", "trust_code": "--trust-code",
    "opset": "--opset", "external_data": "--external-data", "calibration": "--calibration",
    "int8_io": "--int8-io", "nhwc_io": "--nhwc-io", "inputs": "--inputs", "rtol": "--rtol",
    "atol": "--atol", "seed": "--seed", "batch_size": "--batch-size", "dim_values": "--dim",
    "localize": "--localize", "dim_ranges": "--dynamic-dim bounds", "samples": "--samples",
    "reference": "--reference", "fp16": "--fp16", "quantize": "--quantize",
    "allow_packages": "--allow-package",
}
#: quantization modes the exporters implement
QUANTIZE_MODES = (None, "dynamic", "int8")
_TRACED = {"torch-module", "state_dict", "safetensors", "torchscript"}
#: which source formats read each source option
_SOURCE_OPTIONS = {
    "model": {"state_dict", "safetensors"},
    "input_shapes": _TRACED, "input_dtypes": _TRACED, "example_inputs": _TRACED,
    "dynamic_batch": _TRACED, "dynamic_dims": _TRACED, "dim_ranges": _TRACED,
    "signature": {"savedmodel"},
    "trust_code": {"state_dict", "torchscript", "pt2"},
    "allow_packages": {"keras"},
}
#: options a .keras file read through an allowed package's code also takes (it is captured
#: from torch like a module: shapes, dtypes and dynamic dims of its inputs)
_PACKAGE_ROUTE = {"input_shapes", "input_dtypes", "dynamic_batch", "dynamic_dims", "dim_ranges"}
_DEFAULTS = ConvertOptions()


def _set(opts: ConvertOptions, name: str) -> bool:
    return bool(getattr(opts, name) != getattr(_DEFAULTS, name))


def _refuse(names: Sequence[str], why: str, hint: str | None = None) -> None:
    shown = ", ".join(f"{FLAGS[n]} ({n})" if FLAGS.get(n, n) != n else n for n in names)
    raise OptionsError(f"{shown} {'has' if len(names) == 1 else 'have'} no effect {why}",
                      hint=hint or "Remove the option")


def check_source(opts: ConvertOptions, source_format: str) -> None:
    """Refuse source options the ``source_format`` importer does not read.

    Args:
        opts: the options.
        source_format: the detected source format.

    Raises:
        OptionsError: naming every option that would be ignored.
    """
    package_route = source_format == "keras" and bool(opts.allow_packages)
    unused = [n for n, formats in _SOURCE_OPTIONS.items()
              if _set(opts, n) and source_format not in formats
              and not (package_route and n in _PACKAGE_ROUTE)]
    if unused:
        hint = None
        if source_format == "pt2" and {"dynamic_batch", "dynamic_dims"} & set(unused):
            hint = ("A .pt2 program keeps the dynamic dims it was exported with; export it "
                    "with dynamic_shapes=... instead")
        _refuse(unused, f"for a {source_format} source", hint)


def check_target(opts: ConvertOptions, target_format: str) -> None:
    """Refuse output and verification options that ``target_format`` / ``verify`` ignore.

    Args:
        opts: the options.
        target_format: the output format.

    Raises:
        OptionsError: naming the options that would be ignored.
    """
    if opts.quantize not in QUANTIZE_MODES:
        raise OptionsError(f"quantize={opts.quantize!r} is not a mode",
                           hint="Use --quantize dynamic or --quantize int8")
    if opts.fp16 and opts.quantize:
        raise OptionsError(f"--fp16 and --quantize {opts.quantize} exclude each other",
                           hint="Choose one precision")
    if target_format != "onnx":
        unused = [n for n in ("opset", "external_data") if _set(opts, n)]
        if unused:
            _refuse(unused, f"for a {target_format} output (they are ONNX output options)")
    else:
        unused = [n for n in ("nhwc_io", "int8_io") if _set(opts, n)]
        if unused:
            _refuse(unused, "for an ONNX output (TFLite options)")
    if opts.quantize != "int8":
        unused = [n for n in ("calibration", "int8_io") if _set(opts, n)]
        if unused:
            _refuse(unused, "without --quantize int8")
    shapes_fixed = target_format == "tflite"  # TFLite pins dynamic dims with these
    if not opts.verify:
        unused = [n for n in ("inputs", "rtol", "atol", "seed", "localize", "samples",
                              "reference") if _set(opts, n)]
        unused += [n for n in ("batch_size", "dim_values") if _set(opts, n) and not shapes_fixed]
        if unused:
            _refuse(unused, "with --no-verify (verify=False)")
    elif opts.inputs is not None:
        unused = ["seed"] if _set(opts, "seed") else []
        unused += [n for n in ("batch_size", "dim_values") if _set(opts, n) and not shapes_fixed]
        if unused:
            _refuse(unused, "when --inputs gives the samples (they shape generated inputs)")


def check_signature(opts: ConvertOptions, specs: Sequence[TensorSpec]) -> None:
    """Refuse ``batch_size`` without a dynamic leading dim and unknown ``dim_values`` names.

    Args:
        opts: the options.
        specs: the imported model's inputs.

    Raises:
        OptionsError: the option cannot apply to these inputs.
    """
    shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in specs)
    if _set(opts, "batch_size") and not any(
            s.shape and not (isinstance(s.shape[0], int) and s.shape[0] >= 0) for s in specs):
        _refuse(["batch_size"], f"here: no input has a dynamic leading dim ({shapes})",
                "Pass --dynamic-batch (torch sources) or export the model with a dynamic "
                "batch dim")
    names = {d for s in specs for d in s.shape if isinstance(d, str)}
    unknown = sorted(set(opts.dim_values) - names)
    if unknown:
        raise OptionsError(
            f"--dim {', '.join(unknown)}: no input has a dimension of that name ({shapes})",
            hint="Name one of the inputs' symbolic dims" if names else
            "The inputs have no symbolic dims; remove --dim")
