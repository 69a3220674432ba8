"""The state names of the copy state machine: an API (the local engine, the tests and the runbooks use them)."""

from __future__ import annotations


class StateNames:
    # the top level (CopyWorkflow)
    PLAN = "Plan"
    PLANNING_DONE = "PlanningDone"  # Plan loops until the manifest is staged (a continuation otherwise)
    RUN_SKIPPED = "RunSkipped"  # a scheduled run whose schedule still runs its previous one (lifecycle/overlap.py)
    FETCH_CREDENTIALS = "FetchCredentials"
    COPY_OBJECTS = "CopyObjects"
    MAP_FAILED = "MapFailed"
    MAP_SUCCEEDED = "MapSucceeded"
    SUMMARIZE = "Summarize"
    SUMMARY_DONE = "SummaryDone"  # Summarize loops until the report is written
    RUN_SUMMARIZED = "RunSummarized"
    # the map child
    COPY_BATCH = "CopyBatch"
    COUNT_REFRESH_ROUND = "CountRefreshRound"
    CAN_REFRESH = "CanRefresh"
    REFRESH_ROUNDS_EXHAUSTED = "RefreshRoundsExhausted"
    REFRESH_CREDENTIALS = "RefreshCredentials"
    BATCH_DONE = "BatchDone"
    RESET_REFRESH_ROUND = "ResetRefreshRound"
    BATCH_COPIED = "BatchCopied"
