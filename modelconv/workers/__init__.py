"""Worker processes for runtimes that must not share modelconv's process or may abort it.

Leaf package: its modules import nothing from ``modelconv.verification`` or
``modelconv.importers`` at module level, so both the importers and the verifier can use them.
"""
