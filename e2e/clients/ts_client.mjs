// Drives the official TypeScript MCP SDK against a Streamable HTTP endpoint.
//
//   node ts_client.mjs '<plan JSON>'
//
// Environment: MCP_URL (the endpoint), MCP_TOKEN (sent as a bearer token;
// never printed). The plan:
//   {"sdk": "v1" | "v2",            // @modelcontextprotocol/sdk or @modelcontextprotocol/client
//    "era": "legacy" | "2026-07-28", // v2 only: initialize handshake or a pinned 2026 revision
//    "steps": [{"op": "list_tools"}, {"op": "call_tool", "name": "...", "arguments": {...}},
//              {"op": "read_resource", "uri": "..."}, {"op": "get_prompt", "name": "...", "arguments": {...}},
//              {"op": "list_prompts"}, {"op": "list_resource_templates"}]}
// Prints one JSON object on stdout: {"protocolVersion", "steps": [{"op", "ok", "result" | "error"}]}.
// A failing step is recorded, not fatal: the Rust test decides what is expected.
// Exit status: 0 when the plan ran (whatever the steps returned), 2 on a
// usage or connection error (message on stderr).

const plan = JSON.parse(process.argv[2] ?? "{}");
const url = process.env.MCP_URL;
const token = process.env.MCP_TOKEN;
if (!url || !token || !Array.isArray(plan.steps)) {
  console.error("usage: MCP_URL=... MCP_TOKEN=... node ts_client.mjs '{\"sdk\":\"v1\",\"steps\":[...]}'");
  process.exit(2);
}

const headers = { Authorization: `Bearer ${token}` };
const clientInfo = { name: "cortex-e2e-ts", version: "0.1.0" };

async function connectV1() {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
  const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client(clientInfo);
  await client.connect(transport);
  return { client, protocolVersion: () => transport.protocolVersion };
}

async function connectV2() {
  const { Client, StreamableHTTPClientTransport } = await import("@modelcontextprotocol/client");
  const mode = plan.era && plan.era !== "legacy" ? { pin: plan.era } : "legacy";
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
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

let connected;
try {
  connected = plan.sdk === "v2" ? await connectV2() : await connectV1();
} catch (e) {
  console.error(`cannot connect to ${url}: ${describeError(e).message}`);
  process.exit(2);
}
const steps = [];
for (const step of plan.steps) {
  try {
    steps.push({ op: step.op, ok: true, result: await runStep(connected.client, step) });
  } catch (e) {
    steps.push({ op: step.op, ok: false, error: describeError(e) });
  }
}
const out = { protocolVersion: connected.protocolVersion() ?? null, steps };
await connected.client.close().catch(() => {});
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
