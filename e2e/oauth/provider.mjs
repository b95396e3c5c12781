// What the e2e authorization servers share: a loopback HTTP server bound
// before the provider exists (the issuer must name the real port), and
// oidc-provider (pinned in package.json) configured from a JSON object.
//
// Provider config:
//   {"resources": {"<resource URI>": "<scopes>"},  // RFC 8707 resource servers
//    "tokenFormat": "jwt" | "opaque",               // their access tokens; default "jwt"
//    "refreshTokens": false,                        // true: a refresh token for every client
//                                                   // allowed the refresh_token grant
//    "clients": [{...client metadata...}]}          // static clients
//
// Always on: client credentials, open dynamic client registration,
// introspection (RFC 7662), revocation (RFC 7009), PKCE (oidc-provider's
// default: S256, required for public clients) and oidc-provider's own
// login and consent forms (`devInteractions`: any login name is accepted
// as the account id; `browser.mjs` submits them). An RSA signing key and
// cookie keys are generated at start: nothing persists.

import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";

import Provider, { errors } from "oidc-provider";

/** Binds `port` (0: a free one) on 127.0.0.1; `route(handler)` sets what serves it. */
export function listen(port) {
  return new Promise((resolve, reject) => {
    let handler = (_req, res) => res.writeHead(503).end();
    const server = createServer((req, res) => handler(req, res));
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve({ server, route: (h) => (handler = h) }));
  });
}

/** The origin a listening server answers on. */
export function origin(server) {
  return `http://127.0.0.1:${server.address().port}`;
}

/** An oidc-provider for `issuer`, configured by `config` (see above). */
export function buildProvider(issuer, config) {
  const resources = config.resources ?? {};
  const resourceScopes = new Set(Object.values(resources).flatMap((s) => s.split(" ")).filter(Boolean));
  const accessTokenFormat = config.tokenFormat ?? "jwt";
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: "jwk" }), kid: randomBytes(8).toString("hex"), use: "sig", alg: "RS256" };
  return new Provider(issuer, {
    clients: config.clients ?? [],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString("hex")] },
    scopes: ["openid", "offline_access", ...resourceScopes],
    ...(config.refreshTokens ? { issueRefreshToken: (_ctx, client) => client.grantTypeAllowed("refresh_token") } : {}),
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      registration: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo(_ctx, resourceIndicator) {
          const scope = resources[resourceIndicator];
          if (scope === undefined) throw new errors.InvalidTarget();
          return { scope, accessTokenFormat };
        },
      },
    },
  });
}

/** Calls `stop` when stdin closes (the test process ended) or on SIGTERM/SIGINT. */
export function stopWithParent(stop) {
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.resume();
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
