"""The import-cycle check `make lint` runs (scripts/check_imports.py): it finds cycles, and there are none."""

from __future__ import annotations

from pathlib import Path

from scripts import check_imports


def test_cycles_are_found_including_lazy_imports(tmp_path: Path) -> None:
    assert check_imports.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from lambdas.planning import plan\n", encoding="utf-8")
    known = {"lambdas.planning.plan": module, "lambdas.planning": module}
    found = check_imports.imports_of("lambdas.copying.engine", module, known)
    assert found == {"lambdas.planning.plan", "lambdas.planning"}


def test_the_project_has_no_import_cycle() -> None:
    assert check_imports.main() == 0
