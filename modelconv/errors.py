"""Typed errors. Every failure modelconv reports is a ModelconvError subclass.

Messages are written for a person at a terminal: what went wrong, where (file, layer,
op) and what to do next. The CLI prints ``str(error)`` as one paragraph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelconv.verification.report import VerificationReport


class ModelconvError(Exception):
    """Base class of every error modelconv raises on purpose."""

    #: CLI exit code for this kind of failure.
    exit_code: int = 2

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        self.message = message
        self.path = path
        self.hint = hint
        super().__init__(self._compose())

    def _compose(self) -> str:
        text = self.message
        if self.path and self.path not in text:
            text = f"{self.path}: {text}"
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint}"
        return text


class UnsupportedFormatError(ModelconvError):
    """The file's content is not a format modelconv reads or writes."""


class ModelLoadError(ModelconvError):
    """The file is corrupt, truncated or not what its format promises."""


class RunnerUnavailableError(ModelLoadError):
    """The source framework cannot load a model that modelconv itself converted (a limit of
    that framework, e.g. Keras' legacy-h5 loader); verification is skipped, saying why."""


class UnsafeModelError(ModelconvError):
    """Loading the model would execute code or touch files outside the model."""


class UnsupportedOpsError(ModelconvError):
    """One or more ops/layers have no handler. Lists all of them at once."""

    def __init__(
        self,
        kind: str,
        unsupported: Mapping[str, Iterable[str]],
        *,
        path: str | None = None,
        hint: str | None = None,
    ):
        self.kind = kind
        self.unsupported = {op: sorted(set(where)) for op, where in sorted(unsupported.items())}
        parts = []
        for op, where in self.unsupported.items():
            shown = ", ".join(where[:5]) + (f", ... (+{len(where) - 5})" if len(where) > 5 else "")
            parts.append(f"{op} x{len(where)} (at {shown})")
        message = f"{len(self.unsupported)} unsupported {kind}(s): " + "; ".join(parts)
        super().__init__(
            message,
            path=path,
            hint=hint
            or "Run `modelconv ops` to see what is supported; please report missing ones.",
        )


class ShapeError(ModelconvError):
    """Shapes do not fit together (inputs, weights or inferred shapes)."""


class ExportError(ModelconvError):
    """The IR could not be written in the target format."""


class VerificationError(ModelconvError):
    """The converted model's outputs differ from the source's beyond tolerance."""

    exit_code = 1

    def __init__(self, message: str, report: VerificationReport | None = None, **kw: Any):
        self.report = report
        super().__init__(message, **kw)


class MissingDependencyError(ModelconvError):
    """An optional dependency needed for this route is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed",
            hint=f"Install it with: pip install 'modelconv[{extra}]'",
        )


class ConversionTimeoutError(ModelconvError):
    """The conversion ran past the time limit the caller set."""


class OutputExistsError(ModelconvError):
    """The output path exists and overwriting was not requested."""


class OptionError(ModelconvError):
    """An option has no effect in this combination (it would be silently ignored)."""
