"""rnnbench's library: plugin contracts, measurements, results store and CLI.

Plugin authors need only :data:`hookimpl`::

    from harness import hookimpl
"""

from harness.hookspecs import hookimpl

__all__ = ["hookimpl"]
