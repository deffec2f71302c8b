"""Shared checks of the streaming tests: where initializers live, and a conversion's
anonymous-memory growth measured in a fresh process (tests/scale/memory_probe.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx_ir as ir

from tests.paths import ROOT


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process mapping ``path``."""
    out = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            if line.rstrip().endswith(str(path)):
                lo, hi = line.split()[0].split("-")
                out.append((int(lo, 16), int(hi, 16)))
    return out


def initializer_homes(model: ir.Model, path: Path, min_size: int = 1 << 16
                      ) -> tuple[int, int, int]:
    """(large initializers in the file's mapping, lazily computed ones, others)."""
    arrays = []
    lazy = 0
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is None or tensor.size <= min_size:
            continue
        if isinstance(tensor, ir.LazyTensor):
            lazy += 1
        else:
            arrays.append(tensor.numpy())  # an external tensor maps its file here
    ranges = mapped_ranges(path)
    mapped = sum(any(lo <= a.__array_interface__["data"][0] < hi for lo, hi in ranges)
                 for a in arrays)
    return mapped, lazy, len(arrays) - mapped


def anonymous_growth(src: Path, dst: Path, arch: str = "-", warm_src: Path | None = None,
                     warm_arch: str = "-") -> float:
    """Bytes of anonymous memory a conversion of ``src`` to ``dst`` adds at its peak, in a
    fresh process, after a warm-up conversion of ``warm_src`` (verification off)."""
    warm = [str(warm_src), warm_arch] if warm_src is not None else []
    out = subprocess.run(
        [sys.executable, "-m", "tests.scale.memory_probe", str(src), str(dst), arch, *warm],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=300, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    return float(probe["peak_mib"] - probe["base_mib"]) * 2**20
