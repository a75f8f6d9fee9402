# shellcheck shell=bash
# Sourced by the install scripts: one way to install Debian packages.

# apt_install_missing PKG...: installs those of PKG that are not installed
# yet (as root, or through sudo), and does nothing when all are there.
apt_install_missing() {
	local missing=() p
	for p in "$@"; do
		# No `grep -q`: under pipefail its early exit can fail the pipeline
		# and make an installed package look missing.
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	printf 'apt: installing %s\n' "${missing[*]}" >&2
	local sudo_cmd=()
	((EUID == 0)) || sudo_cmd=(sudo)
	# Fresh machines may have an empty package list, and other install
	# scripts may hold apt's lock: update first, and wait for the lock.
	"${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 \
		install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
