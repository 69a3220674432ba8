"""Byte units, defined once (the bottom layer, so settings and every other package can use them).

``lambdas/s3/limits.py`` re-exports them next to the S3 limits written with them.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3
