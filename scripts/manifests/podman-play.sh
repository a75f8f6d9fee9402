#!/usr/bin/env bash
# Mock-production: run raw-yaml Deployments with `podman kube play` and prove
# they serve their own word under their real security context.
#
#   scripts/manifests/podman-play.sh MANIFEST_DIR IMAGE_REF [WORD...]
#
# MANIFEST_DIR is raw-yaml/ or the deploy step's rendered copy of it
# (scripts/deploy/deploy.sh --target podman calls this script), IMAGE_REF the
# verified image (a loopback registry is pulled over plain HTTP). WORDs
# default to "the coffee". For each WORD:
#   1. mockprod-render.py takes its Deployment and changes only the image and
#      SOURCE=bigquery -> sample (it prints the diff);
#   2. podman kube play runs it inside a private network namespace;
#   3. checks: /readyz answers; /api/v1/counts says this word and source
#      "sample"; the process runs as uid/gid 65532 with no capabilities,
#      no_new_privs and seccomp; its root filesystem is mounted read-only and
#      a write into it from the host fails.
# Everything is torn down on exit (trap), success or not.
#
# Why a network namespace per Deployment: Debian 12's podman 4.3 publishes
# every containerPort on the host's 0.0.0.0 (upstream podman#17028, fixed in
# 4.7 with --publish-all=false). Two instances would fight over 8080, and a
# CI machine would expose them. Inside `ip netns` the published ports exist
# only in that namespace; checks enter it with nsenter. (nsenter, not
# `ip netns exec`, which remounts /sys and hides the cgroup tree from podman.)
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
DIE_PREFIX="FAIL: "

play_args "$@"
readonly UID_WANT=65532 READY_TIMEOUT=${READY_TIMEOUT:-30}

export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/containers/containers.conf}"
[[ -r "$CONTAINERS_CONF" ]] || die "$CONTAINERS_CONF is missing (podman settings for this machine)"
"$ROOT/scripts/install.sh" podman

work="$(mktemp -d -p "$SCRATCH")"
pulled=0
tag="$$"
netns_of() { printf 'wordcount-play-%s-%s' "$tag" "$1"; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

teardown() {
	local rc=$exit_status w ns
	for w in "${words[@]}"; do
		ns="$(netns_of "$w")"
		if [[ -f "$work/$w.yaml" && -e "/run/netns/$ns" ]]; then
			in_ns "$ns" podman kube down "$work/$w.yaml" >/dev/null 2> >(no_systemd_noise) ||
				log "warning: podman kube down $w failed"
		fi
		[[ -e "/run/netns/$ns" ]] && ip netns delete "$ns"
	done
	# Only an image this script pulled; never one the caller built or kept.
	if ((pulled)); then podman rmi "$image" >/dev/null 2>&1 || true; fi
	if ((rc == 0)); then log "torn down"; else log "torn down after a failure (exit $rc)"; fi
}
at_exit teardown
trap 'exit 130' INT TERM

# podman's healthcheck timers need systemd, absent here: it logs an error per
# probe and carries on. Keep that noise out of the output.
no_systemd_noise() { grep -v 'unable to get systemd connection' >&2 || true; }

http_get() { # http_get NETNS URL -> body on stdout, non-zero unless 200
	in_ns "$1" python3 -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.stdout.write(r.read().decode())' "$2" 2>/dev/null
}

# --- 1. render ---------------------------------------------------------------
for w in "${words[@]}"; do
	python3 "$ROOT/scripts/manifests/mockprod-render.py" "$manifests" "$image" "$work/$w.yaml" "$w"
done

# --- 2. image: pull it here, in the host namespace where the registry is -----
if ! podman image exists "$image"; then
	tls=()
	[[ "$image" =~ ^(127\.0\.0\.1|localhost)(:[0-9]+)?/ ]] && tls=(--tls-verify=false)
	log "pulling $image"
	podman pull --quiet "${tls[@]}" "$image" >/dev/null
	pulled=1
fi

# --- 3. play ---------------------------------------------------------------------
for w in "${words[@]}"; do
	ns="$(netns_of "$w")"
	ip netns add "$ns"
	in_ns "$ns" ip link set lo up
	log "podman kube play: Deployment for WORD=$w (network namespace $ns)"
	in_ns "$ns" podman kube play --quiet "$work/$w.yaml" >/dev/null 2> >(no_systemd_noise)
done

# --- 4. checks -------------------------------------------------------------------
check() { log "ok: $*"; passed=$((passed + 1)); }
for w in "${words[@]}"; do
	ns="$(netns_of "$w")"
	mapfile -t ctrs < <(podman ps --filter "label=app.kubernetes.io/name=wordcount" \
		--filter "label=app.kubernetes.io/instance=$w" --format '{{.Names}}')
	((${#ctrs[@]} >= 1)) || die "$w: no running container (podman ps -a shows why)"
	for ctr in "${ctrs[@]}"; do
		deadline=$((SECONDS + READY_TIMEOUT))
		until http_get "$ns" http://127.0.0.1:9090/readyz >/dev/null; do
			if ((SECONDS > deadline)); then
				podman logs --tail 20 "$ctr" >&2 || true
				die "$w: /readyz did not answer 200 within ${READY_TIMEOUT}s"
			fi
			sleep 0.5
		done
		check "$ctr: ready"

		body="$(http_get "$ns" http://127.0.0.1:8080/api/v1/counts)" || die "$w: /api/v1/counts did not answer 200"
		got="$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["word"], d["source"])' <<<"$body")" ||
			die "$w: /api/v1/counts is not the expected JSON: ${body:0:200}"
		[[ "$got" == "$w sample" ]] || die "$w: /api/v1/counts answered word/source '$got', want '$w sample'"
		check "$ctr: /api/v1/counts answers word=$w source=sample"

		pid="$(podman inspect --format '{{.State.Pid}}' "$ctr")"
		[[ "$pid" =~ ^[1-9][0-9]*$ ]] || die "$ctr: no process"
		status="/proc/$pid/status"
		for field in Uid Gid; do
			ids="$(awk -v f="$field:" '$1 == f {print $2, $3, $4, $5}' "$status")"
			[[ "$ids" == "$UID_WANT $UID_WANT $UID_WANT $UID_WANT" ]] ||
				die "$ctr: $field (real, effective, saved, fs) is '$ids', want $UID_WANT"
		done
		check "$ctr: runs as uid and gid $UID_WANT"
		[[ "$(awk '$1 == "CapEff:" {print $2}' "$status")" == 0000000000000000 ]] || die "$ctr: has effective capabilities"
		[[ "$(awk '$1 == "CapBnd:" {print $2}' "$status")" == 0000000000000000 ]] || die "$ctr: capability bounding set not empty (drop ALL)"
		[[ "$(awk '$1 == "NoNewPrivs:" {print $2}' "$status")" == 1 ]] || die "$ctr: no_new_privs not set"
		[[ "$(awk '$1 == "Seccomp:" {print $2}' "$status")" == 2 ]] || die "$ctr: no seccomp filter"
		check "$ctr: no capabilities, no_new_privs, seccomp filter"

		opts="$(awk '$2 == "/" {o = $4} END {print o}' "/proc/$pid/mounts")"
		[[ ",$opts," == *,ro,* ]] || die "$ctr: root filesystem mounted '$opts', want ro"
		[[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$ctr")" == true ]] ||
			die "$ctr: podman did not apply readOnlyRootFilesystem"
		# /proc/PID/root is the container's own view of its root: even root on
		# the host must not be able to create a file through it.
		if err="$(touch "/proc/$pid/root/.wordcount-write-probe" 2>&1)"; then
			rm -f "/proc/$pid/root/.wordcount-write-probe"
			die "$ctr: wrote into the root filesystem"
		fi
		[[ "$err" == *"Read-only file system"* ]] || die "$ctr: write failed, but not as read-only: $err"
		check "$ctr: root filesystem is read-only"
	done
done
log "$passed checks passed for ${words[*]} ($image)"
