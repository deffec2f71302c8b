"""The .pt2 audit: every archive field torch evaluates, runs or unpickles is refused unless
--trust-code, by convert, verify and inspect alike; the payloads are live in plain torch."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from modelconv.cli import main
from tests.hostile.corpus import CNN, MARKER
from tests.hostile.pt2 import BUILDERS, LIVE, PT2_CASES, base_pt2

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", sorted(LIVE))
def test_payload_runs_in_plain_torch(name: str, tmp_path: Path) -> None:
    """The corpus is not toothless: torch itself runs these payloads."""
    path = BUILDERS[name](tmp_path)
    with contextlib.suppress(Exception):  # the payload runs before torch notices anything
        LIVE[name](torch.export.load(str(path)))
    assert (tmp_path / MARKER).exists()


@pytest.mark.parametrize("command", ["convert", "verify", "inspect"])
@pytest.mark.parametrize("case", PT2_CASES, ids=[c.name for c in PT2_CASES])
def test_every_command_refuses(case: object, command: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    path = BUILDERS[case.name](tmp_path)  # type: ignore[attr-defined]
    args = {"convert": ["convert", str(path), str(tmp_path / "out.onnx"), "--quiet"],
            "verify": ["verify", str(path), str(CNN)],
            "inspect": ["inspect", str(path)]}[command]
    code = main(args)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2, err
    assert f"error ({case.error})" in err, err  # type: ignore[attr-defined]
    assert not (tmp_path / MARKER).exists(), "the payload ran"
    assert not (tmp_path / "out.onnx").exists()
    if "would run code" in err:
        assert "--trust-code" in err


def test_trust_code_runs_guards(tmp_path: Path) -> None:
    """Documented: with --trust-code the archive is torch's to run, guards included."""
    path = BUILDERS["pt2-guards-code"](tmp_path)
    code = main(["convert", str(path), str(tmp_path / "out.onnx"), "--quiet", "--trust-code"])
    assert (tmp_path / MARKER).exists() and code == 0


def test_real_guards_pass_the_audit_and_are_not_run(tmp_path: Path) -> None:
    """torch writes guards such as "L['x'].size()[0] == L['y'].size()[0]": accepted, and
    the loaded program has no guard function (nothing of the file is exec'd)."""
    from modelconv.importers.torch import import_pt2
    from modelconv.options import ConvertOptions

    class Two(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + y

    n = torch.export.Dim("n", min=2, max=64)
    program = torch.export.export(Two(), (torch.randn(3, 2), torch.randn(3, 2)),
                                  dynamic_shapes=({0: n}, {0: n}))
    assert program._guards_code, "torch no longer writes guards: the test needs another model"
    torch.export.save(program, str(tmp_path / "two.pt2"))
    source = import_pt2(tmp_path / "two.pt2", ConvertOptions())
    runner = source.make_runner()  # type: ignore[misc]
    assert not hasattr(runner.fn, "_guards_fn")
    assert main(["convert", str(tmp_path / "two.pt2"), str(tmp_path / "two.onnx"),
                 "--quiet"]) == 0


def test_plain_export_converts(tmp_path: Path) -> None:
    path = base_pt2(tmp_path)
    assert main(["convert", str(path), str(tmp_path / "out.onnx"), "--quiet"]) == 0
