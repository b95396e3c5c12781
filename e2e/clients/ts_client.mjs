// Drives the official TypeScript MCP SDK against a Streamable HTTP endpoint.
//
//   node ts_client.mjs '<plan JSON>'
//
// Environment: MCP_URL (the endpoint), MCP_TOKENS (a JSON object of named
// bearer tokens; never printed), and optionally MCP_STDIO_BRIDGE: the path of
// a `cortex-gateway` binary, to connect over stdio through
// `cortex-gateway stdio --url $MCP_URL` (the token in its CORTEX_TOKEN)
// instead of over HTTP. A bridged session with `"sign_in": true` instead of
// a token gives the bridge no token, so it signs in by itself. The plan, one
// connection per session:
//   {"sdk": "v1" | "v2",            // @modelcontextprotocol/sdk or @modelcontextprotocol/client
//    "era": "legacy" | "2026-07-28", // v2 only: initialize handshake or a pinned 2026 revision
//    "sessions": [{"token": "<name in MCP_TOKENS>" | "sign_in": true, "steps": [
//       {"op": "list_tools"}, {"op": "call_tool", "name": "...", "arguments": {...}},
//       {"op": "read_resource", "uri": "..."}, {"op": "get_prompt", "name": "...", "arguments": {...}},
//       {"op": "list_prompts"}, {"op": "list_resource_templates"}]}]}
// Prints one JSON object on stdout:
//   {"sessions": [{"token", "protocolVersion", "steps": [{"op", "ok", "result" | "error"}]}]}.
// A failing step is recorded, not fatal: the Rust test decides what is expected.
// Exit status: 0 when the plan ran (whatever the steps returned), 2 on a
// usage or connection error (message on stderr).

const plan = JSON.parse(process.argv[2] ?? "{}");
const url = process.env.MCP_URL;
const tokens = JSON.parse(process.env.MCP_TOKENS ?? "{}");
if (!url || !Array.isArray(plan.sessions)) {
  console.error("usage: MCP_URL=... MCP_TOKENS='{\"name\":\"...\"}' node ts_client.mjs '{\"sdk\":\"v1\",\"sessions\":[...]}'");
  process.exit(2);
}

const clientInfo = { name: "cortex-e2e-ts", version: "0.1.0" };

const bridge = process.env.MCP_STDIO_BRIDGE;

// The stdio transport's options: the bridge as a child process (with no
// token when `token` is null: the bridge then signs in).
function bridgeProcess(token) {
  const env = { ...process.env };
  delete env.CORTEX_TOKEN;
  delete env.CORTEX_BRIDGE_TOKEN;
  if (token !== null) env.CORTEX_TOKEN = token;
  return { command: bridge, args: ["stdio", "--url", url], env, stderr: "inherit" };
}

async function connectV1(token) {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
  let transport;
  if (bridge) {
    const { StdioClientTransport } = await import("@modelcontextprotocol/sdk/client/stdio.js");
    transport = new StdioClientTransport(bridgeProcess(token));
    // The stdio transport keeps no version; the client hands it over here.
    transport.setProtocolVersion = (version) => { transport.protocolVersion = version; };
  } else {
    const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
    const headers = { Authorization: `Bearer ${token}` };
    transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  }
  const client = new Client(clientInfo);
  await client.connect(transport);
  return { client, protocolVersion: () => transport.protocolVersion };
}

async function connectV2(token) {
  const { Client, StreamableHTTPClientTransport } = await import("@modelcontextprotocol/client");
  const mode = plan.era && plan.era !== "legacy" ? { pin: plan.era } : "legacy";
  let transport;
  if (bridge) {
    const { StdioClientTransport } = await import("@modelcontextprotocol/client/stdio");
    transport = new StdioClientTransport(bridgeProcess(token));
  } else {
    const headers = { Authorization: `Bearer ${token}` };
    transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  }
  const client = new Client(clientInfo, { versionNegotiation: { mode } });
  await client.connect(transport);
  return { client, protocolVersion: () => client.getNegotiatedProtocolVersion() };
}

function describeError(e) {
  const error = { message: e instanceof Error ? e.message : String(e) };
  if (e && typeof e === "object" && "code" in e) error.code = e.code;
  if (e && typeof e === "object" && "data" in e && e.data !== undefined) error.data = e.data;
  return error;
}

async function runStep(client, step) {
  switch (step.op) {
    case "list_tools":
      return client.listTools();
    case "call_tool":
      return client.callTool({ name: step.name, arguments: step.arguments ?? {} });
    case "read_resource":
      return client.readResource({ uri: step.uri });
    case "get_prompt":
      return client.getPrompt({ name: step.name, arguments: step.arguments ?? {} });
    case "list_prompts":
      return client.listPrompts();
    case "list_resource_templates":
      return client.listResourceTemplates();
    default:
      throw new Error(`unknown op ${JSON.stringify(step.op)}; see the plan format at the top of ts_client.mjs`);
  }
}

async function runSession(session) {
  const signIn = session.sign_in === true && Boolean(bridge);
  const token = signIn ? null : tokens[session.token];
  if (!signIn && !token) throw new Error(`no token named ${JSON.stringify(session.token)} in MCP_TOKENS`);
  const connected = plan.sdk === "v2" ? await connectV2(token) : await connectV1(token);
  const steps = [];
  for (const step of session.steps) {
    try {
      steps.push({ op: step.op, ok: true, result: await runStep(connected.client, step) });
    } catch (e) {
      steps.push({ op: step.op, ok: false, error: describeError(e) });
    }
  }
  const protocolVersion = connected.protocolVersion() ?? null;
  await connected.client.close().catch(() => {});
  return { token: session.token ?? null, protocolVersion, steps };
}

const sessions = [];
for (const session of plan.sessions) {
  try {
    sessions.push(await runSession(session));
  } catch (e) {
    console.error(`session ${session.token ?? "sign-in"}: cannot connect to ${url}: ${describeError(e).message}`);
    process.exit(2);
  }
}
// Exit only once the answer is flushed: on a pipe, exiting right after
// write() cuts the output at 64 KiB.
process.stdout.write(JSON.stringify({ sessions }) + "\n", () => process.exit(0));
