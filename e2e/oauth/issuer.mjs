// A throwaway OAuth 2.1 authorization server for the e2e tests: the npm
// package `oidc-provider` (pinned in package.json), configured the way an
// operator would set it up in front of an MCP gateway, and nothing more.
//
//   node issuer.mjs '<config JSON>'
//
// Config:
//   {"port": 0,                                   // loopback port; 0 picks a free one
//    "resources": {"<resource URI>": "<scopes>"}, // RFC 8707 resource servers, JWT access tokens
//    "clients": [{...client metadata...}]}        // static clients (e.g. client credentials)
//
// Once listening it prints one line on stdout, `{"issuer": "http://127.0.0.1:<port>"}`,
// and runs until its stdin closes (the test process ended) or SIGTERM/SIGINT.
//
// What is configured, and why:
// - resourceIndicators: each resource is a resource server whose access tokens
//   are JWTs (`accessTokenFormat: "jwt"`); everything else about the token is
//   oidc-provider's default (RFC 9068: `typ: at+jwt`, `aud` = the resource,
//   no `nbf`, RS256 with a key generated at start).
// - clientCredentials, registration (open dynamic client registration),
//   introspection and revocation (`provider.mjs` has the shared setup).
// - PKCE: oidc-provider's default (S256, required for public clients).
// - devInteractions: oidc-provider's built-in login and consent forms (any
//   login name is accepted as the account id); `oauth/browser.mjs` submits them.
// - An RSA signing key and cookie keys generated at start: nothing persists.

import { buildProvider, listen, origin, stopWithParent } from "./provider.mjs";

const config = JSON.parse(process.argv[2] ?? "{}");
if (Object.keys(config.resources ?? {}).length === 0) {
  console.error(`usage: node issuer.mjs '{"port":0,"resources":{"http://127.0.0.1:3213/mcp":"mcp:crm:read"},"clients":[]}'`);
  process.exit(2);
}

const { server, route } = await listen(config.port ?? 0);
const issuer = origin(server);
const provider = buildProvider(issuer, config);
route(provider.callback());
process.stdout.write(JSON.stringify({ issuer }) + "\n");

stopWithParent(() => {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
});
