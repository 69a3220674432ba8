"""The fault and abuse suite (`make chaos`): scenarios, the bad-input matrix and the invariants.

- ``world.py``      one scenario's world: TEA emulator + local engine + S3 fault layer + seeded data
- ``model.py``      Scenario / Expected / Outcome, the registry, running one scenario
- ``scenarios.py``  the fault scenarios (credentials, TEA, S3, workers, load)
- ``scenarios_recovery.py`` damage past the usual paths (staging files, Lambda limits, S3 past the SDK, the lease)
- ``catalog.py``    every scenario, in table order
- ``bad_inputs.py`` the bad-input matrix (each rejected with InvalidInput naming field and rule)
- ``invariants.py`` what is checked after every scenario (nothing lost, corrupt, orphaned or leaked)
- ``report.py``     the table and the totals JSON; ``__main__.py`` the command line

tests/chaos/test_chaos*.py parametrize over the same tables, so `make test` and `make chaos` share one source.
"""
