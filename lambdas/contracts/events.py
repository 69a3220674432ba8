"""The Credentials function's request and answer (FetchCredentials, RefreshCredentials, Plan's prefix listings).

Only references travel: ``{"version", "expiration"}`` per TEA endpoint, never the credentials themselves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lambdas.contracts.errors import InvalidInput
from lambdas.contracts.models import DEFAULT_ENDPOINT, CredentialsRef, EndpointName, credentials_for
from lambdas.contracts.validation import one_of, parse, rule_error

Action = Literal["fetch", "refresh"]
ACTIONS: tuple[str, ...] = get_args(Action)


def _present(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value):
        raise rule_error("must be a non-empty string when present")
    return value


class CredentialsRequest(BaseModel):
    """``{"action": "fetch"|"refresh", "run_id"?, ...}`` in one of three shapes:

    - ``{"action": "fetch", "endpoints": [names]}`` → ``{name: ref}`` (the workflow's FetchCredentials);
    - ``{"action": "refresh", "endpoint": name, "credentials": {name: ref}}`` → the same map with that
      endpoint's reference renewed (the map child's RefreshCredentials);
    - ``{"action": ..., "endpoint"?: name, "used_version"?: version}`` → one ref (Plan's prefix listings).

    ``used_version`` is the version the caller found expired; with ``credentials`` it is that map's entry
    for ``endpoint``.
    """

    model_config = ConfigDict(frozen=True, title="credentials request")

    action: Annotated[Action, BeforeValidator(one_of(ACTIONS))]
    run_id: Annotated[str | None, BeforeValidator(_present)] = None
    used_version: Annotated[str | None, BeforeValidator(_present)] = None
    endpoint: EndpointName = DEFAULT_ENDPOINT
    endpoints: tuple[EndpointName, ...] | None = None
    credentials: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise rule_error("must be an object with 'action'")
        return data

    @field_validator("used_version")
    @classmethod
    def _only_to_refresh(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("action") != "refresh":
            raise rule_error("is only allowed with action 'refresh'")
        return value

    @field_validator("endpoints", mode="before")
    @classmethod
    def _only_to_fetch(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and (info.data.get("action") != "fetch" or not isinstance(value, list) or not value):
            raise rule_error("is a non-empty list, only with action 'fetch'")
        if value is not None and not all(isinstance(name, str) for name in value):
            raise rule_error("must list names of configured TEA endpoints")
        return None if value is None else tuple(dict.fromkeys(value))

    @field_validator("credentials", mode="before")
    @classmethod
    def _the_state_map(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and (
            info.data.get("action") != "refresh" or not isinstance(value, dict) or info.data.get("used_version")
        ):
            raise rule_error("is the state's {endpoint: ref} map, only with action 'refresh'")
        return value

    @model_validator(mode="after")
    def _used_version_of_the_map(self) -> CredentialsRequest:
        if self.credentials is None:
            return self
        try:
            used = credentials_for(self.credentials, self.endpoint).version
        except InvalidInput as exc:
            raise rule_error(exc.rule, exc.field) from None
        return self.model_copy(update={"used_version": used})

    @classmethod
    def from_event(cls, event: Any) -> CredentialsRequest:
        return parse(_CREDENTIALS_REQUEST, event, whole="event")

    def answer(self, refs: dict[str, CredentialsRef]) -> dict[str, Any]:
        """The answer for the references served (one per endpoint asked), in the request's shape."""
        if self.endpoints is not None:
            return {name: refs[name].to_dict() for name in self.endpoints}
        ref = refs[self.endpoint]
        if self.credentials is not None:
            return {**self.credentials, self.endpoint: ref.to_dict()}
        return ref.to_dict()


# The answer: one reference, or the state's ``{endpoint name: reference}`` map (``$.credentials``).
CredentialsMap = dict[EndpointName, CredentialsRef]
CredentialsAnswer = CredentialsRef | CredentialsMap
CREDENTIALS_ANSWER: TypeAdapter[CredentialsAnswer] = TypeAdapter(
    Annotated[CredentialsAnswer, Field(description="one reference, or {endpoint name: reference}")]
)
_CREDENTIALS_REQUEST = TypeAdapter(CredentialsRequest)
