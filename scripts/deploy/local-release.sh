#!/usr/bin/env bash
# The release workflow, rehearsed on this machine: push the image built by
# `make image` to a loopback registry, by digest, and sign that digest.
#
#   scripts/deploy/local-release.sh [SOURCE_IMAGE]   (default: $IMAGE, localhost/wordcount:dev)
#
# What differs from .github/workflows/release.yml, and why:
#   registry   127.0.0.1:$REGISTRY_PORT (docker-registry), not ghcr.io: no
#              remote registry is reachable here.
#   signing    the release's key-based path (scripts/workflows/release.sh
#              sign-key, the real cosign) with a key pair generated for this
#              run, not keyless: there is no OIDC token, Fulcio or Rekor here.
#              Without Rekor, cosign runs with the transparency log switched
#              off (rehearsal_cosign in scripts/lib/common.sh; test only).
#              The private key lives under .tmp/local-release/ (gitignored)
#              and is replaced on every run.
#   formats    the legacy format only (sha256-<hex>.sig/.att), which is what
#              the release's key-based path writes; `make signing-test`
#              proves both formats.
#   assets     the image SBOM (syft, as release.sh assets makes it), the
#              manifests asset and SHA256SUMS; no Sigstore bundles of the
#              assets (sign-blob is keyless in the release).
# What is the same: the image is addressed by digest from the push on, it is
# signed and its SBOM attested by the release's own sign-key step, the
# deployable manifests are rendered by the script the release uses
# (scripts/workflows/release.sh manifests) and listed in SHA256SUMS, and the
# deploy step verifies the image with the same cosign/verify entry point and
# applies that file unchanged.
#
# Writes .tmp/local-release/release.env for `deploy.sh --from-local-release`:
#   LOCAL_RELEASE_IMAGE=127.0.0.1:5000/wordcount@sha256:...
#   LOCAL_RELEASE_PUBLIC_KEY=.tmp/local-release/cosign.pub
#   LOCAL_RELEASE_MANIFESTS=.tmp/local-release/dist/wordcount-X.Y.Z-manifests.yaml
set -euo pipefail

# The image scripts' engine choice: where `make image` left the image.
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
use_engine
cd "$ROOT"
source_image="${1:-$IMAGE}"
state=.tmp/local-release

scripts/install.sh signing
rehearsal_cosign
scripts/deploy/registry.sh start
addr="$(scripts/deploy/registry.sh addr)"

# A local image from the engine's store, or anything skopeo can read.
case "$source_image" in
*://* | oci:* | oci-archive:* | docker-archive:* | containers-storage:* | docker-daemon:*) src="$source_image" ;;
*) if [[ "$ENGINE" == docker ]]; then src="docker-daemon:$source_image"; else src="containers-storage:$source_image"; fi ;;
esac

mkdir -p "$state"
repo="$addr/wordcount"
# Pushed under a tag for humans browsing the registry; the digest file is the
# identity everything afterwards uses.
skopeo copy --quiet --dest-tls-verify=false --digestfile "$state/digest" \
	"$src" "docker://$repo:dev"
ref="$repo@$(cat "$state/digest")"
log "pushed $source_image as $ref"

# A fresh key pair per run: no key outlives the rehearsal, none is committed.
rm -f "$state/cosign.key" "$state/cosign.pub"
# The password only has to live as long as this script: nothing re-signs.
COSIGN_PASSWORD="$(head -c 24 /dev/urandom | base64)"
export COSIGN_PASSWORD
cosign generate-key-pair --output-key-prefix "$state/cosign" >/dev/null

# The image SBOM, as release.sh assets writes it (syft reads the image's
# cargo-auditable data), then the manifests asset and SHA256SUMS.
rm -rf "$state/dist" && mkdir -p "$state/dist"
SYFT_CHECK_FOR_APP_UPDATE=false SYFT_REGISTRY_INSECURE_USE_HTTP=true "$(python_bin)/syft" scan "registry:$ref" --quiet \
	-o "cyclonedx-json=$state/dist/wordcount-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)-image-linux-amd64.cdx.json"
scripts/workflows/release.sh manifests "$ref" "$state/dist"
manifests="$(echo "$state"/dist/wordcount-*-manifests.yaml)"
COSIGN_PRIVATE_KEY="$(cat "$state/cosign.key")" scripts/workflows/release.sh sign-key "$ref" "$state/dist"

cat >"$state/release.env" <<EOF
LOCAL_RELEASE_IMAGE=$ref
LOCAL_RELEASE_PUBLIC_KEY=$state/cosign.pub
LOCAL_RELEASE_MANIFESTS=$manifests
EOF
log "signed $ref with a per-run key; deploy it with:"
log "  scripts/deploy/deploy.sh --from-local-release --target podman"
log "stop the registry afterwards: scripts/deploy/registry.sh stop"
