#!/usr/bin/env bash
# make mock-prod, after `make local-release` (the Makefile runs it first):
# the release's manifests asset (raw-yaml/ rendered to the signed digest by
# scripts/workflows/release.sh manifests, as the release workflow publishes it)
# is checked against its SHA256SUMS and goes through the real deploy step -
# verify the one image it names, apply the file unchanged - whose podman
# target runs scripts/manifests/podman-play.sh on it (the, coffee: own word,
# uid 65532, read-only root; torn down afterwards).
#
# Then the play checks must refuse: the same rendered manifests with a
# writable root filesystem, and with the pod running as root, must each fail
# with the matching message (so a green run means the checks can go red).
#
# The loopback registry that local-release started is stopped on exit.
# Without the signing step (a quick look at a local image, not mock-production):
#   scripts/manifests/podman-play.sh raw-yaml localhost/wordcount:dev
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
work="$(mktemp -d -p "$SCRATCH")"
at_exit 'scripts/deploy/registry.sh stop'
scripts/install.sh podman

# shellcheck source=/dev/null
source .tmp/local-release/release.env
(cd "$(dirname "$LOCAL_RELEASE_MANIFESTS")" && sha256sum --check --strict SHA256SUMS >&2)
rendered=.tmp/deploy/rendered
scripts/deploy/deploy.sh --from-local-release --target podman --out "$rendered"
asset="$(basename "$LOCAL_RELEASE_MANIFESTS")"
cmp "$LOCAL_RELEASE_MANIFESTS" "$rendered/$asset" || { log "FAIL: the deploy step changed the asset"; exit 1; }
log "ok: the deployed manifests are the published asset, byte for byte"

# --- negative cases: the checks must go red --------------------------------------
refuse() { # refuse LABEL SED_EXPRESSION EXPECTED_MESSAGE
	local label=$1 expr=$2 want=$3 dir="$work/$1"
	cp -r "$rendered" "$dir"
	sed -i -e "$expr" "$dir/$asset"
	if cmp -s "$rendered/$asset" "$dir/$asset"; then
		log "FAIL: negative case '$label' changed nothing"; exit 1
	fi
	if scripts/manifests/podman-play.sh "$dir" "$LOCAL_RELEASE_IMAGE" tea >"$work/$label.log" 2>&1; then
		cat "$work/$label.log" >&2
		log "FAIL: podman-play accepted a pod with $label"; exit 1
	fi
	if ! grep -q -- "$want" "$work/$label.log"; then
		cat "$work/$label.log" >&2
		log "FAIL: podman-play refused '$label' but not with '$want'"; exit 1
	fi
	log "ok: refused $label ($want)"
}
refuse "writable root" 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' \
	"root filesystem mounted 'rw"
refuse "uid 0" 's/runAsUser: 65532/runAsUser: 0/; s/runAsNonRoot: true/runAsNonRoot: false/' \
	"Uid (real, effective, saved, fs) is '0 0 0 0'"
log "mock-production passed: the release manifests asset, verified and applied as published, serves; negative cases refused"
