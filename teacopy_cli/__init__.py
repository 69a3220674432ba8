"""The ``teacopy`` command line (``teacopy --help``, or ``python -m teacopy_cli``)."""

from __future__ import annotations

__version__ = "0.1.0"
