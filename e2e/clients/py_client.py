"""Drives the official Python MCP SDK (`mcp` on PyPI) against a Streamable HTTP endpoint.

    python py_client.py '<plan JSON>'

Environment: MCP_URL (the endpoint), MCP_TOKENS (a JSON object of named bearer
tokens; never printed). The plan has the same shape as for ts_client.mjs:
    {"era": "legacy" | "2026-07-28", "sessions": [{"token": "<name>", "steps": [{"op": "list_tools"}, ...]}]}
Prints one JSON object on stdout:
    {"sessions": [{"token", "protocolVersion", "steps": [{"op", "ok", "result" | "error"}]}]}.
A failing step is recorded, not fatal: the Rust test decides what is expected.
Exit status: 0 when the plan ran, 2 on a usage or connection error (message on stderr).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def dump(value: Any) -> Any:
    """Pydantic models to wire-shaped JSON (camelCase aliases, no unset fields)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


async def run_step(client: Client, step: dict[str, Any]) -> Any:
    op = step.get("op")
    if op == "list_tools":
        return await client.list_tools()
    if op == "call_tool":
        return await client.call_tool(step["name"], step.get("arguments") or {})
    if op == "read_resource":
        return await client.read_resource(step["uri"])
    if op == "get_prompt":
        return await client.get_prompt(step["name"], step.get("arguments") or {})
    if op == "list_prompts":
        return await client.list_prompts()
    if op == "list_resource_templates":
        return await client.list_resource_templates()
    raise ValueError(f"unknown op {op!r}; see the plan format at the top of py_client.py")


def describe(error: BaseException) -> dict[str, Any]:
    if isinstance(error, MCPError):
        out: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.data is not None:
            out["data"] = error.data
        return out
    return {"message": f"{type(error).__name__}: {error}"}


async def run_session(url: str, era: str, name: str, token: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    results: list[dict[str, Any]] = []
    async with http, Client(streamable_http_client(url, http_client=http), mode=era, cache=None) as client:
        for step in steps:
            try:
                results.append({"op": step.get("op"), "ok": True, "result": dump(await run_step(client, step))})
            except Exception as error:  # recorded for the Rust test to judge
                results.append({"op": step.get("op"), "ok": False, "error": describe(error)})
        version = client.protocol_version
    return {"token": name, "protocolVersion": version, "steps": results}


async def main() -> int:
    plan = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
    url = os.environ.get("MCP_URL")
    tokens = json.loads(os.environ.get("MCP_TOKENS") or "{}")
    if not url or not isinstance(plan.get("sessions"), list):
        print("usage: MCP_URL=... MCP_TOKENS='{\"name\": \"...\"}' python py_client.py '{\"sessions\": [...]}'", file=sys.stderr)
        return 2
    era = plan.get("era") or "legacy"
    sessions = []
    for session in plan["sessions"]:
        name = session.get("token")
        try:
            token = tokens[name]
            sessions.append(await run_session(url, era, name, token, session.get("steps") or []))
        except Exception as error:
            print(f"session {name}: cannot connect to {url}: {describe(error)['message']}", file=sys.stderr)
            return 2
    print(json.dumps({"sessions": sessions}))
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
