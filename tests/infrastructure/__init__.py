"""infrastructure tests."""
