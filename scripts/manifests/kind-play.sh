#!/usr/bin/env bash
# Mock-production in a kind cluster, for machines that have kind and a
# container engine (docker, or podman with KIND_EXPERIMENTAL_PROVIDER=podman).
# The build machines have neither a Docker daemon nor access to kind's node
# image, so CI runs the podman path (podman-play.sh); this one is for laptops.
#
#   scripts/manifests/kind-play.sh MANIFEST_DIR LOCAL_IMAGE [WORD...]
#
# 1. kind cluster at the pinned Kubernetes version (node image by digest);
# 2. LOCAL_IMAGE (e.g. localhost/wordcount:dev) loaded into it;
# 3. the WHOLE folder created with `kubectl create`, every Deployment changed
#    only in image and SOURCE=sample (mockprod-render.py --dir) - so the
#    restricted namespace's admission, NetworkPolicies, PDBs, HPAs are real;
# 4. for each WORD (default: the coffee): rollout completes; /api/v1/counts
#    through a port-forward answers that word; the container process on the
#    node runs as uid/gid 65532 with a read-only root mount;
# 5. the cluster is deleted on exit.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# kind v0.29.0's node image for Kubernetes 1.33.1 (= kubernetes_version's minor
# in deploy/instances.toml), multi-arch digest.
NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f}"
DIE_PREFIX="FAIL: "

play_args "$@"
for tool in kind kubectl python3; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
engine="${KIND_EXPERIMENTAL_PROVIDER:-docker}"

cluster="wordcount-mockprod-$$"
ctx="kind-$cluster"
node="$cluster-control-plane"
work="$(mktemp -d -p "$SCRATCH")"
forwards=()
teardown() {
	local pid
	for pid in "${forwards[@]}"; do kill "$pid" 2>/dev/null || true; done
	kind delete cluster --name "$cluster" >/dev/null 2>&1 || log "warning: kind delete cluster $cluster failed"
}
at_exit teardown
trap 'exit 130' INT TERM

python3 "$ROOT/scripts/manifests/mockprod-render.py" --dir "$manifests" "$image" "$work/manifests"
kind create cluster --name "$cluster" --image "$NODE_IMAGE" --wait 180s
kind load docker-image "$image" --name "$cluster"
kubectl --context "$ctx" create -f "$work/manifests"

k() { kubectl --context "$ctx" -n wordcount "$@"; }
port=18080
for w in "${words[@]}"; do
	k rollout status "deploy/wordcount-$w" --timeout=180s || die "$w: rollout did not complete"
	pod="$(k get pod -l "app.kubernetes.io/instance=$w" -o jsonpath='{.items[0].metadata.name}')"

	k port-forward "pod/$pod" "$port:8080" >"$work/forward-$w.log" 2>&1 &
	forwards+=("$!")
	got=""
	for _ in $(seq 1 50); do
		got="$(python3 -c '
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    d = json.load(r)
print(d["word"], d["source"])' "http://127.0.0.1:$port/api/v1/counts" 2>/dev/null)" && break
		sleep 0.2
	done
	[[ "$got" == "$w sample" ]] || die "$w: /api/v1/counts answered '$got', want '$w sample'"
	log "ok: $pod answers word=$w source=sample"

	cid="$(k get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}')"
	cid="${cid#*://}"
	pid="$("$engine" exec "$node" crictl inspect --output go-template --template '{{.info.pid}}' "$cid")"
	# shellcheck disable=SC2016  # awk programs, expanded by awk on the node
	for field in Uid Gid; do
		ids="$("$engine" exec "$node" awk -v f="$field:" '$1 == f {print $2, $3, $4, $5}' "/proc/$pid/status")"
		[[ "$ids" == "65532 65532 65532 65532" ]] || die "$pod: $field is '$ids', want 65532"
	done
	# shellcheck disable=SC2016
	opts="$("$engine" exec "$node" awk '$2 == "/" {o = $4} END {print o}' "/proc/$pid/mounts")"
	[[ ",$opts," == *,ro,* ]] || die "$pod: root mounted '$opts', want ro"
	log "ok: $pod runs as 65532:65532 with a read-only root"
	port=$((port + 1))
done
log "all checks passed for ${words[*]}; deleting the cluster"
