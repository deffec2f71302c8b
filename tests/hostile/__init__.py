"""Hostile-input corpus: generated at test time, never shipped as live payloads."""
