"""Lambda entry points: each parses its event, builds clients once per container and calls the logic. No logic here."""
