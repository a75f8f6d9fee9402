#!/usr/bin/env bash
# make mock-prod, after `make local-release` (the Makefile runs it first):
# the image in the loopback registry, signed by the rehearsal key, goes
# through the real deploy step - resolve, verify the signature, render
# raw-yaml/ to the verified digest - whose podman target runs
# scripts/manifests/podman-play.sh on the rendered manifests (the, coffee:
# own word, uid 65532, read-only root; torn down afterwards).
#
# Then the play checks must refuse: the same rendered manifests with a
# writable root filesystem, and with the pod running as root, must each fail
# with the matching message (so a green run means the checks can go red).
#
# The loopback registry that local-release started is stopped on exit.
# Without the signing step (a quick look at a local image, not mock-production):
#   scripts/manifests/podman-play.sh raw-yaml localhost/wordcount:dev
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
say() { printf 'mock-prod: %s\n' "$*" >&2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/wordcount-mockprod.XXXXXX")"
trap 'scripts/deploy/registry.sh stop || true; rm -rf "$work"' EXIT
scripts/manifests/install.sh --podman

rendered=.tmp/deploy/rendered
scripts/deploy/deploy.sh --from-local-release --target podman --out "$rendered"

# --- negative cases: the checks must go red --------------------------------------
# shellcheck source=/dev/null
source .tmp/local-release/release.env
refuse() { # refuse LABEL SED_EXPRESSION EXPECTED_MESSAGE
	local label=$1 expr=$2 want=$3 dir="$work/$1"
	cp -r "$rendered" "$dir"
	sed -i -e "$expr" "$dir/10-instance-tea.yaml"
	if cmp -s "$rendered/10-instance-tea.yaml" "$dir/10-instance-tea.yaml"; then
		say "FAIL: negative case '$label' changed nothing"; exit 1
	fi
	if scripts/manifests/podman-play.sh "$dir" "$LOCAL_RELEASE_IMAGE" tea >"$work/$label.log" 2>&1; then
		cat "$work/$label.log" >&2
		say "FAIL: podman-play accepted a pod with $label"; exit 1
	fi
	if ! grep -q -- "$want" "$work/$label.log"; then
		cat "$work/$label.log" >&2
		say "FAIL: podman-play refused '$label' but not with '$want'"; exit 1
	fi
	say "ok: refused $label ($want)"
}
refuse "writable root" 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' \
	"root filesystem mounted 'rw"
refuse "uid 0" 's/runAsUser: 65532/runAsUser: 0/; s/runAsNonRoot: true/runAsNonRoot: false/' \
	"Uid (real, effective, saved, fs) is '0 0 0 0'"
say "mock-production passed: verified image served by the raw-yaml Deployments; negative cases refused"
