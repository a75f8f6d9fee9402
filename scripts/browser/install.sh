#!/usr/bin/env bash
# Installs what `make browser-test` needs, checking versions, not presence:
#   apt: chromium (Debian's build, run headless) and nodejs (for Playwright).
#   npm: playwright-core, exact version from package-lock.json (`npm ci`),
#        into scripts/browser/node_modules; it drives /usr/bin/chromium and
#        downloads no browser of its own.
# Debian tracks Chromium's major releases in stable (security updates), and
# its mirrors drop superseded builds, so the pin is a minimum major, not a
# revision; the version used is printed by test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

readonly CHROMIUM_MIN_MAJOR=120 # CSP hashes for <style>, new headless mode
readonly NODE_MIN_MAJOR=20      # playwright-core 1.65's engines field

log() { printf 'browser install: %s\n' "$*" >&2; }
major() { sed -n 's/^[^0-9]*\([0-9][0-9]*\)\..*/\1/p' | head -n1; }

# shellcheck source=scripts/lib/apt.sh
source ../lib/apt.sh
apt_install_missing chromium nodejs

have=$(chromium --version 2>/dev/null | major)
if ((${have:-0} < CHROMIUM_MIN_MAJOR)); then
	log "chromium major ${have:-none} found, need >= $CHROMIUM_MIN_MAJOR"
	exit 1
fi
have=$(node --version 2>/dev/null | major)
if ((${have:-0} < NODE_MIN_MAJOR)); then
	log "node major ${have:-none} found, need >= $NODE_MIN_MAJOR (playwright-core)"
	exit 1
fi

want=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
have=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
if [[ "$have" != "$want" ]]; then
	log "npm ci: playwright-core $want (found: ${have:-none})"
	# --ignore-scripts: no install hook may fetch a browser or run code.
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi
