// Gets an access token by the authorization-code grant with PKCE (S256),
// as a public client, with the user's side scripted by `browser.mjs`.
//
//   node code_pkce.mjs '{"issuer": "...", "client_id": "...", "redirect_uri": "...",
//                        "resource": "...", "scope": "...", "login": "..."}'
//
// Prints the token endpoint's JSON response on stdout. Exit status 2 with a
// message on stderr when a step fails.

import { createHash, randomBytes } from "node:crypto";

import { authorize } from "./browser.mjs";

const request = JSON.parse(process.argv[2] ?? "{}");
for (const key of ["issuer", "client_id", "redirect_uri", "resource", "scope", "login"]) {
  if (!request[key]) {
    console.error(`code_pkce.mjs: missing "${key}" in the request JSON`);
    process.exit(2);
  }
}

async function json(response, what) {
  const text = await response.text();
  if (!response.ok) throw new Error(`${what}: HTTP ${response.status}: ${text}`);
  return JSON.parse(text);
}

try {
  const metadata = await json(await fetch(`${request.issuer}/.well-known/openid-configuration`), "metadata");
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const authorization = new URL(metadata.authorization_endpoint);
  authorization.search = new URLSearchParams({
    response_type: "code",
    client_id: request.client_id,
    redirect_uri: request.redirect_uri,
    scope: request.scope,
    resource: request.resource,
    state: randomBytes(8).toString("hex"),
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  const redirect = await authorize(authorization, { login: request.login, redirectUri: request.redirect_uri });
  const code = redirect.searchParams.get("code");
  if (!code) throw new Error(`authorization refused: ${redirect.search}`);
  const token = await json(
    await fetch(metadata.token_endpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code,
        redirect_uri: request.redirect_uri,
        client_id: request.client_id,
        code_verifier: verifier,
        resource: request.resource,
      }).toString(),
    }),
    "token",
  );
  process.stdout.write(JSON.stringify(token) + "\n");
} catch (e) {
  console.error(`code_pkce.mjs: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}
