"""TensorFlow graph importer: SavedModel signatures converted op by op, without TensorFlow."""
