#!/usr/bin/env bash
# The release's VEX attestation, rehearsed with the real cosign on loopback:
# pushes $IMAGE (from `make image`) to a throwaway registry by digest, writes
# the release VEX for that digest (vex.py --image, as release.sh assets
# does; from a synthetic judged ignore, see below), attests it with `cosign attest --type openvex` (as release.sh sign
# does, here with a key pair generated for this run instead of keyless) and
# checks that `cosign verify-attestation --type openvex` returns exactly that
# document; a key that did not sign is refused. `make vex-attest-test`.
#
# Environment: REGISTRY_PORT (default 5057; scripts/deploy/registry.sh).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
use_engine
cd "$ROOT"

apt_install_missing skopeo docker-registry curl
cosign="$(cosign_bin)"
test_registry "${REGISTRY_PORT:-5057}"

if [[ "$ENGINE" == docker ]]; then src="docker-daemon:$IMAGE"; else src="containers-storage:$IMAGE"; fi
skopeo copy --quiet --dest-tls-verify=false --digestfile "$SCRATCH/digest" "$src" "docker://$registry/wordcount:vex"
ref="$registry/wordcount@$(cat "$SCRATCH/digest")"
log "pushed $IMAGE as $ref"

# The committed VEX has no statement (docs/supply-chain.md says why), so the
# image would appear nowhere in it: a synthetic judged ignore against a
# shipped crate (idna) gives the statement the release would carry.
advisory_db || die "needs the advisory database snapshot ($ADVISORY_SNAPSHOT)"
sed 's|^ignore = \[$|&\n    { id = "RUSTSEC-2024-0421", reason = "rehearsal: vulnerable_code_not_in_execute_path; revisit 2099-01-01" },|' \
	deny.toml >"$SCRATCH/deny.toml"
python3 scripts/supply-chain/vex.py --db "$ADVISORY_DB" --deny "$SCRATCH/deny.toml" --out "$SCRATCH/committed.json"
SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" python3 scripts/supply-chain/vex.py --image "$ref" \
	--committed "$SCRATCH/committed.json" --out "$SCRATCH/vex.json"
# Per-run keys (empty password): nothing outlives the run.
for k in release other; do
	(cd "$SCRATCH" && COSIGN_PASSWORD='' "$cosign" generate-key-pair --output-key-prefix "$k" >/dev/null 2>&1)
done
# The legacy format, as release.sh sign-key attests with a key (a key with
# --tlog-upload=false rules out cosign's signing config). No transparency log
# here (no Rekor): --tlog-upload=false to attest, and --insecure-ignore-tlog
# to verify; --allow-http-registry for the loopback one.
legacy=(--new-bundle-format=false --use-signing-config=false)
COSIGN_PASSWORD='' "$cosign" attest --yes "${legacy[@]}" --key "$SCRATCH/release.key" --tlog-upload=false \
	--allow-http-registry --type openvex --predicate "$SCRATCH/vex.json" "$ref"

canonical() { python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))'; }
# verify KEY: the predicate of the verified openvex attestation.
verify() {
	"$cosign" verify-attestation --new-bundle-format=false --key "$1" --insecure-ignore-tlog --allow-http-registry --type openvex "$ref" |
		python3 -c 'import base64, json, sys; print(json.dumps(json.loads(base64.b64decode(json.loads(sys.stdin.readline())["payload"]))["predicate"]))' |
		canonical
}
same_vex() { [[ "$(verify "$SCRATCH/release.pub")" == "$(canonical <"$SCRATCH/vex.json")" ]]; }
other_key_refused() { ! verify "$SCRATCH/other.pub"; }
check "cosign verify-attestation --type openvex returns the release VEX for $ref" same_vex
check "the VEX names the image by digest" grep -q "pkg:oci/wordcount@sha256%3A$(cut -d: -f2 "$SCRATCH/digest")" "$SCRATCH/vex.json"
check "verify-attestation with a key that did not sign is refused" other_key_refused
printf '%s passed, %s failed\n' "$passed" "$failed"
((failed == 0))
