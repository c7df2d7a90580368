"""Tools from an OpenAPI 3 document: one tool per operation, calling the API over HTTP.

::

    tools = openapi_tools(
        "https://petstore.example.com/openapi.json",
        base_url="https://petstore.example.com",
        headers_from_env={"X-API-Key": "PETSTORE_KEY"},
        operations=["getPet", "createPet"],
    )
    agent = Agent(name="pets", model="openai:gpt-4o-mini", tools=tools)

Authentication comes from settings (``headers=`` or ``headers_from_env=``), never from the
model, and is masked in what the API sends back, so it reaches neither the model nor the
journal. Reading YAML documents needs ``pyyaml`` (``pip install 'keel-runtime[openapi]'``).
"""

from __future__ import annotations

from keel.openapi._document import OpenAPIDocument
from keel.openapi._tools import openapi_tools

__all__ = ["OpenAPIDocument", "openapi_tools"]
