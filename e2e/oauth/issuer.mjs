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
//   no `nbf`, RS256 with the key below).
// - clientCredentials and registration (open dynamic client registration).
// - PKCE: oidc-provider's default (S256, required for public clients).
// - devInteractions: oidc-provider's built-in login and consent forms (any
//   login name is accepted as the account id); `oauth/browser.mjs` submits them.
// - An RSA signing key and cookie keys generated at start: nothing persists.

import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";

import Provider, { errors } from "oidc-provider";

const config = JSON.parse(process.argv[2] ?? "{}");
const resources = config.resources ?? {};
if (Object.keys(resources).length === 0) {
  console.error(`usage: node issuer.mjs '{"port":0,"resources":{"http://127.0.0.1:3213/mcp":"mcp:crm:read"},"clients":[]}'`);
  process.exit(2);
}
const resourceScopes = new Set(Object.values(resources).flatMap((s) => s.split(" ")).filter(Boolean));

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: randomBytes(8).toString("hex"), use: "sig", alg: "RS256" };

// The issuer must name the real port, so the HTTP server is bound first and
// the provider is built for the address it got.
function listen(port) {
  return new Promise((resolve, reject) => {
    let handler = (_req, res) => res.writeHead(503).end();
    const server = createServer((req, res) => handler(req, res));
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve({ server, route: (h) => (handler = h) }));
  });
}

const { server, route } = await listen(config.port ?? 0);
const issuer = `http://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, {
  clients: config.clients ?? [],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  scopes: ["openid", "offline_access", ...resourceScopes],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo(_ctx, resourceIndicator) {
        const scope = resources[resourceIndicator];
        if (scope === undefined) throw new errors.InvalidTarget();
        return { scope, accessTokenFormat: "jwt" };
      },
    },
  },
});
route(provider.callback());
process.stdout.write(JSON.stringify({ issuer }) + "\n");

const stop = () => {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
};
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
