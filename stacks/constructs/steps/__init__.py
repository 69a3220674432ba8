"""One construct per workflow step: its function, environment, grants, cdk-nag acknowledgments, task(s), retries.

``CopyWorkflow`` (stacks/constructs/workflow.py) only wires the steps' tasks into the state machine.
"""
