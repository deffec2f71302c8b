"""TorchRunner: runs the original torch model (eager module, TorchScript or ExportedProgram).

Like the onnxruntime and LiteRT runners, it runs single-threaded (torch's intra-op pool set
to one thread for the call, then restored): the reference does not depend on the machine's
thread count, and a busy machine does not stall a multi-threaded pool waiting for a core
(regnet_y_128gf at 64 px on two loaded cores: 5.8 s a run with two threads, 0.65 s with one).

Outputs are flattened with torch's pytree (the order torch.export uses), so they line up
with the IR outputs ``output_0, output_1, ...``. ``intermediates`` exposes module outputs
(forward hooks, keyed by module path) and FX node values (keyed by node name): the two
kinds of ``source_name`` the torch importer records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_flatten

from modelconv.ir.info import TensorSpec, graph_input_specs, graph_output_specs


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """torch's intra-op thread pool at one thread inside the block, restored after it.

    Yields:
        Nothing; the block runs single-threaded.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy().copy()


def _tensors(out: Any) -> list[np.ndarray]:
    leaves, _ = tree_flatten(out)
    return [_to_numpy(x) if isinstance(x, torch.Tensor) else np.asarray(x) for x in leaves
            if x is not None]


class TorchRunner:
    """Runs a torch callable on numpy feeds (CPU, no grad, eval mode)."""

    name = "torch"

    def __init__(
        self,
        fn: Callable[..., Any],
        inputs: Sequence[TensorSpec],
        outputs: Sequence[str],
        *,
        program: Any = None,
        arg_names: Sequence[str] | None = None,
    ):
        self.fn = fn
        self._inputs = list(inputs)
        self._outputs = list(outputs)
        self.program = program
        #: forward parameters the feeds are passed as (keywords); None: positionally
        self.arg_names = list(arg_names) if arg_names else None

    @classmethod
    def for_model(cls, model: Any, fn: Any, *, program: Any = None,
                  arg_names: Sequence[str] | None = None) -> TorchRunner:
        """Runner whose signature is taken from the imported IR ``model``.

        Args:
            model: the imported IR model (its inputs and outputs name the runner's).
            fn: the torch callable or ExportedProgram to run.
            program: the ExportedProgram, for FX-node intermediates.
            arg_names: pass the feeds as these keyword arguments (None: positionally).

        Returns:
            The runner.
        """
        if isinstance(fn, torch.export.ExportedProgram):
            fn = fn.module()
        return cls(fn, graph_input_specs(model.graph),
                   [s.name for s in graph_output_specs(model.graph)], program=program,
                   arg_names=arg_names)

    def input_specs(self) -> list[TensorSpec]:
        """The model's inputs in order."""
        return list(self._inputs)

    def output_names(self) -> list[str]:
        """The model's outputs in order."""
        return list(self._outputs)

    def _call(self, feeds: Sequence[np.ndarray]) -> Any:
        args = [torch.from_numpy(np.require(np.asarray(f), requirements="C")) for f in feeds]
        module = self.fn if isinstance(self.fn, torch.nn.Module) else None
        was_training = bool(module is not None and module.training)
        if module is not None and was_training:
            # an ExportedProgram's module() refuses eval(); it is traced in eval already
            with contextlib.suppress(NotImplementedError):
                module.eval()
        try:
            with torch.no_grad(), single_thread():
                if self.arg_names is not None:
                    return self.fn(**dict(zip(self.arg_names, args, strict=True)))
                return self.fn(*args)
        finally:
            if module is not None and was_training:
                with contextlib.suppress(NotImplementedError):
                    module.train()

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Outputs for positional ``feeds``, flattened in IR output order."""
        return _tensors(self._call(feeds))

    def intermediates(self, feeds: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, Any]:
        """Values of module outputs (by module path) and FX nodes (by node name)."""
        found: dict[str, Any] = {}
        wanted = set(names)
        if isinstance(self.fn, torch.nn.Module) and not isinstance(self.fn, torch.jit.ScriptModule):
            found.update(self._module_outputs(feeds, wanted))
        rest = wanted - set(found)
        if rest and self.program is not None:
            found.update(self._fx_values(feeds, rest))
        return found

    def _module_outputs(self, feeds: Sequence[np.ndarray], wanted: set[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        handles = []
        for path, sub in self.fn.named_modules():  # type: ignore[attr-defined]
            if path in wanted:
                def hook(_m: Any, _i: Any, out: Any, path: str = path) -> None:
                    arrays = _tensors(out)
                    if arrays:
                        found[path] = arrays[0] if len(arrays) == 1 else arrays
                handles.append(sub.register_forward_hook(hook))
        try:
            self._call(feeds)
        finally:
            for h in handles:
                h.remove()
        return found

    def _fx_values(self, feeds: Sequence[np.ndarray], wanted: set[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        gm = self.program.module()

        class _Recorder(torch.fx.Interpreter):
            def run_node(self, n: torch.fx.Node) -> Any:
                result = super().run_node(n)
                if n.name in wanted and isinstance(result, torch.Tensor):
                    found[n.name] = _to_numpy(result)
                return result

        args = [torch.from_numpy(np.require(np.asarray(f), requirements="C")) for f in feeds]
        with torch.no_grad(), single_thread():
            _Recorder(gm).run(*args)
        return found
