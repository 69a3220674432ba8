"""Operations: a CloudWatch dashboard, alarms, and optional SNS notifications.

Alarms:

- **executions failed**: the copy state machine's ``ExecutionsFailed`` + ``ExecutionsTimedOut``
  (AWS/States) summed over 5 minutes is at least 1;
- **TEA authentication failures**: the Credentials function's ``TeaAuthFailures`` metric (EMF,
  ``lambdas/observability/metrics.py``: a fetch/refresh that failed with EdlTokenRejected, i.e. the EDL token
  in the token secret expired or was revoked) is at least 1 over 5 minutes. Every run fails until
  someone puts a new token, so this one deserves a notification.

Notifications (``cdk.json`` → ``teacopy``): ``alarm_topic_arn`` adds an existing SNS topic as the
alarm and OK action (its topic policy must let ``cloudwatch.amazonaws.com`` publish); ``alarm_email`` creates a
topic (KMS-encrypted with a customer managed key that CloudWatch may use, TLS enforced, and a topic policy that
lets CloudWatch alarms of this account publish) with an email subscription (confirm the email AWS sends). Neither:
the alarms still show on the dashboard and in the console.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.observability import metrics as m

from ..config import TeacopyConfig

PERIOD = Duration.minutes(5)


def app_metric(name: str, service: str, statistic: str = "Sum", label: str | None = None) -> cw.Metric:
    """A metric the Lambdas publish with EMF (namespace and ``service`` dimension: lambdas/observability/metrics.py)."""
    return cw.Metric(
        namespace=m.NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service},
        statistic=statistic,
        period=PERIOD,
        label=label or name,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: TeacopyConfig,
        state_machine: sfn.IStateMachine,
        functions: Sequence[tuple[str, lambda_.IFunction]],
    ) -> None:
        super().__init__(scope, construct_id)
        stack_name = Stack.of(self).stack_name

        executions_failed = cw.MathExpression(
            expression="FILL(failed, 0) + FILL(timedOut, 0)",
            using_metrics={
                "failed": state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                "timedOut": state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
            },
            label="executions failed or timed out",
            period=PERIOD,
        )
        self.executions_failed_alarm = cw.Alarm(
            self,
            "ExecutionsFailedAlarm",
            alarm_description=f"{stack_name}: a teacopy copy execution failed or timed out. Open the execution "
            "(its error names the cause) and runs/<execution name>/report.html in the staging bucket.",
            metric=executions_failed,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.tea_auth_alarm = cw.Alarm(
            self,
            "TeaAuthFailuresAlarm",
            alarm_description=f"{stack_name}: TEA rejected the Earthdata Login token (expired or revoked; EDL tokens "
            "last 60 days). Generate a new token at https://urs.earthdata.nasa.gov/profile and put it into the "
            f"token secret {config.token_secret_name} (aws secretsmanager put-secret-value).",
            metric=app_metric(m.TEA_AUTH_FAILURES, m.SERVICE_CREDENTIALS),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self.alarms = [self.executions_failed_alarm, self.tea_auth_alarm]

        self.topics: list[sns.ITopic] = []
        if config.alarm_topic_arn:
            self.topics.append(sns.Topic.from_topic_arn(self, "AlarmTopicImported", config.alarm_topic_arn))
        if config.alarm_email:
            self.topics.append(self._email_topic(config.alarm_email))
        for alarm in self.alarms:
            for topic in self.topics:
                alarm.add_alarm_action(cw_actions.SnsAction(topic))
                alarm.add_ok_action(cw_actions.SnsAction(topic))

        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(6))
        self.dashboard.add_widgets(*self._widgets(state_machine, functions))

    def _email_topic(self, email: str) -> sns.Topic:
        # CloudWatch cannot publish to a topic encrypted with the AWS managed aws/sns key: a customer
        # managed key (rotated) whose policy lets CloudWatch use it.
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="teacopy alarm notifications (SNS topic encryption)",
            enable_key_rotation=True,
        )
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="teacopy alarms",
            master_key=key,
            enforce_ssl=True,
        )
        # enforce_ssl gives the topic a policy of its own, which replaces SNS's default policy: without this
        # statement it holds only the TLS Deny and CloudWatch may not publish (no alarm e-mail is ever sent).
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic

    def _widgets(
        self, state_machine: sfn.IStateMachine, functions: Sequence[tuple[str, lambda_.IFunction]]
    ) -> list[cw.IWidget]:
        copy, creds = m.SERVICE_COPY, m.SERVICE_CREDENTIALS
        header = cw.TextWidget(
            markdown=(
                "# teacopy\n"
                "Copy executions, objects and bytes copied, TEA (Earthdata credentials) requests, latency and "
                "errors, credential refreshes. Per-run reports: `runs/<execution name>/report.html` in the "
                "staging bucket, or `teacopy report <execution>`."
            ),
            width=16,
            height=3,
        )
        alarms = cw.AlarmStatusWidget(alarms=self.alarms, title="Alarms", width=8, height=3)
        executions = cw.GraphWidget(
            title="Executions",
            left=[
                state_machine.metric_started(period=PERIOD, statistic="Sum", label="started"),
                state_machine.metric_succeeded(period=PERIOD, statistic="Sum", label="succeeded"),
                state_machine.metric_failed(period=PERIOD, statistic="Sum", label="failed"),
                state_machine.metric_timed_out(period=PERIOD, statistic="Sum", label="timed out"),
                app_metric(
                    m.SCHEDULED_RUNS_SKIPPED, m.SERVICE_PLAN, label="skipped (previous scheduled run still running)"
                ),
            ],
            width=8,
        )
        objects = cw.GraphWidget(
            title="Objects",
            left=[
                app_metric(m.OBJECTS_COPIED, copy, label="copied"),
                app_metric(m.OBJECTS_SKIPPED, copy, label="skipped"),
                app_metric(m.OBJECTS_FAILED, copy, label="failed"),
            ],
            width=8,
        )
        data = cw.GraphWidget(
            title="Bytes copied (per 5 min)",
            left=[app_metric(m.BYTES_COPIED, copy, label="bytes")],
            width=8,
        )
        tea = cw.GraphWidget(
            title="TEA requests",
            left=[
                app_metric(m.TEA_REQUESTS, creds, label="requests"),
                app_metric(m.TEA_ERRORS, creds, label="errors"),
                app_metric(m.TEA_AUTH_FAILURES, creds, label="EDL token rejected"),
            ],
            width=8,
        )
        latency = cw.GraphWidget(
            title="TEA latency (ms)",
            left=[
                app_metric(m.TEA_LATENCY, creds, statistic="p50", label="p50"),
                app_metric(m.TEA_LATENCY, creds, statistic="p90", label="p90"),
                app_metric(m.TEA_LATENCY, creds, statistic="Maximum", label="max"),
            ],
            width=8,
        )
        refreshes = cw.GraphWidget(
            title="Credential refreshes",
            left=[
                app_metric(m.CREDENTIAL_REFRESHES, creds, label="fetched from TEA"),
                app_metric(m.COALESCED_REFRESHES, creds, label="served from the cache (coalesced)"),
            ],
            width=8,
        )
        lambda_errors = cw.GraphWidget(
            title="Lambda errors and throttles",
            left=[fn.metric_errors(period=PERIOD, label=f"{name} errors") for name, fn in functions]
            + [fn.metric_throttles(period=PERIOD, label=f"{name} throttles") for name, fn in functions],
            width=12,
        )
        durations = cw.GraphWidget(
            title="Lambda duration p90 (ms)",
            left=[fn.metric_duration(period=PERIOD, statistic="p90", label=name) for name, fn in functions],
            width=12,
        )
        rows = [
            cw.Row(header, alarms),
            cw.Row(executions, objects, data),
            cw.Row(tea, latency, refreshes),
            cw.Row(lambda_errors, durations),
        ]
        return [cast(cw.IWidget, row) for row in rows]  # a Row is an IWidget (jsii types miss it)
