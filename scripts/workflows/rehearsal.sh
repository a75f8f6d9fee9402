#!/usr/bin/env bash
# The release, rehearsed on an image in a loopback registry; publishes
# nothing. `make release-rehearsal` (release-rehearsal.yml on a pull request
# that touches the release path) and `make local-release` (.ci/run) run it.
#
#   REF=HOST:PORT/REPO@sha256:<64 hex> [DIR=...] scripts/workflows/rehearsal.sh
#
# HOST is localhost or 127.0.0.1: the registry is the job's own (a service
# container on GitHub, scripts/deploy/registry.sh here). DIR (default
# .tmp/release-rehearsal/dist) holds the assets. In order, with release.sh's
# own subcommands in rehearsal mode (REHEARSAL_REGISTRY, its header):
#   1. if DIR has no SHA256SUMS yet (GitHub, the multi-arch image):
#      release.sh image-test for each platform, then release.sh assets (both
#      binaries, image and dependency SBOMs, OpenVEX, manifests, SHA256SUMS);
#      `make local-release` makes its own (one platform, no binaries)
#   2. an ephemeral key pair (cosign generate-key-pair; the password only
#      lives as long as this script), in KEY_DIR (default: a scratch dir)
#   3. release.sh sign: the index signed and every SBOM and the OpenVEX
#      attested, legacy and bundle format, a Sigstore bundle per asset; with
#      the key instead of keylessly, the transparency log off
#      (rehearsal_cosign): nothing reaches Fulcio, Rekor or GHCR
#   4. release.sh verify-rehearsal: cosign/verify --key, each format on its
#      own; every asset's bundle and SHA256SUMS; the manifests asset names
#      exactly REF; on GitHub also both binaries present
# What it cannot cover is in docs/pipeline.md ("Release rehearsal").
#
# Environment: REHEARSAL_PLATFORMS (default both; `make local-release` sets
# linux/amd64), ENGINE (step 1: docker), COSIGN_BIN (the cosign to wrap;
# release-rehearsal.yml passes cosign-installer's, default the pinned one).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

ref="${REF:?REF (the image by digest in a loopback registry) is not set}"
dir="${DIR:-.tmp/release-rehearsal/dist}"
key_dir="${KEY_DIR:-$(mktemp -d -p "$SCRATCH")}"
[[ "$ref" =~ $DIGEST_REF_RE ]] || die "$ref is not REPO@sha256:<64 hex>"
[[ "$ref" =~ ^(localhost|127\.0\.0\.1):[0-9]+/ ]] || die "$ref is not in a loopback registry: a rehearsal publishes nothing"
REHEARSAL_REGISTRY="${ref%%/*}"
export REHEARSAL_REGISTRY
read -ra platforms <<<"${REHEARSAL_PLATFORMS:-linux/amd64 linux/arm64}"
# The registry is plain HTTP on loopback (syft in release.sh assets).
export SYFT_REGISTRY_INSECURE_USE_HTTP=true
rehearsal_cosign

mkdir -p "$dir"
full=0
if [[ ! -e "$dir/SHA256SUMS" ]]; then
	full=1
	for p in "${platforms[@]}"; do scripts/workflows/release.sh image-test "$ref" "$p"; done
	scripts/workflows/release.sh assets "$ref" "$dir"
fi

mkdir -p "$key_dir"
rm -f "$key_dir/cosign.key" "$key_dir/cosign.pub"
COSIGN_PASSWORD="$(head -c 24 /dev/urandom | base64)"
export COSIGN_PASSWORD
cosign generate-key-pair --output-key-prefix "$key_dir/cosign" >/dev/null

COSIGN_PRIVATE_KEY="$(cat "$key_dir/cosign.key")" scripts/workflows/release.sh sign "$ref" "$dir"
scripts/workflows/release.sh verify-rehearsal "$ref" "$dir" "$key_dir/cosign.pub"
if ((full)); then
	version="$(cargo_version)"
	for t in x86_64 aarch64; do
		[[ -f "$dir/wordcount-$version-$t-unknown-linux-musl" ]] || die "no $t binary among the assets"
	done
fi
log "OK: rehearsed $ref: signed (both formats), attested and verified with a per-run key; nothing published"
