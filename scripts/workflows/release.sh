#!/usr/bin/env bash
# The release workflow's steps, as one script, so each can be run and read
# outside GitHub (.github/workflows/release.yml and the build.yml it calls
# run exactly these):
#
#   release.sh meta                 validate the tag, print build metadata
#   release.sh assets IMAGE@DIGEST DIR
#                                   both static binaries (copied out of the
#                                   pushed multi-arch image), per-platform image
#                                   SBOMs, dependency SBOMs, the deployable
#                                   manifests and SHA256SUMS into DIR
#   release.sh manifests IMAGE@DIGEST DIR
#                                   the last part of `assets`: the manifests
#                                   asset and SHA256SUMS over DIR
#   release.sh image-test IMAGE@DIGEST PLATFORM
#                                   `make image-test`'s checks on one platform
#                                   of the pushed image (linux/amd64|arm64)
#   release.sh sign IMAGE@DIGEST DIR
#                                   keyless: sign the digest and attest each
#                                   platform's SBOM, in both signature formats,
#                                   and a Sigstore bundle per file in DIR;
#                                   with COSIGN_PRIVATE_KEY set, sign-key too
#   release.sh sign-key IMAGE@DIGEST DIR
#                                   the air-gapped path (cosign/README.md):
#                                   sign the digest with COSIGN_PRIVATE_KEY and
#                                   attest each image SBOM in DIR, legacy
#                                   format only (`make signing-test` runs it)
#   release.sh verify-rehearsal IMAGE@DIGEST DIR PUBLIC_KEY
#                                   the rehearsal's verify-signed: the image
#                                   (both formats, attestations) and every
#                                   asset against the ephemeral key
#                                   (scripts/workflows/rehearsal.sh)
#   release.sh verify-signed TAG IMAGE@DIGEST DIR
#                                   before anything is published: the image,
#                                   its attestations and provenance, and every
#                                   asset, with the exact identity of TAG
#   release.sh publish TAG DIR      GitHub release with every file in DIR
#   release.sh verify TAG IMAGE@DIGEST
#                                   check what was published, as a user would
#   release.sh follow-up TAG IMAGE@DIGEST
#                                   pull request pinning raw-yaml/ (through
#                                   deploy/instances.toml) to this release
#
# Environment: GITHUB_REPOSITORY and GITHUB_REF_NAME (set by Actions; export
# them to run locally), ENGINE=docker|podman for `assets` (default docker),
# GH_TOKEN for publish/verify/follow-up (the job's GITHUB_TOKEN, via env,
# never inline), COSIGN_PRIVATE_KEY + COSIGN_PASSWORD for the optional
# key-based signature (cosign/README.md). `sign` needs the job's OIDC token
# (id-token: write), so it only runs in Actions.
#
# Rehearsal mode (scripts/workflows/rehearsal.sh; publishes nothing):
# REHEARSAL_REGISTRY=localhost:PORT or 127.0.0.1:PORT. `meta` then names the
# tag vX.Y.Z-rehearsal.<REHEARSAL_PR> and the image in that registry, and
# `sign` signs with the ephemeral key in COSIGN_PRIVATE_KEY instead of
# keylessly (bundles with --use-signing-config=false: no Fulcio or Rekor),
# only images in that registry. REHEARSAL_PLATFORMS (default both) is what
# the rehearsed image holds: the local one is linux/amd64 only.
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

DIE_PREFIX="error: "

# The platforms of the one multi-arch image, and the musl target of each.
readonly PLATFORMS=(linux/amd64 linux/arm64)
triple_of() {
	case "$1" in
	linux/amd64) echo x86_64-unknown-linux-musl ;;
	linux/arm64) echo aarch64-unknown-linux-musl ;;
	*) die "unknown platform $1 (linux/amd64 or linux/arm64)" ;;
	esac
}
readonly OIDC_ISSUER=https://token.actions.githubusercontent.com

need_digest_ref() {
	[[ "$1" =~ $DIGEST_REF_RE ]] || die "$1 is not REPO@sha256:<64 hex> (digests only: a tag can move)"
}
need_tag() {
	[[ "$1" =~ $TAG_RE ]] || die "tag $1 is not vMAJOR.MINOR.PATCH[-pre]"
}

# The identity Fulcio puts into certificates for WORKFLOW (a file under
# .github/workflows/) of this repository at TAG: the one place that spells it.
workflow_identity() {
	printf 'https://github.com/%s/.github/workflows/%s@refs/tags/%s' "$GITHUB_REPOSITORY" "$1" "$2"
}
# The signer of the image, its SBOM attestations and every asset: release.yml
# (the exact form of cosign/identity.env's regexp).
identity_for() { workflow_identity release.yml "$1"; }
# The signer of the build provenance: the reusable workflow build.yml that
# release.yml calls (SLSA Build Level 3, SECURITY.md).
build_identity_for() { workflow_identity build.yml "$1"; }

# rehearsal: true in rehearsal mode (see the header); only a loopback
# registry can be the rehearsal's.
rehearsal() {
	[[ -n "${REHEARSAL_REGISTRY:-}" ]] || return 1
	[[ "$REHEARSAL_REGISTRY" =~ ^(localhost|127\.0\.0\.1):[0-9]+$ ]] ||
		die "REHEARSAL_REGISTRY=$REHEARSAL_REGISTRY is not localhost:PORT or 127.0.0.1:PORT"
}
# The platforms the image to sign holds: a rehearsal may have fewer.
signed_platforms() {
	if rehearsal; then read -ra signed <<<"${REHEARSAL_PLATFORMS:-${PLATFORMS[*]}}"; else signed=("${PLATFORMS[@]}"); fi
}

cmd_meta() {
	local repo="${GITHUB_REPOSITORY:?GITHUB_REPOSITORY (owner/name) is not set}"
	local tag version
	version="$(cargo_version)"
	if rehearsal; then
		# A pull request has no tag: one no real release shares, for this PR.
		[[ "${REHEARSAL_PR:-}" =~ ^[0-9]+$ ]] || die "REHEARSAL_PR (the pull request number) is not a number"
		tag="v$version-rehearsal.$REHEARSAL_PR"
	else
		tag="${GITHUB_REF_NAME:?GITHUB_REF_NAME (the tag) is not set}"
	fi
	need_tag "$tag"
	# The binary reports Cargo.toml's version; a tag that says otherwise would
	# publish a v1.2.3 whose `--version` prints something else.
	rehearsal || [[ "${tag#v}" == "$version" ]] || die "tag $tag does not match Cargo.toml version $version; bump Cargo.toml first"
	local sde created
	sde="$(git log -1 --format=%ct)"
	created="$(date -u -d "@$sde" +%Y-%m-%dT%H:%M:%SZ)"
	# GHCR names must be lower case; GitHub owners/repositories may not be.
	local image="ghcr.io/${repo,,}"
	! rehearsal || image="$REHEARSAL_REGISTRY/${repo,,}"
	{
		printf 'tag=%s\n' "$tag"
		printf 'version=%s\n' "$version"
		printf 'revision=%s\n' "$(git rev-parse HEAD)"
		printf 'source_date_epoch=%s\n' "$sde"
		printf 'created=%s\n' "$created"
		printf 'image=%s\n' "$image"
		printf 'identity=%s\n' "$(identity_for "$tag")"
		printf 'provenance_identity=%s\n' "$(build_identity_for "$tag")"
		printf 'platforms=%s\n' "$(IFS=,; echo "${PLATFORMS[*]}")"
		# The Dockerfile's builder tools, pinned in scripts/tools.env.
		printf 'cargo_chef=%s\n' "$CARGO_CHEF"
		printf 'cargo_auditable=%s\n' "$CARGO_AUDITABLE"
		printf 'cargo_about=%s\n' "$CARGO_ABOUT"
	} | tee -a "${GITHUB_OUTPUT:-/dev/null}"
}

cmd_assets() {
	local ref="${1:?IMAGE@DIGEST}" dir="${2:?output directory}"
	need_digest_ref "$ref"
	local engine="${ENGINE:-docker}" version platform
	version="$(cargo_version)"
	mkdir -p "$dir"
	scripts/install.sh image
	local syft
	syft="$(python_bin)/syft"

	for platform in "${PLATFORMS[@]}"; do
		local triple bin cid arch
		triple="$(triple_of "$platform")"
		bin="$dir/wordcount-$version-$triple"
		# The released binaries are the ones inside the signed image, byte for
		# byte, not a second build that could differ.
		"$engine" pull --quiet --platform "$platform" "$ref" >/dev/null
		cid="$("$engine" create --platform "$platform" "$ref")"
		"$engine" cp "$cid:/wordcount" "$bin"
		# The licence notices shipped beside this binary in the image.
		"$engine" cp "$cid:/licenses/THIRD-PARTY.html.gz" "$dir/notices.gz"
		gzip -dc "$dir/notices.gz" >"$dir/wordcount-$version-$triple-THIRD-PARTY.html"
		rm "$dir/notices.gz"
		"$engine" rm "$cid" >/dev/null
		chmod 0755 "$bin"
		if readelf -lW "$bin" | grep -q 'Requesting program interpreter'; then
			die "$bin has a program interpreter; the image must carry a static binary"
		fi
		arch="$(readelf -hW "$bin" | sed -n 's/^ *Machine: *//p')"
		case "$platform:$arch" in
		linux/amd64:*X86-64* | linux/arm64:*AArch64*) log "$(basename "$bin"): static, $arch" ;;
		*) die "$bin is built for '$arch', not $platform" ;;
		esac
		# Image SBOM of this platform (syft reads the cargo-auditable section
		# of its binary), with the syft pinned in scripts/pyproject.toml.
		SYFT_CHECK_FOR_APP_UPDATE=false "$syft" scan "registry:$ref" --platform "$platform" --quiet \
			-o "cyclonedx-json=$dir/wordcount-$version-image-${platform//\//-}.cdx.json" \
			-o "spdx-json=$dir/wordcount-$version-image-${platform//\//-}.spdx.json"
	done
	# The dependency-tree SBOMs reviewed in every diff (sbom/, make sbom-check).
	# sbom/wordcount.cdx.json -> wordcount-X.Y.Z-deps.cdx.json (and .spdx.json).
	local f name
	for f in sbom/*.json; do
		[[ -e "$f" ]] || die "no SBOMs under sbom/; the supply-chain gate should have failed"
		name="$(basename "$f")"
		cp "$f" "$dir/wordcount-$version-deps.${name#wordcount.}"
	done
	# The judged advisories (sbom/wordcount.openvex.json) with this image's digest.
	SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" python3 scripts/supply-chain/vex.py \
		--image "$ref" --out "$dir/wordcount-$version.openvex.json"
	cmd_manifests "$ref" "$dir"
}

# The deployable manifests: raw-yaml/ rendered to the release's image digest
# by scripts/deploy/render.py (every image reference of the service becomes
# the digest, anything else is refused), as ONE multi-document file in
# kubectl's creation order (namespace first), so that
#   kubectl create -f wordcount-X.Y.Z-manifests.yaml
# runs the release on a fresh cluster; then SHA256SUMS over every asset in
# DIR. `make local-release` writes its asset with this same command.
cmd_manifests() {
	local ref="${1:?IMAGE@DIGEST}" dir="${2:?asset directory}"
	need_digest_ref "$ref"
	local out f rendered
	out="$dir/wordcount-$(cargo_version)-manifests.yaml"
	rendered="$(mktemp -d -p "$SCRATCH")"
	rm -f "$dir/SHA256SUMS"
	python3 scripts/deploy/render.py raw-yaml "$rendered" wordcount "$ref"
	{
		printf '# wordcount manifests for %s\n' "$ref"
		printf '# Rendered from raw-yaml/ by scripts/workflows/release.sh manifests.\n'
		printf '# Deploy: kubectl create -f THIS_FILE (after cosign verify-blob, README).\n'
		for f in "$rendered"/*.yaml; do cat "$f"; done
	} >"$out"
	log "$ref ($(grep -c '^kind:' "$out") objects) -> $out"
	(cd "$dir" && sha256sum -- * >SHA256SUMS && cat SHA256SUMS >&2)
}

cmd_image_test() {
	local ref="${1:?IMAGE@DIGEST}" platform="${2:?PLATFORM}"
	need_digest_ref "$ref"
	triple_of "$platform" >/dev/null
	local engine="${ENGINE:-docker}" image=localhost/wordcount:dev
	"$engine" pull --quiet --platform "$platform" "$ref" >/dev/null
	"$engine" tag "$ref" "$image"
	local os_arch
	os_arch="$("$engine" image inspect --format '{{.Os}}/{{.Architecture}}' "$image")"
	[[ "$os_arch" == "$platform" ]] || die "$ref resolved to $os_arch, not $platform"
	# What scripts/image/build-image.sh records for the image it built; the
	# musl stage is the one the release built. The sde/created/revision are
	# the tag's commit, which this job has checked out.
	local sde
	sde="$(git log -1 --format=%ct)"
	mkdir -p target/image
	printf 'IMAGE=%s\nIMAGE_ID=%s\nREVISION=%s\nVERSION=%s\nCREATED=%s\nSOURCE_DATE_EPOCH=%s\nBINARY_FROM=musl\n' \
		"$image" "$("$engine" image inspect --format '{{.Id}}' "$image")" "$(git rev-parse HEAD)" \
		"$(cargo_version)" "$(date -u -d "@$sde" +%Y-%m-%dT%H:%M:%SZ)" "$sde" >target/image/build.env
	ENGINE="$engine" IMAGE="$image" scripts/image/test-image.sh
}

# Both signature formats (docs/supply-chain.md, "Signature formats"):
# legacy .sig/.att tags for cosign 2.x, Kyverno's Cosign type and
# policy-controller's default; Sigstore bundles in OCI referrers for cosign 3,
# Kyverno's SigstoreBundle type and policy-controller's signatureFormat: bundle.
readonly LEGACY=(--new-bundle-format=false --use-signing-config=false)
readonly BUNDLE=(--new-bundle-format=true --use-signing-config=true)

# image_sboms DIR: sets sboms to DIR's image SBOMs (one per platform).
image_sboms() {
	local f
	sboms=()
	for f in "$1"/*-image-linux-*.cdx.json; do [[ -e "$f" ]] && sboms+=("$f"); done
	((${#sboms[@]})) || die "no image SBOM (*-image-linux-*.cdx.json) in $1"
}

cmd_sign() {
	local ref="${1:?IMAGE@DIGEST}" dir="${2:?asset directory}"
	need_digest_ref "$ref"
	command -v cosign >/dev/null || die "cosign is not installed"
	local sboms f signed signer=() legacy=("${LEGACY[@]}") bundle=("${BUNDLE[@]}")
	image_sboms "$dir"
	signed_platforms
	((${#sboms[@]} == ${#signed[@]})) || die "expected one image SBOM per platform in $dir, found ${#sboms[@]}"
	if rehearsal; then
		[[ "$ref" == "$REHEARSAL_REGISTRY/"* ]] || die "a rehearsal signs only images in $REHEARSAL_REGISTRY, not $ref"
		[[ -n "${COSIGN_PRIVATE_KEY:-}" ]] || die "a rehearsal signs with the ephemeral key in COSIGN_PRIVATE_KEY"
		signer=(--key env://COSIGN_PRIVATE_KEY)
		bundle=(--new-bundle-format=true --use-signing-config=false)
		legacy+=("${signer[@]}") bundle+=("${signer[@]}")
	fi
	# Keyless: the certificate binds the signature to this workflow at this
	# tag (the identity cosign/verify requires). --yes: no prompt in CI.
	# The index digest is what Pods name, so that is what is signed; each
	# platform's SBOM is attested on it (one CycloneDX attestation each).
	sign_in() { # sign_in FORMAT COSIGN_FLAGS...
		local format=$1
		shift
		cosign sign --yes "$@" "$ref"
		for f in "${sboms[@]}"; do
			cosign attest --yes "$@" --type cyclonedx --predicate "$f" "$ref"
		done
		cosign attest --yes "$@" --type openvex --predicate "$dir/wordcount-$(cargo_version).openvex.json" "$ref"
		log "signed and attested $ref ($format format)"
	}
	sign_in legacy "${legacy[@]}"
	sign_in bundle "${bundle[@]}"
	# The air-gapped path: only when the key is configured.
	rehearsal || [[ -z "${COSIGN_PRIVATE_KEY:-}" ]] || cmd_sign_key "$ref" "$dir"
	((${#signer[@]} == 0)) || signer+=(--use-signing-config=false)
	for f in "$dir"/*; do
		case "$f" in *.sigstore.json) continue ;; esac
		cosign sign-blob --yes "${signer[@]}" --bundle "$f.sigstore.json" "$f" >/dev/null
		log "signed $(basename "$f")"
	done
}

# The key-based signature, in the legacy format: the one key-based verifiers
# read (cosign/verify --key, policy/kyverno-key.yaml's type: Cosign).
cmd_sign_key() {
	local ref="${1:?IMAGE@DIGEST}" dir="${2:?asset directory}"
	need_digest_ref "$ref"
	[[ -n "${COSIGN_PRIVATE_KEY:-}" ]] || die "COSIGN_PRIVATE_KEY (the encrypted key PEM) is not set"
	local sboms f
	image_sboms "$dir"
	cosign sign --yes "${LEGACY[@]}" --key env://COSIGN_PRIVATE_KEY "$ref"
	for f in "${sboms[@]}"; do
		cosign attest --yes "${LEGACY[@]}" --key env://COSIGN_PRIVATE_KEY --type cyclonedx --predicate "$f" "$ref"
	done
	log "signed and attested $ref with the release key (legacy format)"
}

# Every file in DIR: listed in SHA256SUMS with the right sum, and its Sigstore
# bundle verifies for exactly this tag's release.yml (or, with a third
# argument, against that public key: the rehearsal).
verify_assets() {
	local tag="$1" dir="$2" f n=0
	local who="the key ${3:-}" by=(--key "${3:-}")
	if [[ -z "${3:-}" ]]; then
		who="$(identity_for "$tag")"
		by=(--certificate-identity "$who" --certificate-oidc-issuer "$OIDC_ISSUER")
	fi
	(cd "$dir" && sha256sum --check --strict SHA256SUMS >&2)
	for f in "$dir"/*; do
		case "$f" in *.sigstore.json) continue ;; esac
		[[ -f "$f.sigstore.json" ]] || die "$(basename "$f") has no Sigstore bundle"
		[[ "$(basename "$f")" == SHA256SUMS ]] || grep -q "  $(basename "$f")\$" "$dir/SHA256SUMS" ||
			die "$(basename "$f") is not listed in SHA256SUMS"
		cosign verify-blob --bundle "$f.sigstore.json" "${by[@]}" "$f" >/dev/null 2>&1 ||
			die "$(basename "$f"): its Sigstore bundle does not verify for $who"
		n=$((n + 1))
	done
	local want platform
	# (The rehearsal checks its binaries itself: the local one has none.)
	for platform in "${PLATFORMS[@]}"; do
		want="wordcount-$(cargo_version)-$(triple_of "$platform")"
		[[ -n "${3:-}" || -f "$dir/$want" ]] || die "no $want among the assets"
	done
	[[ -f "$dir/wordcount-$(cargo_version)-manifests.yaml" ]] || die "no manifests asset"
	log "OK: $n assets match SHA256SUMS and verify against $who"
}

# Build provenance from GitHub's attestation store, signed by exactly build.yml
# at this tag (not release.yml: provenance its caller signed would be Level 2).
verify_provenance() {
	gh attestation verify "$1" --repo "$GITHUB_REPOSITORY" \
		--cert-identity "$(build_identity_for "$2")" --cert-oidc-issuer "$OIDC_ISSUER" >/dev/null ||
		die "$1: no build provenance signed by $(build_identity_for "$2")"
	log "OK: $1 has build provenance from build.yml at $2"
}

cmd_verify_signed() {
	local tag="${1:?TAG}" ref="${2:?IMAGE@DIGEST}" dir="${3:?asset directory}"
	need_tag "$tag"
	need_digest_ref "$ref"
	# The image: both formats, both attestations, exactly this tag's identity.
	WORDCOUNT_GITHUB_REPOSITORY="$GITHUB_REPOSITORY" cosign/verify --tag "$tag" "$ref"
	verify_provenance "oci://$ref" "$tag"
	verify_assets "$tag" "$dir"
	local platform
	for platform in "${PLATFORMS[@]}"; do
		verify_provenance "$dir/wordcount-$(cargo_version)-$(triple_of "$platform")" "$tag"
	done
	# The manifests asset deploys exactly this image.
	grep -q "image: $ref\$" "$dir/wordcount-$(cargo_version)-manifests.yaml" ||
		die "the manifests asset does not name $ref"
}

# What verify-signed checks, minus what only the tag's run has (its keyless
# identity, the build provenance): against the rehearsal's public key.
cmd_verify_rehearsal() {
	local ref="${1:?IMAGE@DIGEST}" dir="${2:?asset directory}" key="${3:?PUBLIC_KEY}"
	need_digest_ref "$ref"
	rehearsal || die "verify-rehearsal runs in rehearsal mode only (REHEARSAL_REGISTRY)"
	# Both formats, each on its own: --key alone checks the legacy one.
	local format
	for format in legacy bundle; do
		cosign/verify --key "$key" --allow-http-registry --format "$format" "$ref"
	done
	verify_assets "" "$dir" "$key"
	grep -q "image: $ref\$" "$dir/wordcount-$(cargo_version)-manifests.yaml" ||
		die "the manifests asset does not name $ref"
	log "OK: the rehearsal of $ref verified (no tag identity, no provenance: docs/pipeline.md)"
}

cmd_publish() {
	local tag="${1:?TAG}" dir="${2:?asset directory}"
	need_tag "$tag"
	local pre=()
	[[ "$tag" == *-* ]] && pre=(--prerelease)
	# --verify-tag: never let gh create a tag; the release is of the pushed tag.
	gh release create "$tag" "$dir"/* --repo "$GITHUB_REPOSITORY" --verify-tag \
		--title "wordcount $tag" "${pre[@]}" \
		--notes "Image (linux/amd64 + linux/arm64): \`${IMAGE_REF:-see the workflow summary}\`. Deploy: verify \`wordcount-${tag#v}-manifests.yaml\` with \`cosign verify-blob\`, then \`kubectl create -f\` it (README, \"Deploying a release\"). Every asset has a Sigstore bundle (*.sigstore.json) and is listed in SHA256SUMS."
}

cmd_verify() {
	local tag="${1:?TAG}" ref="${2:?IMAGE@DIGEST}"
	need_tag "$tag"
	need_digest_ref "$ref"
	# The image, exactly as the deploy workflow checks it.
	WORDCOUNT_GITHUB_REPOSITORY="$GITHUB_REPOSITORY" cosign/verify --tag "$tag" "$ref"
	# The release as downloaded by a user.
	local tmp
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' RETURN
	gh release download "$tag" --repo "$GITHUB_REPOSITORY" --dir "$tmp"
	verify_assets "$tag" "$tmp"
	grep -q "image: $ref\$" "$tmp/wordcount-$(cargo_version)-manifests.yaml" ||
		die "the published manifests asset does not name $ref"
}

cmd_follow_up() {
	local tag="${1:?TAG}" ref="${2:?IMAGE@DIGEST}"
	need_tag "$tag"
	need_digest_ref "$ref"
	if [[ "$tag" == *-* ]]; then
		log "$tag is a pre-release: raw-yaml/ keeps following the last full release"
		return 0
	fi
	local branch="release-manifests/$tag"
	# deploy/instances.toml is the source of raw-yaml/ and compose.yaml;
	# the generator and its drift check stay the only writers.
	sed -i "s|^image = \".*\"\$|image = \"$ref\"|" deploy/instances.toml
	grep -qx "image = \"$ref\"" deploy/instances.toml || die "deploy/instances.toml has no image line to update"
	"$(python_bin)/python" scripts/manifests/generate.py
	"$(python_bin)/python" scripts/manifests/generate.py --check
	if git diff --quiet; then
		log "raw-yaml/ already pins $ref"
		return 0
	fi
	git switch --create "$branch"
	git -c user.name="github-actions[bot]" -c user.email="41898282+github-actions[bot]@users.noreply.github.com" \
		commit --quiet -m "raw-yaml: pin the image to $tag ($ref)" -- deploy/instances.toml raw-yaml compose.yaml
	# gh's credential helper uses GH_TOKEN; nothing is written to .git/config
	# beyond the helper line.
	gh auth setup-git
	git push --quiet origin "HEAD:refs/heads/$branch"
	gh pr create --repo "$GITHUB_REPOSITORY" --base "${DEFAULT_BRANCH:-main}" --head "$branch" \
		--title "raw-yaml: pin the image to $tag" \
		--body "Release $tag published \`$ref\` (verified with the exact identity of its release.yml run before publishing). This pins deploy/instances.toml to it and regenerates raw-yaml/ and compose.yaml (\`make manifests\`), so \`kubectl create -f raw-yaml/\` on the default branch runs the latest release."
}

sub="${1:-}"
shift || true
case "$sub" in
meta) cmd_meta "$@" ;;
assets) cmd_assets "$@" ;;
manifests) cmd_manifests "$@" ;;
image-test) cmd_image_test "$@" ;;
sign) cmd_sign "$@" ;;
sign-key) cmd_sign_key "$@" ;;
verify-signed) cmd_verify_signed "$@" ;;
verify-rehearsal) cmd_verify_rehearsal "$@" ;;
publish) cmd_publish "$@" ;;
verify) cmd_verify "$@" ;;
follow-up) cmd_follow_up "$@" ;;
*) usage ;;
esac
