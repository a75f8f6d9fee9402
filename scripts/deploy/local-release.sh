#!/usr/bin/env bash
# The release workflow, rehearsed on this machine: push the image built by
# `make image` to a loopback registry, by digest, and sign that digest.
#
#   scripts/deploy/local-release.sh [SOURCE_IMAGE]   (default: $IMAGE, localhost/wordcount:dev)
#
# What differs from .github/workflows/release.yml, and why:
#   registry   127.0.0.1:$REGISTRY_PORT (docker-registry), not ghcr.io: no
#              remote registry is reachable here.
#   signing    scripts/workflows/rehearsal.sh, the script release-rehearsal.yml
#              runs on pull requests: release.sh sign in rehearsal mode (the
#              real cosign) with a key pair generated for this run, not
#              keyless: there is no OIDC token, Fulcio or Rekor here. Without
#              Rekor, cosign runs with the transparency log switched off
#              (rehearsal_cosign in scripts/lib/common.sh; test only). The
#              private key lives under .tmp/local-release/ (gitignored) and is
#              replaced on every run.
#   formats    both (legacy .sig/.att tags and Sigstore bundles), as the
#              release writes them; then release.sh verify-rehearsal.
#   assets     linux/amd64 only (podman, the gnu static binary): the image
#              SBOM (syft, as release.sh assets makes it), the OpenVEX, the
#              manifests asset and SHA256SUMS, each with a Sigstore bundle
#              made with the per-run key; no binaries.
# What is the same: the image is addressed by digest from the push on, it is
# signed and its SBOM attested by the release's own sign step, the
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

# The image SBOM and OpenVEX, as release.sh assets writes them (syft reads
# the image's cargo-auditable data), then the manifests asset and SHA256SUMS.
version="$(cargo_version)"
rm -rf "$state/dist" && mkdir -p "$state/dist"
SYFT_CHECK_FOR_APP_UPDATE=false SYFT_REGISTRY_INSECURE_USE_HTTP=true "$(python_bin)/syft" scan "registry:$ref" --quiet \
	-o "cyclonedx-json=$state/dist/wordcount-$version-image-linux-amd64.cdx.json"
SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" python3 scripts/supply-chain/vex.py \
	--image "$ref" --out "$state/dist/wordcount-$version.openvex.json"
scripts/workflows/release.sh manifests "$ref" "$state/dist"
manifests="$(echo "$state"/dist/wordcount-*-manifests.yaml)"
# Signed and verified by the pull requests' release rehearsal, with a fresh
# key pair (no key outlives the run, none is committed) kept for the deploy.
REF="$ref" DIR="$state/dist" KEY_DIR="$state" REHEARSAL_PLATFORMS=linux/amd64 scripts/workflows/rehearsal.sh

cat >"$state/release.env" <<EOF
LOCAL_RELEASE_IMAGE=$ref
LOCAL_RELEASE_PUBLIC_KEY=$state/cosign.pub
LOCAL_RELEASE_MANIFESTS=$manifests
EOF
log "signed $ref with a per-run key; deploy it with:"
log "  scripts/deploy/deploy.sh --from-local-release --target podman"
log "stop the registry afterwards: scripts/deploy/registry.sh stop"
