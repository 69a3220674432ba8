"""The Lambda code asset, as synthesized: the handlers resolve inside Lambda under the one name ``lambdas``.

``lambda_code_dir()`` (stacks/constructs/function.py) copies the ``lambdas`` package into a folder of its
own; CDK stages that folder into the cloud assembly (``asset.<hash>``) and uploads it as the functions'
code. These tests read the folder each function's ``Code`` points at, and import the package from it in
a Python that sees nothing of this repository: ``-I`` (isolated: no PYTHON* variables, no script folder,
no user site) and ``-S`` (no ``site``: the venv's ``.pth`` files, which put this checkout on the path
through its editable install, are not run), with ``sys.path`` = the asset folder + the dependencies layer's
pure-Python packages (build/lambda-layer, as Lambda's /opt/python comes before the runtime's packages) + the
venv's site-packages (standing in only for the layer's compiled packages, built for arm64/CPython 3.12) + the
standard library (``-B``: no bytecode written into the asset). Each function's process gets that function's
environment from the template, as in Lambda. Every third-party module that import loads must come from the
layer: the AWS SDK (boto3, botocore) from the layer's own copy, whatever the Lambda runtime bundles.
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
FUNCTION_KEYS = ("plan", "credentials", "copy_batch", "summarize", "cleanup")
# What botocore imports only when it is installed (it falls back to its own CA bundle).
OPTIONAL_FOR_BOTOCORE = {"certifi"}
# The AWS SDK: it must be the layer's (pinned) copy, not whatever the runtime bundles.
PINNED_SDK = ("boto3", "botocore")

# Runs in the isolated interpreter: argv = asset folder, package folders (JSON, the layer's first), handler string.
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
third_party = {}
for name, module in list(sys.modules.items()):
    for folder in site_packages:
        if str(getattr(module, "__file__", None) or "").startswith(folder + "/"):
            third_party.setdefault(name.split(".")[0], folder)
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


def compiled(entry: Path) -> bool:
    """A layer entry built for Lambda's arm64 CPython 3.12 (it cannot load here)."""
    return entry.suffix == ".so" or (entry.is_dir() and any(entry.rglob("*.so")))


@pytest.fixture(scope="module")
def pure_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer's pure-Python top-level packages and modules (links), to put on the path before the venv's."""
    if not (LAYER_DIR / "python").is_dir():
        pytest.skip("build/lambda-layer is built by `make setup`")
    folder = tmp_path_factory.mktemp("layer-pure")
    for entry in (LAYER_DIR / "python").iterdir():
        if entry.name in ("__pycache__", "bin") or entry.name.endswith(".dist-info") or compiled(entry):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


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
def test_every_module_imports_from_the_asset_alone_with_the_functions_environment(
    synth: Any, key: str, pure_layer: Path
) -> None:
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
            json.dumps([str(pure_layer), *site_packages()]),
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
    # Inside Lambda only the layer provides third-party code: every module imported comes from it (the venv
    # stands in for the layer's compiled packages only), and the AWS SDK is the layer's pinned copy.
    third_party: dict[str, str] = report["third_party"]
    missing = set(third_party) - OPTIONAL_FOR_BOTOCORE - layer_top_level_names()
    assert not missing, f"imported at load time but not in the dependencies layer: {sorted(missing)}"
    for name in PINNED_SDK:
        assert third_party.get(name) == str(pure_layer), (
            f"{name} was not loaded from the layer: {third_party.get(name)}"
        )
    from_venv = {name for name, folder in third_party.items() if folder != str(pure_layer)}
    compiled_in_layer = {e.name.split(".")[0] for e in (LAYER_DIR / "python").iterdir() if compiled(e)}
    assert from_venv - OPTIONAL_FOR_BOTOCORE <= compiled_in_layer, sorted(from_venv)
