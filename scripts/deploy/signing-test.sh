#!/usr/bin/env bash
# make signing-test: the signature gate, proven both ways on this machine.
#
# A loopback registry of its own (REGISTRY_PORT 5055, state in a temp dir),
# the real image from `make image`, key pairs generated for this run only.
# The signed image must verify and deploy (render + apply, with a recording
# kubectl standing in for the cluster); each of these must be REFUSED with
# its own plain message, and nothing may be applied:
#   1. an unsigned image
#   2. a tag moved to new content after the signed content was pushed
#   3. a signature made by another key
#   4. a signature copied from another digest
#   5. a tag instead of a digest
#   6. manifests with an image reference the deploy step did not verify
# Plus: the committed cosign/cosign.pub loads, the keyless path explains a
# missing cosign binary, and cosign/policy/* name the identity in
# cosign/identity.env.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
use_engine
cd "$ROOT"
# The real image from `make image`, read from the engine's own store.
SOURCE_IMAGE="${SIGNING_TEST_IMAGE:-$IMAGE}"
if [[ "$ENGINE" == docker ]]; then SOURCE_REF="docker-daemon:$SOURCE_IMAGE"; else SOURCE_REF="containers-storage:$SOURCE_IMAGE"; fi

scripts/install.sh signing
imgsign="$(scripts/install.sh --print imgsign)"

work="$(mktemp -d -p "$SCRATCH")"
export REGISTRY_PORT="${SIGNING_TEST_REGISTRY_PORT:-5055}"
export REGISTRY_STATE_DIR="$work/registry"
VARIANT_REPO=localhost/wordcount-signing-test
VARIANTS=(unsigned moved other-key copied)
cleanup() {
	scripts/deploy/registry.sh stop || true
	for v in "${VARIANTS[@]}"; do buildah rmi -f "$VARIANT_REPO:$v" >/dev/null 2>&1 || true; done
}
at_exit cleanup

DIE_PREFIX="FAIL: "
section() { printf '\n--- %s\n' "$*"; }

# expect_refused DESCRIPTION NEEDLE CMD...: CMD must exit 1 (refused, not a
# crash or usage error) and say NEEDLE; its message is shown.
expect_refused() {
	local what="$1" needle="$2" rc=0
	shift 2
	"$@" >"$work/out" 2>"$work/err" || rc=$?
	sed 's/^/        | /' "$work/err"
	((rc == 1)) || die "$what: expected exit 1 (refused), got $rc"
	grep -qF -- "$needle" "$work/err" || die "$what: message lacks \"$needle\""
	ok "$what"
}
expect_ok() {
	local what="$1"
	shift
	"$@" >"$work/out" 2>"$work/err" || { cat "$work/err" >&2; die "$what"; }
	ok "$what"
}

# A kubectl that records instead of applying: the test asserts *whether* the
# deploy step applied, which is the property that matters.
mkdir -p "$work/bin"
cat >"$work/bin/kubectl" <<EOF
#!/bin/sh
printf '%s\n' "\$*" >>"$work/kubectl.log"
EOF
chmod +x "$work/bin/kubectl"
: >"$work/kubectl.log"
applies() { wc -l <"$work/kubectl.log"; }

section "setup"
skopeo inspect --raw "$SOURCE_REF" >/dev/null 2>&1 || die "$SOURCE_IMAGE is missing: run make image first"
scripts/deploy/registry.sh start
repo="$(scripts/deploy/registry.sh addr)/wordcount"

# containers/storage chatters on stderr (graphdriver info, copy progress);
# keep it out of the report unless the command fails.
quiet() { "$@" 2>"$work/quiet.log" || { cat "$work/quiet.log" >&2; return 1; }; }

# New content = the real image plus a label: a different digest, as a rebuild
# or a malicious push would produce.
variant() {
	local name="$VARIANT_REPO:$1" c
	c="$(quiet buildah from --quiet --pull-never "$SOURCE_REF")"
	quiet buildah config --label "org.wordcount.signing-test=$1" "$c"
	quiet buildah commit --quiet "$c" "$name" >/dev/null
	quiet buildah rm "$c" >/dev/null
	printf 'containers-storage:%s\n' "$name"
}
# push SOURCE_REF TAG -> prints the pushed digest
push() {
	quiet skopeo copy --quiet --dest-tls-verify=false --digestfile "$work/digest" \
		"$1" "docker://$repo:$2"
	cat "$work/digest"
}
sig_tag() { local d="$1"; printf '%s\n' "${d/:/-}.sig"; }

export COSIGN_PASSWORD
COSIGN_PASSWORD="$(head -c 24 /dev/urandom | base64)"
"$imgsign" generate-key-pair --output-key-prefix "$work/release" 2>/dev/null
"$imgsign" generate-key-pair --output-key-prefix "$work/other" 2>/dev/null
grep -q '^-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----$' "$work/release.key" ||
	die "private key is not an encrypted SIGSTORE PEM"
ok "per-run key pairs generated (encrypted SIGSTORE PRIVATE KEY PEM)"

signed="$(push "$SOURCE_REF" v1)"
"$imgsign" sign --key "$work/release.key" --allow-http-registry "$repo@$signed" 2>/dev/null
echo "  signed $repo@$signed (tag v1)"
verify=(cosign/verify --key "$work/release.pub" --with-imgsign --allow-http-registry)
deploy=(scripts/deploy/deploy.sh --key "$work/release.pub" --with-imgsign --allow-http-registry
	--out "$work/rendered")

section "the signed image verifies and deploys"
expect_ok "imgsign verify accepts the signed digest" \
	"$imgsign" verify --key "$work/release.pub" --allow-http-registry "$repo@$signed"
grep -q "\"docker-manifest-digest\":\"$signed\"" "$work/out" ||
	die "verify output does not name the signed digest"
expect_ok "cosign/verify (rehearsal mode) accepts it" "${verify[@]}" "$repo@$signed"
sig_manifest="$(skopeo inspect --tls-verify=false --raw "docker://$repo:$(sig_tag "$signed")")"
jq -e '.layers[0].mediaType == "application/vnd.dev.cosign.simplesigning.v1+json"
	and (.layers[0].annotations["dev.cosignproject.cosign/signature"] | length > 0)' \
	<<<"$sig_manifest" >/dev/null || die "signature manifest is not in cosign's format"
ok "signature stored as cosign does: simplesigning layer in tag $(sig_tag "$signed")"
# An independent check of the bytes, outside sigstore-rs: the payload names
# the digest and the annotation is an ECDSA P-256/SHA-256 signature over
# exactly that payload, verifiable with openssl and the public key alone.
registry_url="http://$(scripts/deploy/registry.sh addr)"
curl -fsS "$registry_url/v2/wordcount/blobs/$(jq -r '.layers[0].digest' <<<"$sig_manifest")" -o "$work/payload"
jq -e --arg d "$signed" '.critical.image["docker-manifest-digest"] == $d
	and .critical.type == "cosign container image signature"' "$work/payload" >/dev/null ||
	die "simplesigning payload does not name $signed"
jq -r '.layers[0].annotations["dev.cosignproject.cosign/signature"]' <<<"$sig_manifest" | base64 -d >"$work/sig.der"
openssl dgst -sha256 -verify "$work/release.pub" -signature "$work/sig.der" "$work/payload" >/dev/null ||
	die "openssl does not verify the signature over the payload"
ok "openssl alone verifies the signature over the simplesigning payload"

[[ -d raw-yaml ]] || die "raw-yaml/ is missing: nothing to deploy"
before="$(applies)"
PATH="$work/bin:$PATH" expect_ok "deploy.sh by tag: resolve, verify, render, apply" \
	"${deploy[@]}" --image "$repo:v1" --target kubectl
(($(applies) == before + 1)) || die "kubectl apply was not called exactly once"
grep -qx "apply -f $work/rendered" "$work/kubectl.log" || die "kubectl was not asked to apply the rendered folder"
shopt -s nullglob
manifests=(raw-yaml/*.yaml raw-yaml/*.yml raw-yaml/*.json)
shopt -u nullglob
want=$(cat "${manifests[@]}" | grep -cE '^\s*(-\s+)?image:' || true)
got=$(grep -hE '^\s*(-\s+)?image:' "$work/rendered"/* | grep -cF "image: $repo@$signed" || true)
((want > 0 && got == want)) || die "$got of $want image references point at $repo@$signed"
ok "all $want image references in raw-yaml rendered to the verified digest"
if diff -r raw-yaml "$work/rendered" | grep -E '^[<>]' | grep -vE '^[<>]\s*(-\s+)?image:' | grep -q .; then
	die "rendering changed more than image references"
fi
ok "rendering changed nothing but image references"

section "refused, and nothing applied"
before="$(applies)"
rm -rf "$work/rendered"

unsigned="$(push "$(variant unsigned)" unsigned)"
PATH="$work/bin:$PATH" expect_refused "1. unsigned image" "REFUSED (unsigned)" \
	"${deploy[@]}" --image "$repo:unsigned" --target kubectl
[[ "$unsigned" != "$signed" ]] || die "test setup: variant has the signed digest"

moved="$(push "$(variant moved)" v1)"
PATH="$work/bin:$PATH" expect_refused "2. tag v1 moved to new content after signing" "REFUSED (unsigned)" \
	"${deploy[@]}" --image "$repo:v1" --target kubectl
grep -qF "resolved $repo:v1 -> $repo@$moved" "$work/err" || die "deploy did not show which digest the moved tag resolved to"
expect_ok "   ...while the originally signed digest still verifies" "${verify[@]}" "$repo@$signed"

other="$(push "$(variant other-key)" other-key)"
"$imgsign" sign --key "$work/other.key" --allow-http-registry "$repo@$other" 2>/dev/null
PATH="$work/bin:$PATH" expect_refused "3. signature made by another key" "REFUSED (wrong signer)" \
	"${deploy[@]}" --image "$repo@$other" --target kubectl
expect_ok "   ...while the same signature verifies with that other key" \
	"$imgsign" verify --key "$work/other.pub" --allow-http-registry "$repo@$other"

copied="$(push "$(variant copied)" copied)"
skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
	"docker://$repo:$(sig_tag "$signed")" "docker://$repo:$(sig_tag "$copied")"
PATH="$work/bin:$PATH" expect_refused "4. signature copied from another digest" "REFUSED (signature for another image)" \
	"${deploy[@]}" --image "$repo@$copied" --target kubectl
grep -qF "$signed" "$work/err" || die "the copied-signature message does not name the digest it was made for"

expect_refused "5. tag instead of digest (cosign/verify)" "is a tag, not a digest" \
	"${verify[@]}" "$repo:v1"
expect_refused "5. tag instead of digest (imgsign)" "REFUSED (tag, not digest)" \
	"$imgsign" verify --key "$work/release.pub" --allow-http-registry "$repo:v1"

mkdir -p "$work/manifests"
cat >"$work/manifests/deployment.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: wordcount
spec:
  selector:
    matchLabels: {app: wordcount}
  template:
    metadata:
      labels: {app: wordcount}
    spec:
      containers:
        - name: wordcount
          image: ghcr.io/wordcount/wordcount@sha256:0000000000000000000000000000000000000000000000000000000000000000
        - name: sidecar
          image: docker.io/library/busybox:1.36
YAML
PATH="$work/bin:$PATH" expect_refused "6. an image reference the deploy did not verify" "NOT SUBSTITUTED" \
	"${deploy[@]}" --image "$repo@$signed" --manifests "$work/manifests" --target kubectl
mkdir -p "$work/manifests-flow"
printf '%s\n' '{"kind": "Pod", "spec": {"containers": [{"image": "ghcr.io/wordcount/wordcount:v1"}]}}' \
	>"$work/manifests-flow/pod.json"
PATH="$work/bin:$PATH" expect_refused "6. an image reference in a form the render cannot rewrite" "cannot rewrite" \
	"${deploy[@]}" --image "$repo@$signed" --manifests "$work/manifests-flow" --target kubectl
[[ ! -e "$work/rendered" ]] || die "a refused deploy left rendered manifests behind"
(($(applies) == before)) || die "kubectl apply was called for a refused image"
ok "kubectl apply was never called for any refused case"

section "committed key, keyless path, policies"
expect_refused "committed cosign/cosign.pub loads (and did not sign this per-run image)" "REFUSED (wrong signer)" \
	"$imgsign" verify --key cosign/cosign.pub --allow-http-registry "$repo@$signed"
grep -q '^-----BEGIN PUBLIC KEY-----$' cosign/cosign.pub || die "cosign/cosign.pub is not a PEM public key"
if ! command -v cosign >/dev/null; then
	rc=0
	cosign/verify "$repo@$signed" 2>"$work/err" || rc=$?
	if ((rc != 2)) || ! grep -q "cosign binary is not installed" "$work/err"; then
		die "keyless mode without cosign must exit 2 and say why"
	fi
	ok "keyless mode without a cosign binary stops with an explanation (exit 2)"
fi
python3 scripts/deploy/check-policy-identity.py
ok "cosign/policy/* match cosign/identity.env"
# rustls only: a feature change in sigstore/oci-client could quietly bring
# OpenSSL back (its default features do).
tree="$(cd tools/imgsign && cargo tree --locked --offline -e normal --prefix none --format '{p}')"
if grep -E '^(openssl|openssl-sys|native-tls) ' <<<"$tree"; then
	die "tools/imgsign depends on OpenSSL/native-tls"
fi
ok "tools/imgsign's dependency tree has no openssl or native-tls ($(sort -u <<<"$tree" | wc -l) crates)"
# Outside the service's workspace, so `make lint` does not see it.
(cd tools/imgsign && cargo fmt --check) || die "tools/imgsign is not rustfmt-clean (cd tools/imgsign && cargo fmt)"
ok "tools/imgsign is rustfmt-clean"

printf '\nsigning-test: %d checks passed\n' "$passed"
