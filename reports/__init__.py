"""Renderers that only read results: tables, Markdown (and more formats as plugins)."""
