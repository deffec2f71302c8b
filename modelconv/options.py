"""ConvertOptions: every knob of a conversion in one dataclass."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

ProgressCallback = Callable[[str, float], None]
"""Called as ``progress(stage, fraction_done)`` with fraction in [0, 1]."""


@dataclass
class ConvertOptions:
    """Options for :func:`modelconv.convert`. Unset fields mean "sensible default"."""

    # formats
    source_format: str | None = None
    target_format: str | None = None
    # ONNX output
    opset: int | None = None
    external_data: bool | None = None  # None: automatic above 2 GiB
    # verification
    verify: bool = True
    inputs: str | Path | Mapping[str, Any] | Sequence[Any] | None = None
    rtol: float | None = None
    atol: float | None = None
    seed: int = 0
    batch_size: int = 1
    dim_values: dict[str, int] = field(default_factory=dict)
    localize: bool = False
    #: generated samples to verify on (seeds seed, seed+1...; one of batch 2 is added when
    #: the batch is dynamic); ignored when ``inputs`` are given
    samples: int = 3
    #: expected outputs recorded elsewhere (.npz / folder / mapping), compared with the
    #: converted model on ``inputs`` instead of running the source
    reference: str | Path | Mapping[str, Any] | Sequence[Any] | None = None
    # safety / IO
    trust_code: bool = False
    overwrite: bool = False
    timeout: float | None = None
    # torch sources
    model: Any = None  # nn.Module (architecture for state_dict / safetensors)
    example_inputs: Any = None  # tuple of tensors for nn.Module sources
    input_shapes: list[tuple[int, ...]] | None = None
    input_dtypes: list[str] | None = None
    dynamic_batch: bool = False
    dynamic_dims: dict[str, dict[int, str]] = field(default_factory=dict)
    #: (min, max) bounds of named dynamic dims (None: unbounded / torch's bound)
    dim_ranges: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    # names of the converted model's inputs / outputs (torch: the forward parameters the
    # example inputs bind to); None keeps the names the source gives
    input_names: list[str] | None = None
    output_names: list[str] | None = None
    # TF SavedModel
    signature: str = "serving_default"
    # TFLite output
    fp16: bool = False
    quantize: str | None = None  # None | "dynamic" | "int8"
    #: int8 calibration samples (folder or .npz), or "random" (seeded normal samples:
    #: ranges that may not fit real inputs); required for ``quantize="int8"``
    calibration: str | Path | None = None
    int8_io: bool = False
    nhwc_io: bool = False
    # progress
    progress: ProgressCallback | None = None

    @classmethod
    def from_kwargs(cls, options: ConvertOptions | None = None, **kwargs: Any) -> ConvertOptions:
        """Merge keyword arguments over ``options`` (or the defaults); unknown names raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown conversion option(s): {', '.join(unknown)}")
        base = options or cls()
        values = {f.name: getattr(base, f.name) for f in fields(cls)}
        values.update(kwargs)
        return cls(**values)

    def report_progress(self, stage: str, fraction: float) -> None:
        """Forward progress to the callback, if any."""
        if self.progress is not None:
            self.progress(stage, max(0.0, min(1.0, fraction)))


#: source formats whose importer reads each source-side option
_TORCH_CAPTURE = ("torch-module", "state_dict", "safetensors", "torchscript")
_SOURCE_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "model": ("--model", ("state_dict", "safetensors")),
    "example_inputs": ("example_inputs", _TORCH_CAPTURE),
    "input_shapes": ("--input-shape", _TORCH_CAPTURE),
    "input_dtypes": ("--input-dtype", _TORCH_CAPTURE),
    "dynamic_batch": ("--dynamic-batch", (*_TORCH_CAPTURE, "pt2")),
    "dynamic_dims": ("--dynamic-dim", (*_TORCH_CAPTURE, "pt2")),
    "dim_ranges": ("--dynamic-dim bounds", (*_TORCH_CAPTURE, "pt2")),
    "signature": ("--signature", ("savedmodel",)),
}
#: target-side options and the targets that honour them
_TARGET_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "opset": ("--opset", ("onnx",)),
    "external_data": ("--external-data", ("onnx",)),
    "int8_io": ("--int8-io", ("tflite",)),
    "nhwc_io": ("--nhwc-io", ("tflite",)),
}
_VERIFY_OPTIONS = {"inputs": "--inputs", "rtol": "--rtol", "atol": "--atol",
                   "localize": "--localize"}
QUANTIZE_MODES = (None, "dynamic", "int8")


def _is_set(options: ConvertOptions, name: str) -> bool:
    value = getattr(options, name)
    default = next(f for f in fields(ConvertOptions) if f.name == name)
    if default.default_factory is not MISSING:
        return bool(value)
    return value is not None and value is not False and value != default.default


def check_route(options: ConvertOptions, *, source: str | None = None,
                target: str | None = None, verification: bool = False) -> None:
    """Refuse every option the route would ignore: consume or refuse, never drop silently.

    Args:
        options: The conversion options.
        source: The source format (checked when given).
        target: The target format (checked when given).
        verification: Also refuse verification options when ``options.verify`` is off.

    Raises:
        OptionsError: naming each option that would be ignored and what to do instead.
    """
    from modelconv.errors import OptionsError

    problems: list[str] = []
    if source is not None:
        for name, (flag, formats) in _SOURCE_OPTIONS.items():
            if _is_set(options, name) and source not in formats:
                problems.append(f"{flag} is read only for {', '.join(formats)} sources, "
                                f"not {source}")
    if target is not None:
        for name, (flag, formats) in _TARGET_OPTIONS.items():
            if _is_set(options, name) and target not in formats:
                problems.append(f"{flag} applies to {', '.join(formats)} output, not {target}")
        if options.quantize not in QUANTIZE_MODES:
            problems.append(f"quantize={options.quantize!r} is not a mode "
                            "(use 'dynamic' or 'int8')")
        if options.fp16 and options.quantize:
            problems.append(f"--fp16 and --quantize {options.quantize} exclude each other "
                            "(choose one precision)")
        if options.calibration is not None and options.quantize != "int8":
            problems.append("--calibration is used only by --quantize int8")
        if options.int8_io and options.quantize != "int8" and target == "tflite":
            problems.append("--int8-io needs --quantize int8")
    if verification and not options.verify:
        problems += [f"{flag} has no effect with verification off (--no-verify)"
                     for name, flag in _VERIFY_OPTIONS.items() if _is_set(options, name)]
    if problems:
        raise OptionsError("; ".join(problems),
                           hint="Remove the option(s), or choose a route that uses them")
