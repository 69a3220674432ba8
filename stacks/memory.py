"""Memory of the Plan, Credentials and Summarize functions: each at least its measured peak plus a margin.

One place for the figures (the steps use them; ``make scale`` prints them next to what it measures). CopyBatch's
memory is configurable (``copy_memory_mb`` in cdk.json, stacks/config.py). The measurements and the margins are
in README.md ("Limits") and docs/design.md.
"""

from __future__ import annotations

PLAN_MB = 512
CREDENTIALS_MB = 256
SUMMARIZE_MB = 1024
