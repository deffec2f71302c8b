"""TS2EPConverter with a static final trace, for TorchScript archives without dynamic dims.

torch's converter turns the TorchScript graph into an FX graph, then re-traces that graph with
``torch.export`` marking every input dim ``Dim.AUTO``: every dim becomes a symbol and every op
is traced symbolically, which costs several times a static trace (densenet121: 35 s against
13 s here), and the TorchScript route then exported the program a second time to pin the
example shapes. When no dynamic dims are asked for the example shapes are final, so
:class:`StaticConverter` traces once, with static shapes:

    TorchScript graph ─► FX graph (torch's converter, unchanged)
                      ─► torch.export with the example shapes ─► ExportedProgram

The converter hands tensor constants of the TorchScript module to the trace as attributes,
which the trace records as buffers; they are put back as constants, as torch's converter does.

torch's converter also sorts the module's state into parameters and buffers by comparing the
*values* of each state tensor with every parameter of the same shape: quadratic in the number
of same-shaped parameters (regnet_y_128gf: 29 s). :class:`StaticConverter` recognises a
parameter by identity (the same storage, offset, shape, strides and dtype), which is what the
comparison means to find; everything else the constructor sets is torch's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch._export.converter import TS2EPConverter, _create_jit_graph
from torch.export.graph_signature import InputKind


class StaticConverter(TS2EPConverter):
    """TS2EPConverter whose re-trace keeps the example input shapes (no symbolic dims)."""

    def __init__(self, ts_model: Any, sample_args: tuple[Any, ...],
                 sample_kwargs: dict[str, Any] | None = None) -> None:
        """What TS2EPConverter's constructor sets, parameters found by identity.

        Args:
            ts_model: the ScriptModule (or ScriptFunction) to convert.
            sample_args: example positional inputs.
            sample_kwargs: example keyword inputs.
        """
        self.ts_model = ts_model
        self.ts_graph, self.params, _, _ = _create_jit_graph(ts_model, sample_args)
        self.sample_args = sample_args
        self.sample_kwargs = sample_kwargs
        self.name_to_param, self.name_to_buffer = split_state(ts_model)
        self.name_to_non_tensor_attributes: dict[str, Any] = {}
        self.name_to_constant: dict[str, Any] = {}
        self.lift_get_attr()

    def retrace_as_exported_program(self, gm: torch.fx.GraphModule,
                                    name_to_constant: dict[str, Any]
                                    ) -> torch.export.ExportedProgram:
        """The FX graph ``gm`` exported with the example shapes.

        Args:
            gm: the converter's FX graph.
            name_to_constant: the TorchScript module's constants, by attribute name.

        Returns:
            The program, its constants recorded as constants (not buffers).
        """
        program: torch.export.ExportedProgram = torch.export._trace._export(
            gm, self.sample_args, dynamic_shapes=None, strict=False, pre_dispatch=True)
        kept = {name: value for name, value in name_to_constant.items()
                if isinstance(value, torch.Tensor | torch.ScriptObject)}
        program._constants.update(kept)
        for name in name_to_constant:
            program.state_dict.pop(name, None)
        for spec in program.graph_signature.input_specs:
            if spec.kind == InputKind.BUFFER and isinstance(kept.get(spec.target or ""),
                                                            torch.Tensor):
                spec.kind, spec.persistent = InputKind.CONSTANT_TENSOR, None
        program.verifier().check(program)
        return program


def _identity(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)


def split_state(module: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A ScriptModule's state tensors as (parameters, buffers), by name.

    Args:
        module: a ScriptModule (a ScriptFunction has no state: two empty dicts).

    Returns:
        The state dict's entries that are parameters (the same tensor as one of
        ``module.parameters()``), and the others.
    """
    params: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    if isinstance(module, torch._C.ScriptFunction):
        return params, buffers
    own: Sequence[torch.Tensor] = list(module.parameters())
    known = {_identity(p) for p in own}
    for name, tensor in module.state_dict().items():
        (params if _identity(tensor) in known else buffers)[name] = tensor
    return params, buffers


__all__ = ["StaticConverter", "split_state"]
