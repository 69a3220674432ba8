"""The Lambda layer `make setup` builds: every pin of requirements-layer.txt, as arm64 / CPython 3.12 wheels.

The layer is installed with ``--no-deps``, so a runtime dependency missing from requirements-layer.txt would
only fail in Lambda, at import: every installed distribution's own requirements must be in the layer (or in
the runtime, like boto3's jmespath).
"""

from __future__ import annotations

import re
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYER = REPO / "build" / "lambda-layer" / "python"
IN_THE_RUNTIME = {"boto3", "botocore", "jmespath", "s3transfer", "urllib3", "python-dateutil", "six"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def pins() -> dict[str, str]:
    lines = (REPO / "requirements-layer.txt").read_text(encoding="utf-8").splitlines()
    found = (line.split("#", 1)[0].strip().split("==") for line in lines)
    return {_name(parts[0]): parts[1] for parts in found if len(parts) == 2}


def installed() -> dict[str, Path]:
    assert LAYER.is_dir(), "build/lambda-layer is missing: `make setup` builds it (`make test` runs setup first)"
    return {_name(p.name.removesuffix(".dist-info").rsplit("-", 1)[0]): p for p in LAYER.glob("*.dist-info")}


def test_the_layer_holds_exactly_the_pinned_versions() -> None:
    dists = installed()
    assert set(dists) == set(pins())
    for name, version in pins().items():
        assert dists[name].name.removesuffix(".dist-info").rsplit("-", 1)[1] == version, name


def test_every_runtime_dependency_is_in_the_layer_or_the_runtime() -> None:
    dists = installed()
    for name, info in dists.items():
        metadata = Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        for requirement in metadata.get_all("Requires-Dist") or []:
            if "extra ==" in requirement or "python_version < " in requirement:
                continue
            dependency = _name(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0])
            assert dependency in dists or dependency in IN_THE_RUNTIME, f"{name} needs {dependency}"


def test_compiled_wheels_are_manylinux_aarch64_cpython_312() -> None:
    dists = installed()
    for name in ("pydantic-core", "awscrt"):
        wheel = (dists[name] / "WHEEL").read_text(encoding="utf-8")
        tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")]
        assert tags and all("aarch64" in tag and "manylinux" in tag for tag in tags), (name, tags)
        assert any(
            tag.startswith(("cp312-cp312", "cp311-abi3", "cp310-abi3", "cp39-abi3", "cp38-abi3")) for tag in tags
        )
    assert list((LAYER / "pydantic_core").glob("_pydantic_core.cpython-312-aarch64-linux-gnu.so"))
