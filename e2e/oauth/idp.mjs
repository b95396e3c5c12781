// A company identity provider behind the gateway's OAuth facade: the npm
// package `oidc-provider` (pinned in package.json) with one confidential
// client, the gateway's, shaped either like Microsoft Entra ID or like a
// generic OpenID Connect provider.
//
//   node idp.mjs '<config JSON>'
//
// Config:
//   {"shape": "entra" | "oidc",
//    "client_id": "cortex-gateway", "client_secret": "...",
//    "redirect_uri": "http://127.0.0.1:<gateway>/oauth/callback",
//    "scopes": ["mcp:conformance:read"],         // the Cortex scopes it knows
//    "audience": "https://api.cortex.example"}   // "oidc" only: its API's resource
//
// Shaped like Entra:
// - no dynamic client registration;
// - any RFC 8707 `resource` parameter is refused with an AADSTS9010010-style
//   `invalid_target` (at the authorization and the token endpoint);
// - the API's scopes are `api://<client_id>/<scope>`; its access tokens
//   (JWTs for the audience `api://<client_id>`, granted without `resource`)
//   carry the bare names in `scp` and the user's `oid`;
// - tokens name the user by `oid` (`oid-<login>`) and `preferred_username`
//   (`<login>@corp.example`) besides `sub`.
// Shaped like a generic provider: open registration, `resource` names its
// API (`audience`), whose JWT access tokens carry the scopes in `scope`.
//
// Both: oidc-provider's own login and consent forms (`devInteractions`, any
// login name is the account; `browser.mjs` submits them), refresh tokens for
// the gateway's client, revocation, RS256 keys generated at start.
//
// Once listening it prints one line, `{"issuer": "http://127.0.0.1:<port>"}`,
// and runs until its stdin closes (the test process ended) or SIGTERM/SIGINT.

import { generateKeyPairSync, randomBytes } from "node:crypto";

import Provider, { errors } from "oidc-provider";

import { listen, origin, stopWithParent } from "./provider.mjs";

const config = JSON.parse(process.argv[2] ?? "{}");
const entra = config.shape === "entra";
if (!["entra", "oidc"].includes(config.shape) || !config.client_id || !config.client_secret || !config.redirect_uri) {
  console.error(`usage: node idp.mjs '{"shape":"entra","client_id":"cortex-gateway","client_secret":"...","redirect_uri":"http://127.0.0.1:3213/oauth/callback","scopes":["crm.read"]}'`);
  process.exit(2);
}

const api = entra ? `api://${config.client_id}` : config.audience;
const prefix = entra ? `${api}/` : "";
const apiScopes = (config.scopes ?? []).map((s) => `${prefix}${s}`);

const { server, route } = await listen(0);
const issuer = origin(server);
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: randomBytes(8).toString("hex"), use: "sig", alg: "RS256" };

const aadsts = () =>
  new errors.InvalidTarget("AADSTS9010010: The resource parameter provided in the request doesn't match with the requested scopes.");

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: [config.redirect_uri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  scopes: ["openid", "offline_access", ...apiScopes],
  claims: { openid: ["sub"], profile: ["name", "preferred_username", "oid"], email: ["email"] },
  conformIdTokenClaims: false,
  issueRefreshToken: (_ctx, client) => client.grantTypeAllowed("refresh_token"),
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, oid: `oid-${id}`, preferred_username: `${id}@corp.example`, email: `${id}@corp.example`, name: id };
      },
    };
  },
  async extraTokenClaims(_ctx, token) {
    if (!entra || token.kind !== "AccessToken") return undefined;
    const scp = [...(token.scope ?? "").split(" ")].filter((s) => s.startsWith(prefix)).map((s) => s.slice(prefix.length));
    return { scp: scp.join(" "), oid: `oid-${token.accountId}` };
  },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: !entra },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Entra grants its API's tokens from the scopes alone.
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? (entra ? api : undefined),
      useGrantedResource: async () => true,
      async getResourceServerInfo(ctx, resourceIndicator) {
        // What the client sent, not the default filled in for it.
        const sent = { ...(ctx.query ?? {}), ...(ctx.oidc?.body ?? {}) };
        if (entra && sent.resource !== undefined) throw aadsts();
        if (resourceIndicator !== api) throw new errors.InvalidTarget();
        return { scope: apiScopes.join(" "), audience: api, accessTokenFormat: "jwt" };
      },
    },
  },
});
route(provider.callback());
process.stdout.write(JSON.stringify({ issuer }) + "\n");

stopWithParent(() => {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
});
