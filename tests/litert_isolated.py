"""Run .tflite bytes in a child process, so a LiteRT abort fails one test instead of pytest.

One spawned worker is reused across calls and restarted after it dies; the reply says
``ok`` (outputs in SignatureDef order), ``error`` (LiteRT raised, e.g. at prepare) or
``died`` (the process aborted or crashed, with its exit code).
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TIMEOUT = 60.0


@dataclass
class Outcome:
    """What LiteRT did with one model."""

    status: str  # "ok", "error" or "died"
    outputs: list[np.ndarray] = field(default_factory=list)
    message: str = ""


def _serve(conn: Any) -> None:
    from modelconv.verification.runners_litert import LiteRTRunner

    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        data, feeds = job
        try:
            runner = LiteRTRunner(data)
            outs = runner.run([feeds[s.name] for s in runner.input_specs()])
            conn.send(("ok", [np.asarray(o) for o in outs], ""))
        except Exception as exc:  # reported to the parent, which asserts on it
            conn.send(("error", [], f"{type(exc).__name__}: {exc}"))


class IsolatedLiteRT:
    """A reusable LiteRT worker process (spawned; restarted when it dies)."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def run(self, data: bytes, feeds: dict[str, np.ndarray]) -> Outcome:
        """Load and run ``data`` on ``feeds`` (by input name) in the worker."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((data, feeds))
            if self._conn.poll(TIMEOUT):
                status, outs, msg = self._conn.recv()
                return Outcome(status, outs, msg)
            self._proc.kill()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            pass
        self._proc.join(5)
        code = self._proc.exitcode
        self._proc = None
        return Outcome("died", [], f"LiteRT worker died (exit code {code})")

    def close(self) -> None:
        """Stop the worker."""
        if self._proc is not None and self._proc.is_alive():
            self._conn.close()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
        self._proc = None
