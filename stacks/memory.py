"""Memory of the Plan, Credentials and Summarize functions: each at least its measured peak plus a margin.

One place for the figures (the steps use them; ``make scale`` prints them next to what it measures). CopyBatch's
memory is configurable (``copy_memory_mb`` in cdk.json, stacks/config.py). The measurements and the margins are
in README.md ("Limits") and docs/design.md.
"""

from __future__ import annotations

PLAN_MB = 512
CREDENTIALS_MB = 256
SUMMARIZE_MB = 1024
# Plan's /tmp holds the seen-keys SQLite file (planning/seen.py): ~23 bytes per digest measured, two digests per
# object of a CMR job (source and destination key) -> ~470 MB at 10,000,000 objects; Lambda's default /tmp is 512 MB.
PLAN_TMP_MB = 2048
