"""The official Python MCP SDK's OAuth client against a server that wants a token, with none given.

    python py_oauth_client.py '<plan JSON>'

The SDK's own `OAuthClientProvider` does the work (RFC 9728 and RFC 8414
discovery, a Client ID Metadata Document or Dynamic Client Registration,
PKCE, RFC 8707 resource, state and RFC 9207 `iss` checks, code exchange).
Only the person in front of the browser is scripted: `redirect_handler`
answers the sign-in and consent pages with form POSTs.

Environment: MCP_URL (the endpoint). The plan (as for ts_oauth_client.mjs):
    {"register": "cimd" | "dcr", "cimd_url": "https://...", "redirect_uri": "http://127.0.0.1:PORT/callback",
     "person": "e-007", "era": "legacy" | "2026-07-28",
     "steps": [{"op": "list_tools"}, {"op": "call_tool", "name": "...", "arguments": {...}}]}
Prints one JSON object on stdout:
    {"client_id", "registered", "sign_in": {"sign_in_page", "consent_page", "iss", "authorize_params"},
     "protocolVersion", "steps": [{"op", "ok", "result" | "error"}]}
Exit status: 0 when the plan ran, 2 on a usage or sign-in error (message on stderr).
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPError


class MemoryStorage:
    """The SDK's `TokenStorage` protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def request_field(page: str, what: str) -> str:
    match = re.search(r'name="request" value="([^"]+)"', page)
    if not match:
        raise RuntimeError(f"no sign-in form on the {what} page: {page[:300]}")
    return match.group(1)


def client_name(page: str) -> str | None:
    match = re.search(r'id="client-name">([^<]*)<', page)
    return match.group(1) if match else None


class Person:
    """The person at the browser: signs in as `person` and allows."""

    def __init__(self, person: str) -> None:
        self.person = person
        self.result: AuthorizationCodeResult | None = None
        self.report: dict[str, Any] = {}

    async def redirect_handler(self, authorization_url: str) -> None:
        query = parse_qs(urlparse(authorization_url).query)
        async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as http:
            page = await http.get(authorization_url)
            if page.status_code != 200:
                raise RuntimeError(f"sign-in page: HTTP {page.status_code}: {page.text[:300]}")
            consent = await http.post(
                urljoin(authorization_url, "/authorize/person"),
                data={"request": request_field(page.text, "sign-in"), "person": self.person},
            )
            back = await http.post(
                urljoin(authorization_url, "/authorize/consent"),
                data={"request": request_field(consent.text, "consent"), "decision": "allow"},
            )
        location = back.headers.get("location")
        if back.status_code != 303 or not location:
            raise RuntimeError(f"consent: HTTP {back.status_code}")
        returned = parse_qs(urlparse(location).query)
        if "code" not in returned:
            raise RuntimeError(f"no code: {returned.get('error_description')}")
        first = lambda values: values[0] if values else None  # noqa: E731
        self.result = AuthorizationCodeResult(
            code=returned["code"][0], state=first(returned.get("state", [])), iss=first(returned.get("iss", []))
        )
        self.report = {
            "sign_in_page": {
                "lists_person": f'id="person-{self.person}"' in page.text,
                "client_name": client_name(page.text),
            },
            "consent_page": {
                "client_name": client_name(consent.text),
                "scopes": re.findall(r"<li><code>([^<]+)</code>", consent.text),
            },
            "state_returned": self.result.state is not None and self.result.state == first(query.get("state", [])),
            "iss": self.result.iss,
            "authorize_params": {
                "resource": first(query.get("resource", [])),
                "code_challenge_method": first(query.get("code_challenge_method", [])),
                "client_id": first(query.get("client_id", [])),
            },
        }

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("the browser never came back")
        return self.result


def dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


async def run_step(client: Client, step: dict[str, Any]) -> Any:
    op = step.get("op")
    if op == "list_tools":
        return await client.list_tools()
    if op == "call_tool":
        return await client.call_tool(step["name"], step.get("arguments") or {})
    raise ValueError(f"unknown op {op!r}")


def describe(error: BaseException) -> dict[str, Any]:
    if isinstance(error, MCPError):
        return {"code": error.code, "message": error.message}
    return {"message": f"{type(error).__name__}: {error}"}


async def main() -> int:
    plan = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
    url = os.environ.get("MCP_URL")
    if not url or plan.get("register") not in ("cimd", "dcr") or not plan.get("person") or not plan.get("redirect_uri"):
        print(
            "usage: MCP_URL=... python py_oauth_client.py "
            "'{\"register\": \"dcr\", \"person\": \"e-007\", \"redirect_uri\": \"http://127.0.0.1:1/callback\"}'",
            file=sys.stderr,
        )
        return 2
    storage = MemoryStorage()
    person = Person(plan["person"])
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="Cortex e2e (Python SDK)",
            redirect_uris=[plan["redirect_uri"]],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
        client_metadata_url=plan.get("cimd_url") if plan["register"] == "cimd" else None,
    )
    steps: list[dict[str, Any]] = []
    try:
        http = create_mcp_http_client(auth=provider)
        era = plan.get("era") or "legacy"
        async with http, Client(streamable_http_client(url, http_client=http), mode=era, cache=None) as client:
            for step in plan.get("steps") or []:
                try:
                    steps.append({"op": step.get("op"), "ok": True, "result": dump(await run_step(client, step))})
                except Exception as error:  # recorded for the Rust test to judge
                    steps.append({"op": step.get("op"), "ok": False, "error": describe(error)})
            version = client.protocol_version
    except Exception as error:
        print(f"py_oauth_client: {describe(error)['message']}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "client_id": storage.client.client_id if storage.client else None,
                "registered": plan["register"],
                "sign_in": person.report,
                "protocolVersion": version,
                "steps": steps,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
