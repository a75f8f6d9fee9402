#!/usr/bin/env bash
# Tests of the workflow step scripts' decisions, offline:
#   release.sh meta        which tags may be released, the image name, platforms
#   deploy-step.sh         which releases may be deployed, and where to: only
#                          through the release's signed, summed manifests
#                          asset, with the exact identity of its tag
# Keyless signing and verification need Fulcio, Rekor and GitHub's OIDC
# token, and gh needs GitHub; none is reachable here. So release.sh sign /
# verify-signed and deploy-step.sh run against recorders standing in for
# cosign and gh (they log their arguments and refuse on demand in the
# negative cases), and the tests assert which identity and flags each step
# asks for. deploy-step.sh runs in a scratch copy of the tree whose
# cosign/verify and deploy.sh are recorders too, so its own checks are what
# is tested. The real cosign runs these scripts' key-based path
# (release.sh sign-key or sign in rehearsal mode, cosign/verify --key,
# deploy.sh) in make local-release, make mock-prod and make signing-test.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

# expect NAME want_rc want_regex -- command...
expect() {
	local name="$1" want_rc="$2" want="$3"
	shift 4
	local out rc=0
	out="$("$@" 2>&1)" || rc=$?
	if [[ "$rc" == "$want_rc" && "$out" =~ $want ]]; then
		ok "$name"
	else
		fail "$name (exit $rc, wanted $want_rc and /$want/):"
		printf '     %s\n' "$out"
	fi
}

version="$(cargo_version)"
export GITHUB_OUTPUT=/dev/null

# --- release.sh meta ----------------------------------------------------------
expect "meta: tag = Cargo.toml version is released, image name lower-cased" 0 "image=ghcr\.io/org/repo" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta: identity names release.yml at the tag" 0 "identity=https://github\.com/Org/Repo/\.github/workflows/release\.yml@refs/tags/v$version" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta: provenance identity names build.yml (the reusable workflow) at the tag" 0 "provenance_identity=https://github\.com/Org/Repo/\.github/workflows/build\.yml@refs/tags/v$version" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta: tag that differs from Cargo.toml is refused" 1 "does not match Cargo.toml" -- \
	env GITHUB_REF_NAME=v999.0.0 GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta: non-semver tag is refused" 1 "is not vMAJOR" -- \
	env GITHUB_REF_NAME=v1.2 GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta: shell metacharacters in a tag are refused" 1 "is not vMAJOR" -- \
	env GITHUB_REF_NAME='v1.0.0;id' GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta: both platforms of the one image" 0 "platforms=linux/amd64,linux/arm64" -- \
	env GITHUB_REF_NAME="v$version" GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta (rehearsal): tag vX.Y.Z-rehearsal.<PR>, image in the job's registry" 0 "tag=v$version-rehearsal\.42.*image=localhost:5000/org/repo" -- \
	env -u GITHUB_REF_NAME REHEARSAL_REGISTRY=localhost:5000 REHEARSAL_PR=42 GITHUB_REPOSITORY=Org/Repo scripts/workflows/release.sh meta
expect "meta (rehearsal): a remote registry is refused" 1 "is not localhost:PORT" -- \
	env REHEARSAL_REGISTRY=ghcr.io REHEARSAL_PR=42 GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "meta (rehearsal): a PR number that is not a number is refused" 1 "is not a number" -- \
	env REHEARSAL_REGISTRY=localhost:5000 'REHEARSAL_PR=1;id' GITHUB_REPOSITORY=o/r scripts/workflows/release.sh meta
expect "rehearsal: an image outside a loopback registry is refused" 1 "not in a loopback registry" -- \
	env REF="ghcr.io/o/r@sha256:$(printf '%064d' 0)" scripts/workflows/rehearsal.sh
expect "assets: a tag instead of a digest is refused" 1 "digests only" -- \
	scripts/workflows/release.sh assets ghcr.io/o/r:v1.0.0 /nonexistent
expect "image-test: an unknown platform is refused" 1 "unknown platform" -- \
	scripts/workflows/release.sh image-test "ghcr.io/o/r@sha256:$(printf '%064d' 0)" linux/s390x
expect "verify-signed: a tag that is not a release tag is refused" 1 "is not vMAJOR" -- \
	scripts/workflows/release.sh verify-signed main "ghcr.io/o/r@sha256:$(printf '%064d' 0)" /nonexistent
expect "follow-up: a tag instead of a digest is refused" 1 "digests only" -- \
	scripts/workflows/release.sh follow-up v1.0.0 ghcr.io/o/r:v1.0.0

# --- release.sh manifests, sign, verify-signed (recorders for keyless cosign and gh)
rel="$(mktemp -d -p "$SCRATCH")"
mkdir -p "$rel/bin" "$rel/dist"
cat >"$rel/bin/cosign" <<'EOF'
#!/bin/sh
echo "cosign $*" >>"$REL_LOG"
case "$*" in *"${REL_REFUSE:-@@}"*) echo "Error: none of the expected identities matched" >&2; exit 1 ;; esac
EOF
cat >"$rel/bin/gh" <<'EOF'
#!/bin/sh
echo "gh $*" >>"$REL_LOG"
case "$*" in *"${REL_REFUSE:-@@}"*) echo "Error: verifying with issuer \"sigstore.dev\": no matching identity" >&2; exit 1 ;; esac
EOF
chmod +x "$rel/bin/cosign" "$rel/bin/gh"
export REL_LOG="$rel/log"
IREF="ghcr.io/org/repo@sha256:$(printf '%064d' 0 | tr 0 b)"
for f in "wordcount-$version-x86_64-unknown-linux-musl" "wordcount-$version-aarch64-unknown-linux-musl" \
	"wordcount-$version-image-linux-amd64.cdx.json" "wordcount-$version-image-linux-arm64.cdx.json"; do
	echo "$f" >"$rel/dist/$f"
done
expect "manifests: the asset is raw-yaml/ pinned to the digest, listed in SHA256SUMS" 0 "" -- \
	scripts/workflows/release.sh manifests "$IREF" "$rel/dist"
if grep -q "  wordcount-$version-manifests.yaml\$" "$rel/dist/SHA256SUMS" &&
	[[ "$(sed -n 's/^ *image: //p' "$rel/dist/wordcount-$version-manifests.yaml" | sort -u)" == "$IREF" ]] &&
	(cd "$rel/dist" && sha256sum --check --strict --quiet SHA256SUMS); then
	ok "manifests: asset names only $IREF; SHA256SUMS covers all $(wc -l <"$rel/dist/SHA256SUMS") assets"
else
	fail "manifests: $(cat "$rel/dist/SHA256SUMS")"
fi
sign() { env PATH="$rel/bin:$PATH" "$@" scripts/workflows/release.sh sign "$IREF" "$rel/dist"; }
: >"$REL_LOG"
expect "sign: keyless, both formats" 0 "" -- sign
legacy='--new-bundle-format=false --use-signing-config=false' bundle='--new-bundle-format=true --use-signing-config=true'
n_att() { grep -c -- "^cosign attest --yes $1 --type cyclonedx --predicate .*-image-linux-.*\.cdx\.json $IREF\$" "$REL_LOG" || true; }
if grep -qx -- "cosign sign --yes $legacy $IREF" "$REL_LOG" && grep -qx -- "cosign sign --yes $bundle $IREF" "$REL_LOG" &&
	[[ "$(n_att "$legacy")" == 2 && "$(n_att "$bundle")" == 2 ]]; then
	ok "sign: the index signed and each platform's SBOM attested, legacy and bundle"
else
	fail "sign: cosign was asked: $(cat "$REL_LOG")"
fi
for f in "$rel/dist"/*; do
	case "$f" in *.sigstore.json) continue ;; esac
	grep -q "^cosign sign-blob --yes --bundle $f.sigstore.json $f\$" "$REL_LOG" || fail "sign: $(basename "$f") was not sign-blob'ed"
done
ok "sign: every asset (binaries, SBOMs, manifests, SHA256SUMS) gets a Sigstore bundle"
: >"$REL_LOG"
sign COSIGN_PRIVATE_KEY=x >/dev/null 2>&1
if grep -qx -- "cosign sign --yes $legacy --key env://COSIGN_PRIVATE_KEY $IREF" "$REL_LOG" &&
	! grep -q -- "$bundle --key" "$REL_LOG"; then
	ok "sign: with the release key configured, a key-based signature in the legacy format only"
else
	fail "sign: key path: $(grep -- --key "$REL_LOG")"
fi
# Rehearsal mode: the same sign step with the per-run key, never keyless.
LREF="localhost:5000/org/repo@sha256:$(printf '%064d' 0 | tr 0 b)"
: >"$REL_LOG"
expect "sign (rehearsal): an image outside the rehearsal's registry is refused" 1 "signs only images in localhost:5000" -- \
	sign REHEARSAL_REGISTRY=localhost:5000 COSIGN_PRIVATE_KEY=x
env PATH="$rel/bin:$PATH" REHEARSAL_REGISTRY=localhost:5000 COSIGN_PRIVATE_KEY=x \
	scripts/workflows/release.sh sign "$LREF" "$rel/dist" >/dev/null 2>&1 || true
bundle_key='--new-bundle-format=true --use-signing-config=false --key env://COSIGN_PRIVATE_KEY'
if grep -qx -- "cosign sign --yes $legacy --key env://COSIGN_PRIVATE_KEY $LREF" "$REL_LOG" &&
	grep -qx -- "cosign sign --yes $bundle_key $LREF" "$REL_LOG" &&
	[[ "$(grep -c -- "^cosign attest --yes $bundle_key --type cyclonedx " "$REL_LOG")" == 2 ]] &&
	! grep -q -- "--use-signing-config=true" "$REL_LOG" &&
	[[ "$(grep -c -- "^cosign sign-blob --yes --key env://COSIGN_PRIVATE_KEY --use-signing-config=false --bundle " "$REL_LOG")" == \
		"$(grep -c '^cosign sign-blob' "$REL_LOG")" ]] && grep -q '^cosign sign-blob' "$REL_LOG"; then
	ok "sign (rehearsal): both formats and every asset with the per-run key, nothing keyless, no signing config"
else
	fail "sign (rehearsal): cosign was asked: $(cat "$REL_LOG")"
fi
rm -f "$rel/dist"/*.sigstore.json
(cd "$rel/dist" && rm -f SHA256SUMS && sha256sum -- * >SHA256SUMS)
for f in "$rel/dist"/*; do [[ "$f" == *.sigstore.json ]] || touch "$f.sigstore.json"; done
# cosign/verify of the real tree with the recorder on PATH: version + all checks.
cat >>"$rel/bin/cosign" <<'EOF'
[ "$1" = version ] && echo "GitVersion:    v3.0.6"
[ "$1" = download ] && echo '{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}'
exit 0
EOF
vs() { env PATH="$rel/bin:$PATH" GITHUB_REPOSITORY=Org/Repo "$@" scripts/workflows/release.sh verify-signed v1.2.3 "$IREF" "$rel/dist"; }
: >"$REL_LOG"
expect "verify-signed: image, provenance and every asset pass" 0 "assets match SHA256SUMS" -- vs
id="https://github.com/Org/Repo/.github/workflows/release.yml@refs/tags/v1.2.3"
build_id="https://github.com/Org/Repo/.github/workflows/build.yml@refs/tags/v1.2.3"
if grep -q -- "^cosign verify --new-bundle-format=true --certificate-identity $id " "$REL_LOG" &&
	grep -q -- "^cosign verify --new-bundle-format=false --certificate-identity $id " "$REL_LOG" &&
	[[ "$(grep -c -- "^cosign verify-blob .*--certificate-identity $id " "$REL_LOG")" == "$(find "$rel/dist" -type f ! -name '*.sigstore.json' | wc -l)" ]]; then
	ok "verify-signed: signatures, SBOM attestations and assets checked against exactly release.yml@refs/tags/v1.2.3"
else
	fail "verify-signed: asked: $(cat "$REL_LOG")"
fi
# Provenance: the image and both binaries, each signed by exactly build.yml at
# the tag, and never accepted on release.yml's identity (that would be L2).
n_prov() { grep -c -- "^gh attestation verify $1 --repo Org/Repo --cert-identity $build_id --cert-oidc-issuer https://token\.actions\.githubusercontent\.com\$" "$REL_LOG" || true; }
if [[ "$(n_prov "oci://$IREF")" == 1 && "$(n_prov "$rel/dist/wordcount-$version-x86_64-unknown-linux-musl")" == 1 &&
	"$(n_prov "$rel/dist/wordcount-$version-aarch64-unknown-linux-musl")" == 1 ]] &&
	! grep -q -- "^gh attestation verify .*release\.yml" "$REL_LOG"; then
	ok "verify-signed: provenance of the image and both binaries checked against exactly build.yml@refs/tags/v1.2.3"
else
	fail "verify-signed: gh was asked: $(grep '^gh ' "$REL_LOG")"
fi
expect "verify-signed: provenance not signed by build.yml at the tag stops the release" 1 "no build provenance signed by $build_id" -- vs REL_REFUSE="attestation verify oci://"
expect "verify-signed: an asset signed for another identity stops the release" 1 "does not verify for $id" -- vs REL_REFUSE=verify-blob
echo extra >"$rel/dist/unlisted.txt" && touch "$rel/dist/unlisted.txt.sigstore.json"
expect "verify-signed: an asset missing from SHA256SUMS stops the release" 1 "not listed in SHA256SUMS" -- vs
rm "$rel/dist/unlisted.txt"* "$rel/dist/wordcount-$version-aarch64-unknown-linux-musl"*
(cd "$rel/dist" && rm SHA256SUMS && sha256sum -- * >SHA256SUMS)
expect "verify-signed: a release without the arm64 binary stops" 1 "no wordcount-$version-aarch64-unknown-linux-musl" -- vs
# verify-rehearsal: cosign/verify --key for each format, assets against the key.
vr() { env PATH="$rel/bin:$PATH" REHEARSAL_REGISTRY=localhost:5000 "$@" scripts/workflows/release.sh verify-rehearsal "$LREF" "$rel/dist" "$rel/k.pub"; }
(cd "$rel/dist" && rm SHA256SUMS && sha256sum -- * >SHA256SUMS)
scripts/workflows/release.sh manifests "$LREF" "$rel/dist" >/dev/null 2>&1
touch "$rel/dist/SHA256SUMS.sigstore.json" "$rel/dist/wordcount-$version-manifests.yaml.sigstore.json" "$rel/k.pub"
: >"$REL_LOG"
expect "verify-rehearsal: image (each format) and every asset against the per-run key" 0 "rehearsal of $LREF verified" -- vr
if grep -q -- "^cosign verify --new-bundle-format=true --key $rel/k.pub --offline --allow-http-registry\|^cosign verify --new-bundle-format=true --allow-http-registry --key $rel/k.pub --offline" "$REL_LOG" &&
	grep -q -- "^cosign verify --new-bundle-format=false .*--key $rel/k.pub" "$REL_LOG" &&
	[[ "$(grep -c -- "^cosign verify-blob --bundle .* --key $rel/k.pub " "$REL_LOG")" == "$(find "$rel/dist" -type f ! -name '*.sigstore.json' | wc -l)" ]] &&
	! grep -q -- "--certificate-identity" "$REL_LOG"; then
	ok "verify-rehearsal: both formats and every asset checked against the key, no keyless identity"
else
	fail "verify-rehearsal: asked: $(cat "$REL_LOG")"
fi
expect "verify-rehearsal: an asset its key did not sign stops the rehearsal" 1 "does not verify for the key $rel/k.pub" -- vr REL_REFUSE=verify-blob
expect "verify-rehearsal: outside rehearsal mode it refuses to run" 1 "rehearsal mode only" -- \
	env PATH="$rel/bin:$PATH" scripts/workflows/release.sh verify-rehearsal "$LREF" "$rel/dist" "$rel/k.pub"
rm -rf "$rel"

# --- deploy-step.sh resolve / apply -------------------------------------------
tmp="$(mktemp -d -p "$SCRATCH")"
mkdir -p "$tmp/scripts/workflows" "$tmp/scripts/lib" "$tmp/scripts/deploy" "$tmp/cosign" "$tmp/bin" "$tmp/release"
cp scripts/workflows/deploy-step.sh "$tmp/scripts/workflows/"
cp scripts/lib/common.sh "$tmp/scripts/lib/"
cp scripts/tools.env "$tmp/scripts/"
cp cosign/identity.env "$tmp/cosign/"
# Recorders: cosign/verify accepts or refuses on demand and records its arguments;
# `gh release download` copies $tmp/release; `cosign verify-blob` records the
# identity and refuses when STUB_BLOB_REFUSE is set; deploy.sh records.
cat >"$tmp/cosign/verify" <<'EOF'
#!/bin/sh
echo "verify $*" >>"$STUB_LOG"
[ -z "${STUB_REFUSE:-}" ] || { echo "cosign/verify: REFUSED: stub" >&2; exit 1; }
EOF
cat >"$tmp/bin/gh" <<'EOF'
#!/bin/sh
[ "$1 $2" = "release download" ] || exit 2
while [ $# -gt 0 ]; do case "$1" in --dir) dir=$2; shift ;; esac; shift; done
cp "$STUB_RELEASE"/* "$dir"/
EOF
cat >"$tmp/bin/cosign" <<'EOF'
#!/bin/sh
echo "cosign $*" >>"$STUB_LOG"
[ -z "${STUB_BLOB_REFUSE:-}" ] || { echo "Error: none of the expected identities matched" >&2; exit 1; }
EOF
cat >"$tmp/scripts/deploy/deploy.sh" <<'EOF'
#!/bin/sh
echo "deploy.sh $*" >>"$STUB_LOG"
EOF
chmod +x "$tmp/cosign/verify" "$tmp/bin/gh" "$tmp/bin/cosign" "$tmp/scripts/deploy/deploy.sh"
export STUB_LOG="$tmp/verify.log" STUB_RELEASE="$tmp/release"
D="sha256:$(printf '%064d' 0 | tr 0 a)"
REF="ghcr.io/org/repo@$D"
# release_with IMAGE_LINES...: the release's manifests asset, its bundle, SHA256SUMS.
release_with() {
	rm -f "$tmp/release"/*
	local f="$tmp/release/wordcount-1.2.3-manifests.yaml" line
	for line in "$@"; do printf -- '---\nkind: Deployment\n        image: %s\n' "$line" >>"$f"; done
	echo '{}' >"$f.sigstore.json"
	(cd "$tmp/release" && sha256sum -- * >SHA256SUMS)
}
step() { (cd "$tmp" && env PATH="$tmp/bin:$PATH" GITHUB_REPOSITORY=Org/Repo "$@"); }
resolve() { step "$@" scripts/workflows/deploy-step.sh resolve; }

release_with "$REF" "$REF"
expect "resolve: the release's asset names the image, promoted" 0 "tag=v1\.2\.3.ref=$REF.promote=true" -- resolve TAG=v1.2.3
: >"$STUB_LOG"
resolve TAG=v1.2.3 >/dev/null 2>&1
if grep -qx "verify --tag v1.2.3 $REF" "$STUB_LOG" &&
	grep -q "verify-blob .*--certificate-identity https://github.com/Org/Repo/.github/workflows/release.yml@refs/tags/v1.2.3 " "$STUB_LOG"; then
	ok "resolve: asset and image verified with exactly this tag's identity"
else
	fail "resolve: verifiers were asked: $(cat "$STUB_LOG")"
fi
expect "resolve: pre-release stops after dev" 0 "promote=false" -- bash -c "cd '$tmp' && mv release/wordcount-1.2.3-manifests.yaml release/wordcount-1.2.3-rc.1-manifests.yaml && mv release/wordcount-1.2.3-manifests.yaml.sigstore.json release/wordcount-1.2.3-rc.1-manifests.yaml.sigstore.json && (cd release && rm SHA256SUMS && sha256sum -- * >SHA256SUMS) && PATH='$tmp/bin:$PATH' GITHUB_REPOSITORY=o/r TAG=v1.2.3-rc.1 scripts/workflows/deploy-step.sh resolve"
release_with "$REF"
expect "resolve: workflow_dispatch promote=false stops after dev" 0 "promote=false" -- resolve TAG=v1.2.3 INPUT_PROMOTE=false
expect "resolve: repository_dispatch promote=false stops after dev" 0 "promote=false" -- resolve TAG=v1.2.3 PAYLOAD_PROMOTE=false
expect "resolve: nothing to deploy refused" 1 "nothing to deploy" -- resolve
expect "resolve: branch name as tag refused" 1 "not a release tag" -- resolve TAG=main
expect "resolve: shell metacharacters in a tag refused" 1 "not a release tag" -- resolve 'TAG=v1.2.3;id'
expect "resolve: asset whose signature is not this tag's refused" 1 "is not signed by .*refs/tags/v1\.2\.3" -- resolve TAG=v1.2.3 STUB_BLOB_REFUSE=1
expect "resolve: image verification failure stops the deploy" 1 "failed verification for v1\.2\.3" -- resolve TAG=v1.2.3 STUB_REFUSE=1
release_with "$REF"
echo tampered >>"$tmp/release/wordcount-1.2.3-manifests.yaml"
expect "resolve: asset that does not match SHA256SUMS refused" 1 "does not match the release's SHA256SUMS" -- resolve TAG=v1.2.3
release_with "$REF" "ghcr.io/org/repo@sha256:$(printf '%064d' 0)"
expect "resolve: asset naming two images refused" 1 "exactly one" -- resolve TAG=v1.2.3
release_with "ghcr.io/org/repo:v1.2.3"
expect "resolve: asset naming a tag, not a digest, refused" 1 "exactly one REPO@sha256" -- resolve TAG=v1.2.3
rm -f "$tmp/release"/*
expect "resolve: release without a manifests asset refused" 1 "cannot download wordcount-1\.2\.3-manifests\.yaml" -- resolve TAG=v1.2.3

release_with "$REF"
: >"$STUB_LOG"
expect "apply: the asset as published goes to deploy.sh with the tag" 0 "" -- step TAG=v1.2.3 REF="$REF" bash -c 'scripts/workflows/deploy-step.sh apply dev || true'
if grep -q "deploy.sh --release-manifests .tmp/deploy/release-dev/wordcount-1.2.3-manifests.yaml --tag v1.2.3 --target kubectl" "$STUB_LOG"; then
	ok "apply: deploy.sh applies the verified asset, verifying the tag's identity"
else
	fail "apply: deploy.sh was called as: $(grep deploy.sh "$STUB_LOG")"
fi
expect "apply: asset naming another digest than resolved refused" 1 "not ghcr\.io/org/repo@sha256:0" -- \
	step TAG=v1.2.3 REF="ghcr.io/org/repo@sha256:$(printf '%064d' 0)" scripts/workflows/deploy-step.sh apply dev
expect "apply: a tag instead of a digest is refused" 1 "is not REPO@sha256" -- \
	step TAG=v1.2.3 REF=ghcr.io/o/r:v1.0.0 scripts/workflows/deploy-step.sh apply dev
expect "apply: odd environment name refused" 1 "environment name" -- \
	step TAG=v1.2.3 REF="$REF" scripts/workflows/deploy-step.sh apply 'prod;id'

printf 'test-steps: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
