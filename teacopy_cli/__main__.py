"""``python -m teacopy_cli``: the same as the ``teacopy`` console script."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
