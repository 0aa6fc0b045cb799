#!/usr/bin/env bash
# Installs what the browser tests (cmd/herald/browser_test.go) need:
# Debian's chromium and this directory's node_modules (playwright-core and
# ws, pinned by package-lock.json). Safe to run again: it does only what is
# missing. CI runs it before go test; under CI=true the browser tests fail
# instead of skipping when something is missing.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
fi

# npm ci reinstalls from the lock file; skip it when the installed tree
# already satisfies package.json.
if ! npm ls --silent >/dev/null 2>&1; then
	npm ci --no-audit --no-fund
fi
echo "browser tests ready: $(/usr/bin/chromium --version 2>/dev/null | head -1), node $(node --version)"
