// The user's side of linking an account, headless: opens `start` (the
// gateway's `/link/<server>/start?ticket=...`, or any authorization URL),
// continues the gateway's confirmation page, follows redirects with a
// cookie jar, signs in as `login` on
// oidc-provider's login form, confirms its consent form, and stops at the
// redirect to `redirect` (the gateway's callback) without following it.
//
//   node consent.mjs '{"start": "...", "login": "alice-t", "redirect": "http://127.0.0.1:<p>/link/tracker/callback"}'
//
// Prints `{"callback": "<the redirect URL>", "cookie": "<Cookie header value>"}`
// (the cookies collected on the way, e.g. the gateway's browser binding).
// Exit status 2 with a message on stderr when a step fails.

import { authorize, cookieHeader } from "./browser.mjs";

const request = JSON.parse(process.argv[2] ?? "{}");
for (const key of ["start", "login", "redirect"]) {
  if (!request[key]) {
    console.error(`consent.mjs: missing "${key}" in the request JSON`);
    process.exit(2);
  }
}
try {
  const jar = new Map();
  const callback = await authorize(request.start, { login: request.login, redirectUri: request.redirect, jar });
  process.stdout.write(JSON.stringify({ callback: callback.href, cookie: cookieHeader(jar) }) + "\n");
} catch (e) {
  console.error(`consent.mjs: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}
