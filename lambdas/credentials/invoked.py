"""TEA credentials for the Plan Lambda: it invokes the Credentials function (coalesced) and reads the cache."""

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.contracts import errors as named_errors
from lambdas.contracts.errors import ConfigurationError, InvalidInput, TeacopyError, TeaUnavailable
from lambdas.contracts.models import DEFAULT_ENDPOINT, CredentialsRef, TeaCredentials
from lambdas.s3.codes import error_status, is_transient

logger = logging.getLogger(__name__)


class InvokedCredentials:
    """SourceClients for the Plan Lambda: credentials come from the Credentials function (invoked).

    The Plan never reads the EDL token nor calls TEA itself: it invokes the Credentials function
    (``{"action": "fetch"|"refresh", "run_id", "endpoint"?, "used_version"?}``), which uses the
    coalesced cache and lease of the bucket's TEA endpoint, then reads the version it got from that
    endpoint's cache secret, like a CopyBatch worker.
    """

    def __init__(
        self,
        lambda_client: Any,
        function_name: str,
        cache: Any,  # credentials.CredentialCache of the default endpoint, or endpoint name -> cache
        make_client: Callable[[TeaCredentials], Any],
        run_id: str | None,
        endpoint_for: Callable[[str], str] = lambda _bucket: DEFAULT_ENDPOINT,
    ) -> None:
        if not function_name:
            raise ConfigurationError("prefix sources need the Credentials function (TEACOPY_CREDENTIALS_FUNCTION)")
        self._lambda = lambda_client
        self._function = function_name
        self._cache_for: Callable[[str], Any] = cache if callable(cache) else (lambda _endpoint: cache)
        self._make_client = make_client
        self._run_id = run_id
        self._endpoint_for = endpoint_for
        self._refs: dict[str, CredentialsRef] = {}
        self._clients: dict[str, Any] = {}
        self.invocations = 0

    def __repr__(self) -> str:
        return f"InvokedCredentials(function={self._function!r})"

    def s3_for(self, bucket: str) -> Any:
        endpoint = self._endpoint_for(bucket)
        if endpoint not in self._refs:
            self._use(endpoint, self._invoke({"action": "fetch", **self._named(endpoint)}))
        return self._clients[endpoint]

    def refreshed(self, bucket: str) -> Any:
        endpoint = self._endpoint_for(bucket)
        ref = self._refs.get(endpoint)
        used = {"used_version": ref.version} if ref is not None else {}
        self._use(endpoint, self._invoke({"action": "refresh", **self._named(endpoint), **used}))
        return self._clients[endpoint]

    @staticmethod
    def _named(endpoint: str) -> dict[str, str]:
        return {} if endpoint == DEFAULT_ENDPOINT else {"endpoint": endpoint}

    def _use(self, endpoint: str, ref: CredentialsRef) -> None:
        self._refs[endpoint] = ref
        self._clients[endpoint] = self._make_client(self._cache_for(endpoint).get(ref.version))

    def _invoke(self, event: dict[str, Any]) -> CredentialsRef:
        if self._run_id:
            event = {**event, "run_id": self._run_id}
        self.invocations += 1
        try:
            response = self._lambda.invoke(
                FunctionName=self._function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
            )
        except ClientError as exc:
            code, status = error_status(exc)
            if is_transient(code, status) or code in ("TooManyRequestsException", "ResourceConflictException"):
                raise TeaUnavailable(f"could not invoke the Credentials function ({code}); retried") from None
            raise ConfigurationError(f"cannot invoke the Credentials function {self._function} ({code})") from None
        except BotoCoreError as exc:
            raise TeaUnavailable(f"could not invoke the Credentials function ({type(exc).__name__})") from None
        raw = response["Payload"].read()
        try:
            payload = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            payload = None
        if response.get("FunctionError"):
            error_type = str(payload.get("errorType", "")) if isinstance(payload, dict) else ""
            message = str(payload.get("errorMessage", ""))[:1000] if isinstance(payload, dict) else ""
            raise _named_error(error_type, message)
        return CredentialsRef.from_dict(payload, "credentials function answer")


def _named_error(error_type: str, message: str) -> TeacopyError:
    """Re-raise the Credentials function's named error under its own name (the workflow routes on it)."""
    cls = getattr(named_errors, error_type, None)
    if cls is InvalidInput:  # Plan sent a malformed request: a bug, not the operator's input
        return ConfigurationError(f"the Credentials function rejected Plan's request: {message[:300]}")
    if isinstance(cls, type) and issubclass(cls, TeacopyError):
        return cls(message)
    return TeaUnavailable(f"the Credentials function failed ({error_type or 'no error type'}): {message[:300]}")
