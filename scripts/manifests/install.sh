#!/usr/bin/env bash
# Installs the pinned tools the manifest gates need, skipping what is already
# installed at the pinned versions, so calling it before every gate costs well
# under a second on a warm machine.
#
#   install.sh              validation tools: kubernetes-validate + yamllint
#                           (requirements-validate.txt), checkov
#                           (requirements-checkov.txt), shellcheck (apt)
#   install.sh --podman     podman, runc and the CNI plugins (mock-production)
#   install.sh --print-venv | --print-checkov-venv   where the tools live
#
# Every Python package is pinned, transitive ones included, in the
# requirements files next to this script. Each set gets its own venv under
# ~/.cache keyed by the hash of its requirements file: checkov's ~100
# packages would fight kubernetes-validate's pins in one venv, and a pin bump
# gets a fresh venv instead of an in-place re-resolve.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/wordcount"

venv_for() { # venv_for NAME -> path keyed by the requirements file's hash
	local req="$here/requirements-$1.txt"
	printf '%s/manifests-%s-%s\n' "$cache" "$1" "$(sha256sum "$req" | cut -c1-12)"
}

case "${1:-}" in
--print-venv) venv_for validate; exit 0 ;;
--print-checkov-venv) venv_for checkov; exit 0 ;;
esac

log() { printf 'manifests install: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/apt.sh
source "$here/../lib/apt.sh"

if [[ "${1:-}" == "--podman" ]]; then
	# Debian 12: podman 4.3, runc (the runtime containers/containers.conf
	# names), the CNI plugins podman 4.3 uses for its rootful bridge, and
	# catatonit, from which podman builds the pause image of every pod
	# (kube play creates pods; nothing can be pulled here); iproute2 for the
	# network namespaces podman-play.sh creates.
	apt_install_missing podman runc containernetworking-plugins catatonit iproute2
	exit 0
fi

# The shellcheck gate on this folder's scripts needs Debian's shellcheck.
apt_install_missing shellcheck

# The venv's name carries the requirements hash; the stamp file is written
# last, so an interrupted install is redone instead of trusted.
for set in validate checkov; do
	venv=$(venv_for "$set")
	[[ -f "$venv/.installed" ]] && continue
	log "installing requirements-$set.txt into $venv"
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
		-r "$here/requirements-$set.txt"
	"$venv/bin/pip" check --disable-pip-version-check >/dev/null
	touch "$venv/.installed"
done
