#!/usr/bin/env bash
# The release workflow's steps, as one script, so each can be run and read
# outside GitHub (.github/workflows/release.yml calls exactly these):
#
#   release.sh meta                 validate the tag, print build metadata
#   release.sh assets IMAGE@DIGEST DIR
#                                   binary (copied out of the pushed image),
#                                   SBOMs and SHA256SUMS into DIR
#   release.sh sign IMAGE@DIGEST DIR
#                                   keyless: sign the digest, attest the image
#                                   SBOM, and a Sigstore bundle per file in DIR
#   release.sh publish TAG DIR      GitHub release with every file in DIR
#   release.sh verify TAG IMAGE@DIGEST
#                                   check what was published, as a user would
#
# Environment: GITHUB_REPOSITORY and GITHUB_REF_NAME (set by Actions; export
# them to run locally), ENGINE=docker|podman for `assets` (default docker),
# GH_TOKEN for publish/verify (the job's GITHUB_TOKEN, via env, never inline).
# `sign` needs the job's OIDC token (id-token: write), so it only runs in
# Actions; `make local-release` is the offline rehearsal of the same idea.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

say() { printf 'release: %s\n' "$*" >&2; }
die() { printf 'release: error: %s\n' "$*" >&2; exit 1; }

# Tags the release workflow accepts; cosign/identity.env's regexp accepts the
# same shape, so anything released here is verifiable there.
readonly TAG_RE='^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'
readonly DIGEST_REF_RE='^[a-z0-9.:/_-]+@sha256:[0-9a-f]{64}$'
readonly TRIPLE=x86_64-unknown-linux-musl

need_digest_ref() {
	[[ "$1" =~ $DIGEST_REF_RE ]] || die "$1 is not REPO@sha256:<64 hex> (digests only: a tag can move)"
}

# The identity Fulcio puts into certificates for this workflow at this tag;
# the exact form of cosign/identity.env's regexp.
identity_for() {
	printf 'https://github.com/%s/.github/workflows/release.yml@refs/tags/%s' "$GITHUB_REPOSITORY" "$1"
}

cmd_meta() {
	local tag="${GITHUB_REF_NAME:?GITHUB_REF_NAME (the tag) is not set}"
	local repo="${GITHUB_REPOSITORY:?GITHUB_REPOSITORY (owner/name) is not set}"
	[[ "$tag" =~ $TAG_RE ]] || die "tag $tag is not vMAJOR.MINOR.PATCH[-pre]"
	local version
	version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
	# The binary reports Cargo.toml's version; a tag that says otherwise would
	# publish a v1.2.3 whose `--version` prints something else.
	[[ "${tag#v}" == "$version" ]] || die "tag $tag does not match Cargo.toml version $version; bump Cargo.toml first"
	local sde created
	sde="$(git log -1 --format=%ct)"
	created="$(date -u -d "@$sde" +%Y-%m-%dT%H:%M:%SZ)"
	# GHCR names must be lower case; GitHub owners/repositories may not be.
	local image="ghcr.io/${repo,,}"
	{
		printf 'tag=%s\n' "$tag"
		printf 'version=%s\n' "$version"
		printf 'revision=%s\n' "$(git rev-parse HEAD)"
		printf 'source_date_epoch=%s\n' "$sde"
		printf 'created=%s\n' "$created"
		printf 'image=%s\n' "$image"
		printf 'identity=%s\n' "$(identity_for "$tag")"
	} | tee -a "${GITHUB_OUTPUT:-/dev/null}"
}

cmd_assets() {
	local ref="${1:?IMAGE@DIGEST}" dir="${2:?output directory}"
	need_digest_ref "$ref"
	local engine="${ENGINE:-docker}" version
	version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
	mkdir -p "$dir"
	local bin="$dir/wordcount-$version-$TRIPLE"

	# The released binary is the one inside the signed image, byte for byte,
	# not a second build that could differ.
	"$engine" pull --quiet "$ref" >/dev/null
	local cid
	cid="$("$engine" create "$ref")"
	"$engine" cp "$cid:/wordcount" "$bin"
	"$engine" rm "$cid" >/dev/null
	chmod 0755 "$bin"
	if readelf -lW "$bin" | grep -q 'Requesting program interpreter'; then
		die "$bin has a program interpreter; the image must carry a static binary"
	fi
	"$bin" --version >&2

	# Image SBOM (syft reads the cargo-auditable section of the binary), with
	# the pinned syft of scripts/image/install.sh.
	scripts/image/install.sh
	local syft
	syft="$(scripts/image/install.sh --print-venv)/syft"
	SYFT_CHECK_FOR_APP_UPDATE=false "$syft" scan "registry:$ref" --quiet \
		-o "cyclonedx-json=$dir/wordcount-$version-image.cdx.json" \
		-o "spdx-json=$dir/wordcount-$version-image.spdx.json"
	# The dependency-tree SBOMs reviewed in every diff (sbom/, make sbom-check).
	# sbom/wordcount.cdx.json -> wordcount-X.Y.Z-deps.cdx.json (and .spdx.json).
	local f name
	for f in sbom/*.json; do
		[[ -e "$f" ]] || die "no SBOMs under sbom/; the supply-chain gate should have failed"
		name="$(basename "$f")"
		cp "$f" "$dir/wordcount-$version-deps.${name#wordcount.}"
	done
	(cd "$dir" && sha256sum -- * >SHA256SUMS && cat SHA256SUMS >&2)
}

cmd_sign() {
	local ref="${1:?IMAGE@DIGEST}" dir="${2:?asset directory}"
	need_digest_ref "$ref"
	command -v cosign >/dev/null || die "cosign is not installed"
	local sbom
	sbom="$(find "$dir" -maxdepth 1 -name '*-image.cdx.json' | head -1)"
	[[ -n "$sbom" ]] || die "no image SBOM (*-image.cdx.json) in $dir"
	# Keyless: the certificate binds the signature to this workflow at this
	# tag (the identity cosign/verify requires). --yes: no prompt in CI.
	cosign sign --yes "$ref"
	cosign attest --yes --type cyclonedx --predicate "$sbom" "$ref"
	local f
	for f in "$dir"/*; do
		case "$f" in *.sigstore.json) continue ;; esac
		cosign sign-blob --yes --bundle "$f.sigstore.json" "$f" >/dev/null
		say "signed $(basename "$f")"
	done
}

cmd_publish() {
	local tag="${1:?TAG}" dir="${2:?asset directory}"
	[[ "$tag" =~ $TAG_RE ]] || die "tag $tag is not vMAJOR.MINOR.PATCH[-pre]"
	local pre=()
	[[ "$tag" == *-* ]] && pre=(--prerelease)
	# --verify-tag: never let gh create a tag; the release is of the pushed tag.
	gh release create "$tag" "$dir"/* --repo "$GITHUB_REPOSITORY" --verify-tag \
		--title "wordcount $tag" "${pre[@]}" \
		--notes "Image: \`${IMAGE_REF:-see the workflow summary}\`. Verify it with \`cosign/verify\` (SECURITY.md); every asset has a Sigstore bundle (*.sigstore.json) and is listed in SHA256SUMS."
}

cmd_verify() {
	local tag="${1:?TAG}" ref="${2:?IMAGE@DIGEST}"
	need_digest_ref "$ref"
	# 1. The image, exactly as the deploy workflow checks it.
	WORDCOUNT_GITHUB_REPOSITORY="$GITHUB_REPOSITORY" WORDCOUNT_IMAGE_REPOSITORY="${ref%@*}" cosign/verify "$ref"
	# 2. Build provenance of the image, from GitHub's attestation store.
	gh attestation verify "oci://$ref" --repo "$GITHUB_REPOSITORY" \
		--signer-workflow "$GITHUB_REPOSITORY/.github/workflows/release.yml" >/dev/null
	say "OK: $ref has build provenance from release.yml"
	# 3. The release assets as downloaded by a user: checksums, then each
	#    file's Sigstore bundle with the exact identity of this tag.
	local tmp
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' RETURN
	gh release download "$tag" --repo "$GITHUB_REPOSITORY" --dir "$tmp"
	(cd "$tmp" && sha256sum --check --strict SHA256SUMS >&2)
	local f n=0
	for f in "$tmp"/*; do
		case "$f" in *.sigstore.json) continue ;; esac
		[[ -f "$f.sigstore.json" ]] || die "$(basename "$f") has no Sigstore bundle"
		cosign verify-blob --bundle "$f.sigstore.json" \
			--certificate-identity "$(identity_for "$tag")" \
			--certificate-oidc-issuer https://token.actions.githubusercontent.com "$f" >/dev/null 2>&1 ||
			die "$(basename "$f"): its Sigstore bundle does not verify for $(identity_for "$tag")"
		n=$((n + 1))
	done
	say "OK: $n release assets match SHA256SUMS and verify against $(identity_for "$tag")"
	local bin
	bin="$(find "$tmp" -maxdepth 1 -name "wordcount-*-$TRIPLE" | head -1)"
	[[ -n "$bin" ]] || die "no $TRIPLE binary among the release assets"
	gh attestation verify "$bin" --repo "$GITHUB_REPOSITORY" \
		--signer-workflow "$GITHUB_REPOSITORY/.github/workflows/release.yml" >/dev/null
	say "OK: $(basename "$bin") has build provenance from release.yml"
}

sub="${1:-}"
shift || true
case "$sub" in
meta) cmd_meta "$@" ;;
assets) cmd_assets "$@" ;;
sign) cmd_sign "$@" ;;
publish) cmd_publish "$@" ;;
verify) cmd_verify "$@" ;;
*) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
