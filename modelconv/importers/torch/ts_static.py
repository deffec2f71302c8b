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
"""

from __future__ import annotations

from typing import Any

import torch
from torch._export.converter import TS2EPConverter
from torch.export.graph_signature import InputKind


class StaticConverter(TS2EPConverter):
    """TS2EPConverter whose re-trace keeps the example input shapes (no symbolic dims)."""

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


__all__ = ["StaticConverter"]
