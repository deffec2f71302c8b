"""TensorFlow graph importer: SavedModel signatures converted op by op, without TensorFlow.

Importing the package registers every op handler (``core.OPS``).
"""

from modelconv.importers.tf.graph import (  # noqa: F401 - registration
    ops_control,
    ops_math,
    ops_nn,
    ops_shape,
)
