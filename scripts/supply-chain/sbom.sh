#!/usr/bin/env bash
# SBOMs of the wordcount package's dependency tree, committed under sbom/.
#   sbom.sh generate  - regenerate sbom/wordcount.cdx.json (CycloneDX 1.5,
#                       cargo-cyclonedx), sbom/wordcount.spdx.json (SPDX
#                       2.3, cargo-sbom) and sbom/wordcount.openvex.json
#                       (vex.py, from deny.toml's ignores); `make sbom`.
#   sbom.sh check     - regenerate into a temporary directory and fail if
#                       sbom/ differs; validate sbom/ (schemas, SPDX tools,
#                       NTIA minimum elements: validate-sbom.py); `make sbom-check`.
#   sbom.sh review [BASE]
#                     - sbom-review.py: what changed between BASE (default:
#                       the merge base with main) and the working tree, as
#                       Markdown on stdout and in target/sbom-review.md (and
#                       the job summary when GITHUB_STEP_SUMMARY is set);
#                       `make sbom-review`.
# Both are normalised (normalise-sbom.py) so unchanged Cargo.toml/Cargo.lock
# give byte-identical files and the diff shows dependency changes only.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

# The shipped target (the image's musl binary). Fixed, so a developer on a
# Mac regenerates the same file as CI.
readonly TARGET=x86_64-unknown-linux-musl
readonly CDX=wordcount.cdx.json SPDX=wordcount.spdx.json VEX=wordcount.openvex.json

# rustsec_db: sets DB to the advisory database the gates use: the offline
# snapshot, or the live one cargo-deny fetches (deny.sh's place for it).
rustsec_db() {
	if advisory_db; then
		DB="$ADVISORY_DB"
	else
		export WORDCOUNT_ADVISORY_DBS="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
		cargo deny fetch db >&2
		DB="$WORDCOUNT_ADVISORY_DBS/advisory-db-3157b0e258782691"
	fi
}

# generate DIR: writes both SBOMs into DIR.
generate() {
	local out=$1 work
	work="$(mktemp -d -p "$SCRATCH")"
	cargo fetch --locked --quiet
	# cargo-cyclonedx writes next to Cargo.toml and takes no directory in
	# --override-filename; a private name avoids clobbering anything there.
	local name=".sbom-$$"
	SOURCE_DATE_EPOCH=0 cargo cyclonedx --quiet --format json --spec-version 1.5 \
		--target "$TARGET" --override-filename "$name"
	mv "$name.json" "$work/$CDX"
	# It writes one per workspace member too: the service's is the one kept
	# (testkit/ is development-only and never shipped).
	rm -f ./*/"$name.json"
	# cargo-sbom has no target filter and lists no build-dependencies: the
	# normaliser cuts both files to what the build compiles for $TARGET.
	SOURCE_DATE_EPOCH=0 cargo sbom --cargo-package wordcount --output-format spdx_json_2_3 >"$work/$SPDX"
	python3 scripts/supply-chain/normalise-sbom.py --root "$ROOT" --target "$TARGET" "$work/$CDX" "$work/$SPDX"
	# OpenVEX: the judgements of deny.toml's ignores on shipped crates.
	rustsec_db
	python3 scripts/supply-chain/vex.py --db "$DB" --sbom "$work/$CDX" --out "$work/$VEX"
	mkdir -p "$out"
	cp "$work/$CDX" "$work/$SPDX" "$work/$VEX" "$out/"
}

# crate_diff OLD NEW: "+ name version" / "- name version" lines, for a
# CycloneDX (components) or SPDX (packages) file.
crate_diff() {
	python3 - "$1" "$2" <<'PY'
import json, sys
def crates(path):
    try:
        doc = json.load(open(path))
    except FileNotFoundError:
        return set()
    if "components" in doc:
        return {(c["name"], c["version"]) for c in doc["components"]}
    return {(p["name"], p.get("versionInfo", "")) for p in doc.get("packages", [])}
old, new = crates(sys.argv[1]), crates(sys.argv[2])
for n, v in sorted(new - old):
    print(f"    + {n} {v}")
for n, v in sorted(old - new):
    print(f"    - {n} {v}")
if old == new:
    print("    (same crates; versions' metadata, features or the Cargo.lock checksum changed)")
PY
}

# review BASE: RustSec status from cargo-audit on the working tree's
# Cargo.lock (the database the gates use, every finding, no ignores), then
# the review.
review() {
	local base=$1 audit="$SCRATCH/audit.json" opts=(--json --file Cargo.lock)
	if advisory_db; then opts=(--db "$ADVISORY_DB" --no-fetch "${opts[@]}"); fi
	# Exit status 1 means "found something": the review reports it.
	cargo audit "${opts[@]}" >"$audit" || [[ -s "$audit" ]] || die "cargo audit wrote no report"
	python3 scripts/supply-chain/sbom-review.py --base "$base" --audit-json "$audit" \
		--image-sbom target/image/sbom.cdx.json --out target/sbom-review.md
	if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then cat target/sbom-review.md >>"$GITHUB_STEP_SUMMARY"; fi
}

case "${1:-}" in
review)
	base="${2:-}"
	if [[ -z "$base" ]]; then
		base="$(git merge-base HEAD main 2>/dev/null || git merge-base HEAD origin/main)" ||
			die "no merge base with main or origin/main: pass BASE=<rev>"
	fi
	mkdir -p target
	review "$base"
	;;
generate)
	generate sbom
	log "wrote sbom/$CDX, sbom/$SPDX and sbom/$VEX; commit them with the Cargo.toml/Cargo.lock change"
	;;
check)
	fresh="$(mktemp -d -p "$SCRATCH")"
	generate "$fresh"
	stale=()
	for f in "$CDX" "$SPDX" "$VEX"; do
		cmp -s "sbom/$f" "$fresh/$f" || stale+=("$f")
	done
	if ((${#stale[@]})); then
		{
			echo
			echo "sbom/ is stale: ${stale[*]} differ from what Cargo.toml/Cargo.lock/deny.toml produce."
			for f in "${stale[@]}"; do
				[[ "$f" != "$VEX" ]] || continue
				echo "sbom/$f: crates added (+) and removed (-):"
				crate_diff "sbom/$f" "$fresh/$f"
			done
			echo "First lines of the diff:"
			for f in "${stale[@]}"; do
				diff -u "sbom/$f" "$fresh/$f" 2>&1 | head -n 30 || true
			done
		} >&2
		die "sbom/ is stale: run 'make sbom' and commit sbom/ together with Cargo.toml/Cargo.lock/deny.toml"
	fi
	log "sbom/ matches Cargo.toml/Cargo.lock"
	"$(python_bin)/python" scripts/supply-chain/validate-sbom.py "sbom/$CDX" "sbom/$SPDX" ||
		die "sbom/ is not valid (above); fix the generator's output in normalise-sbom.py, then make sbom"
	;;
*)
	echo "usage: $0 generate|check|review [BASE]" >&2
	exit 2
	;;
esac
