// "Tracker": a third-party MCP server with its own authorization server, the
// way a SaaS ships one, for the tests of linked accounts.
//
//   node tracker.mjs '{"stateless": false}'
//
// Two loopback HTTP servers in one process:
// - the authorization server: oidc-provider (`provider.mjs`), distinct from
//   the gateway's issuer. The MCP endpoint is its one RFC 8707 resource
//   (scopes `tracker:read tracker:write`) with opaque access tokens, so the
//   MCP server can only check them by introspection; every client allowed
//   the `refresh_token` grant gets a refresh token; open registration,
//   introspection, revocation, and the dev login and consent forms (any
//   login name is the account id, e.g. `alice-t`, `bob-t`).
// - the MCP server: the official TypeScript SDK (`@modelcontextprotocol/sdk`)
//   `McpServer` over `StreamableHTTPServerTransport` at `/mcp`, in the SDK's
//   resource-server mode: `requireBearerAuth` (401 with
//   `WWW-Authenticate: Bearer ... resource_metadata="..."`) and
//   `mcpAuthMetadataRouter` (RFC 9728 metadata naming the authorization
//   server). Each token is introspected (RFC 7662) at the authorization
//   server, so a revoked one is refused at once. `"stateless": false` keeps
//   sessions (`Mcp-Session-Id`); `true` runs `sessionIdGenerator: undefined`,
//   a fresh server per request.
//
// Tools: `whoami` (the token's `sub` and client), `list_issues`
// (`readOnlyHint: true`), `create_issue` (a write) and `issue_counts`
// (`outputSchema` + `structuredContent`); issues are kept per `sub`.
//
// Static clients: `tracker-resource-server` (the MCP server's own, for
// introspection) and `tracker-test-app` (public, code + PKCE, redirect URI
// `http://127.0.0.1:9/callback`, never listened on).
//
// Test hooks on the authorization server, with `Authorization: Bearer <admin>`:
// `POST /_test/revoke` with a JSON body `{"sub": "..."}` destroys every grant
// of that account and the tokens issued under it; `GET /_test/tokens?sub=...`
// lists every access and refresh token value issued to it (so a test can
// search stored data for them).
//
// Once both listen it prints one line:
//   {"issuer": "http://127.0.0.1:<p>", "url": "http://127.0.0.1:<q>/mcp", "admin": "<secret>"}
// and runs until its stdin closes (the test process ended) or SIGTERM/SIGINT.

import { randomBytes, randomUUID, timingSafeEqual } from "node:crypto";

import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { InvalidTokenError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import { getOAuthProtectedResourceMetadataUrl, mcpAuthMetadataRouter } from "@modelcontextprotocol/sdk/server/auth/router.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

import { buildProvider, listen, origin, stopWithParent } from "./provider.mjs";

const config = JSON.parse(process.argv[2] ?? "{}");
const stateless = config.stateless === true;
const SCOPES = ["tracker:read", "tracker:write"];
const MAX_ISSUES_PER_USER = 100;
const MAX_SESSIONS = 1000;

// --- the authorization server ---------------------------------------------

const as = await listen(0);
const mcp = await listen(0);
const issuer = origin(as.server);
const url = `${origin(mcp.server)}/mcp`;
const introspector = { id: "tracker-resource-server", secret: randomBytes(24).toString("hex") };
const admin = randomBytes(24).toString("hex");

const provider = buildProvider(issuer, {
  resources: { [url]: SCOPES.join(" ") },
  tokenFormat: "opaque",
  refreshTokens: true,
  clients: [
    {
      client_id: introspector.id,
      client_secret: introspector.secret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
    {
      // A public client for tests that get a token themselves (code + PKCE).
      client_id: "tracker-test-app",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: ["http://127.0.0.1:9/callback"],
    },
  ],
});

// Every grant and every token value by account, for the test hooks.
const grants = new Map();
const tokens = new Map();
function remember(map, account, value) {
  if (!account) return;
  if (!map.has(account)) map.set(account, new Set());
  map.get(account).add(value);
}
provider.on("grant.saved", (grant) => remember(grants, grant.accountId, grant.jti));
// Opaque tokens: the value handed out is the id.
provider.on("access_token.saved", (token) => remember(tokens, token.accountId, token.jti));
provider.on("refresh_token.saved", (token) => remember(tokens, token.accountId, token.jti));

async function revokeAccount(sub) {
  let revoked = 0;
  for (const id of grants.get(sub) ?? []) {
    await provider.AccessToken.revokeByGrantId(id);
    await provider.RefreshToken.revokeByGrantId(id);
    await provider.AuthorizationCode.revokeByGrantId(id);
    const grant = await provider.Grant.find(id);
    if (grant) await grant.destroy();
    revoked += 1;
  }
  grants.delete(sub);
  return revoked;
}

function sameSecret(given, expected) {
  const a = Buffer.from(given ?? "");
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

async function testHook(req, res) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const json = (status, body) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  if (!sameSecret(req.headers.authorization, `Bearer ${admin}`)) return json(401, { error: "admin bearer required" });
  const hook = new URL(req.url, issuer);
  if (req.method === "GET" && hook.pathname === "/_test/tokens") {
    return json(200, { tokens: [...(tokens.get(hook.searchParams.get("sub")) ?? [])] });
  }
  if (req.method !== "POST" || hook.pathname !== "/_test/revoke") return json(404, { error: "no such test hook" });
  let sub;
  try {
    sub = JSON.parse(Buffer.concat(chunks).toString()).sub;
  } catch {
    return json(400, { error: 'body must be JSON {"sub": "..."}' });
  }
  if (typeof sub !== "string" || !sub) return json(400, { error: 'body must be JSON {"sub": "..."}' });
  return json(200, { revoked: await revokeAccount(sub) });
}

const callback = provider.callback();
as.route((req, res) => (req.url.startsWith("/_test/") ? testHook(req, res) : callback(req, res)));

// --- the MCP server ---------------------------------------------------------

const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();

// RFC 7662: the token's state as the authorization server knows it now.
const verifier = {
  async verifyAccessToken(token) {
    const response = await fetch(discovery.introspection_endpoint, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${introspector.id}:${introspector.secret}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ token, token_type_hint: "access_token" }).toString(),
    });
    if (!response.ok) throw new Error(`introspection answered HTTP ${response.status}`);
    const info = await response.json();
    if (!info.active) throw new InvalidTokenError("The token is not active (expired or revoked)");
    if (info.token_type && info.token_type !== "Bearer") throw new InvalidTokenError("Not an access token");
    return {
      token,
      clientId: info.client_id,
      scopes: (info.scope ?? "").split(" ").filter(Boolean),
      expiresAt: info.exp,
      resource: info.aud ? new URL(Array.isArray(info.aud) ? info.aud[0] : info.aud) : undefined,
      extra: { sub: info.sub },
    };
  },
};

const issues = new Map();
function issuesOf(sub) {
  if (!issues.has(sub)) issues.set(sub, []);
  return issues.get(sub);
}
const text = (value) => ({ content: [{ type: "text", text: JSON.stringify(value) }] });

function needScope(authInfo, scope) {
  if (!authInfo.scopes.includes(scope)) {
    return { content: [{ type: "text", text: `this token lacks the scope ${scope}` }], isError: true };
  }
  return undefined;
}

function trackerServer() {
  const server = new McpServer({ name: "tracker", version: "1.0.0" });
  server.registerTool(
    "whoami",
    {
      description: "The account this token belongs to.",
      annotations: { readOnlyHint: true },
    },
    async ({ authInfo }) => text({ sub: authInfo.extra.sub, client_id: authInfo.clientId }),
  );
  server.registerTool(
    "list_issues",
    {
      description: "Your issues, newest first.",
      inputSchema: { state: z.enum(["open", "closed", "all"]).optional() },
      annotations: { readOnlyHint: true },
    },
    async ({ state = "all" }, { authInfo }) =>
      needScope(authInfo, "tracker:read") ??
      text(issuesOf(authInfo.extra.sub).filter((i) => state === "all" || i.state === state).toReversed()),
  );
  server.registerTool(
    "create_issue",
    {
      description: "Files an issue under your account.",
      inputSchema: { title: z.string().min(1).max(200) },
      annotations: { readOnlyHint: false, destructiveHint: false },
    },
    async ({ title }, { authInfo }) => {
      const refused = needScope(authInfo, "tracker:write");
      if (refused) return refused;
      const mine = issuesOf(authInfo.extra.sub);
      if (mine.length >= MAX_ISSUES_PER_USER) {
        return { content: [{ type: "text", text: `at most ${MAX_ISSUES_PER_USER} issues per account` }], isError: true };
      }
      const issue = { id: `TRK-${mine.length + 1}`, title, state: "open" };
      mine.push(issue);
      return text(issue);
    },
  );
  server.registerTool(
    "issue_counts",
    {
      description: "How many of your issues are open and closed.",
      outputSchema: { owner: z.string(), open: z.number().int(), closed: z.number().int() },
      annotations: { readOnlyHint: true },
    },
    async ({ authInfo }) => {
      const refused = needScope(authInfo, "tracker:read");
      if (refused) return refused;
      const mine = issuesOf(authInfo.extra.sub);
      const counts = {
        owner: authInfo.extra.sub,
        open: mine.filter((i) => i.state === "open").length,
        closed: mine.filter((i) => i.state === "closed").length,
      };
      return { ...text(counts), structuredContent: counts };
    },
  );
  return server;
}

const app = createMcpExpressApp({ host: "127.0.0.1" });
app.use(
  mcpAuthMetadataRouter({
    oauthMetadata: discovery,
    resourceServerUrl: new URL(url),
    scopesSupported: SCOPES,
    resourceName: "Tracker",
  }),
);
const bearer = requireBearerAuth({
  verifier,
  resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(new URL(url)),
  expectedResource: new URL(url),
});

const sessions = new Map();

app.all("/mcp", bearer, async (req, res) => {
  if (stateless) {
    const server = trackerServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on("close", () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    return transport.handleRequest(req, res, req.body);
  }
  const id = req.headers["mcp-session-id"];
  if (id) {
    const transport = sessions.get(id);
    if (!transport) {
      return res.status(404).json({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null });
    }
    return transport.handleRequest(req, res, req.body);
  }
  if (req.method !== "POST" || !isInitializeRequest(req.body)) {
    return res.status(400).json({ jsonrpc: "2.0", error: { code: -32000, message: "Bad Request: no session id; initialize first" }, id: null });
  }
  if (sessions.size >= MAX_SESSIONS) {
    return res.status(503).json({ jsonrpc: "2.0", error: { code: -32000, message: "too many sessions" }, id: null });
  }
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    onsessioninitialized: (sid) => sessions.set(sid, transport),
  });
  transport.onclose = () => {
    if (transport.sessionId) sessions.delete(transport.sessionId);
  };
  await trackerServer().connect(transport);
  return transport.handleRequest(req, res, req.body);
});

mcp.route(app);
process.stdout.write(JSON.stringify({ issuer, url, admin }) + "\n");

stopWithParent(() => {
  for (const { server } of [as, mcp]) {
    server.close();
    server.closeAllConnections?.();
  }
  process.exit(0);
});
