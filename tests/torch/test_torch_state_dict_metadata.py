"""state_dict versions (``_metadata``): kept from the file, or taken from the architecture.

torchvision's MNASNet checks its ``_version`` in ``_load_from_state_dict`` and refuses a
state_dict without one ("version should be set to 1 or 2 instead of None"). A ``.pt``
written by ``torch.save(model.state_dict())`` records the versions; ``.safetensors`` cannot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import modelconv  # noqa: E402
from modelconv.importers.torch.sources import load_torch_weights  # noqa: E402

SHAPE = (1, 3, 64, 64)


def mnasnet() -> torch.nn.Module:
    """The architecture (seeded so every build has the same weights)."""
    torch.manual_seed(0)
    return torchvision.models.mnasnet0_5(weights=None).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("mnas")
    model = mnasnet()
    with torch.no_grad():  # non-default weights and statistics, so a mis-load shows
        for p in model.state_dict().values():
            if p.dtype.is_floating_point:
                p.add_(torch.rand_like(p) * 0.1)
    state = model.state_dict()
    out = {"pt": root / "mnas.pt", "safetensors": root / "mnas.safetensors",
           "torchscript": root / "mnas_ts.pt", "wrapped": root / "wrapped.pt"}
    torch.save(state, out["pt"])
    save_file({k: v.contiguous() for k, v in state.items()}, str(out["safetensors"]))
    torch.jit.trace(model, torch.zeros(SHAPE)).save(str(out["torchscript"]))
    # a DataParallel-style checkpoint: keys and versions under "module."
    wrapped = type(state)((f"module.{k}", v) for k, v in state.items())
    wrapped._metadata = type(state._metadata)(  # type: ignore[attr-defined]
        ("module" if not k else f"module.{k}", v) for k, v in state._metadata.items())
    torch.save(wrapped, out["wrapped"])
    return out


def test_pt_state_dict_keeps_the_files_versions(files: dict[str, Path]) -> None:
    state = load_torch_weights(files["pt"])
    saved = torch.load(files["pt"], weights_only=True)._metadata
    assert getattr(state, "_metadata", None) == saved
    assert saved[""]["version"] == 2  # MNASNet's own version, the one it checks


@pytest.mark.parametrize("kind", ["pt", "safetensors", "torchscript", "wrapped"])
def test_mnasnet_converts_from_every_weights_file(files: dict[str, Path], kind: str,
                                                  tmp_path: Path) -> None:
    extra = {"trust_code": True} if kind == "torchscript" else {"model": mnasnet()}
    result = modelconv.convert(files[kind], tmp_path / "m.onnx", input_shapes=[SHAPE],
                               **extra)
    assert result.verified
    # the loaded weights are the file's, not the architecture's fresh initialisation
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    session = ort.InferenceSession(str(result.output))
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    fresh = mnasnet()(torch.from_numpy(x)).detach().numpy()
    assert not np.allclose(got, fresh, atol=1e-3)
