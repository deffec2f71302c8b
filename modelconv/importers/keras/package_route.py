"""The package route: ``.keras`` models whose layer graph is built by an installed package.

A keras_hub backbone saved as ``.keras`` holds only its constructor arguments, so the config
route cannot convert it. This route, taken only for packages the caller allows (see
:func:`modelconv.importers.keras.packages.check_packages`, run before anything is imported),
loads the file with Keras 3 on the torch backend (``safe_mode=True``), wraps the loaded
model in a ``torch.nn.Module`` that calls it with its input structure (a dict such as
``token_ids``/``padding_mask``, a list, or one tensor), captures that with torch.export and
lowers it with the ATen handlers of :mod:`modelconv.importers.torch`. Verification runs the
loaded Keras model.

Keras runs in this process, as for the Keras verification runner: TensorFlow is hidden
while the package loads (it must never be imported beside Keras-on-torch), and a process
whose Keras already runs on another backend is refused.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Sequence
from typing import Any

from modelconv.errors import ModelconvError, ModelLoadError, ShapeError, UnsafeModelError
from modelconv.formats import SourceModel
from modelconv.importers.keras.packages import package_objects
from modelconv.options import ConvertOptions

#: size of an input dim Keras leaves open (other than the batch) when no shape is given
DEFAULT_OPEN_DIM = 16


def _keras_on_torch() -> Any:
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        from modelconv.errors import MissingDependencyError

        raise MissingDependencyError("keras", "keras", "Loading a Keras package model") from exc
    backend = keras.backend.backend()
    if backend != "torch":
        raise ModelconvError(
            f"this route captures the model with torch.export, but Keras runs on the "
            f"'{backend}' backend in this process",
            hint="Run modelconv in a fresh process with KERAS_BACKEND unset or 'torch'")
    return keras


def load_package_model(path: str, config: dict[str, Any], packages: Sequence[str]) -> Any:
    """Load a ``.keras`` file whose classes come from the (already audited) ``packages``.

    Args:
        path: the ``.keras`` file.
        config: its parsed ``config.json`` (audited by ``check_packages``).
        packages: the allowed packages it needs; each is imported so its classes register.

    Returns:
        The loaded Keras model (a ``torch.nn.Module`` on the torch backend).

    Raises:
        UnsafeModelError: a registered name resolves to a class outside its package.
        ModelLoadError: Keras cannot load the file.
    """
    from modelconv.verification.runners_keras import _tensorflow_hidden

    keras = _keras_on_torch()
    with _tensorflow_hidden():
        for pkg in packages:
            try:
                importlib.import_module(pkg)
            except Exception as exc:
                raise ModelLoadError(f"importing the installed package '{pkg}' failed: "
                                     f"{type(exc).__name__}: {exc}", path=path) from exc
        for obj in package_objects(config):
            if ">" not in obj.registered_name:
                continue
            cls = keras.saving.get_registered_object(obj.registered_name)
            home = str(getattr(cls, "__module__", "")).split(".")[0]
            if cls is None or home != obj.package:
                raise UnsafeModelError(
                    f"'{obj.registered_name}' at {obj.where} is not a class that package "
                    f"'{obj.package}' registers with Keras", path=path,
                    hint="Only classes registered by the allowed packages are loaded")
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many exception types on load
            raise ModelLoadError(f"Keras cannot load this file: {type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:400]}", path=path) from exc


def _structure(model: Any) -> tuple[str, list[str], list[Any]]:
    """``(kind, names, KerasTensors)`` of the model's inputs; kind is dict, list or single."""
    struct = model.input
    if isinstance(struct, dict):
        return "dict", [str(k) for k in struct], list(struct.values())
    if isinstance(struct, list | tuple):
        return "list", [str(t.name) for t in struct], list(struct)
    return "single", [str(struct.name)], [struct]


def _output_names(model: Any, count: int) -> list[str] | None:
    names = [str(n) for n in getattr(model, "output_names", None) or []]
    return names if len(names) == count and len(set(names)) == count else None


def example_tensors(names: Sequence[str], tensors: Sequence[Any],
                    options: ConvertOptions) -> tuple[Any, ...]:
    """Example inputs shaped like the KerasTensors; open dims from ``--input-shape``/defaults.

    Args:
        names: the input names.
        tensors: the model's input KerasTensors.
        options: ``input_shapes`` (one per input, must fit the fixed dims),
            ``input_dtypes``, ``batch_size`` and ``seed``.

    Returns:
        One torch tensor per input (random floats, zero integers).

    Raises:
        ShapeError: a given shape does not fit the model's input.
    """
    import torch

    from modelconv.importers.torch.capture import torch_dtype

    given = list(options.input_shapes or [])
    if given and len(given) != len(names):
        raise ShapeError(f"{len(given)} --input-shape for {len(names)} model inputs "
                         f"{list(names)}", hint="Give one --input-shape per input, in order")
    dtypes = list(options.input_dtypes or [])
    gen = torch.Generator().manual_seed(options.seed)
    out = []
    for i, (name, kt) in enumerate(zip(names, tensors, strict=True)):
        dims = list(kt.shape)
        if given:
            shape = tuple(int(d) for d in given[i])
            if len(shape) != len(dims) or any(
                    d is not None and d != s for d, s in zip(dims, shape, strict=True)):
                raise ShapeError(f"--input-shape {shape} does not fit input '{name}' of "
                                 f"shape {tuple(dims)}", hint="Set only the open (None) dims")
        else:
            shape = tuple(d if d is not None else (options.batch_size if j == 0
                                                   else DEFAULT_OPEN_DIM)
                          for j, d in enumerate(dims))
        dt = torch_dtype(dtypes[i] if i < len(dtypes) else str(kt.dtype))
        if dt.is_floating_point:
            out.append(torch.randn(shape, generator=gen).to(dt))
        else:
            out.append(torch.zeros(shape, dtype=dt))
    return tuple(out)


def param_names(names: Sequence[str]) -> list[str]:
    """The input names as ``forward`` parameters (``input_i`` where one is not usable), so
    the captured program's placeholders carry the Keras input names."""
    import keyword

    usable = all(n.isidentifier() and not keyword.iskeyword(n) and n != "self"
                 for n in names) and len(set(names)) == len(names)
    return list(names) if usable else [f"input_{i}" for i in range(len(names))]


def wrap(model: Any, kind: str, names: Sequence[str]) -> Any:
    """A ``torch.nn.Module`` whose ``forward(*tensors)`` calls the Keras model.

    Args:
        model: the loaded Keras model.
        kind: ``"dict"``, ``"list"`` or ``"single"`` (see :func:`_structure`).
        names: the input names (the dict keys for ``"dict"``).

    Returns:
        The module; it returns the outputs as a flat tuple (dict outputs in key order).
    """
    import torch

    class KerasModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.keras_model = model

        def forward(self, *args: Any) -> tuple[Any, ...]:
            inputs: Any
            if kind == "dict":
                inputs = dict(zip(names, args, strict=True))
            elif kind == "list":
                inputs = list(args)
            else:
                inputs = args[0]
            out = self.keras_model(inputs, training=False)
            if isinstance(out, dict):
                self.output_keys = [str(k) for k in out]
                return tuple(out.values())
            if isinstance(out, list | tuple):
                return tuple(out)
            return (out,)

    # name the parameters, so torch.export matches dynamic_shapes to them one by one
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for n in param_names(names)]
    KerasModel.forward.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return KerasModel().eval()


def _without_einsum(ep: Any) -> Any:
    """Decompose ``aten.einsum`` (Keras attention and dense layers call it) into
    permute/reshape/bmm: every exporter handles those, TFLite has no Einsum kernel."""
    import torch

    from modelconv.importers.torch.lower import decomposition_table

    einsum = torch.ops.aten.einsum.default
    if not any(n.target is einsum for n in ep.graph.nodes):
        return ep
    table = decomposition_table()
    table[einsum] = torch.export.default_decompositions()[einsum]
    return ep.run_decompositions(table)


def import_package_model(path: str, config: dict[str, Any], packages: Sequence[str],
                         options: ConvertOptions) -> SourceModel:
    """Convert an audited package ``.keras`` file through torch.export.

    Args:
        path: the ``.keras`` file.
        config: its parsed config (already checked by ``check_packages``).
        packages: the allowed packages it needs.
        options: the conversion options.

    Returns:
        The imported model; its runner calls the loaded Keras model.

    Raises:
        ModelconvError: loading, capture or lowering failed (UnsupportedOpsError lists
            every ATen op without a handler).
    """
    from modelconv.importers.torch import import_exported_program
    from modelconv.importers.torch.capture import BoundInputs, capture_dynamic, requested_dims
    from modelconv.ir.naming import rename_io

    options.report_progress("import", 0.02)
    model = load_package_model(path, config, packages)
    kind, names, tensors = _structure(model)
    module = wrap(model, kind, names)
    bound = BoundInputs(example_tensors(names, tensors, options), param_names(names))
    wanted = requested_dims(bound.names, options)
    ep, warnings = capture_dynamic(module, bound, wanted, options)
    ep = _without_einsum(ep)
    source = import_exported_program(ep, options, format="keras", path=path, eager=module,
                                     wanted=wanted, input_names=bound.names,
                                     warnings=warnings)
    outs = getattr(module, "output_keys", None) or _output_names(
        model, len(source.model.graph.outputs))
    if outs is not None:
        rename_io(source.model, None, outs)
    source.warnings.append(
        f"converted by loading the file with Keras and its package(s) {', '.join(packages)} "
        "(--allow-package) and capturing it with torch.export")
    return source
