#!/usr/bin/env bash
# make admission-test: the admission policies in cosign/policy/, evaluated
# by the engines themselves against images in a loopback registry.
#
#   policy-controller-keyless.yaml  policy-controller's own tester
#   kyverno-keyless.yaml            the Kyverno CLI (kubectl-kyverno apply)
#   kyverno-key.yaml                the Kyverno CLI
#
# Each policy is the shipped file with only its trust root swapped, derived
# per run by scripts/policy/for-test.py. The trust root is made per run: a
# private CA standing in for Fulcio (scripts/deploy/keyless-ca.py, identity
# from cosign/identity.env), an RFC 3161 timestamp authority (openssl ts)
# standing in for Rekor as the source of signing time, and a cosign key pair
# for the key-based policy. Real cosign signs; every policy must admit the
# release-signed image and refuse an unsigned image, an image signed by
# another identity (key), and an image signed without the SBOM attestation
# — except where cosign/policy/README.md says a policy does not check that.
#
# Kyverno's SigstoreBundle verifier (kyverno-keyless.yaml) reads its trust
# root only as the TUF target trusted_root.json, from sigstore's TUF cache
# in $TUF_ROOT: the test makes a TUF repository per run that serves the CA
# and the timestamp authority, and runs the Kyverno CLI with TUF_ROOT set
# (tools/go/kyverno/sigstore-tuf; nothing shipped names it).
#
# Environment: ADMISSION_TEST_PORT (default 5058; the registry, and the
# timestamp authority on the next port).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
# shellcheck source=cosign/identity.env
source cosign/identity.env

registry_test_tools
tester="$(go_tool tester "$POLICY_CONTROLLER" tools/go/policy-tester)"
kyverno_cli="$(go_tool kubectl-kyverno "$KYVERNO" tools/go/kyverno)"

port="${ADMISSION_TEST_PORT:-5058}"
test_registry "$port"
repo="$registry/${WORDCOUNT_IMAGE_REPOSITORY#*/}"

W="$SCRATCH/admission"
mkdir -p "$W"
ca() { "$py" scripts/deploy/keyless-ca.py "$@"; }
ca ca "$W/fulcio"
ca tsa "$W/fulcio" "$W/tsa"
"$py" scripts/deploy/keyless-ca.py serve-tsa "$W/tsa" "$W/fulcio" $((port + 1)) &
tsa_pid=$!
at_exit "kill $tsa_pid"
export COSIGN_PASSWORD=''
cosign generate-key-pair --output-key-prefix "$W/signer" >/dev/null 2>&1
cosign generate-key-pair --output-key-prefix "$W/other" >/dev/null 2>&1

# The test's TrustRoot for policy-controller: the CA and the timestamp
# authority, no transparency or CT log.
b64() { base64 -w0 "$@"; }
cat >"$W/trustroot.yaml" <<-YAML
	apiVersion: policy.sigstore.dev/v1alpha1
	kind: TrustRoot
	metadata:
	  name: wordcount-test
	spec:
	  sigstoreKeys:
	    certificateAuthorities:
	      - subject: {organization: wordcount test, commonName: test CA}
	        uri: https://fulcio.test.invalid
	        certChain: $(b64 "$W/fulcio.pem")
	    timestampAuthorities:
	      - subject: {organization: wordcount test, commonName: test TSA}
	        uri: http://127.0.0.1:$((port + 1))
	        certChain: $(cat "$W/tsa.pem" "$W/fulcio.pem" | b64)
YAML
# The same trust root for Kyverno, as sigstore's TUF serves it.
test_trusted_root "$W/trusted_root" https://fulcio.test.invalid "$W/fulcio" "http://127.0.0.1:$((port + 1))" "$W/tsa"
GOFLAGS="-mod=readonly -buildvcs=false -trimpath" nice -n 10 go -C tools/go/kyverno run ./sigstore-tuf "$W/tuf" "$W/trusted_root.json"
"$py" scripts/policy/for-test.py cosign/policy/policy-controller-keyless.yaml "$W/pc.yaml" \
	--registry "$registry" --trust-root wordcount-test
"$py" scripts/policy/for-test.py cosign/policy/kyverno-key.yaml "$W/kyverno-key.yaml" \
	--registry "$registry" --public-key "$W/signer.pub"
"$py" scripts/policy/for-test.py cosign/policy/kyverno-keyless.yaml "$W/kyverno-keyless.yaml" \
	--registry "$registry"

# quiet CMD...: CMD's output only when it fails.
quiet() { "$@" >"$SCRATCH/quiet" 2>&1 || { cat "$SCRATCH/quiet" >&2; return 1; }; }

# image CASE: a new image in the loopback registry -> prints REPO@DIGEST.
image() { test_image "$repo" "$1"; }
# keyless REF IDENTITY TYPE PREDICATE: the release's bundle-format signature
# and one attestation of TYPE, each with a certificate for IDENTITY and
# timestamped by the test's timestamp authority, no transparency log.
keyless() {
	local ref=$1 id=$2 opts
	ca leaf "$W/fulcio" "$W/signer.pub" "$W/cert.pem" --identity "$id" --issuer "$WORDCOUNT_OIDC_ISSUER"
	opts=(--yes --key "$W/signer.key" --certificate "$W/cert.pem"
		--timestamp-server-url "http://127.0.0.1:$((port + 1))/"
		--tlog-upload=false --new-bundle-format=true --use-signing-config=false)
	quiet cosign sign "${opts[@]}" "$ref"
	quiet cosign attest "${opts[@]}" --type "$3" --predicate "$4" "$ref"
}
# keyed REF KEY [--with-sbom]: the key-based release signature (legacy format).
keyed() {
	local opts=(--yes --key "$2" --tlog-upload=false --new-bundle-format=false --use-signing-config=false)
	quiet cosign sign "${opts[@]}" "$1"
	[[ "${3:-}" != --with-sbom ]] ||
		quiet cosign attest "${opts[@]}" --type cyclonedx --predicate sbom/wordcount.cdx.json "$1"
}

identity="$(wordcount_identity_for v1.0.0)"
other="https://github.com/${WORDCOUNT_GITHUB_REPOSITORY%/*}-fork/${WORDCOUNT_GITHUB_REPOSITORY#*/}/$WORDCOUNT_RELEASE_WORKFLOW@refs/tags/v1.0.0"
release="$(image release)"
sbom=(cyclonedx sbom/wordcount.cdx.json)
# Signed, but what is attested is not an SBOM: refused for the SBOM alone.
echo '{"note": "not an SBOM"}' >"$W/other.json"
not_sbom=(https://example.com/not-an-sbom "$W/other.json")
keyless "$release" "$identity" "${sbom[@]}"
keyed "$release" "$W/signer.key" --with-sbom
unsigned="$(image unsigned)"
other_id="$(image other-identity)"
keyless "$other_id" "$other" "${sbom[@]}"
keyed "$other_id" "$W/other.key" --with-sbom
no_sbom="$(image no-sbom)"
keyless "$no_sbom" "$identity" "${not_sbom[@]}"
keyed "$no_sbom" "$W/signer.key"

policy_controller() { "$tester" --policy "$W/pc.yaml" --trustroot "$W/trustroot.yaml" --log-level error --image "$1"; }
# kyverno POLICY REF [FLAG...]: kubectl-kyverno apply of $W/POLICY.yaml to
# a Pod of REF.
kyverno() {
	cat >"$W/pod.yaml" <<-YAML
		apiVersion: v1
		kind: Pod
		metadata: {name: wordcount, namespace: wordcount}
		spec:
		  containers: [{name: wordcount, image: "$2"}]
	YAML
	# An image the policy does not match passes with nothing checked: admitted
	# means its rules applied and passed, refused that they applied and
	# failed; anything else (an error) is exit 2.
	"$kyverno_cli" apply "$W/$1.yaml" --resource "$W/pod.yaml" --registry --remove-color "${@:3}" >"$W/kyverno.out" 2>&1 || true
	cat "$W/kyverno.out"
	if grep -qE 'pass: [1-9][0-9]*, fail: 0, warn: 0, error: 0' "$W/kyverno.out"; then return 0; fi
	if grep -qE 'pass: 0, fail: [1-9][0-9]*, warn: 0, error: 0' "$W/kyverno.out"; then return 1; fi
	return 2
}
# -v=4: Kyverno logs why each bundle failed to verify (the identity).
kyverno_keyless() { TUF_ROOT="$W/tuf/cache" kyverno kyverno-keyless "$1" -v=4; }
kyverno_key() { kyverno kyverno-key "$1"; }
# verdict ENGINE CASE REF admit|REASON: admitted, or refused with the
# engine's own REASON in its output (a refusal for another cause, say an
# unreachable registry, fails the check).
verdict() {
	local rc=0 want=admit
	[[ $4 == admit ]] || want=refuse
	"$1" "$3" >"$SCRATCH/out" 2>&1 || rc=$?
	if { [[ $want == admit ]] && ((rc == 0)); } || { [[ $want == refuse ]] && ((rc == 1)) && grep -qF -- "$4" "$SCRATCH/out"; }; then
		ok "$1: ${want}s $2"
	else
		fail "$1: should $want $2 (exit $rc; want $([[ $want == admit ]] && echo 0 || echo "1 with \"$4\""))"
		tail -15 "$SCRATCH/out" | sed 's/^/       /'
	fi
}

verdict policy_controller "the release-signed image" "$release" admit
verdict policy_controller "an unsigned image" "$unsigned" "no valid bundles exist"
verdict policy_controller "an image signed by another identity" "$other_id" "expected SAN value"
verdict policy_controller "an image signed without the SBOM attestation" "$no_sbom" "no matching attestations with type https://cyclonedx.org/bom"
verdict kyverno_keyless "the release-signed image" "$release" admit
verdict kyverno_keyless "an unsigned image" "$unsigned" ".attestors[0].entries[0].keyless: sigstore bundle verification failed: no matching signatures found"
verdict kyverno_keyless "an image signed by another identity" "$other_id" "no matching CertificateIdentity found, last error: expected SAN value to match regex"
verdict kyverno_keyless "an image signed without the SBOM attestation" "$no_sbom" "image attestations verification failed, verifiedCount: 0, requiredCount: 1"
verdict kyverno_key "the image signed with the release key" "$release" admit
verdict kyverno_key "an unsigned image" "$unsigned" "no signatures found"
verdict kyverno_key "an image signed by another key" "$other_id" "invalid signature when validating"
# The key-based policy checks the signature only (cosign/policy/README.md).
verdict kyverno_key "an image signed without the SBOM attestation (signature only)" "$no_sbom" admit

printf '\nadmission-test: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
