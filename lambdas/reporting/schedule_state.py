"""State of incremental schedules: the start time of each schedule's last successful run (SSM).

Plan reads it to narrow a CMR query (``updated_since``); Summarize writes it only when a run
succeeds — with the time that run's *Plan* started, so granules updated while a run was copying are
picked up by the next one (copying one twice is harmless: skip-if-identical skips it). A failed run
writes nothing, so the next run covers the failed night too.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import ArgsKwargs

from lambdas.contracts.errors import TransientCopyError
from lambdas.contracts.models import format_time, parse_time
from lambdas.contracts.validation import rule_error

logger = logging.getLogger(__name__)
SCHEDULE_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
SCHEDULE_NAME_RE = re.compile(SCHEDULE_NAME_PATTERN)
SCHEDULE_RULE = "must be an object with 'name' and 'incremental' (added by the schedule)"


def _schedule_name(value: Any) -> str:
    if not isinstance(value, str) or not SCHEDULE_NAME_RE.match(value):
        raise rule_error("1-40 characters of letters, digits, '-' and '_'")
    return value


@dataclass(frozen=True, config=ConfigDict(extra="forbid", title="schedule"))
class ScheduleRef:
    """Added by the stack's EventBridge schedules (cdk.json teacopy.schedules), not typed by hand: the schedule's
    name, and whether the run is incremental (a CMR source narrowed to what changed since its last successful run)."""

    name: Annotated[
        str,
        BeforeValidator(_schedule_name),
        Field(description="The schedule's name.", json_schema_extra={"pattern": SCHEDULE_NAME_PATTERN}),
    ]
    incremental: Annotated[
        StrictBool,
        Field(
            description="A CMR source narrowed to what changed since the schedule's last successful run "
            "(updated_since)."
        ),
    ] = False

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, raw: Any) -> Any:
        if not isinstance(raw, ArgsKwargs) and (not isinstance(raw, dict) or not set(raw) <= {"name", "incremental"}):
            raise rule_error(SCHEDULE_RULE)
        return raw

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "incremental": self.incremental}


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
