// The official TypeScript SDK's OAuth client against an MCP server that
// wants a token, with none given: the SDK's own `authProvider` machinery
// (RFC 9728 and RFC 8414 discovery, a Client ID Metadata Document or
// Dynamic Client Registration, PKCE, RFC 8707 resource, code exchange,
// refresh). The only thing scripted here is the person in front of the
// browser: the sign-in and consent pages are answered by form POSTs.
//
//   node ts_oauth_client.mjs '<plan JSON>'
//
// Environment: MCP_URL (the endpoint); MERIDIAN_ADMIN_SECRET (only for a
// plan with "revoke"; never printed). The plan:
//   {"sdk": "v1" | "v2",                 // @modelcontextprotocol/sdk (default) or @modelcontextprotocol/client
//    "era": "legacy" | "2026-07-28",      // v2 only: initialize handshake or the pinned 2026 revision
//    "register": "cimd" | "dcr",
//    "cimd_url": "https://...",           // with "cimd": the client's metadata document
//    "redirect_uri": "http://127.0.0.1:PORT/callback",
//    "person": "e-007",                   // who signs in
//    "steps": [{"op": "list_tools"}, {"op": "call_tool", "name": "...", "arguments": {...}}],
//    "revoke": {"url": ".../admin/revoke", "person": "e-007"}}   // optional, after the steps
// Prints one JSON object on stdout:
//   {"client_id", "registered", "sign_in": {"sign_in_page", "consent_page", "state_returned", "iss"},
//    "protocolVersion", "steps": [{"op", "ok", "result" | "error"}],
//    "after_revoke": {"call": {"ok", "error"}, "reauth": "AUTHORIZED" | "REDIRECT" | error},
//    "token_requests": [{"grant_type", "status", "error"}]}
// Exit status: 0 when the plan ran, 2 on a usage or sign-in error (stderr).

const plan = JSON.parse(process.argv[2] ?? "{}");
const v2 = plan.sdk === "v2";
const { Client, StreamableHTTPClientTransport, auth, UnauthorizedError } = v2
  ? await import("@modelcontextprotocol/client")
  : {
      ...(await import("@modelcontextprotocol/sdk/client/index.js")),
      ...(await import("@modelcontextprotocol/sdk/client/streamableHttp.js")),
      ...(await import("@modelcontextprotocol/sdk/client/auth.js")),
    };
const mode = plan.era && plan.era !== "legacy" ? { pin: plan.era } : "legacy";
const newClient = () => (v2 ? new Client(clientInfo, { versionNegotiation: { mode } }) : new Client(clientInfo));
const url = process.env.MCP_URL;
if (!url || !["cimd", "dcr"].includes(plan.register) || !plan.person || !plan.redirect_uri) {
  console.error("usage: MCP_URL=... node ts_oauth_client.mjs '{\"register\":\"dcr\",\"person\":\"e-007\",\"redirect_uri\":\"http://127.0.0.1:1/callback\",\"steps\":[...]}'");
  process.exit(2);
}

// Every request the SDK sends to the token endpoint, and its answer.
const tokenRequests = [];
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  const body = init?.body;
  if (String(input).endsWith("/token") && body) {
    const grantType = new URLSearchParams(String(body)).get("grant_type");
    const copy = response.clone();
    const answer = await copy.json().catch(() => ({}));
    tokenRequests.push({ grant_type: grantType, status: response.status, error: answer.error ?? null });
  }
  return response;
}

/** An in-memory OAuthClientProvider, the shape the SDK documents. */
class MemoryProvider {
  constructor() {
    this._state = crypto.randomUUID();
    this.authorizationUrl = undefined;
  }
  get redirectUrl() {
    return plan.redirect_uri;
  }
  get clientMetadataUrl() {
    return plan.register === "cimd" ? plan.cimd_url : undefined;
  }
  get clientMetadata() {
    return {
      client_name: "Cortex e2e (TypeScript SDK)",
      redirect_uris: [plan.redirect_uri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    return this._state;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  redirectToAuthorization(authorizationUrl) {
    this.authorizationUrl = new URL(authorizationUrl);
  }
  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }
  codeVerifier() {
    return this._verifier;
  }
  saveDiscoveryState(state) {
    this._discovery = state;
  }
  discoveryState() {
    return this._discovery;
  }
  invalidateCredentials(scope) {
    if (scope === "all" || scope === "tokens") this._tokens = undefined;
    if (scope === "all" || scope === "client") this._client = undefined;
  }
}

function requestField(page, what) {
  const match = page.match(/name="request" value="([^"]+)"/);
  if (!match) throw new Error(`no sign-in form on the ${what} page: ${page.slice(0, 300)}`);
  return match[1];
}

async function postForm(target, fields) {
  return fetch(target, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
    redirect: "manual",
  });
}

/** The person at the browser: picks `plan.person`, then allows. Returns the code. */
async function signIn(provider) {
  const start = provider.authorizationUrl;
  const page = await fetch(start, { redirect: "manual" });
  const signInPage = await page.text();
  if (page.status !== 200) throw new Error(`sign-in page: HTTP ${page.status}: ${signInPage.slice(0, 300)}`);
  const consent = await postForm(new URL("/authorize/person", start), {
    request: requestField(signInPage, "sign-in"),
    person: plan.person,
  });
  const consentPage = await consent.text();
  const back = await postForm(new URL("/authorize/consent", start), {
    request: requestField(consentPage, "consent"),
    decision: "allow",
  });
  const location = back.headers.get("location");
  if (back.status !== 303 || !location) throw new Error(`consent: HTTP ${back.status}`);
  const returned = new URL(location);
  if (`${returned.origin}${returned.pathname}` !== new URL(plan.redirect_uri).origin + new URL(plan.redirect_uri).pathname) {
    throw new Error(`sent back to ${returned.origin}${returned.pathname}, not the redirect URI`);
  }
  const code = returned.searchParams.get("code");
  if (!code) throw new Error(`no code: ${returned.searchParams.get("error_description")}`);
  return {
    code,
    report: {
      sign_in_page: {
        lists_person: signInPage.includes(`id="person-${plan.person}"`),
        client_name: (signInPage.match(/id="client-name">([^<]*)</) ?? [])[1] ?? null,
      },
      consent_page: {
        client_name: (consentPage.match(/id="client-name">([^<]*)</) ?? [])[1] ?? null,
        scopes: [...consentPage.matchAll(/<li><code>([^<]+)<\/code>/g)].map((m) => m[1]),
      },
      state_returned: returned.searchParams.get("state") === provider.state(),
      iss: returned.searchParams.get("iss"),
      authorize_params: {
        resource: start.searchParams.get("resource"),
        code_challenge_method: start.searchParams.get("code_challenge_method"),
        client_id: start.searchParams.get("client_id"),
      },
    },
  };
}

function describeError(e) {
  const error = { message: e instanceof Error ? e.message : String(e), name: e?.constructor?.name };
  if (e && typeof e === "object" && "code" in e) error.code = e.code;
  return error;
}

async function runStep(client, step) {
  switch (step.op) {
    case "list_tools":
      return client.listTools();
    case "call_tool":
      return client.callTool({ name: step.name, arguments: step.arguments ?? {} });
    default:
      throw new Error(`unknown op ${JSON.stringify(step.op)}`);
  }
}

const clientInfo = { name: "cortex-e2e-ts-oauth", version: "0.1.0" };
const provider = new MemoryProvider();
const transport = () => new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: recordingFetch });

let out;
try {
  // 1. No token: the SDK meets the 401, discovers, registers, and sends the user to sign in.
  const first = transport();
  try {
    await newClient().connect(first);
    throw new Error("connected without signing in");
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  if (!provider.authorizationUrl) throw new Error("the SDK never asked to open a browser");
  // 2. The person signs in; the SDK exchanges the code.
  const { code, report } = await signIn(provider);
  // v2 checks the RFC 9207 `iss` of the response itself; v1 ignores it.
  await first.finishAuth(code, report.iss ?? undefined);
  // 3. Connected with the token.
  const client = newClient();
  const connected = transport();
  await client.connect(connected);
  const steps = [];
  for (const step of plan.steps ?? []) {
    try {
      steps.push({ op: step.op, ok: true, result: await runStep(client, step) });
    } catch (e) {
      steps.push({ op: step.op, ok: false, error: describeError(e) });
    }
  }
  out = {
    client_id: provider.clientInformation()?.client_id ?? null,
    registered: plan.register,
    sign_in: report,
    protocolVersion: (v2 ? client.getNegotiatedProtocolVersion() : connected.protocolVersion) ?? null,
    steps,
  };
  // 4. Optionally: the operator revokes the person; the next calls fail and
  //    the SDK's own refresh is refused.
  if (plan.revoke) {
    const revoked = await fetch(plan.revoke.url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${process.env.MERIDIAN_ADMIN_SECRET ?? ""}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ person: plan.revoke.person }).toString(),
    });
    if (!revoked.ok) throw new Error(`revoking: HTTP ${revoked.status}`);
    const deadline = Date.now() + 30_000;
    let call;
    for (;;) {
      try {
        await client.listTools();
        call = { ok: true };
      } catch (e) {
        call = { ok: false, error: describeError(e) };
      }
      if (!call.ok || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    let reauth;
    try {
      reauth = await auth(provider, { serverUrl: new URL(url), fetchFn: recordingFetch });
    } catch (e) {
      reauth = describeError(e);
    }
    out.after_revoke = { call, reauth };
  }
  out.token_requests = tokenRequests;
  await client.close().catch(() => {});
} catch (e) {
  console.error(`ts_oauth_client: ${describeError(e).message}`);
  process.exit(2);
}
// Exit only once the answer is flushed (a pipe cuts it at 64 KiB otherwise).
process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
