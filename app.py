#!/usr/bin/env python3
"""CDK entry point (`cdk synth` runs `.venv/bin/python app.py`). Everything is built by ``build_app``."""

from stacks.teacopy_stack import build_app

build_app().synth()
