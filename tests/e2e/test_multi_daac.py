"""Several DAACs in one job: each source bucket is read with credentials from its own TEA endpoint.

The test synth (tests/conftest.py) configures a second endpoint, ``nsidc``, serving one bucket. In the
local engine each endpoint has its own TEA emulator, and S3 refuses one emulator's keys on the other's
buckets, as AWS refuses one DAAC's keys on another DAAC's bucket.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdas.contracts import env_names
from teacopy_local.cmr_emulator import CmrEmulator, EmulatedFile
from teacopy_local.demo import secrets_of
from teacopy_local.engine import LocalEngine
from teacopy_local.tea_emulator import TeaEmulator

PODAAC = "daac-a-protected"  # served by tea_endpoint ("default")
NSIDC = "nsidc-cumulus-prod-protected"  # served by the "nsidc" endpoint of the test synth
TOKEN = "multi-daac-token-0123456789abcdef"
DEST = "my-earthdata-copy"
MANIFESTS = "teacopy-manifests"


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def env_of(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    variables: dict[str, Any] = template["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
    return variables


def test_each_endpoint_has_its_own_cache_and_the_functions_know_them(synth: Any) -> None:
    secrets = resources(synth.template, "AWS::SecretsManager::Secret")
    assert sorted(k for k in secrets if k.startswith("CredentialsCacheSecret")) == [
        "CredentialsCacheSecret",
        "CredentialsCacheSecretNsidc",
    ]
    plan_value = env_of(synth.template, "PlanFunction")[env_names.TEA_ENDPOINTS]
    for fn in ("CredentialsFunction", "CopyBatchFunction"):  # one value: the local engine shares one env
        assert env_of(synth.template, fn)[env_names.TEA_ENDPOINTS] == plan_value
    plan = env_of(synth.template, "PlanFunction")
    assert json.loads(plan[env_names.BUCKET_ENDPOINTS]) == {NSIDC: "nsidc"}
    rendered = json.dumps(plan[env_names.TEA_ENDPOINTS])
    assert "https://data.nsidc.earthdatacloud.nasa.gov" in rendered and "CredentialsCacheSecretNsidc" in rendered


def test_two_endpoint_job_uses_each_endpoints_credentials_only_on_its_buckets(synth: Any) -> None:
    with TeaEmulator(valid_tokens={TOKEN}) as podaac, TeaEmulator(valid_tokens={TOKEN}) as nsidc:
        overrides = {env_names.TEA_ENDPOINT: podaac.url, env_names.SAFETY_MARGIN_SECONDS: "1"}
        with LocalEngine(
            synth.template,
            tea=podaac,
            edl_token=TOKEN,
            source_buckets={PODAAC},
            env_overrides=overrides,
            extra_teas={"nsidc": (nsidc, {NSIDC})},
        ) as engine:
            source = engine.client("s3", region="us-west-2")
            rng = random.Random(5)
            bodies: dict[str, bytes] = {}
            for bucket in (PODAAC, NSIDC):
                for i in range(6):
                    key = f"{bucket.split('-')[0]}/granule-{i}.nc"
                    bodies[key] = rng.randbytes(1500 + i)
                    source.put_object(Bucket=bucket, Key=key, Body=bodies[key])
            engine.client("s3").create_bucket(Bucket=MANIFESTS)
            urls = [f"s3://{PODAAC if k.startswith('daac') else NSIDC}/{k}" for k in sorted(bodies)]
            engine.client("s3").put_object(Bucket=MANIFESTS, Key="two-daacs.txt", Body="\n".join(urls).encode())
            job = {"source": {"manifest": f"s3://{MANIFESTS}/two-daacs.txt"}, "destination": {"bucket": DEST}}

            result = engine.run(job, name="two-daacs", timeout=120)

            assert result.status == "SUCCEEDED", (result.error, result.cause)
            assert result.output is not None and (result.output["copied"], result.output["failed"]) == (12, 0)
            dest = engine.client("s3")
            for key, body in bodies.items():
                assert dest.get_object(Bucket=DEST, Key=key)["Body"].read() == body
            # one TEA call per endpoint, and no key was ever presented to the other DAAC's bucket
            assert (podaac.requests, nsidc.requests) == (1, 1)
            assert engine.policy.denied == []
            plan = json.loads(
                dest.get_object(Bucket=engine.deployment.staging_bucket, Key="runs/two-daacs/plan.json")["Body"].read()
            )
            assert plan["endpoints"] == ["default", "nsidc"]
            # the check is live: the default endpoint's keys are refused on the NSIDC bucket
            (access_key, _exp), *_ = podaac.issued
            issued = podaac.credentials_of(access_key)
            assert issued is not None
            foreign = boto3.client(
                "s3",
                region_name="us-west-2",
                aws_access_key_id=access_key,
                aws_secret_access_key=issued.secret_access_key,
                aws_session_token=issued.session_token,
            )
            with pytest.raises(ClientError) as info:
                foreign.get_object(Bucket=NSIDC, Key="nsidc/granule-0.nc")
            assert info.value.response["Error"]["Code"] == "AccessDenied"
            leaks = engine.scan_for_secrets(
                secrets_of(podaac, TOKEN) + secrets_of(nsidc, TOKEN), [result.execution_arn]
            )
            assert leaks == []


def test_cmr_collection_names_its_tea_and_its_buckets_follow_it(synth: Any) -> None:
    """A CMR job whose granules sit in a bucket the config does not map: the collection's
    DirectDistributionInformation names the nsidc TEA, so that bucket is read with nsidc's credentials."""
    other_bucket = "nsidc-other-protected"  # not in tea_endpoints[].buckets of the test synth
    with (
        TeaEmulator(valid_tokens={TOKEN}) as podaac,
        TeaEmulator(valid_tokens={TOKEN}) as nsidc,
        CmrEmulator() as cmr,
    ):
        overrides = {
            env_names.TEA_ENDPOINT: podaac.url,
            env_names.SAFETY_MARGIN_SECONDS: "1",
            env_names.CMR_URL: cmr.url,
        }
        with LocalEngine(
            synth.template,
            tea=podaac,
            edl_token=TOKEN,
            source_buckets={PODAAC},
            env_overrides=overrides,
            extra_teas={"nsidc": (nsidc, {NSIDC, other_bucket})},
        ) as engine:
            concept = cmr.add_collection("SEA-ICE", "1", provider="NSIDC_CPRD", tea_endpoint=nsidc.url)
            source = engine.client("s3", region="us-west-2")
            bodies = {}
            for day in range(3):
                key = f"ice/{day}.h5"
                bodies[key] = random.Random(day).randbytes(900 + day)
                source.put_object(Bucket=other_bucket, Key=key, Body=bodies[key])
                cmr.add_granule(
                    concept,
                    f"ice-{day}",
                    [EmulatedFile(other_bucket, key, len(bodies[key]))],
                    begin=datetime(2024, 1, 1 + day, tzinfo=UTC),
                )
            job = {"source": {"cmr": {"collection_concept_id": concept}}, "destination": {"bucket": DEST}}

            result = engine.run(job, name="ice", timeout=120)

            assert result.status == "SUCCEEDED", (result.error, result.cause)
            assert result.output is not None and result.output["copied"] == 3
            assert (podaac.requests, nsidc.requests) == (0, 1)  # only the collection's TEA was asked
            assert engine.policy.denied == []
            plan = json.loads(
                engine.client("s3")
                .get_object(Bucket=engine.deployment.staging_bucket, Key="runs/ice/plan.json")["Body"]
                .read()
            )
            assert plan["endpoints"] == ["nsidc"] and "endpoint 'nsidc'" in plan["endpoint_note"]
            assert any(r.path == "/search/collections.umm_json" for r in cmr.requests)
