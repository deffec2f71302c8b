"""ConvertOptions: every knob of a conversion in one dataclass."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

ProgressCallback = Callable[[str, float], None]
"""Called as ``progress(stage, fraction_done)`` with fraction in [0, 1]."""


def _opt(default: Any = None, help: str = "", cli: str | None = None,
         factory: Callable[[], Any] | None = None) -> Any:
    """A ConvertOptions field whose help text (and CLI flag) live in its metadata."""
    meta = {"help": help, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ConvertOptions:
    """Options for :func:`modelconv.convert`. Unset fields mean "sensible default".

    Each field's help text is its ``metadata["help"]``; the same text is the help of the
    CLI flag named by ``metadata["cli"]`` and is listed in ``convert``'s docstring.
    """

    # formats
    source_format: str | None = _opt(
        help="source format (default: from the file's extension and contents)", cli="--from")
    target_format: str | None = _opt(
        help="target format (default: from DST's extension)", cli="--to")
    # ONNX output
    opset: int | None = _opt(help="ONNX opset of the output", cli="--opset")
    external_data: bool | None = _opt(
        help="store ONNX weights in DST.data (default: automatic above 2 GiB)",
        cli="--external-data")
    # verification
    verify: bool = _opt(True, help="verify the converted file against the source "
                        "(the CLI's --no-verify turns it off)")
    inputs: str | Path | Mapping[str, Any] | Sequence[Any] | None = _opt(
        help=".npz/.npy file or folder of samples to verify on", cli="--inputs")
    rtol: float | None = _opt(
        help="relative tolerance (default: by the converted file's precision)", cli="--rtol")
    atol: float | None = _opt(
        help="absolute tolerance (default: by the converted file's precision)", cli="--atol")
    seed: int = _opt(0, help="seed for generated inputs", cli="--seed")
    batch_size: int = _opt(1, help="batch size for generated inputs", cli="--batch-size")
    dim_values: dict[str, int] = _opt(
        help="value for each symbolic dimension in generated inputs (CLI: --dim NAME=VALUE)",
        factory=dict)
    localize: bool = _opt(False, help="compare intermediate layers and name the first that "
                          "drifts", cli="--localize")
    samples: int = _opt(3, help="generated samples to verify on (seeds seed, seed+1...; plus "
                        "one of batch 2 when the batch is dynamic); ignored when inputs are "
                        "given", cli="--samples")
    reference: str | Path | Mapping[str, Any] | Sequence[Any] | None = _opt(
        help="expected outputs for inputs recorded elsewhere (.npz / folder / mapping; keys = "
        "output names or output_0...): compared instead of running the source",
        cli="--reference")
    # safety / IO
    trust_code: bool = _opt(False, help="allow code from the file: TorchScript, pickled "
                            "modules (torch.load weights_only=False), .pt2 guards (runs it!)",
                            cli="--trust-code")
    allow_packages: list[str] = _opt(
        help="let a .keras file use the registered classes of this installed package, e.g. "
        "keras_hub (runs that package's code, never the file's; CLI: repeat per package)",
        cli="--allow-package", factory=list)
    overwrite: bool = _opt(False, help="replace an existing DST", cli="--overwrite")
    timeout: float | None = _opt(help="give up after this many seconds", cli="--timeout")
    # torch sources
    model: Any = _opt(help="architecture for state_dict/.safetensors weights (an nn.Module; "
                      "CLI: PKG.MODULE:FACTORY)", cli="--model")
    example_inputs: Any = _opt(help="tuple of example tensors for nn.Module sources")
    input_shapes: list[tuple[int, ...]] | None = _opt(
        help="shape of each torch input, e.g. 1,3,224,224 (CLI: repeat per input)",
        cli="--input-shape")
    input_dtypes: list[str] | None = _opt(
        help="dtype of each torch input (default float32)", cli="--input-dtype")
    dynamic_batch: bool = _opt(False, help="make dim 0 of every input symbolic (named "
                               "'batch')", cli="--dynamic-batch")
    dynamic_dims: dict[str, dict[int, str]] = _opt(
        help="symbolic dims per input, {input: {axis: name}}; the same name ties dims across "
        "inputs (CLI: --dynamic-dim INPUT:AXIS=NAME[:MIN:MAX])", factory=dict)
    dim_ranges: dict[str, tuple[int | None, int | None]] = _opt(
        help="(min, max) bounds of named dynamic dims (None: unbounded / torch's bound)",
        factory=dict)
    input_names: list[str] | None = _opt(
        help="names of the inputs (torch: the forward() parameters the example inputs / "
        "input shapes bind to); default: the names the source gives", cli="--input-names")
    output_names: list[str] | None = _opt(
        help="names of the converted model's outputs, in order", cli="--output-names")
    # TF SavedModel
    signature: str = _opt("serving_default", help="SavedModel signature", cli="--signature")
    # TFLite output
    fp16: bool = _opt(False, help="TFLite: fp16 weights", cli="--fp16")
    quantize: str | None = _opt(help="quantization: 'dynamic' or 'int8' (TFLite; int8 also "
                                "for ONNX)", cli="--quantize")
    calibration: str | Path | None = _opt(
        help="samples for quantize int8 (required): a folder or .npz of real inputs, or "
        "'random' to accept random ranges knowingly", cli="--calibration")
    int8_io: bool = _opt(False, help="TFLite int8: integer inputs/outputs", cli="--int8-io")
    nhwc_io: bool = _opt(False, help="TFLite: NHWC inputs/outputs", cli="--nhwc-io")
    # progress
    progress: ProgressCallback | None = _opt(
        help="callback progress(stage, fraction_done), fraction in [0, 1]")

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


def option_help(name: str) -> str:
    """The help text of ConvertOptions field ``name`` (shared by the CLI and the docs).

    Args:
        name: A ConvertOptions field name.

    Returns:
        The field's ``metadata["help"]``.

    Raises:
        KeyError: when ``name`` is not a field.
    """
    for f in fields(ConvertOptions):
        if f.name == name:
            return str(f.metadata["help"])
    raise KeyError(name)


def options_docstring(indent: str = "        ") -> str:
    """A Google-style ``Keyword Args:`` section listing every ConvertOptions field.

    Args:
        indent: Indentation of each entry (the section header gets four spaces less).

    Returns:
        The section text: one entry per field with its type, help text and default.
    """
    import textwrap

    lines = [indent[4:] + "Keyword Args:"]
    for f in fields(ConvertOptions):
        factory = f.default_factory
        default = repr(factory() if factory is not MISSING else f.default)
        cli = f" CLI: ``{f.metadata['cli']}``." if f.metadata.get("cli") else ""
        text = f"{f.name} ({f.type}): {f.metadata['help']}. Default ``{default}``.{cli}"
        lines += textwrap.wrap(text, width=96, initial_indent=indent,
                               subsequent_indent=indent + "    ")
    return "\n".join(lines)
