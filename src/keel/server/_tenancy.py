"""Who sees what: tenants never see each other's runs, threads, events or decisions.

A tenant's threads live in a namespace of their own: the client's thread ``customer-42`` of
tenant ``acme`` is the store's thread ``acme/customer-42``, so two tenants may use the same
thread name without sharing a conversation or queueing behind each other. The API shows
clients their own names. A run of another tenant answers exactly like a run that does not
exist (404), so ids reveal nothing. Without API keys (the local operator on loopback), names
are used as they are and every run is visible.
"""

from __future__ import annotations

from keel.errors import RunNotFoundError
from keel.ports import RunRecord
from keel.server._auth import Principal
from keel.server._errors import ApiError
from keel.server._openai_threads import keel_thread
from keel.server._state import ServerState

__all__ = ["client_thread", "run_not_found", "store_thread", "visible", "visible_run"]


def store_thread(principal: Principal, thread: str) -> str:
    """The store's name of the client's ``thread``: the same on every route, the
    OpenAI-compatible endpoint's included."""
    return keel_thread(thread, principal)


def client_thread(principal: Principal, thread_id: str) -> str:
    """The client's name of the store's ``thread_id``."""
    if principal.tenant is None:
        return thread_id
    return thread_id.removeprefix(f"{principal.tenant}/")


def visible(principal: Principal, record: RunRecord) -> bool:
    """Whether ``principal`` may see the run."""
    return principal.local or record.tenant == principal.tenant


def run_not_found(run_id: str) -> ApiError:
    """The answer for a run that does not exist, or is another tenant's: the same."""
    return ApiError(404, "run_not_found", f"there is no run {run_id}", field="run_id")


async def visible_run(state: ServerState, principal: Principal, run_id: str) -> RunRecord:
    """The run's summary if ``principal`` may see it; else 404, as for a missing run."""
    try:
        record = await state.runtime.get_run(run_id)
    except RunNotFoundError:
        raise run_not_found(run_id) from None
    if not visible(principal, record):
        raise run_not_found(run_id)
    return record
