"""Keel's exceptions. Every one has a stable ``code`` and a message that says what to do.

::

    KeelError
    ├── UsageError                 a developer mistake; fix the code or configuration
    │   ├── ConfigurationError     bad settings, unknown model string, missing API key
    │   ├── ToolDefinitionError    a @tool function Keel cannot describe to a model
    │   └── MissingExtraError      an optional dependency is not installed
    ├── ModelError                 a model provider failed; carries retry semantics
    │   ├── ModelHTTPError         the provider answered with an error status
    │   ├── ModelTimeoutError      no answer in time (retryable)
    │   ├── ModelConnectionError   could not reach the provider (retryable)
    │   ├── ModelResponseError     the provider's answer could not be understood
    │   ├── CircuitOpenError       the model's circuit breaker is open: not even tried
    │   ├── RateLimitedError       a rate limit of Keel's own refused the call: not even tried
    │   └── AllModelsFailedError   every model of a fallback chain failed (keeps each cause)
    ├── StoreError                 the journal store failed
    │   ├── RunNotFoundError       no run with that id
    │   ├── JournalConflictError   another writer appended to the run first
    │   ├── RunLeasedError         another process is advancing the run right now
    │   ├── LeaseLostError         this process's lease was taken over; it must stop
    │   ├── ThreadChangedError     the thread got messages after a new run read its history
    │   └── RunExistsError         a run was already created with that idempotency key
    ├── ThreadBusyError            a run of the thread has not ended (policy "reject")
    ├── RunFailedError             raised by ``RunResult.raise_for_status()``
    └── RunNotCompletedError       ``RunResult.output`` of a run that did not complete

Run failures (a tool raising, a limit reached, invalid output) are not raised out of
``Runtime.run``: they end the run with a status and a reason, recorded in the journal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keel._core.messages import Attempt

__all__ = [
    "AllModelsFailedError",
    "CircuitOpenError",
    "ConfigurationError",
    "JournalConflictError",
    "KeelError",
    "LeaseLostError",
    "MissingExtraError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelResponseError",
    "ModelTimeoutError",
    "RateLimitedError",
    "RunExistsError",
    "RunFailedError",
    "RunLeasedError",
    "RunNotCompletedError",
    "RunNotFoundError",
    "StoreError",
    "ThreadBusyError",
    "ThreadChangedError",
    "ToolDefinitionError",
    "UsageError",
]


class KeelError(Exception):
    """Base of every Keel exception."""

    code: str = "keel_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(KeelError):
    """The code or configuration using Keel is wrong."""

    code = "usage_error"


class ConfigurationError(UsageError, ValueError):
    """Settings or arguments are missing or invalid (also a ``ValueError``)."""

    code = "configuration_error"


class ToolDefinitionError(UsageError):
    """A function cannot be turned into a tool."""

    code = "tool_definition_error"


class MissingExtraError(UsageError):
    """An optional dependency is needed."""

    code = "missing_extra"

    def __init__(self, *, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package; install it with: "
            f"pip install 'keel-runtime[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ModelError(KeelError):
    """A model call failed.

    ``retryable`` says whether the same request may succeed if sent again, and ``retry_after``
    (seconds) is the provider's own hint when it gave one.
    """

    code = "model_error"

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.retryable = retryable
        self.retry_after = retry_after
        #: Every try made before giving up, when resilience wrappers were in play.
        self.attempts: tuple[Attempt, ...] = ()


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error status."""

    code = "model_http_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        model: str = "",
        retryable: bool | None = None,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        if retryable is None:
            retryable = status in (408, 409, 429) or status >= 500
        super().__init__(message, model=model, retryable=retryable, retry_after=retry_after)
        self.status = status
        self.body = body
        self.code = {
            400: "model_bad_request",
            401: "model_authentication",
            403: "model_permission_denied",
            404: "model_not_found",
            413: "model_request_too_large",
            429: "model_rate_limited",
        }.get(status, "model_server_error" if status >= 500 else "model_http_error")


class ModelTimeoutError(ModelError):
    """The provider did not answer within the timeout."""

    code = "model_timeout"

    def __init__(self, message: str, *, model: str = "") -> None:
        super().__init__(message, model=model, retryable=True)


class ModelConnectionError(ModelError):
    """The provider could not be reached, or the connection broke mid-answer."""

    code = "model_connection_error"

    def __init__(self, message: str, *, model: str = "") -> None:
        super().__init__(message, model=model, retryable=True)


class ModelResponseError(ModelError):
    """The provider's answer was malformed or incomplete."""

    code = "model_response_error"

    def __init__(self, message: str, *, model: str = "", retryable: bool = True) -> None:
        super().__init__(message, model=model, retryable=retryable)


class CircuitOpenError(ModelError):
    """The model was not called: its circuit breaker is open after repeated failures."""

    code = "circuit_open"

    def __init__(self, model: str, *, retry_in_s: float) -> None:
        super().__init__(
            f"model '{model}' was not called: its circuit breaker is open after repeated "
            f"failures, and lets a trial call through in {retry_in_s:.1f}s; configure a "
            "fallback model to keep answering meanwhile",
            model=model,
            retryable=False,
            retry_after=retry_in_s,
        )
        self.retry_in_s = retry_in_s


class RateLimitedError(ModelError):
    """The model was not called: one of Keel's own rate limits (``keel.resilience.RateLimit``)
    had no room for the call, after waiting as long as the limit allows.

    ``bucket`` names the limit's bucket (``model:openai:gpt-4o``), ``retry_after_s`` when it
    will have room (``None``: never, the request is larger than the bucket), and ``on_limit``
    what the limit asks for. With ``on_limit="pause"`` the error is ``retryable`` (the run
    should pause and go on later; no retry wrapper resends it at once); with ``"wait"`` the
    bounded wait is over and the call fails.
    """

    code = "rate_limited"

    def __init__(
        self,
        model: str,
        *,
        bucket: str,
        retry_after_s: float | None,
        on_limit: str,
        reason: str = "",
    ) -> None:
        why = reason or (
            "the request is larger than the bucket"
            if retry_after_s is None
            else f"it is empty and has room again in {retry_after_s:.1f}s"
        )
        super().__init__(
            f"model '{model}' was not called: rate limit bucket '{bucket}' refused it "
            f"(on_limit={on_limit!r}): {why}; raise the limit, or let the run pause and go on "
            "later",
            model=model,
            retryable=on_limit == "pause" and retry_after_s is not None,
            retry_after=retry_after_s,
        )
        self.bucket = bucket
        self.retry_after_s = retry_after_s
        self.on_limit = on_limit


class AllModelsFailedError(ModelError):
    """Every model of a fallback chain failed; ``errors`` keeps each one's error, in order."""

    code = "all_models_failed"

    def __init__(self, errors: Sequence[ModelError]) -> None:
        causes = "; ".join(f"{e.model or '?'}: [{e.code}] {e.message}" for e in errors)
        super().__init__(
            f"all {len(errors)} models failed: {causes}",
            model=errors[-1].model if errors else "",
            retryable=any(e.retryable for e in errors),
        )
        self.errors = tuple(errors)


class StoreError(KeelError):
    """The journal store failed."""

    code = "store_error"


class RunNotFoundError(StoreError):
    """No run has that id."""

    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id '{run_id}'; list runs with: keel runs list")
        self.run_id = run_id


class JournalConflictError(StoreError):
    """An append expected a journal position that another writer has already moved past."""

    code = "journal_conflict"

    def __init__(self, run_id: str, *, expected: int, actual: int) -> None:
        super().__init__(
            f"run '{run_id}' was advanced by another writer: expected to append after event "
            f"{expected}, but the journal already ends at event {actual}"
        )
        self.run_id = run_id
        self.expected = expected
        self.actual = actual


class RunLeasedError(StoreError):
    """Another process holds the run's lease and is advancing it."""

    code = "run_leased"

    def __init__(self, run_id: str, *, owner: str, expires_at: float) -> None:
        super().__init__(
            f"run '{run_id}' is being advanced by {owner} (its lease runs until "
            f"{expires_at:.3f}); wait for it, or for the lease to expire if that process died"
        )
        self.run_id = run_id
        self.owner = owner
        self.expires_at = expires_at


class LeaseLostError(StoreError):
    """This writer's lease on a run is no longer current: another process took the run over."""

    code = "lease_lost"

    def __init__(self, run_id: str, *, token: int, current: int | None) -> None:
        now_held = "nobody holds it now" if current is None else f"the current token is {current}"
        super().__init__(
            f"the lease on run '{run_id}' with fencing token {token} is no longer current "
            f"({now_held}); another process took the run over, so this one must stop"
        )
        self.run_id = run_id
        self.token = token
        self.current = current


class ThreadChangedError(StoreError):
    """A run was not started because its thread got new messages after the run read the
    thread's history; read it again and retry (the runtime does)."""

    code = "thread_changed"

    def __init__(self, thread_id: str, *, expected: int, actual: int) -> None:
        super().__init__(
            f"thread '{thread_id}' changed while a run was starting: its history was read up to "
            f"message {expected}, but the thread now ends at message {actual}; read it again"
        )
        self.thread_id = thread_id
        self.expected = expected
        self.actual = actual


class RunExistsError(StoreError):
    """A run was not created because an earlier one was created with the same idempotency key
    (within the same tenant): ``run_id`` is that run's, ``agent`` its agent's name.
    ``Runtime.submit`` answers with that run's id instead of raising this."""

    code = "run_exists"

    def __init__(
        self, idempotency_key: str, *, run_id: str, agent: str, tenant: str | None
    ) -> None:
        scope = "" if tenant is None else f" of tenant '{tenant}'"
        super().__init__(
            f"idempotency key '{idempotency_key}'{scope} was already used: it created run "
            f"{run_id} (agent '{agent}'); that run stands for this request"
        )
        self.idempotency_key = idempotency_key
        self.run_id = run_id
        self.agent = agent
        self.tenant = tenant


class ThreadBusyError(KeelError):
    """A new run was refused because a run of the same thread has not ended."""

    code = "thread_busy"

    def __init__(
        self, thread_id: str, *, active_run_id: str, status: str = "running", why: str = ""
    ) -> None:
        advice = why or (
            "wait for it, run with if_busy='queue' to wait automatically, or "
            "if_busy='interrupt' to cancel it"
        )
        super().__init__(f"thread '{thread_id}' is busy: run {active_run_id} is {status}; {advice}")
        self.thread_id = thread_id
        self.active_run_id = active_run_id
        self.status = status


class RunFailedError(KeelError):
    """A run did not complete; raised on request by ``RunResult.raise_for_status()``."""

    code = "run_failed"

    def __init__(self, message: str, *, run_id: str, status: str, reason_code: str | None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
        self.reason_code = reason_code


class RunNotCompletedError(KeelError):
    """The output of a run that did not complete was read: it has none."""

    code = "run_not_completed"

    def __init__(self, run_id: str, *, status: str, reason: str | None, how: str) -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(f"run {run_id} has no output: it is {status}{why}; {how}")
        self.run_id = run_id
        self.status = status
