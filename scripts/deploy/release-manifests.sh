#!/usr/bin/env bash
# The deployable manifests of one release: raw-yaml/ rendered to the
# release's image digest, as ONE multi-document YAML file in kubectl's
# creation order (namespace first), so that
#
#   kubectl create -f wordcount-X.Y.Z-manifests.yaml
#
# runs the release on a fresh cluster. The release workflow publishes this
# file as an asset (signed, in SHA256SUMS); `make local-release` writes it the
# same way for `make mock-prod`, and the deploy step applies it unchanged.
#
#   scripts/deploy/release-manifests.sh REPO@sha256:<hex> OUT_FILE
#
# The rendering is scripts/deploy/render.py's: every image reference of the
# service becomes the digest, anything else is refused.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
ref="${1:?usage: release-manifests.sh REPO@sha256:<hex> OUT_FILE}" out="${2:?OUT_FILE}"
tmp="$(mktemp -d -p "$SCRATCH")"
python3 scripts/deploy/render.py raw-yaml "$tmp/rendered" wordcount "$ref"
{
	printf '# wordcount manifests for %s\n' "$ref"
	printf '# Rendered from raw-yaml/ by scripts/deploy/release-manifests.sh.\n'
	printf '# Deploy: kubectl create -f THIS_FILE (after cosign verify-blob, README).\n'
	for f in "$tmp"/rendered/*.yaml; do cat "$f"; done
} >"$out"
printf 'release-manifests: %s (%s objects) -> %s\n' "$ref" "$(grep -c '^kind:' "$out")" "$out" >&2
