"""Each torch source kind end to end, plus the error paths (unsafe, unsupported, mismatches)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import onnx_ir as ir  # noqa: E402

from modelconv.errors import (  # noqa: E402
    ModelLoadError,
    UnsafeModelError,
    UnsupportedOpsError,
)
from modelconv.importers.torch import (  # noqa: E402
    import_pt2,
    import_safetensors,
    import_state_dict,
    import_torch_module,
    import_torchscript,
)
from modelconv.options import ConvertOptions  # noqa: E402
from modelconv.verification.runners import OnnxRuntimeRunner  # noqa: E402


class Small(nn.Module):
    """conv-bn-relu-pool-linear, enough to cover params, buffers and module paths."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                                      nn.ReLU())
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def small() -> Small:
    """Factory used through the "module:factory" architecture string."""
    torch.manual_seed(0)
    return Small().eval()


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _check(sm: Any, x: torch.Tensor = X, tol: float = 1e-5) -> None:
    ort = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    got = ort.run([x.numpy()])
    ref = sm.make_runner().run([x.numpy()])
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=tol * max(1.0, np.abs(r).max()), rtol=0)


def test_module_names_and_source_tags() -> None:
    sm = import_torch_module(small(), ConvertOptions(example_inputs=(X,)))
    graph = sm.model.graph
    assert [v.name for v in graph.inputs] == ["x"]
    assert [v.name for v in graph.outputs] == ["output_0"]
    sources = {n.metadata_props.get("source_name") for n in graph}
    assert {"features.0", "features.1", "head"} <= sources
    assert sm.format == "torch-module"
    _check(sm)


def test_module_from_input_shapes() -> None:
    sm = import_torch_module(small(), ConvertOptions(input_shapes=[(1, 3, 8, 8)]))
    assert list(sm.model.graph.inputs[0].shape) == [1, 3, 8, 8]


def test_dynamic_batch_symbolic_dim() -> None:
    sm = import_torch_module(small(), ConvertOptions(input_shapes=[(1, 3, 8, 8)],
                                                     dynamic_batch=True))
    dim0 = sm.model.graph.inputs[0].shape[0]
    assert isinstance(dim0, ir.SymbolicDim) and dim0.value == "batch"
    _check(sm, torch.randn(5, 3, 8, 8))


def test_dynamic_dims_named() -> None:
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    sm = import_torch_module(m, ConvertOptions(
        example_inputs=(torch.randn(2, 7, 4),), dynamic_dims={"input": {1: "seq"}}))
    assert sm.model.graph.inputs[0].shape[1].value == "seq"
    _check(sm, torch.randn(2, 3, 4))


def test_state_dict_file(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(small().state_dict(), path)
    arch = Small()  # fresh random weights: must be overwritten by the file
    sm = import_state_dict(path, ConvertOptions(model=arch, example_inputs=(X,)))
    assert sm.format == "state_dict"
    ref = small()(X).detach().numpy()
    ort = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    np.testing.assert_allclose(ort.run([X.numpy()])[0], ref, atol=1e-5)


def test_state_dict_factory_string_and_wrapper(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": small().state_dict()}, path)
    sm = import_state_dict(path, ConvertOptions(model="tests.torch.test_torch_sources:small",
                                                example_inputs=(X,)))
    _check(sm)


def test_state_dict_mismatch_lists_everything(tmp_path: Path) -> None:
    state = small().state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["head.bias"]
    state["head.weight"] = torch.zeros(7, 4)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError) as info:
        import_state_dict(path, ConvertOptions(model=Small(), example_inputs=(X,)))
    text = str(info.value)
    assert "head.bias" in text and "extra.weight" in text and "head.weight" in text


def test_state_dict_non_tensor_content(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"a": torch.zeros(1), "note": "hello"}, path)
    with pytest.raises(ModelLoadError, match="non-tensor"):
        import_state_dict(path, ConvertOptions(model=Small(), example_inputs=(X,)))


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("pwned",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    with pytest.raises(UnsafeModelError):
        import_state_dict(path, ConvertOptions(model=Small(), example_inputs=(X,)))


def test_missing_architecture(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(small().state_dict(), path)
    with pytest.raises(ModelLoadError, match="architecture"):
        import_state_dict(path, ConvertOptions(example_inputs=(X,)))


def test_safetensors_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(small().state_dict(), str(path))
    sm = import_safetensors(path, ConvertOptions(model=Small(), example_inputs=(X,)))
    ref = small()(X).detach().numpy()
    ort = OnnxRuntimeRunner(ir.to_proto(sm.model).SerializeToString())
    np.testing.assert_allclose(ort.run([X.numpy()])[0], ref, atol=1e-5)


def test_safetensors_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(ModelLoadError, match="header"):
        import_safetensors(path, ConvertOptions(model=Small(), example_inputs=(X,)))
    path.write_bytes((40).to_bytes(8, "little")
                     + b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}}'[:40])
    with pytest.raises(ModelLoadError):
        import_safetensors(path, ConvertOptions(model=Small(), example_inputs=(X,)))


@pytest.mark.parametrize("kind", ["trace", "script"])
def test_torchscript(tmp_path: Path, kind: str) -> None:
    m = small()
    ts = torch.jit.trace(m, (X,)) if kind == "trace" else torch.jit.script(m)
    path = tmp_path / "m.ts"
    ts.save(str(path))
    with pytest.raises(UnsafeModelError, match="trust_code"):
        import_torchscript(path, ConvertOptions(example_inputs=(X,)))
    sm = import_torchscript(path, ConvertOptions(example_inputs=(X,), trust_code=True))
    assert sm.format == "torchscript"
    _check(sm)


def test_torchscript_dynamic_batch(tmp_path: Path) -> None:
    path = tmp_path / "m.ts"
    torch.jit.trace(small(), (X,)).save(str(path))
    sm = import_torchscript(path, ConvertOptions(example_inputs=(X,), trust_code=True,
                                                 dynamic_batch=True))
    dim0 = sm.model.graph.inputs[0].shape[0]
    assert isinstance(dim0, ir.SymbolicDim) and dim0.value == "batch"
    _check(sm, torch.randn(5, *X.shape[1:]))


@pytest.mark.parametrize("kind", ["trace", "script"])
def test_torchscript_static_shapes_trace_once(tmp_path: Path, kind: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Without dynamic dims the converter's FX graph is exported once, with the example
    shapes: torch's converter marks every dim Dim.AUTO (a symbolic trace costing several
    static ones) and the route then exported the program a second time to pin them."""
    from torch.export import _trace

    m = small()
    ts = torch.jit.trace(m, (X,)) if kind == "trace" else torch.jit.script(m)
    path = tmp_path / "m.ts"
    ts.save(str(path))
    calls: list[Any] = []
    export = _trace._export

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("dynamic_shapes"))
        return export(*args, **kwargs)

    monkeypatch.setattr(_trace, "_export", spy)
    sm = import_torchscript(path, ConvertOptions(example_inputs=(X,), trust_code=True))
    assert calls == [None]
    assert all(isinstance(d, int) for d in sm.model.graph.inputs[0].shape)
    _check(sm)


class ShapeArith(nn.Module):
    """Shape arithmetic that tracing records as aten::size -> NumToTensor -> Int code."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = x.view(b, c * h, w).flatten(1)
        z = self.proj(x.reshape(x.shape[0], -1, 4))
        return z.reshape(x.size(0), z.size(1) * 4) + y


def test_torchscript_traced_shape_arithmetic(tmp_path: Path) -> None:
    import modelconv

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    traced = torch.jit.trace(ShapeArith().eval(), (x,))
    path = tmp_path / "shapes.pt"
    traced.save(str(path))
    result = modelconv.convert(path, tmp_path / "m.onnx", trust_code=True,
                               input_shapes=[(2, 3, 8, 8)], rtol=1e-4)
    assert result.verified and result.report is not None
    assert result.report.outputs[0].max_rel < 1e-4


def test_pt2(tmp_path: Path) -> None:
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(small(), (X,)), str(path))
    sm = import_pt2(path, ConvertOptions())
    assert sm.format == "pt2"
    _check(sm)


def test_pt2_with_pickled_payload_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(small(), (X,)), str(path))
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("sample_inputs/model.pt"):
                data = pickle.dumps(_Evil())
            dst.writestr(item, data)
    with pytest.raises(UnsafeModelError):
        import_pt2(bad, ConvertOptions())


class _Unsupported(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.special.bessel_j0(x)
        z = torch.special.bessel_j1(x)
        return y + z + torch.special.bessel_j0(x * 2)


def test_unsupported_ops_listed_at_once() -> None:
    with pytest.raises(UnsupportedOpsError) as info:
        import_torch_module(_Unsupported(), ConvertOptions(example_inputs=(torch.randn(3),)))
    err = info.value
    assert set(err.unsupported) == {"aten.special_bessel_j0.default",
                                    "aten.special_bessel_j1.default"}
    assert len(err.unsupported["aten.special_bessel_j0.default"]) == 2


def test_intermediates_by_module_path() -> None:
    sm = import_torch_module(small(), ConvertOptions(example_inputs=(X,)))
    runner = sm.make_runner()
    values = runner.intermediates([X.numpy()], ["features.0", "head"])
    assert values["features.0"].shape == (2, 4, 8, 8)
    assert values["head"].shape == (2, 5)


class _UnsupportedVariants(nn.Module):
    """ATen ops with a handler, each called with a variant its check refuses."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pooled = nn.functional.avg_pool2d(x, 2, divisor_override=3)
        flat = x.flatten(1)
        index = torch.zeros_like(flat, dtype=torch.int64)
        mean = flat.scatter_reduce(1, index, flat, reduce="mean")  # no ONNX reduction
        return pooled, mean


def test_unsupported_variants_listed_at_once() -> None:
    with pytest.raises(UnsupportedOpsError) as info:
        import_torch_module(_UnsupportedVariants(),
                            ConvertOptions(example_inputs=(torch.randn(1, 2, 8, 8),)))
    assert set(info.value.unsupported) == {
        "aten.avg_pool2d.default (divisor_override)",
        "aten.scatter_reduce.two (reduce='mean')",
    }


def test_adaptive_pooling_over_a_dynamic_size_is_refused() -> None:
    """Adaptive windows are computed from the input size: a dynamic H is refused by name."""
    pool = nn.AdaptiveAvgPool2d((3, 3))
    with pytest.raises(UnsupportedOpsError) as info:
        import_torch_module(pool, ConvertOptions(example_inputs=(torch.randn(1, 2, 8, 8),),
                                                 dynamic_dims={"input": {2: "h"}}))
    assert list(info.value.unsupported) == [
        "aten.adaptive_avg_pool2d.default (a dynamic spatial size (adaptive windows need "
        "static sizes))"]
