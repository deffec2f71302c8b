"""ATen op handlers. Importing this package registers every ``ops_*`` module."""

from . import (  # noqa: F401  (imported for their registrations)
    ops_activation,
    ops_attention,
    ops_conv,
    ops_core,
    ops_elementwise,
    ops_index,
    ops_linear,
    ops_misc,
    ops_norm,
    ops_reduce,
    ops_rnn,
    ops_shape,
)
from ._base import ATEN_OPS, AtenBuilder, aten_op, check_call, ir_dtype, np_dtype

__all__ = ["ATEN_OPS", "AtenBuilder", "aten_op", "check_call", "ir_dtype", "np_dtype"]
