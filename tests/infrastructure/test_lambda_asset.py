"""The Lambda code asset, as synthesized: the handlers resolve inside Lambda under the one name ``lambdas``.

``lambda_code_dir()`` (stacks/constructs/function.py) copies the ``lambdas`` package into a folder of its
own; CDK stages that folder into the cloud assembly (``asset.<hash>``) and uploads it as the functions'
code. These tests read the folder each function's ``Code`` points at, and import the package from it in
a Python that sees nothing of this repository: ``-I`` (isolated: no PYTHON* variables, no script folder,
no user site) and ``-S`` (no ``site``: the venv's ``.pth`` files, which put this checkout on the path
through its editable install, are not run), with ``sys.path`` = the asset folder + the venv's
site-packages (standing in for the Lambda runtime's boto3 and the dependencies layer) + the standard
library (``-B``: no bytecode written into the asset). Each function's process gets that function's
environment from the template, as in Lambda. The third-party modules that import loads must then be
ones the Lambda runtime or the dependencies layer (requirements-layer.txt) provides.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from stacks.constructs.function import LAYER_DIR
from stacks.teacopy_stack import LOGICAL_IDS, STACK_ID
from stacks.template_tools import PSEUDO_DEFAULTS, dummy_resolver, resolve_intrinsics

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTION_KEYS = ("plan", "credentials", "copy_batch", "summarize")
# What the python3.12 Lambda runtime provides besides the standard library (the AWS SDK and its dependencies),
# and what botocore imports only when it is installed (it falls back to its own CA bundle).
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"}
OPTIONAL_FOR_BOTOCORE = {"certifi"}

# Runs in the isolated interpreter: argv = asset folder, site-packages folders (JSON), handler string.
IMPORT_EVERYTHING = r"""
import importlib, importlib.util, json, pkgutil, sys

asset, site_packages, handler = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
sys.path[:0] = [asset, *site_packages]
import lambdas

module_name, _, attribute = handler.rpartition(".")
imported = []
for info in pkgutil.walk_packages(lambdas.__path__, "lambdas."):
    if info.name.startswith("lambdas.handlers.") and info.name != module_name:
        continue  # another function's handler reads another function's environment at import
    importlib.import_module(info.name)
    imported.append(info.name)
entry = getattr(importlib.import_module(module_name), attribute)
third_party = sorted({
    name.split(".")[0]
    for name, module in list(sys.modules.items())
    if any(str(getattr(module, "__file__", None) or "").startswith(folder) for folder in site_packages)
})
print(json.dumps({
    "lambdas": lambdas.__file__,
    "third_party": third_party,
    "imported": imported,
    "handler_callable": callable(entry),
    "repo_packages_visible": [n for n in ("stacks", "teacopy_local", "teacopy_cli", "tests")
                              if importlib.util.find_spec(n) is not None],
}))
"""


def function_props(synth: Any, key: str) -> dict[str, Any]:
    props: dict[str, Any] = synth.template["Resources"][LOGICAL_IDS[key]]["Properties"]
    return props


def asset_folder(synth: Any, key: str) -> Path:
    """The staged folder of the function's code asset (the one CDK zips and uploads)."""
    manifest = json.loads((synth.outdir / f"{STACK_ID}.assets.json").read_text(encoding="utf-8"))
    asset_hash = function_props(synth, key)["Code"]["S3Key"].removesuffix(".zip")
    source = manifest["files"][asset_hash]["source"]
    assert source["packaging"] == "zip", source
    folder = synth.outdir / source["path"]
    assert folder.is_dir(), folder
    return Path(folder)


def module_file(folder: Path, module: str) -> Path | None:
    base = folder.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def layer_top_level_names() -> set[str]:
    """Importable top-level names in the dependencies layer (``python/`` of build/lambda-layer)."""
    names = set()
    for entry in (LAYER_DIR / "python").iterdir():
        if entry.name.endswith(".dist-info") or entry.name == "__pycache__":
            continue
        names.add(entry.name.split(".")[0])  # a package folder, foo.py or _foo.abi3.so
    return names


def site_packages() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


def test_the_four_functions_share_one_asset_holding_exactly_the_lambdas_package(synth: Any) -> None:
    folders = {asset_folder(synth, key) for key in FUNCTION_KEYS}
    assert len(folders) == 1
    (folder,) = folders
    in_asset = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    # every file of the package (a data file the copy left out would be missing in Lambda), no bytecode
    in_repo = {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "lambdas").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert in_asset == in_repo


@pytest.mark.parametrize("key", FUNCTION_KEYS)
def test_handler_names_a_function_of_a_module_in_the_asset(synth: Any, key: str) -> None:
    handler = function_props(synth, key)["Handler"]
    module, _, attribute = handler.rpartition(".")
    assert module.split(".")[0] == "lambdas", handler
    path = module_file(asset_folder(synth, key), module)
    assert path is not None, f"{handler}: no module {module} in the asset"
    defined = {
        node.name for node in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(node, ast.FunctionDef)
    }
    assert attribute in defined, f"{handler}: {path.name} defines no {attribute}()"


@pytest.mark.parametrize("key", FUNCTION_KEYS)
def test_every_module_imports_from_the_asset_alone_with_the_functions_environment(synth: Any, key: str) -> None:
    props = function_props(synth, key)
    resolve = dummy_resolver(synth.template)
    region = PSEUDO_DEFAULTS["AWS::Region"]
    environment = {
        **resolve_intrinsics(props["Environment"]["Variables"], resolve),
        # what the Lambda runtime sets (no credentials: importing must not call AWS)
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": resolve(LOGICAL_IDS[key], None),
    }
    folder = asset_folder(synth, key)
    result = subprocess.run(  # noqa: S603 - this interpreter, isolated, on our own asset
        [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-c",
            IMPORT_EVERYTHING,
            str(folder),
            json.dumps(site_packages()),
            props["Handler"],
        ],
        env=environment,
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["lambdas"]).is_relative_to(folder)
    assert report["handler_callable"] is True
    assert report["repo_packages_visible"] == []
    expected = {
        ".".join(p.relative_to(folder).with_suffix("").parts).removesuffix(".__init__")
        for p in (folder / "lambdas").rglob("*.py")
    }
    expected -= {m for m in expected if m.startswith("lambdas.handlers.") and m != props["Handler"].rpartition(".")[0]}
    assert set(report["imported"]) == expected - {"lambdas"}
    # The venv provided the third-party code here; inside Lambda only the runtime and the layer do.
    missing = set(report["third_party"]) - RUNTIME_PROVIDED - OPTIONAL_FOR_BOTOCORE - layer_top_level_names()
    assert not missing, f"imported at load time but neither in the Lambda runtime nor in the layer: {sorted(missing)}"
