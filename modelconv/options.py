"""ConvertOptions: every knob of a conversion in one dataclass."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
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
    #: installed packages whose registered Keras classes a .keras file may use (keras_hub
    #: backbones); their code runs, the file's never does. Empty by default: opt in.
    allow_packages: list[str] = field(default_factory=list)
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
