"""State of incremental schedules: the start time of each schedule's last successful run (SSM).

Plan reads it to narrow a CMR query (``updated_since``); Summarize writes it only when a run
succeeds — with the time that run's *Plan* started, so granules updated while a run was copying are
picked up by the next one (copying one twice is harmless: skip-if-identical skips it). A failed run
writes nothing, so the next run covers the failed night too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts.errors import InvalidInput, TransientCopyError
from lambdas.contracts.models import format_time, parse_time

logger = logging.getLogger(__name__)
SCHEDULE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class ScheduleRef:
    """What a schedule adds to the execution input: ``{"schedule": {"name": ..., "incremental": ...}}``."""

    name: str
    incremental: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "incremental": self.incremental}

    @classmethod
    def from_input(cls, raw: Any) -> ScheduleRef | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or not set(raw) <= {"name", "incremental"}:
            raise InvalidInput("schedule", "must be an object with 'name' and 'incremental' (added by the schedule)")
        name, incremental = raw.get("name"), raw.get("incremental", False)
        if not isinstance(name, str) or not SCHEDULE_NAME_RE.match(name):
            raise InvalidInput("schedule.name", "1-40 characters of letters, digits, '-' and '_'")
        if not isinstance(incremental, bool):
            raise InvalidInput("schedule.incremental", "must be true or false")
        return cls(name=name, incremental=incremental)


def parameter_name(prefix: str, schedule: str) -> str:
    return f"{prefix}{schedule}/last-success"


def read_last_success(ssm: Any, prefix: str, schedule: str) -> str | None:
    """ISO time of the schedule's last successful run, or None before its first success."""
    name = parameter_name(prefix, schedule)
    try:
        value = str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise TransientCopyError(f"could not read the schedule state {name}") from exc
    except BotoCoreError as exc:
        raise TransientCopyError(f"could not read the schedule state {name}") from exc
    try:
        return format_time(parse_time(value))
    except ValueError:
        logger.warning(
            "the schedule state is not a time: treating this as the first run",
            extra={"parameter": name, "value": value[:40]},
        )
        return None


def write_last_success(ssm: Any, prefix: str, schedule: str, started_at: str) -> None:
    name = parameter_name(prefix, schedule)
    ssm.put_parameter(
        Name=name,
        Value=format_time(parse_time(started_at)),
        Type="String",
        Overwrite=True,
        Description="teacopy: start time of this schedule's last successful run (incremental CMR queries)",
    )
    logger.info("recorded the schedule's last successful run", extra={"schedule": schedule, "started_at": started_at})
