"""Bounded mutation fuzzing of fixture files.

Run as ``python -m tests.hostile.fuzz FIXTURE --cases N --seed S``: each case mutates a
copy of FIXTURE (byte flips, truncation, spliced random runs, zeroed blocks) and converts
it to ONNX in this process with a time limit. Prints one line per case:
``ok``, ``error <ModelconvError subclass>`` or ``BAD <exception>``; exits 1 if any case
was BAD. A crash or hang of the whole process is caught by the caller (subprocess).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation of ``data``."""
    buf = bytearray(data)
    kind = int(rng.integers(0, 5))
    if kind == 0:  # flip a few bytes
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 16))):
            buf[int(pos)] ^= int(rng.integers(1, 256))
    elif kind == 1:  # truncate
        del buf[int(rng.integers(1, len(buf))):]
    elif kind == 2:  # splice random bytes
        pos = int(rng.integers(0, len(buf)))
        buf[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == 3:  # zero a block
        pos = int(rng.integers(0, len(buf)))
        end = min(len(buf), pos + int(rng.integers(1, 256)))
        buf[pos:end] = bytes(end - pos)
    else:  # overwrite ints with large values (sizes, offsets, dims)
        for pos in rng.integers(0, max(1, len(buf) - 8), size=4):
            buf[int(pos):int(pos) + 4] = (0x7FFFFFF0).to_bytes(4, "little")
    return bytes(buf)


def run(fixture: Path, cases: int, seed: int, timeout: float) -> int:
    """Fuzz ``fixture``; returns the number of BAD outcomes."""
    import modelconv
    from modelconv.errors import ModelconvError

    rng = np.random.default_rng(seed)
    original = fixture.read_bytes()
    bad = 0
    for i in range(cases):
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / fixture.name
            src.write_bytes(mutate(original, rng))
            try:
                modelconv.convert(src, Path(tmp) / "out.onnx", timeout=timeout)
                print(f"{i} ok", flush=True)
            except ModelconvError as exc:
                print(f"{i} error {type(exc).__name__}", flush=True)
            except Exception as exc:  # the thing fuzzing looks for
                bad += 1
                print(f"{i} BAD {type(exc).__name__}: {exc}", flush=True)
                traceback.print_exc(file=sys.stderr)
                keep = Path(tempfile.gettempdir()) / f"fuzz-bad-{seed}-{i}-{fixture.name}"
                shutil.copy(src, keep)
    return bad


def main() -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser()
    parser.add_argument("fixture", type=Path)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    return 1 if run(args.fixture, args.cases, args.seed, args.timeout) else 0


if __name__ == "__main__":
    sys.exit(main())
