"""Memory of the Plan, Credentials, Summarize and Cleanup functions: measured peak plus a margin (where measured).

One place for the figures (the steps use them; ``make scale`` prints them next to what it measures). CopyBatch's
memory is configurable (``copy_memory_mb`` in cdk.json, stacks/config.py). The measurements and the margins are
in README.md ("Limits") and docs/design.md.

- Plan: peak RSS 143 MB at 1,000,000 objects (117 MB at 100,000; ``make scale``, one process per invocation,
  cold start included); flat in the number of objects. 1,769 MB is 12x that, but the figure is chosen for CPU:
  Lambda gives CPU in proportion to memory (1,769 MB = 1 vCPU, research.md) and planning is CPU-bound (parsing
  CMR pages, building each object, the seen-keys file), so at 512 MB (~0.3 vCPU) a ten-million-object plan
  would take ~3.5x longer for the same GB-seconds.
- Summarize: peak RSS 95 MB at 1,000,000 results (94 MB at 100,000); 1,769 MB likewise for CPU (it parses
  every result file; 16 read threads).
- Cleanup: writes one run's report in one pass (what Summarize's last invocation writes, streamed likewise) and
  only for a run that ended without Summarize, off any run's critical path; 512 MB, not measured.
- Credentials: 51 MB after imports (measured here: ``import lambdas.handlers.credentials``); an invocation
  adds one secret and one TEA answer (a few KB); 256 MB leaves a 5x margin. Not measured under ``make scale``.
"""

from __future__ import annotations

PLAN_MB = 1769
CREDENTIALS_MB = 256
SUMMARIZE_MB = 1769
CLEANUP_MB = 512  # a run's report in one pass, off the run's critical path: no CPU to buy
# Plan's /tmp holds the seen-keys SQLite file (planning/seen.py): ~23 bytes per digest measured, two digests per
# object of a CMR job (source and destination key) -> ~470 MB at 10,000,000 objects; Lambda's default /tmp is 512 MB.
PLAN_TMP_MB = 2048
