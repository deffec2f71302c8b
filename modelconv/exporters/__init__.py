"""Exporters: each writes the IR in one target format (see modelconv.formats)."""
