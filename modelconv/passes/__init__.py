"""Graph passes over the IR (framework-free). One pass per file."""

from modelconv.passes.pipeline import cleanup

__all__ = ["cleanup"]
