"""Capture a torch callable as an ExportedProgram: example inputs, dynamic dims, export."""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass
class BoundInputs:
    """Example tensors and the ``forward`` parameters they are passed as."""

    args: tuple[torch.Tensor, ...]
    names: list[str]
    #: call as ``forward(**dict(zip(names, args)))`` instead of positionally
    by_keyword: bool = False

    def call_kwargs(self, args: Sequence[Any] | None = None) -> dict[str, Any]:
        """``{name: tensor}`` for ``args`` (default: the example tensors)."""
        return dict(zip(self.names, self.args if args is None else args, strict=True))


def bind_inputs(module: Any, options: ConvertOptions) -> BoundInputs:
    """Example inputs from ``example_inputs`` or ``input_shapes``/``input_dtypes``, bound to
    ``forward``'s parameters: positionally, or by name (a dict of example inputs, or
    ``input_names``, e.g. ``input_ids`` and ``token_type_ids`` without ``attention_mask``).

    Args:
        module: the torch callable (nn.Module, TorchScript module).
        options: the conversion options.

    Returns:
        The bound example inputs.

    Raises:
        ShapeError: no example inputs or shapes, a name that is not a parameter of
            ``forward``, or a count mismatch between names and inputs.
    """
    given = options.example_inputs
    if isinstance(given, dict):
        params = _forward_params(module)
        unknown = [k for k in given if params is not None and k not in params]
        if unknown:
            raise ShapeError(f"example_inputs names {unknown}, which forward() does not take",
                             hint=f"forward() takes: {', '.join(params or [])}")
        names = [k for k in (params or []) if k in given] or list(given)
        args = tuple(torch.as_tensor(given[k]) for k in names)
        return BoundInputs(args, names, by_keyword=True)
    args = example_inputs(module, options)
    positional = forward_arg_names(module, len(args))
    if not options.input_names:
        return BoundInputs(args, positional)
    names = list(options.input_names)
    if len(names) != len(args):
        raise ShapeError(f"{len(names)} input name(s) {names} for {len(args)} example "
                         "input(s)", hint="Give one --input-names entry per --input-shape")
    params = _forward_params(module)
    unknown = [n for n in names if params is not None and n not in params]
    if unknown:
        raise ShapeError(f"input name(s) {unknown} are not parameters of forward()",
                         hint=f"forward() takes: {', '.join(params or [])}")
    if names == positional:
        return BoundInputs(args, names)
    if isinstance(module, torch.jit.ScriptModule):
        raise ShapeError("a TorchScript module takes its inputs positionally; "
                         f"input names {names} must be its first parameters {positional}",
                         hint="Drop --input-names or list the parameters in order")
    return BoundInputs(args, names, by_keyword=True)


def _forward_params(module: Any) -> list[str] | None:
    """Parameter names of ``forward`` (None when it takes ``**kwargs``: any name goes)."""
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:
        return [a.name for a in schema.arguments[1:]]
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind != p.VAR_POSITIONAL]


def example_inputs(module: Any, options: ConvertOptions) -> tuple[torch.Tensor, ...]:
    """Example inputs from options.example_inputs or input_shapes/input_dtypes."""
    given = options.example_inputs
    if given is not None:
        if isinstance(given, torch.Tensor):
            return (given,)
        if isinstance(given, dict):
            return bind_inputs(module, options).args
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
            raise ShapeError(f"dynamic_dims names input '{n}', but the inputs are {list(names)}",
                             hint="Use the forward() parameter names (or --input-names)")
        wanted.setdefault(n, {}).update({int(a): str(d) for a, d in axes.items()})
    unknown = sorted(set(options.dim_ranges or {}) - {d for ax in wanted.values()
                                                      for d in ax.values()})
    if unknown:
        raise ShapeError(f"dim_ranges gives bounds for {unknown}, which no dynamic dim is "
                         "named", hint="Name the dim with --dynamic-dim INPUT:AXIS=NAME:MIN:MAX")
    return wanted


def _widen(x: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    # export specialises dims of size 0/1; trace dynamic dims with at least 2
    for axis in axes:
        if x.shape[axis] < 2:
            reps = [1] * x.dim()
            reps[axis] = 2
            x = x.repeat(*reps) if x.shape[axis] == 1 else x
    return x


def _ident(dim_name: str) -> str:
    return re.sub(r"\W", "_", dim_name)


def dynamic_shapes_spec(
    args: tuple[torch.Tensor, ...], names: Sequence[str], wanted: dict[str, dict[int, str]],
    ranges: Mapping[str, tuple[int | None, int | None]] | None = None,
) -> tuple[tuple[torch.Tensor, ...], tuple[dict[int, Any] | None, ...] | None]:
    """Arguments widened where dynamic and the ``dynamic_shapes`` tuple for torch.export.

    Dims with the same name are one ``torch.export.Dim`` (tied across inputs); ``ranges``
    gives ``(min, max)`` bounds by dim name.
    """
    if not wanted:
        return args, None
    ranges = ranges or {}
    dims: dict[str, Any] = {}
    spec: list[dict[int, Any] | None] = []
    new_args = []
    for x, n in zip(args, names, strict=True):
        axes = wanted.get(n, {})
        entry: dict[int, Any] = {}
        for axis, dim_name in axes.items():
            if dim_name not in dims:
                lo, hi = ranges.get(dim_name, (None, None))
                bounds = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
                dims[dim_name] = torch.export.Dim(_ident(dim_name), **bounds)
            entry[axis] = dims[dim_name]
        spec.append(entry or None)
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
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], dynamic: Any,
    names: Sequence[str] | None = None, *, by_keyword: bool = False,
) -> torch.export.ExportedProgram:
    """torch.export.export(strict=False) in eval mode, with errors made readable.

    Args:
        module: the module to capture.
        args: example inputs, in ``names`` order.
        dynamic: the ``dynamic_shapes`` tuple (see :func:`dynamic_shapes_spec`) or None.
        names: the forward parameters ``args`` bind to (needed with ``by_keyword``).
        by_keyword: pass the inputs as keyword arguments.

    Returns:
        The exported program.

    Raises:
        DynamicDimError: torch.export found that requested dynamic dims are constrained.
        ModelconvError: any other capture failure.
    """
    if by_keyword:
        kwargs = dict(zip(names or [], args, strict=True))
        call_args: tuple[Any, ...] = ()
        shapes: Any = None if dynamic is None else dict(zip(names or [], dynamic, strict=True))
    else:
        kwargs, call_args, shapes = {}, args, dynamic
    with eval_mode(module), torch.no_grad():
        try:
            return torch.export.export(module, call_args, kwargs, dynamic_shapes=shapes,
                                       strict=False)
        except Exception as exc:
            fixes = suggested_fixes(str(exc))
            if fixes:
                raise DynamicDimError(fixes) from exc
            first = str(exc).strip().splitlines()
            raise ModelconvError(
                f"torch.export could not capture the model: {first[0] if first else exc}",
                hint="Check the example inputs/shapes; data-dependent control flow "
                "and dynamic dims that the code specialises cannot be exported",
            ) from exc


class DynamicDimError(ModelconvError):
    """torch.export refused requested dynamic dims; ``fixes`` maps dim ident -> torch's fix."""

    def __init__(self, fixes: dict[str, str]):
        self.fixes = fixes
        super().__init__("torch.export: the model constrains dynamic dims: "
                         + "; ".join(f"{k} = {v}" for k, v in fixes.items()))


_FIX = re.compile(r"^\s*(\w+)\s*=\s*(.+?)\s*$")
_BOUNDS = re.compile(r"^Dim\(\s*'(\w+)'\s*((?:,\s*(?:min|max)\s*=\s*-?\d+\s*)*)\)$")


def suggested_fixes(message: str) -> dict[str, str]:
    """The "Suggested fixes" torch.export prints on a constraint violation, by dim ident."""
    if "Suggested fixes" not in message:
        return {}
    fixes: dict[str, str] = {}
    for line in message.split("Suggested fixes", 1)[1].splitlines()[1:]:
        m = _FIX.match(line)
        if not m:
            if fixes:
                break
            continue
        fixes[m.group(1)] = m.group(2)
    return fixes


def fix_bounds(fix: str) -> tuple[int | None, int | None] | None:
    """``(min, max)`` when torch's fix only bounds the dim (``Dim('seq', max=64)``)."""
    m = _BOUNDS.match(fix)
    if not m:
        return None
    found = dict(re.findall(r"(min|max)\s*=\s*(-?\d+)", m.group(2)))
    lo, hi = found.get("min"), found.get("max")
    return (int(lo) if lo is not None else None, int(hi) if hi is not None else None)


def capture_dynamic(
    module: torch.nn.Module, bound: BoundInputs, wanted: dict[str, dict[int, str]],
    options: ConvertOptions,
) -> tuple[torch.export.ExportedProgram, list[str]]:
    """Export with the requested dynamic dims, taking torch's bounds where the user set none.

    When torch.export reports that the model bounds a dim (``seq <= 512`` from a position
    table) and the user gave no bounds for it, the export is retried once with torch's
    bounds and a warning says so. Any other constraint (a dim the code fixes to one
    value, or two dims that must be equal) is refused in modelconv's terms.

    Args:
        module: the module to capture.
        bound: its example inputs.
        wanted: ``{input: {axis: dim name}}``.
        options: the conversion options (``dim_ranges``).

    Returns:
        The program and the warnings to show.

    Raises:
        ShapeError: the requested dims cannot be dynamic as asked.
        ModelconvError: any other capture failure.
    """
    ranges = dict(options.dim_ranges or {})
    warnings: list[str] = []
    for attempt in range(2):
        traced, dynamic = dynamic_shapes_spec(bound.args, bound.names, wanted, ranges)
        try:
            return export_module(module, traced, dynamic, bound.names,
                                 by_keyword=bound.by_keyword), warnings
        except DynamicDimError as exc:
            where = _dim_locations(wanted)
            by_ident = {_ident(d): d for d in where}
            bounded: dict[str, tuple[int | None, int | None]] = {}
            problems: list[str] = []
            for ident, fix in exc.fixes.items():
                name = by_ident.get(ident, ident)
                bounds = fix_bounds(fix)
                if bounds is not None and name not in (options.dim_ranges or {}) \
                        and attempt == 0:
                    bounded[name] = bounds
                else:
                    problems.append(_explain(name, fix, where, by_ident, bounds))
            if problems or not bounded:
                raise ShapeError(
                    "the requested dynamic dims do not fit the model: " + "; ".join(
                        problems or [f"{k} = {v}" for k, v in exc.fixes.items()]),
                    hint="Change --dynamic-dim INPUT:AXIS=NAME[:MIN:MAX] accordingly "
                    "(dims with the same NAME are tied; drop a dim the model fixes)",
                ) from exc
            for name, (lo, hi) in bounded.items():
                ranges[name] = (lo, hi)
                span = f"{lo if lo is not None else 2}..{hi if hi is not None else 'inf'}"
                warnings.append(
                    f"dynamic dim '{name}' ({', '.join(where.get(name, []))}) is limited to "
                    f"{span} by the model; state it with --dynamic-dim "
                    f"{(where.get(name) or ['INPUT:AXIS'])[0]}={name}:"
                    f"{lo if lo is not None else ''}:{hi if hi is not None else ''}")
    raise AssertionError("unreachable")  # pragma: no cover


def _dim_locations(wanted: dict[str, dict[int, str]]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for inp, axes in wanted.items():
        for axis, name in axes.items():
            where.setdefault(name, []).append(f"{inp}:{axis}")
    return where


def _explain(name: str, fix: str, where: dict[str, list[str]], by_ident: dict[str, str],
             bounds: tuple[int | None, int | None] | None) -> str:
    at = ", ".join(where.get(name, [])) or "an internal dim"
    if bounds is not None:
        lo, hi = bounds
        return (f"dim '{name}' ({at}) must lie in {lo if lo is not None else 2}.."
                f"{hi if hi is not None else 'inf'}, outside the bounds you gave")
    if re.fullmatch(r"-?\d+", fix):
        return (f"dim '{name}' ({at}) is fixed to {fix} by the model: it cannot be dynamic "
                "(if it must match a dim of another input, make that dim dynamic too, "
                "with the same NAME)")
    other = by_ident.get(fix)
    if other is not None:
        return (f"dim '{name}' ({at}) must equal dim '{other}' "
                f"({', '.join(where.get(other, []))}): give both the same NAME")
    return f"dim '{name}' ({at}) must satisfy {name} = {fix} (torch.export)"
