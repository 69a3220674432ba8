"""Metrics (CloudWatch EMF through Powertools); names shared with the dashboard and alarms."""
