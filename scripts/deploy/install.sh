#!/usr/bin/env bash
# Installs what the signing and deploy targets need, idempotently, and builds
# tools/imgsign. Calling it before every target costs about a second once
# everything is present.
#   apt:   docker-registry (the local registry), skopeo (tag -> digest,
#          pushes by digest, copying signature manifests in the tests),
#          podman + buildah + runc (the image and the negative-test images),
#          jq, curl, openssl (an independent signature check), shellcheck.
#   cargo: tools/imgsign, its own workspace and Cargo.lock, built --locked
#          into tools/imgsign/target (CI caches that directory).
# `install.sh --deploy` installs only what the deploy step itself needs
# (skopeo, jq, curl): a production deploy verifies with the real cosign and
# must not spend minutes building imgsign. cosign/verify --with-imgsign
# builds imgsign on first use.
# `install.sh --print-imgsign` prints the binary's path for other scripts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMGSIGN_DIR="$ROOT/tools/imgsign"
IMGSIGN="$IMGSIGN_DIR/target/release/imgsign"

if [[ "${1:-}" == "--print-imgsign" ]]; then
	printf '%s\n' "$IMGSIGN"
	exit 0
fi

log() { printf 'deploy install: %s\n' "$*" >&2; }
deploy_only=0
[[ "${1:-}" == "--deploy" ]] && deploy_only=1

# --- apt -----------------------------------------------------------------------
apt_pkgs=(skopeo jq curl)
if ((!deploy_only)); then
	apt_pkgs+=(docker-registry shellcheck openssl)
	# Even where a Docker engine answers, the signing test builds its extra
	# images with buildah.
	apt_pkgs+=(buildah podman runc)
fi
# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
apt_install_missing "${apt_pkgs[@]}"

((deploy_only)) && exit 0

# --- tools/imgsign -------------------------------------------------------------
# cargo's own freshness check makes this a no-op when nothing changed; the
# cold build (sigstore + aws-lc) takes minutes on two cores, hence nice.
if [[ ! -x "$IMGSIGN" ]] || [[ -n "$(find "$IMGSIGN_DIR/src" "$IMGSIGN_DIR/Cargo.toml" "$IMGSIGN_DIR/Cargo.lock" -newer "$IMGSIGN" -print -quit)" ]]; then
	log "building tools/imgsign (cargo build --release --locked)"
	(cd "$IMGSIGN_DIR" && nice -n 10 cargo build --quiet --release --locked)
fi
