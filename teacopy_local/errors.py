"""What can stop a local run before the engine starts (the CLI prints the message as one line, exit 2)."""

from __future__ import annotations


class LocalRunError(RuntimeError):
    """A local run cannot start as asked; the message says what is wrong and what to do."""
