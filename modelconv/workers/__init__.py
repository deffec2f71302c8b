"""Worker subprocesses for runtimes that must not share the caller's process or may abort it.

A leaf package: importers and verification both use it, its modules import neither of them
at module level, and each worker resolves its job functions from ``"module:function"``
strings. ``tf_worker`` runs TensorFlow (in a process whose Keras backend is TensorFlow);
``litert`` runs the LiteRT interpreter, so an interpreter abort becomes a typed error.
"""
