"""Capture a torch callable as an ExportedProgram: example inputs, dynamic dims, export."""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from modelconv.errors import ModelconvError, ShapeError
from modelconv.options import ConvertOptions

_DTYPES = {
    "float32": torch.float32, "float": torch.float32, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "float64": torch.float64, "int64": torch.int64,
    "int32": torch.int32, "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool, "long": torch.int64,
}


def torch_dtype(name: str) -> torch.dtype:
    """torch dtype from a name such as ``"float32"``."""
    try:
        return _DTYPES[name.lower().removeprefix("torch.")]
    except KeyError:
        raise ShapeError(f"unknown input dtype '{name}'",
                         hint="Use one of: " + ", ".join(sorted(_DTYPES))) from None


def forward_arg_names(module: Any, count: int) -> list[str]:
    """Names of the first ``count`` positional arguments of ``module.forward``."""
    names: list[str] = []
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:  # TorchScript
        names = [a.name for a in schema.arguments[1:]]
    else:
        with contextlib.suppress(TypeError, ValueError):
            params = inspect.signature(module.forward).parameters.values()
            names = [p.name for p in params
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = names[:count]
    return names + [f"input_{i}" for i in range(len(names), count)]


def example_inputs(module: Any, options: ConvertOptions) -> tuple[torch.Tensor, ...]:
    """Example inputs from options.example_inputs or input_shapes/input_dtypes."""
    given = options.example_inputs
    if given is not None:
        if isinstance(given, torch.Tensor):
            return (given,)
        if isinstance(given, dict):
            names = forward_arg_names(module, 64)
            return tuple(given[n] for n in names if n in given)
        return tuple(torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x for x in given)
    if not options.input_shapes:
        raise ShapeError(
            "a torch source needs example inputs to be traced",
            hint="Pass example_inputs=(tensor, ...) or input_shapes=[(1, 3, 224, 224)] "
            "(--input-shape 1,3,224,224 on the CLI)",
        )
    dtypes = list(options.input_dtypes or [])
    dtypes += ["float32"] * (len(options.input_shapes) - len(dtypes))
    gen = torch.Generator().manual_seed(options.seed)
    out = []
    for shape, name in zip(options.input_shapes, dtypes, strict=False):
        dt = torch_dtype(name)
        if dt.is_floating_point:
            out.append(torch.randn(tuple(shape), generator=gen).to(dt))
        else:
            out.append(torch.zeros(tuple(shape), dtype=dt))
    return tuple(out)


def requested_dims(names: Sequence[str], options: ConvertOptions) -> dict[str, dict[int, str]]:
    """{input name: {axis: dim name}} from dynamic_batch and dynamic_dims."""
    wanted: dict[str, dict[int, str]] = {}
    if options.dynamic_batch:
        for n in names:
            wanted.setdefault(n, {})[0] = "batch"
    for n, axes in (options.dynamic_dims or {}).items():
        if n not in names:
            raise ShapeError(f"dynamic_dims names input '{n}', but the inputs are {list(names)}")
        wanted.setdefault(n, {}).update({int(a): str(d) for a, d in axes.items()})
    return wanted


def _widen(x: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    # export specialises dims of size 0/1; trace dynamic dims with at least 2
    for axis in axes:
        if x.shape[axis] < 2:
            reps = [1] * x.dim()
            reps[axis] = 2
            x = x.repeat(*reps) if x.shape[axis] == 1 else x
    return x


def dynamic_shapes_spec(
    args: tuple[torch.Tensor, ...], names: Sequence[str], wanted: dict[str, dict[int, str]]
) -> tuple[tuple[torch.Tensor, ...], tuple[dict[int, Any] | None, ...] | None]:
    """Arguments widened where dynamic and the ``dynamic_shapes`` tuple for torch.export."""
    if not wanted:
        return args, None
    dims: dict[str, Any] = {}
    spec: list[dict[int, Any] | None] = []
    new_args = []
    for x, n in zip(args, names, strict=True):
        axes = wanted.get(n, {})
        ident = {a: re.sub(r"\W", "_", d) for a, d in axes.items()}
        spec.append({a: dims.setdefault(i, torch.export.Dim(i)) for a, i in ident.items()}
                    or None)
        new_args.append(_widen(x, list(axes)))
    return tuple(new_args), tuple(spec)


@contextlib.contextmanager
def eval_mode(module: Any) -> Iterator[None]:
    """Run a module in eval mode, restoring its training flag afterwards."""
    was = getattr(module, "training", False)
    # an ExportedProgram's module() is already fixed in eval mode and refuses eval()
    switch = isinstance(module, torch.nn.Module) and was
    if switch:
        try:
            module.eval()
        except Exception:  # an exported module: "Calling eval() is not supported yet"
            switch = False
    try:
        yield
    finally:
        if switch:
            module.train()


def export_module(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], dynamic: Any
) -> torch.export.ExportedProgram:
    """torch.export.export(strict=False) in eval mode, with errors made readable."""
    with eval_mode(module), torch.no_grad():
        try:
            return torch.export.export(module, args, dynamic_shapes=dynamic, strict=False)
        except Exception as exc:
            first = str(exc).strip().splitlines()
            raise ModelconvError(
                f"torch.export could not capture the model: {first[0] if first else exc}",
                hint="Check the example inputs/shapes; data-dependent control flow "
                "and dynamic dims that the code specialises cannot be exported",
            ) from exc
