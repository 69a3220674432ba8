"""Logs (Powertools Logger, the logging convention) and metrics (CloudWatch EMF); names shared with the dashboard."""
