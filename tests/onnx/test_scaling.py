"""Large graphs: the work modelconv does grows linearly with the number of nodes.

No timings (the timed check is ``python -m benchmarks scaling``): these tests count work.
Each guards a loop that was quadratic: onnx_ir's shape inference scanned the graph-input
list once per initializer (a 100k-node chain spent minutes there), merging its result
deserialised the whole inferred model, and unique-name generation probed ``hint_1``,
``hint_2``, ... from 1 for every request with the same hint.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Iterator
from pathlib import Path

import onnx_ir as ir
import pytest
from onnx_ir import _graph_containers

import modelconv
from benchmarks.scaling import chain_model
from modelconv.exporters.tflite.graph import TflGraph
from modelconv.passes._edit import unique_name
from modelconv.passes.shape_inference import ShapeInferencePass


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Elements looked at by ``value in graph.inputs/outputs`` (a linear scan each)."""
    seen = [0]
    original = _graph_containers._GraphIO.__contains__

    def contains(self: _graph_containers._GraphIO, item: object) -> bool:
        seen[0] += len(self.data)
        return bool(original(self, item))

    monkeypatch.setattr(_graph_containers._GraphIO, "__contains__", contains)
    yield seen


def _chain(tmp_path: Path, n: int) -> ir.Model:
    model = ir.load(chain_model(n, tmp_path / f"chain{n}.onnx"))
    for node in model.graph:
        for out in node.outputs:
            out.shape = None
    return model


def test_shape_inference_scans_no_input_list_per_initializer(tmp_path: Path,
                                                            scans: list[int]) -> None:
    model = _chain(tmp_path, 1500)  # 1000 initializers
    assert ShapeInferencePass(strict_mode=False)(model).modified
    assert scans[0] <= len(model.graph.initializers)  # onnx_ir's pass: ~n^2/2 = 500k
    assert all(v.shape == ir.Shape([1, 8]) for v in model.graph.outputs)


def test_shape_inference_keeps_initializers_and_inputs(tmp_path: Path) -> None:
    model = _chain(tmp_path, 30)
    before = list(model.graph.initializers), list(model.graph.inputs)
    ShapeInferencePass(strict_mode=False)(model)
    assert (list(model.graph.initializers), list(model.graph.inputs)) == before
    assert all(v.const_value is not None for v in model.graph.initializers.values())


def test_merging_inferred_shapes_does_not_deserialise_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _chain(tmp_path, 30)

    def refuse(*args: object) -> None:
        raise AssertionError("the whole inferred model was deserialised")

    monkeypatch.setattr(ir.serde, "deserialize_model", refuse)
    assert ShapeInferencePass(strict_mode=False)(model).modified
    assert all(n.outputs[0].shape == ir.Shape([1, 8]) for n in model.graph)


class _ProbeSet(set):  # type: ignore[type-arg]
    probes = 0

    def __contains__(self, item: object) -> bool:
        type(self).probes += 1
        return super().__contains__(item)


def test_tflite_tensor_names_cost_constant_probes() -> None:
    graph = TflGraph()
    graph._names = _ProbeSet()
    _ProbeSet.probes = 0
    names = [graph.tensors[graph.add_tensor("perm", "int32", [4])].name for _ in range(2000)]
    assert len(set(names)) == 2000 and names[:3] == ["perm", "perm_1", "perm_2"]
    assert _ProbeSet.probes <= 3 * 2000  # probing from perm_1 each time: 2M


def test_pass_value_names_cost_constant_probes() -> None:
    graph = ir.Graph([], [], nodes=[])
    graph.meta["_modelconv_names"] = _ProbeSet({"axes"})
    graph.meta["_modelconv_next"] = {}
    _ProbeSet.probes = 0
    names = [unique_name(graph, "axes") for _ in range(2000)]
    assert len(set(names)) == 2000 and names[0] == "axes_1"
    assert _ProbeSet.probes <= 3 * 2000


def _calls(src: Path, dst: Path) -> int:
    """Python function calls made by one conversion."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        modelconv.convert(src, dst, verify=False, overwrite=True)
    finally:
        profile.disable()
    return sum(int(entry[1]) for entry in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_conversion_work_grows_linearly(target: str, tmp_path: Path) -> None:
    if target == "tflite":
        pytest.importorskip("ai_edge_litert")
    small, large = (chain_model(n, tmp_path / f"c{n}.onnx") for n in (200, 800))
    _calls(small, tmp_path / f"warm.{target}")  # lazy imports happen once
    ratio = _calls(large, tmp_path / f"l.{target}") / _calls(small, tmp_path / f"s.{target}")
    assert ratio <= 4.4, f"4x the nodes cost {ratio:.2f}x the function calls"
