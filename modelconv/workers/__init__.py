"""Worker subprocesses for runtimes that must not share (or can crash) the caller's process.

A leaf package: importers and verification both use it, it imports neither of them at
module level, and each worker resolves its job functions from ``"module:function"`` strings.
"""
