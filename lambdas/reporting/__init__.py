"""Summarize: aggregate the run's results, render the CSV/HTML report, keep incremental schedules' state."""
