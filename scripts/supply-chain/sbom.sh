#!/usr/bin/env bash
# SBOMs of the wordcount package's dependency tree, committed under sbom/.
#   sbom.sh generate  - regenerate sbom/wordcount.cdx.json (CycloneDX 1.5,
#                       cargo-cyclonedx) and sbom/wordcount.spdx.json (SPDX
#                       2.3, cargo-sbom); `make sbom`.
#   sbom.sh check     - regenerate into a temporary directory and fail if
#                       sbom/ differs; `make sbom-check`.
# Both are normalised (normalise-sbom.py) so unchanged Cargo.toml/Cargo.lock
# give byte-identical files and the diff shows dependency changes only.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

# The shipped target (the image's musl binary). Fixed, so a developer on a
# Mac regenerates the same file as CI.
readonly TARGET=x86_64-unknown-linux-musl
readonly CDX=wordcount.cdx.json SPDX=wordcount.spdx.json

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
	# cargo-sbom has no target filter: its SPDX covers every platform's
	# dependencies (and, unlike the CycloneDX file, no build-dependencies).
	SOURCE_DATE_EPOCH=0 cargo sbom --cargo-package wordcount --output-format spdx_json_2_3 >"$work/$SPDX"
	python3 scripts/supply-chain/normalise-sbom.py --root "$ROOT" "$work/$CDX" "$work/$SPDX"
	mkdir -p "$out"
	cp "$work/$CDX" "$work/$SPDX" "$out/"
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

case "${1:-}" in
generate)
	generate sbom
	log "wrote sbom/$CDX and sbom/$SPDX; commit them with the Cargo.toml/Cargo.lock change"
	;;
check)
	fresh="$(mktemp -d -p "$SCRATCH")"
	generate "$fresh"
	stale=()
	for f in "$CDX" "$SPDX"; do
		cmp -s "sbom/$f" "$fresh/$f" || stale+=("$f")
	done
	if ((${#stale[@]})); then
		{
			echo
			echo "sbom/ is stale: ${stale[*]} differ from what Cargo.toml/Cargo.lock produce."
			for f in "${stale[@]}"; do
				echo "sbom/$f: crates added (+) and removed (-):"
				crate_diff "sbom/$f" "$fresh/$f"
			done
			echo "First lines of the diff:"
			for f in "${stale[@]}"; do
				diff -u "sbom/$f" "$fresh/$f" 2>&1 | head -n 30 || true
			done
		} >&2
		die "sbom/ is stale: run 'make sbom' and commit sbom/ together with Cargo.toml/Cargo.lock"
	fi
	log "sbom/ matches Cargo.toml/Cargo.lock"
	;;
*)
	echo "usage: $0 generate|check" >&2
	exit 2
	;;
esac
