#!/usr/bin/env bash
# Installs what `make observability-check` needs and prints nothing on stdout
# except, with --print-bin, the directory that holds promtool/amtool.
#
#   promtool, amtool, prometheus-alertmanager: from the Debian packages
#     `prometheus` and `prometheus-alertmanager`. If a promtool/amtool of the
#     pinned upstream series is already on PATH, that one is used. Otherwise
#     the two .debs are fetched with `apt-get download` (apt verifies them
#     against the signed archive index, exactly like `apt-get install`) and
#     unpacked into a cache directory with `dpkg-deb -x`. We deliberately do
#     NOT `apt-get install` them: their maintainer scripts create users and
#     start/enable the prometheus and alertmanager daemons on systemd hosts
#     (GitHub's runners, developer VMs), and a prometheus daemon on :9090 would
#     collide with wordcount's ADMIN_PORT in every other test. Unpacking gives
#     the same verified binaries with no service, no user and no state.
#   PyYAML: obscheck.py reads and rewrites the YAML configs; check.sh runs
#     python3 from the project's Python environment (scripts/lib/python.sh).
#
# The pin is the upstream series: 2.42.x / 0.25.x, Debian 12's, on which all
# checks were run; also accepted are 2.45.x / 0.26.x, Ubuntu 24.04's, for
# ci.yml's runners (not run here: this machine only reaches Debian's mirror).
# Stable distributions only ship security rebuilds of the same upstream
# version, and the mirrors drop superseded rebuilds, so pinning the full
# package revision would break fresh machines after every security update.
# The exact revision unpacked is part of the cache path and printed by check.sh.
set -euo pipefail

# Space-separated accepted version prefixes; override to try other packages.
PROMETHEUS_SERIES="${PROMETHEUS_SERIES:-2.42. 2.45.}"
ALERTMANAGER_SERIES="${ALERTMANAGER_SERIES:-0.25. 0.26.}"

log() { printf 'observability install: %s\n' "$*" >&2; }

sudo_cmd=()
if ((EUID != 0)); then sudo_cmd=(sudo); fi

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

print_bin=false
if [[ "${1:-}" == "--print-bin" ]]; then print_bin=true; fi

# --- PyYAML: from the project's one hash-locked Python environment -------------------
"$(dirname "${BASH_SOURCE[0]}")/../lib/python.sh" >/dev/null

# --- promtool / amtool / alertmanager ----------------------------------------------
# Debian's alertmanager does not embed its notification templates: it reads
# them from this fixed path and refuses to start without them (the inhibition
# test runs a real one). They are plain data files; nothing else is touched.
tmpl_dir=/usr/share/prometheus/alertmanager
ensure_templates() { # $1: unpack root
	local shipped="$1/usr/share/prometheus/alertmanager"
	if [[ -f "$shipped/default.tmpl" && ! -f "$tmpl_dir/default.tmpl" ]]; then
		log "installing the package's alertmanager templates into $tmpl_dir"
		"${sudo_cmd[@]}" install -d "$tmpl_dir"
		"${sudo_cmd[@]}" install -m 0644 "$shipped"/*.tmpl "$tmpl_dir/"
	fi
}
done_with() { # $1: the bin dir to use
	if $print_bin; then printf '%s\n' "$1"; fi
	exit 0
}

# Already installed (e.g. apt-get install on a developer machine): use it.
if on_path_ok promtool "$PROMETHEUS_SERIES" && on_path_ok amtool "$ALERTMANAGER_SERIES" &&
	command -v prometheus-alertmanager >/dev/null 2>&1; then
	done_with "$(dirname "$(command -v promtool)")"
fi

cache_root="${OBSERVABILITY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wordcount/observability-tools}"
# Fast path: an earlier complete unpack (asking apt costs seconds). Delete
# $cache_root to pick up a newer rebuild.
shopt -s nullglob
for cached in "$cache_root"/prometheus_*-alertmanager_*; do
	if [[ -f "$cached/.complete" ]] && in_series "$(version_of "$cached/usr/bin/promtool")" "$PROMETHEUS_SERIES" &&
		in_series "$(version_of "$cached/usr/bin/amtool")" "$ALERTMANAGER_SERIES"; then
		ensure_templates "$cached"
		done_with "$cached/usr/bin"
	fi
done
shopt -u nullglob

candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p'; }
prom_ver="$(candidate prometheus)"
am_ver="$(candidate prometheus-alertmanager)"
if [[ -z "$prom_ver" || "$prom_ver" == "(none)" || -z "$am_ver" || "$am_ver" == "(none)" ]]; then
	log "apt knows no candidate for prometheus/prometheus-alertmanager; running apt-get update"
	"${sudo_cmd[@]}" apt-get update -qq
	prom_ver="$(candidate prometheus)"
	am_ver="$(candidate prometheus-alertmanager)"
fi
if ! in_series "$prom_ver" "$PROMETHEUS_SERIES" || ! in_series "$am_ver" "$ALERTMANAGER_SERIES"; then
	log "apt offers prometheus '$prom_ver' and prometheus-alertmanager '$am_ver';" \
		"accepted are prometheus $PROMETHEUS_SERIES and alertmanager $ALERTMANAGER_SERIES." \
		"Run the checks with the new version, then extend the series in $0."
	exit 1
fi

dest="$cache_root/prometheus_${prom_ver}-alertmanager_${am_ver}"
if [[ ! -f "$dest/.complete" ]]; then
	log "unpacking prometheus $prom_ver and prometheus-alertmanager $am_ver into $dest"
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	# As root, apt warns that it downloads unsandboxed into a dir _apt cannot
	# write; harmless (checksums are still verified), so the output is dropped.
	(cd "$work" && apt-get download -q "prometheus=$prom_ver" "prometheus-alertmanager=$am_ver" >/dev/null 2>&1) || {
		log "apt-get download failed"
		exit 1
	}
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
	in_series "$(version_of "$dest/usr/bin/promtool")" "$PROMETHEUS_SERIES" || {
		log "the unpacked promtool reports version $(version_of "$dest/usr/bin/promtool")"
		exit 1
	}
	touch "$dest/.complete"
fi
ensure_templates "$dest"
done_with "$dest/usr/bin"
