#!/usr/bin/env bash
# `make browser-test`: the HTML page in a real browser. Starts the
# cargo-built service twice on 127.0.0.1 (the sample table for WORD=the, and
# a 64-character WORD), then check.mjs drives Debian's chromium through
# playwright-core at desktop and phone widths: bars present and
# proportional, no CSP violation or console error, the accessibility tree
# still a table, no horizontal overflow; plus a self-test that a wrong style
# hash is caught. Screenshots: target/browser/*.png (paths printed).
# BROWSER_TEST_BIN=path tests another build (default: cargo build --locked).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

scripts/install.sh browser
bin="${BROWSER_TEST_BIN:-}"
if [[ -z "$bin" ]]; then
	cargo build --locked --quiet
	bin=target/debug/wordcount
fi
out=target/browser
rm -rf "$out" && mkdir -p "$out"

probe=(python3 scripts/image/probe.py)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
at_exit cleanup

urls=()
# serve WORD: one instance on free loopback ports; its URL is appended to urls.
serve() {
	local port admin
	read -r port admin < <("${probe[@]}" free-ports 2 | paste -sd' ')
	env -i PATH="$PATH" WORD="$1" PORT="$port" ADMIN_PORT="$admin" BIND_ADDRESS=127.0.0.1 LOG_FORMAT=text \
		"$bin" >>"$out/service.log" 2>&1 &
	pids+=($!)
	"${probe[@]}" wait "http://127.0.0.1:$admin/readyz" --timeout 20
	urls+=("http://127.0.0.1:$port/")
}
serve the
serve "$(printf 'w%.0s' {1..64})"

node scripts/browser/check.mjs "${urls[@]}" "$PWD/$out"
