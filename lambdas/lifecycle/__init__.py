"""What happens around a run rather than inside it: clean-up when Summarize never ran, overlapping schedules."""
