"""Importers: each reads one source format into the IR (see modelconv.formats)."""
