// The official TypeScript SDK's own OAuth client (`@modelcontextprotocol/sdk`
// v1, `OAuthClientProvider` + `auth`) against an MCP server it holds no
// token for, whatever the authorization server (oidc-provider in the tests;
// `ts_oauth_client.mjs` is the same client for Meridian's own sign-in
// pages). The SDK does every OAuth step itself: the 401 challenge, RFC 9728
// protected-resource metadata, authorization-server metadata, dynamic client
// registration, the PKCE authorization request and the token request. The
// only part played here is the user's: `oauth/browser.mjs` opens the
// authorization URL the SDK hands over, signs in as `login` and consents.
//
//   MCP_URL=http://127.0.0.1:3213/mcp node ts_oauth_generic.mjs '{"login": "e-098", "call": {"name": "...", "arguments": {}}}'
//
// Optional plan fields: "cimd_url" (the client's metadata document, an https
// URL: the SDK then uses it as its client id where the authorization server
// supports that, instead of registering) and "redirect_uri" (default
// http://127.0.0.1:9/oauth/callback, never listened on).
//
// Prints one JSON object on stdout:
//   {"trace": [{"method", "url", "status"}],   // every HTTP exchange the SDK made (no headers, no bodies)
//    "clientId": "...",                        // what dynamic registration returned
//    "grantedScope": "...",                    // the token response's `scope` (never the token)
//    "protocolVersion": "...", "tools": ["..."], "call": {...}}
// Exit status 2 with a message on stderr when a step fails.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

import { authorize } from "../oauth/browser.mjs";

const url = process.env.MCP_URL;
const plan = JSON.parse(process.argv[2] ?? "{}");
if (!url || !plan.login || !plan.call?.name) {
  console.error(`usage: MCP_URL=... node ts_oauth_generic.mjs '{"login":"e-012","call":{"name":"...","arguments":{}}}'`);
  process.exit(2);
}

// Never listened on: the headless browser stops at the redirect and hands
// the code over.
const REDIRECT_URL = plan.redirect_uri ?? "http://127.0.0.1:9/oauth/callback";

/** An in-memory `OAuthClientProvider` whose "browser" is `oauth/browser.mjs`. */
class HeadlessProvider {
  constructor(login) {
    this.login = login;
    this.code = undefined;
  }
  get redirectUrl() {
    return REDIRECT_URL;
  }
  get clientMetadataUrl() {
    return plan.cimd_url;
  }
  get clientMetadata() {
    return {
      client_name: "cortex-e2e-ts-oauth",
      redirect_uris: [REDIRECT_URL],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(client) {
    this.client = client;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  async redirectToAuthorization(authorizationUrl) {
    const redirect = await authorize(authorizationUrl, { login: this.login, redirectUri: REDIRECT_URL });
    this.code = redirect.searchParams.get("code") ?? undefined;
    if (!this.code) throw new Error(`the authorization server refused: ${redirect.search}`);
  }
}

const trace = [];
const tracingFetch = async (input, init) => {
  const response = await fetch(input, init);
  const target = new URL(input instanceof Request ? input.url : String(input));
  trace.push({ method: init?.method ?? (input instanceof Request ? input.method : "GET"), url: `${target.origin}${target.pathname}`, status: response.status });
  return response;
};

const provider = new HeadlessProvider(plan.login);
const clientInfo = { name: "cortex-e2e-ts-oauth", version: "0.1.0" };
const transport = () => new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: tracingFetch });

try {
  const first = new Client(clientInfo);
  try {
    await first.connect(transport());
    throw new Error("connected without authorization: the server never answered 401");
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  if (!provider.code) throw new Error("the SDK did not start an authorization request after the 401");
  const authorizing = transport();
  await authorizing.finishAuth(provider.code);

  const client = new Client(clientInfo);
  const connected = transport();
  await client.connect(connected);
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  const call = await client.callTool({ name: plan.call.name, arguments: plan.call.arguments ?? {} });
  await client.close();
  process.stdout.write(
    JSON.stringify({
      trace,
      clientId: provider.client?.client_id ?? null,
      grantedScope: provider.saved?.scope ?? null,
      protocolVersion: connected.protocolVersion ?? null,
      tools,
      call,
    }) + "\n",
  );
  process.exit(0);
} catch (e) {
  console.error(`ts_oauth_generic.mjs: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  console.error(`trace so far: ${JSON.stringify(trace)}`);
  process.exit(2);
}
