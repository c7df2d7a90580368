"""``openapi_tools``: one :class:`~keel.Tool` per operation of an OpenAPI 3 document."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

import httpx

from keel._tools import Tool
from keel.errors import ConfigurationError
from keel.openapi._calls import make_caller
from keel.openapi._document import OpenAPIDocument, load_document
from keel.openapi._operations import operations as all_operations
from keel.openapi._operations import select

__all__ = ["openapi_tools"]


def openapi_tools(
    document: OpenAPIDocument,
    *,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    headers_from_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    operations: Collection[str] | None = None,
    client: httpx.AsyncClient | None = None,
    timeout_s: float = 30.0,
    max_error_chars: int = 500,
) -> list[Tool]:
    """One tool per operation of an OpenAPI 3 document, calling the API over HTTP.

    Each tool is named by its ``operationId`` (mapped to a name model APIs accept, as
    :meth:`keel.Tool.from_schema` does) and takes the operation's path, query and header
    parameters as arguments, and its JSON request body as ``body``. GET and HEAD operations
    are ``side_effects="read"`` (safe to repeat); others ``"write"``. A response that is not
    2xx goes back to the model as the status and an excerpt of the body (``max_error_chars``).

    Args:
        document: A dict, a path to a JSON or YAML file, or an http(s) URL (fetched once,
            now). Local ``$ref`` s are followed; other files are not.
        base_url: Where the API is, e.g. ``https://api.example.com/v1``; the operation's
            path is appended. Never taken from the document, whose servers could point
            anywhere.
        headers: Headers sent with every request, e.g. ``{"Authorization": "Bearer ..."}``.
            The model never sees nor sets them, and their values are masked in what the API
            sends back.
        headers_from_env: Headers whose values are read from environment variables, e.g.
            ``{"Authorization": "PETSTORE_AUTH"}`` (the variable holds the whole value).
        environ: The environment to read them from (default ``os.environ``).
        operations: The ``operationId`` s to make tools of (default: all of them).
        client: An ``httpx.AsyncClient`` to send requests with (its connections are reused;
            you close it). By default each call opens and closes its own.
        timeout_s: The HTTP timeout of each request (and of fetching ``document``).
    """
    if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ("http", "https"):
        raise ConfigurationError(
            f"openapi_tools: base_url must be an http(s) URL like https://api.example.com, "
            f"got {base_url!r}"
        )
    if timeout_s <= 0 or max_error_chars < 1:
        raise ConfigurationError("openapi_tools: timeout_s and max_error_chars must be positive")
    settings = _headers(headers, headers_from_env, os.environ if environ is None else environ)
    loaded = load_document(document, timeout_s=timeout_s)
    chosen = select(all_operations(loaded, settings_headers=settings), operations)
    tools = []
    for operation in chosen:
        caller = make_caller(
            operation,
            base_url=base_url.rstrip("/"),
            headers=settings,
            client=client,
            timeout_s=timeout_s,
            max_error_chars=max_error_chars,
        )
        tools.append(
            Tool.from_schema(
                operation.operation_id,
                operation.description,
                operation.schema,
                caller,
                side_effects="read" if operation.reads_only else "write",
            )
        )
    return tools


def _headers(
    given: Mapping[str, str] | None,
    from_env: Mapping[str, str] | None,
    environ: Mapping[str, str],
) -> dict[str, str]:
    settings = dict(given or {})
    for header, variable in (from_env or {}).items():
        value = environ.get(variable)
        if not value:
            raise ConfigurationError(
                f"openapi_tools: the environment variable {variable} (for the {header} header) "
                "is not set; set it, or pass the header in headers="
            )
        settings[header] = value
    for header, value in settings.items():
        if not isinstance(header, str) or not isinstance(value, str):
            raise ConfigurationError(
                f"openapi_tools: headers must map names to text values; {header!r} does not"
            )
    return settings
