"""TensorFlow graph importer: SavedModel signatures converted op by op, without TensorFlow.

Importing the package registers every op handler (``core.OPS``).
"""

from modelconv.importers.tf import ops_math, ops_nn, ops_shape  # noqa: F401 - registration
