// A headless stand-in for the user's browser in an OAuth authorization-code
// flow: it opens the authorization URL, follows redirects with a cookie jar,
// submits each HTML POST form it is shown (the gateway's link confirmation
// is continued; oidc-provider's login form gets `login` and a password, its
// consent form is confirmed as is), sending the `Origin` of the page that
// showed the form as a browser does, and stops at the redirect to the
// client's `redirect_uri`.
//
//   import { authorize } from "./browser.mjs";
//   const redirect = await authorize(authorizationUrl, { login: "e-012", redirectUri });
//   redirect.searchParams.get("code");
//
// Pass `jar` (a Map) to see the cookies collected on the way, e.g. the
// client's own cookie set before it sent the browser to the server.

const MAX_STEPS = 20;

export function cookieHeader(jar) {
  return [...jar].map(([name, value]) => `${name}=${value}`).join("; ");
}

function keepCookies(jar, response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const at = pair.indexOf("=");
    if (at > 0) jar.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
  }
}

function decodeEntities(text) {
  return text
    .replaceAll("&amp;", "&")
    .replaceAll("&quot;", '"')
    .replaceAll("&#x2F;", "/")
    .replaceAll("&#39;", "'")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">");
}

function attribute(tag, name) {
  const match = tag.match(new RegExp(`\\s${name}="([^"]*)"`, "i"));
  return match ? decodeEntities(match[1]) : undefined;
}

// The first POST form of the page: its action and its fields, with `login`
// and `password` filled in.
function firstForm(html, login) {
  const form = html.match(/<form\b[^>]*method="post"[^>]*>([\s\S]*?)<\/form>/i);
  if (!form) return undefined;
  const action = attribute(form[0].slice(0, form[0].indexOf(">") + 1), "action");
  const fields = new URLSearchParams();
  for (const [input] of form[1].matchAll(/<input\b[^>]*>/gi)) {
    const name = attribute(input, "name");
    if (!name) continue;
    if (name === "login") fields.set(name, login);
    else if (name === "password") fields.set(name, "any-password");
    else fields.set(name, attribute(input, "value") ?? "");
  }
  return { action, fields };
}

/**
 * Runs the user's side of the authorization request at `authorizationUrl`
 * and returns the URL the authorization server redirected to (starting with
 * `redirectUri`, carrying `code` or `error`). Cookies go to `jar`.
 */
export async function authorize(authorizationUrl, { login, redirectUri, jar = new Map() }) {
  let url = new URL(authorizationUrl);
  let body;
  let origin;
  for (let step = 0; step < MAX_STEPS; step++) {
    const response = await fetch(url, {
      method: body ? "POST" : "GET",
      redirect: "manual",
      headers: {
        cookie: cookieHeader(jar),
        ...(body ? { "content-type": "application/x-www-form-urlencoded", origin } : {}),
      },
      body: body?.toString(),
    });
    keepCookies(jar, response);
    body = undefined;
    if (response.status >= 300 && response.status < 400) {
      const next = new URL(response.headers.get("location"), url);
      if (next.href.startsWith(redirectUri)) return next;
      url = next;
      continue;
    }
    const html = await response.text();
    const form = response.ok ? firstForm(html, login) : undefined;
    if (!form) {
      const text = html.replace(/<[^>]+>/g, " ").replace(/\s+/g, " ").trim().slice(0, 400);
      throw new Error(`the authorization server answered ${response.status} at ${url.pathname} with no form to submit: ${text}`);
    }
    origin = url.origin;
    url = new URL(form.action, url);
    body = form.fields;
  }
  throw new Error(`no redirect to ${redirectUri} after ${MAX_STEPS} steps (last at ${url.pathname})`);
}
