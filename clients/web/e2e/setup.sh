#!/usr/bin/env bash
# Installs what the browser tests (internal/e2e/browser*.go) need:
# Debian's chromium, Node.js with npm, and this directory's node_modules
# (playwright-core, ws and esbuild, pinned by package-lock.json). Safe to run again:
# it does only what is missing. `make test` (and so CI) runs it when
# something is missing; under CI=true the browser tests fail instead of
# skipping when something is missing.
set -euo pipefail
cd "$(dirname "$0")"

pkgs=()
[ -x /usr/bin/chromium ] || pkgs+=(chromium)
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
if [ "${#pkgs[@]}" -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "installing: ${pkgs[*]}"
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${pkgs[@]}"
fi

# npm ci reinstalls from the lock file; skip it when the installed tree
# already satisfies package.json.
if ! npm ls --silent >/dev/null 2>&1; then
	npm ci --no-audit --no-fund
fi
echo "browser tests ready: $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version)"
