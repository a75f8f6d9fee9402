#!/usr/bin/env bash
# make cluster-check: the manifests and the admission policies against a real
# Kubernetes API server - kube-apiserver and etcd at the pins in
# scripts/tools.env (Kubernetes = the oldest minor docs/deploy.md supports),
# kubectl built from the same Kubernetes release, all on 127.0.0.1.
#
# There is no kubelet, scheduler or controller-manager: objects are admitted
# and stored, nothing runs (pods stay Pending, Deployments make no
# ReplicaSets, a deleted namespace is never emptied, so each manifest set gets
# a fresh cluster: a new etcd prefix behind a restarted kube-apiserver).
# Every `kubectl create` uses --validate=strict, which kubectl sends as the
# server's fieldValidation=Strict: unknown fields are refused by the API
# server itself (the structural schema for custom resources).
#
# Checks, each on a fresh cluster as a user would run it:
#   raw-yaml/                 `kubectl create -f raw-yaml/` succeeds with no
#                             warning at all; it creates the namespace, whose
#                             Pod Security labels must be restricted for
#                             enforce, warn and audit, at the server's minor
#   the release asset         the same for the manifests file a release
#                             publishes, rendered by the release's own
#                             command (scripts/workflows/release.sh manifests)
#                             to a fixed digest
# and on both: a Pod made from each stored Deployment's pod template is
# created (admitted by PodSecurity "enforce", really stored); copies with
# allowPrivilegeEscalation: true and with a hostPath volume are refused by
# PodSecurity with its message, and a weakened Deployment draws its
# "would violate PodSecurity" warning (so the zero-warnings check can fail).
# Policies: the CRDs in ../shared/crds (policy-controller v0.15.1, Kyverno
# v1.13.0, then v1.19.0) are applied and every object in cosign/policy/ is
# created; a copy with a misspelled spec field is refused by the schema
# (policy-controller's conversion webhook is not installed: see below).
#
# Environment: CLUSTER_ETCD_PORT (default 17079), CLUSTER_ETCD_PEER_PORT
# (17080), CLUSTER_APISERVER_PORT (17043); CLUSTER_START_TIMEOUT seconds
# (default 180) for each server to become ready; WORDCOUNT_CRDS (default
# ../shared/crds, as for make policy-check). The processes are stopped on
# exit; the certificates, keys and etcd data live in a temp dir of this run.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
DIE_PREFIX="FAIL: "
etcd_port=${CLUSTER_ETCD_PORT:-17079}
peer_port=${CLUSTER_ETCD_PEER_PORT:-17080}
api_port=${CLUSTER_APISERVER_PORT:-17043}
start_timeout=${CLUSTER_START_TIMEOUT:-180}
crds="${WORDCOUNT_CRDS:-$ROOT/../shared/crds}"
work="$(mktemp -d -p "$SCRATCH")"

scripts/install.sh cluster
etcd_bin=$(go_tool etcd "$ETCD" tools/go/etcd)
apiserver_bin=$(go_tool kube-apiserver "$KUBERNETES" tools/go/kubernetes)
kubectl_bin=$(go_tool kubectl "$KUBERNETES" tools/go/kubernetes)
k() { "$kubectl_bin" --kubeconfig "$work/kubeconfig" --request-timeout=30s "$@"; }

for port in "$etcd_port" "$peer_port" "$api_port"; do
	if (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
		die "something already listens on 127.0.0.1:$port (set CLUSTER_*_PORT)"
	fi
done

# --- a CA for this run: the serving certificate and an admin client ---------
pki=$work/pki
mkdir -p "$pki"
newcert() { # newcert NAME SUBJECT [openssl req options...]: NAME.crt/.key signed by the CA
	local name=$1 subject=$2
	shift 2
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "$subject" \
		-keyout "$pki/$name.key" -out "$pki/$name.crt" "$@" 2>/dev/null
}
newcert ca /CN=cluster-check-ca
leaf=(-CA "$pki/ca.crt" -CAkey "$pki/ca.key" -addext "basicConstraints=critical,CA:FALSE")
newcert apiserver /CN=kube-apiserver "${leaf[@]}" -addext subjectAltName=IP:127.0.0.1 -addext extendedKeyUsage=serverAuth
# system:masters: the bootstrap RBAC binds it to cluster-admin.
newcert admin /O=system:masters/CN=cluster-check-admin "${leaf[@]}" -addext extendedKeyUsage=clientAuth
# kube-apiserver refuses to start without a key to sign and verify
# service-account tokens and an issuer for them; nothing here uses tokens.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key"
openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: check
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$pki/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$pki/admin.crt", client-key: "$pki/admin.key"}
contexts:
- name: check
  context: {cluster: check, user: admin}
current-context: check
EOF

# --- the servers ---------------------------------------------------------------
stop_pid() { # stop_pid PID: TERM, up to 15 s, then KILL
	local pid=$1
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
}
wait_ready() { # wait_ready NAME LOG CMD...: CMD succeeds within start_timeout
	local name=$1 log=$2
	shift 2
	local deadline=$((SECONDS + start_timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			tail -30 "$log" >&2
			die "$name not ready within ${start_timeout} s (its log above)"
		fi
		sleep 0.5
	done
}

# Plain HTTP on loopback; the data is thrown away, so no fsync.
"$etcd_bin" --name check --data-dir "$work/etcd" --unsafe-no-fsync \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
	--initial-cluster "check=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
at_exit "stop_pid $etcd_pid"
wait_ready etcd "$work/etcd.log" curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health"
log "etcd $("$etcd_bin" --version | sed -n 's/^etcd Version: //p') on 127.0.0.1:$etcd_port"

# The server's minor, from the pin go_tool checked in the binary (a plain go
# build does not stamp the version /version reports; the code is the same).
minor=${KUBERNETES#*@}
minor=${minor%.*}
apiserver_pid=''
# cluster_up NAME: a kube-apiserver on a fresh part of etcd (prefix /NAME), so
# every manifest set meets an empty cluster. Admission plugins are the
# release's defaults, which include PodSecurity (the refusals below prove it).
cluster_up() {
	stop_apiserver
	"$apiserver_bin" --etcd-servers "http://127.0.0.1:$etcd_port" --etcd-prefix "/$1" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
		--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--client-ca-file "$pki/ca.crt" --authorization-mode RBAC \
		--service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
		--service-account-signing-key-file "$pki/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
		>"$work/apiserver-$1.log" 2>&1 &
	apiserver_pid=$!
	wait_ready "kube-apiserver ($1)" "$work/apiserver-$1.log" k get --raw /readyz
	log "kube-apiserver ${KUBERNETES#*@} on 127.0.0.1:$api_port, etcd prefix /$1"
}
stop_apiserver() { [[ -z "$apiserver_pid" ]] || stop_pid "$apiserver_pid"; apiserver_pid=''; }
at_exit stop_apiserver

# --- checks ----------------------------------------------------------------------
# create_clean WHAT ARGS...: `kubectl create --validate=strict ARGS` succeeds
# and prints no warning at all (PodSecurity's warn mode speaks as warnings).
create_clean() {
	local what=$1
	shift
	k create --validate=strict "$@" >"$work/out" 2>"$work/err" || { cat "$work/out" "$work/err" >&2; die "$what: kubectl create failed"; }
	if grep -q 'Warning:' "$work/err"; then
		cat "$work/err" >&2
		die "$what: the API server warned"
	fi
	ok "$what: created ($(grep -c . "$work/out") objects), no warnings"
}
# expect_refused WHAT NEEDLE ARGS...: `kubectl ARGS` fails and the server's
# message contains NEEDLE.
expect_refused() {
	local what=$1 needle=$2
	shift 2
	if k "$@" >"$work/out" 2>"$work/err"; then
		cat "$work/out" >&2
		die "$what: accepted"
	fi
	grep -qF -- "$needle" "$work/err" || { cat "$work/err" >&2; die "$what: refused, but without \"$needle\""; }
	ok "$what: refused ($needle)"
}
# json_edit PYTHON < JSON > JSON: the object as `o` for one statement.
json_edit() { python3 -c "import json, sys; o = json.load(sys.stdin); $1; json.dump(o, sys.stdout)"; }

# manifests_check WHAT PATH: PATH creates namespace wordcount and its objects.
manifests_check() {
	local what=$1 path=$2 mode label d pod
	create_clean "$what" -f "$path"
	for mode in enforce warn audit; do
		label=$(k get namespace wordcount -o "jsonpath={.metadata.labels.pod-security\.kubernetes\.io/$mode}:{.metadata.labels.pod-security\.kubernetes\.io/$mode-version}")
		[[ "$label" == "restricted:$minor" ]] || die "$what: namespace wordcount has Pod Security $mode '$label', want restricted:$minor"
	done
	ok "$what: namespace wordcount enforces, warns and audits restricted:$minor, the server's minor"

	# A Pod as the ReplicaSet controller would make it: the stored (defaulted)
	# template under a Pod's name.
	for d in $(k -n wordcount get deployments -o name); do
		pod="$work/${d#*/}.json"
		k -n wordcount get "$d" -o json |
			json_edit 'o = {"apiVersion": "v1", "kind": "Pod", "metadata": {**o["spec"]["template"]["metadata"], "name": o["metadata"]["name"] + "-pod", "namespace": "wordcount"}, "spec": o["spec"]["template"]["spec"]}' >"$pod"
		create_clean "$what: Pod from the template of $d" -f "$pod"
	done
	json_edit 'o["metadata"]["name"] += "-escalation"; o["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True' <"$pod" >"$work/escalation.json"
	expect_refused "$what: that Pod with allowPrivilegeEscalation: true" \
		'violates PodSecurity "restricted:'"$minor"'": allowPrivilegeEscalation != false' create --validate=strict -f "$work/escalation.json"
	json_edit 'o["metadata"]["name"] += "-hostpath"; o["spec"]["volumes"] = [{"name": "host", "hostPath": {"path": "/"}}]' <"$pod" >"$work/hostpath.json"
	expect_refused "$what: that Pod with a hostPath volume" \
		'violates PodSecurity "restricted:'"$minor"'": restricted volume types (volume "host" uses restricted volume type "hostPath")' create --validate=strict -f "$work/hostpath.json"
	k -n wordcount get "$d" -o json |
		json_edit 'o = {k: o[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": "weakened", "namespace": "wordcount"}}; o["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True' >"$work/weakened.json"
	k create --validate=strict -f "$work/weakened.json" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; die "$what: the weakened Deployment was not created"; }
	grep -qF 'Warning: would violate PodSecurity "restricted:'"$minor"'": allowPrivilegeEscalation != false' "$work/err" ||
		{ cat "$work/err" >&2; die "$what: a weakened Deployment drew no PodSecurity warning"; }
	ok "$what: a Deployment with allowPrivilegeEscalation: true draws PodSecurity's warning"
}

established() { [[ $(k get crd "$1" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}') == True ]]; }
# policies_check KYVERNO_CRD: Kyverno's CRD applied (server-side apply, so a
# second version replaces the first), every shipped policy created and
# deleted again, and a misspelled copy of each refused.
policies_check() {
	local kyverno_crd=$1 f obj key
	k apply --server-side -f "$crds/$kyverno_crd" >/dev/null
	wait_ready "CRD clusterpolicies.kyverno.io" /dev/null established clusterpolicies.kyverno.io
	for f in cosign/policy/*.yaml; do
		create_clean "$f (CRDs: ${kyverno_crd%-clusterpolicies.yaml}, policy-controller-v0.15.1)" -f "$f"
		for obj in $(k get -f "$f" -o name); do
			# A copy with the first field of its spec misspelled (last letter doubled).
			k get "$obj" -o json >"$work/obj.json"
			key=$(json_edit 'o = next(iter(o["spec"]))' <"$work/obj.json" | tr -d '"')
			json_edit 'o = {"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": {"name": o["metadata"]["name"] + "-typo"}, "spec": {(k + k[-1] if k == "'"$key"'" else k): v for k, v in o["spec"].items()}}' <"$work/obj.json" >"$work/typo.json"
			expect_refused "${obj#*/} with spec.$key misspelled" "unknown field \"spec.$key${key: -1}\"" create --validate=strict -f "$work/typo.json"
		done
		k delete -f "$f" >/dev/null
	done
}

cluster_up raw-yaml
manifests_check raw-yaml/ raw-yaml/
# policy-controller's CRD stores v1alpha1 and converts the v1beta1 our policy
# is written in through policy-controller's own webhook service, which is not
# installed here: the one change is conversion strategy None (apiVersion
# relabelled), so the object is still decoded, pruned and validated with the
# CRD's v1beta1 schema as shipped.
k apply --server-side -f "$crds/policy-controller-v0.15.1-clusterimagepolicy.yaml" >/dev/null
k patch crd clusterimagepolicies.policy.sigstore.dev --type merge -p '{"spec": {"conversion": {"strategy": "None", "webhook": null}}}' >/dev/null
wait_ready "CRD clusterimagepolicies.policy.sigstore.dev" /dev/null established clusterimagepolicies.policy.sigstore.dev
policies_check kyverno-v1.13.0-clusterpolicies.yaml
policies_check kyverno-v1.19.0-clusterpolicies.yaml

# The release's asset, by the release's own command, to a fixed digest (the
# asset differs from a published one only in that digest).
mkdir "$work/dist"
scripts/workflows/release.sh manifests "ghcr.io/wordcount/wordcount@sha256:$(printf cluster-check | sha256sum | cut -c1-64)" "$work/dist"
cluster_up release-asset
manifests_check "release asset" "$(echo "$work"/dist/wordcount-*-manifests.yaml)"

printf '\ncluster-check: %d checks passed against kube-apiserver %s\n' "$passed" "${KUBERNETES#*@}"
