"""Record a `teacopy` CLI session against the local engine (the transcript in docs/operator.md).

The local engine lives in this process (moto), so the commands run here, through the same ``main``
the console script calls, with the engine's backend instead of the AWS one. Output: the commands and
what they printed, as a shell transcript; the HTML report of the first run is written to
``artifacts/session/`` and its screenshot (headless Chromium, if installed) next to it.

    .venv/bin/python -m scripts.cli_session [--template cdk.out/TeacopyStack.template.json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from lambdas.contracts import env_names
from teacopy_cli.backend import local_backend
from teacopy_cli.cli import main
from teacopy_local.engine import LocalEngine, load_template
from teacopy_local.tea_emulator import TeaEmulator

REPO = Path(__file__).resolve().parents[1]

SOURCE = "podaac-ops-cumulus-protected"
TOKEN = "session-edl-token-" + "x" * 20
OUT = REPO / "artifacts" / "session"


def screenshot(page: Path, png: Path) -> bool:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--window-size=1100,1250",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, timeout=90, check=False)  # noqa: S603
    return done.returncode == 0


def main_session(template: Path) -> int:
    keys = [
        f"MUR-JPL-L4-GLOB-v4.1/2023010{d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1.nc" for d in range(1, 10)
    ]
    keys += [
        f"MUR-JPL-L4-GLOB-v4.1/202301{d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1.nc" for d in range(10, 31)
    ]
    missing = keys[7::11]  # not (yet) in the DAAC bucket: these fail, then get retried
    rng = random.Random(3)  # noqa: S311 - test data, not secrets

    def after_issue(_issued: object) -> None:
        tea.set_lifetime(30)

    tea = TeaEmulator(lifetime_seconds=2, valid_tokens={TOKEN}, issue=after_issue)
    transcript: list[str] = []
    with tea:
        overrides = {
            env_names.TEA_ENDPOINT: tea.url,
            env_names.SAFETY_MARGIN_SECONDS: "1",
            env_names.BATCH_MAX_OBJECTS: "4",
        }
        with LocalEngine(
            load_template(template), tea=tea, edl_token=TOKEN, source_buckets={SOURCE}, env_overrides=overrides
        ) as engine:
            source = engine.client("s3", region="us-west-2")
            for key in keys:
                if key not in missing:
                    body = rng.randbytes(rng.choice((300_000, 1_200_000, 2_500_000)))
                    source.put_object(
                        Bucket=SOURCE, Key=key, Body=body, Metadata={"sha": hashlib.sha256(body).hexdigest()}
                    )
            gate = threading.Lock()

            def like_lambda(name: str, event: dict[str, Any]) -> None:  # slower, as on AWS: visible progress
                if "batch" in event:
                    with gate:
                        time.sleep(0.4)

            engine.runtime.fault = like_lambda
            backend = local_backend(engine)
            dest = engine.deployment.destination_buckets[0]
            keys_file = OUT / "mur-january.txt"
            OUT.mkdir(parents=True, exist_ok=True)
            keys_file.write_text("\n".join(keys) + "\n", encoding="utf-8")

            def run(*argv: str, before: object = None) -> None:
                both = io.StringIO()  # stdout and stderr interleaved, as on a terminal
                code = main(list(argv), backend=backend, out=both, err=both, sleep=time.sleep)
                shown = [a.replace(str(REPO) + "/", "") for a in argv]
                transcript.append("$ teacopy " + " ".join(shlex.quote(a) for a in shown))
                transcript.append(both.getvalue().replace(str(REPO) + "/", "").rstrip("\n"))
                transcript.append(f"# exit {code}" if code else "")

            run("estimate", "--objects", str(len(keys)), "--object-size", "1.2MB")
            run(
                "start",
                "--source-bucket",
                SOURCE,
                "--keys-file",
                str(keys_file),
                "--dest-bucket",
                dest,
                "--dest-prefix",
                "mur/",
                "--name",
                "mur-january",
                "--watch",
                "--interval",
                "0.3",
            )
            run("report", "mur-january", "--html", str(OUT / "mur-january.html"))
            for key in missing:  # the DAAC publishes the late granules
                source.put_object(Bucket=SOURCE, Key=key, Body=rng.randbytes(800_000))
            run("retry-failed", "mur-january", "--name", "mur-january-retry", "--watch", "--interval", "0.3")
    text = "\n".join(transcript)
    (OUT / "transcript.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    if screenshot(OUT / "mur-january.html", OUT / "report.png"):
        print(f"\nscreenshot: {OUT / 'report.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=REPO / "cdk.out" / "TeacopyStack.template.json")
    raise SystemExit(main_session(parser.parse_args().template))
