"""Scripts that build test models in a subprocess (TensorFlow / Keras builds).

They live in their own folder because running a script puts its folder first on sys.path:
beside tests/keras or tests/tf, ``import keras`` would find the test package instead.
"""
