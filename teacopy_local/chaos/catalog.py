"""Every fault scenario, in table order: importing the modules that define them registers them."""

from __future__ import annotations

from . import scenarios, scenarios_recovery
from .model import SCENARIOS

MODULES = (scenarios, scenarios_recovery)  # each registers its scenarios when imported (@scenario)
__all__ = ["MODULES", "SCENARIOS"]
