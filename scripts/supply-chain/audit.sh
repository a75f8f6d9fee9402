#!/usr/bin/env bash
# Gate: cargo-audit, twice.
#   audit.sh lock  - Cargo.lock: what we resolve today.
#   audit.sh bin   - the cargo-auditable static release binary: what we ship.
#                    It carries its own dependency list (.dep-v0 section), so
#                    this also works on a binary pulled out of a released image.
# Advisory ignores come from deny.toml (one list for both tools). Warnings
# (unmaintained, unsound, yanked) fail too, matching the deny.toml policy.
set -euo pipefail
LOG_NAME="audit ${1:-}"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

mode="${1:-}"
readonly TRIPLE=x86_64-unknown-linux-gnu
BIN="${AUDIT_BIN:-target/$TRIPLE/release/wordcount}"

opts=(--color never --deny warnings)
if advisory_db; then
	# --no-fetch: the snapshot is all there is. Yanked status needs the
	# crates.io index, which cargo-deny already checks; skip it here.
	opts+=(--db "$ADVISORY_DB" --no-fetch --no-yanked)
	log "advisory database: offline snapshot $ADVISORY_SNAPSHOT"
else
	log "advisory database: live RustSec (fetched by cargo-audit)"
fi
while IFS= read -r id; do
	[[ -n "$id" ]] && opts+=(--ignore "$id")
done < <(python3 scripts/supply-chain/check-ignores.py --print-ids deny.toml)

has_audit_data() { readelf -S "$1" 2>/dev/null | grep -q '\.dep-v0'; }

case "$mode" in
lock)
	cargo audit "${opts[@]}" --file Cargo.lock ||
		die "Cargo.lock resolves a crate version with a RustSec advisory (see the Crate/ID/Solution lines above); upgrade it or ignore it in deny.toml with a reason and a revisit date"
	;;
bin)
	if [[ -z "${AUDIT_BIN:-}" ]]; then
		# Always (re)build: cargo knows whether the binary is current, and a
		# binary older than Cargo.lock would audit yesterday's tree. The image
		# engineer's `make static` is the one definition of this build; the
		# same command is the fallback while that target does not exist.
		if make -n static >/dev/null 2>&1; then
			log "building $BIN with 'make static'"
			make --no-print-directory static
		else
			log "building $BIN with cargo auditable (no 'make static' target)"
			RUSTFLAGS='-C target-feature=+crt-static' nice -n 10 \
				cargo auditable build --release --locked --target "$TRIPLE"
		fi
	fi
	[[ -x "$BIN" ]] || die "$BIN does not exist"
	# Without the .dep-v0 section cargo-audit falls back to guessing from
	# panic strings; a binary built with plain `cargo build` would then
	# "pass" while auditing almost nothing.
	has_audit_data "$BIN" ||
		die "$BIN has no cargo-auditable data (.dep-v0 section): it was not built with cargo auditable (a later plain 'cargo build' replaces the binary silently); rebuild it with 'make static'"
	cargo audit "${opts[@]}" bin "$BIN" ||
		die "the release binary $BIN embeds a crate version with a RustSec advisory (see above)"
	;;
*)
	echo "usage: $0 lock|bin" >&2
	exit 2
	;;
esac
