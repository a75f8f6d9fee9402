#!/usr/bin/env bash
# Installs the pinned tools the manifest gates need, skipping what is already
# installed, so calling it before every gate costs well under a second on a
# warm machine.
#
#   install.sh              kubernetes-validate, yamllint and checkov from the
#                           project's one hash-locked Python environment
#                           (scripts/lib/python.sh, scripts/pyproject.toml);
#                           and Debian's shellcheck
#   install.sh --podman     podman, runc and the CNI plugins (mock-production)
#   install.sh --print-venv | --print-checkov-venv   where the tools live
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/apt.sh
source "$here/../lib/apt.sh"

case "${1:-}" in
--print-venv | --print-checkov-venv)
	dirname "$("$here/../lib/python.sh")"
	exit 0
	;;
--podman)
	# Debian 12: podman 4.3, runc (the runtime containers/containers.conf
	# names), the CNI plugins podman 4.3 uses for its rootful bridge, and
	# catatonit, from which podman builds the pause image of every pod
	# (kube play creates pods; nothing can be pulled here); iproute2 for the
	# network namespaces podman-play.sh creates.
	apt_install_missing podman runc containernetworking-plugins catatonit iproute2
	exit 0
	;;
esac

# The shellcheck gate on this folder's scripts needs Debian's shellcheck.
apt_install_missing shellcheck
"$here/../lib/python.sh" >/dev/null
