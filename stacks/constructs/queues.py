"""Queues the stack keeps: a dead-letter queue (14 days, TLS only, SQS-managed encryption)."""

from __future__ import annotations

from aws_cdk import Acknowledgment as Ack
from aws_cdk import Duration, Validations
from aws_cdk import aws_sqs as sqs
from constructs import Construct


def dead_letter_queue(scope: Construct, of_what: str) -> sqs.Queue:
    """``scope``'s ``DeadLetterQueue``: where ``of_what`` puts what it could not deliver after its retries."""
    queue = sqs.Queue(
        scope,
        "DeadLetterQueue",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )
    Validations.of(queue).acknowledge(
        Ack(
            id="AwsSolutions-SQS3",
            reason=f"This queue IS the dead-letter queue of {of_what}; a DLQ of a DLQ adds nothing.",
        )
    )
    return queue
