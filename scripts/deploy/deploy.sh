#!/usr/bin/env bash
# The deploy step: resolve -> verify -> render -> apply. Nothing is applied
# unless the exact digest being deployed passed signature verification.
#
#   scripts/deploy/deploy.sh --image REF [options]
#   scripts/deploy/deploy.sh --release-manifests FILE [options]
#
# REF is REPO:TAG or REPO@sha256:<hex>. A tag is resolved to its digest ONCE,
# here; from then on only the digest is used (verified, written into the
# manifests, applied), so moving the tag mid-deploy changes nothing.
# FILE is a release's manifests asset (scripts/workflows/release.sh manifests):
# its one image digest is verified and the file is applied byte for byte,
# never re-rendered, so what runs is exactly what the release published.
#
# Target (where the rendered manifests go):
#   --target kubectl   `kubectl apply -f RENDERED` against the current context
#                      (default; the deploy workflow sets the context).
#   --target podman    scripts/manifests/podman-play.sh RENDERED IMAGE_REF
#                      (make mock-prod: podman kube play of the same manifests).
#   --target render    stop after rendering; print the rendered folder.
#
# Verification (passed to cosign/verify; see its header):
#   (default)                 keyless, real cosign, release-workflow identity
#   --tag vX.Y.Z              keyless, the exact identity of that release tag
#   --key FILE                key-based with cosign (air-gapped)
#   --no-attestation          skip the SBOM attestation check (loudly)
#   --from-local-release      manifests asset and key from the last
#                             `make local-release` (.tmp/local-release/release.env);
#                             the rehearsal's cosign (no Rekor: transparency
#                             log off, scripts/lib/common.sh rehearsal_cosign)
#
# Other options:
#   --manifests DIR   manifests to render (default: raw-yaml)
#   --out DIR         rendered output (default: .tmp/deploy/rendered)
#   --image-name N    repository name whose references are rewritten
#                     (default: wordcount); any other image fails the render
#   --allow-http-registry   plain HTTP to a loopback registry (rehearsal only)
set -euo pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

DIE_PREFIX="NOT DEPLOYED: "

image="" target=kubectl manifests=raw-yaml out=.tmp/deploy/rendered image_name=wordcount
release_file="" verify_args=() allow_http=0
while (($#)); do
	case "$1" in
	--image) image="${2:?}"; shift 2 ;;
	--release-manifests) release_file="${2:?}"; shift 2 ;;
	--tag) verify_args+=(--tag "${2:?}"); shift 2 ;;
	--target) target="${2:?}"; shift 2 ;;
	--manifests) manifests="${2:?}"; shift 2 ;;
	--out) out="${2:?}"; shift 2 ;;
	--image-name) image_name="${2:?}"; shift 2 ;;
	--key) verify_args+=(--key "${2:?}"); shift 2 ;;
	--no-attestation) verify_args+=("$1"); shift ;;
	--allow-http-registry) allow_http=1; verify_args+=("$1"); shift ;;
	--from-local-release)
		env_file=.tmp/local-release/release.env
		[[ -r "$env_file" ]] || die "$env_file is missing: run make local-release first"
		# shellcheck source=/dev/null
		source "$env_file"
		release_file="$LOCAL_RELEASE_MANIFESTS"
		verify_args+=(--key "$LOCAL_RELEASE_PUBLIC_KEY")
		# TEST ONLY: the rehearsal's signatures have no Rekor entry.
		rehearsal_cosign
		allow_http=1
		verify_args+=(--allow-http-registry)
		shift
		;;
	-h | --help) usage ;;
	*) echo "deploy: unknown argument $1" >&2; usage ;;
	esac
done
case "$target" in kubectl | podman | render) ;; *) die "unknown target $target" ;; esac
if [[ -n "$release_file" ]]; then
	[[ -z "$image" ]] || die "--image and --release-manifests exclude each other: the asset names its image"
	[[ -r "$release_file" ]] || die "cannot read $release_file"
	# One image, by digest, in every image: line of the asset.
	mapfile -t refs < <(sed -n 's/^[[:space:]-]*image:[[:space:]]*["'"'"']\{0,1\}\([^"'"'"'[:space:]#]*\).*/\1/p' "$release_file" | sort -u)
	((${#refs[@]} == 1)) || die "$release_file names ${#refs[@]} different images (${refs[*]}); a release asset names exactly one digest"
	[[ "${refs[0]}" == *@sha256:* ]] || die "$release_file names ${refs[0]}, not a digest"
	image="${refs[0]}"
	# render.py's rules catch what the line above cannot (another image, an
	# image key in a form it cannot rewrite): rendering the asset to its own
	# digest must change nothing.
	check_dir="$(mktemp -d -p "$SCRATCH")"
	mkdir "$check_dir/in" && cp "$release_file" "$check_dir/in/"
	if ! python3 scripts/deploy/render.py "$check_dir/in" "$check_dir/out" "$image_name" "$image" ||
		! cmp -s "$release_file" "$check_dir/out/$(basename "$release_file")"; then
		die "$release_file holds image references other than $image"
	fi
else
	[[ -n "$image" ]] || usage
	[[ -d "$manifests" ]] || die "manifest folder $manifests does not exist"
fi

# --- 1. resolve ------------------------------------------------------------------
skopeo_tls=()
if ((allow_http)); then
	registry="${image%%/*}"
	[[ "$registry" =~ ^(127\.0\.0\.1|localhost)(:[0-9]+)?$ ]] ||
		die "--allow-http-registry is for loopback registries only, not $registry"
	skopeo_tls=(--tls-verify=false)
fi
if [[ "$image" == *@* ]]; then
	ref="$image"
	log "image given by digest: $ref"
else
	# The digest of exactly the manifest the tag points to (for a multi-arch
	# image, the index): the sha256 of its raw bytes, which is what the
	# registry serves, what cosign signs and what the cluster pulls.
	digest="sha256:$(skopeo inspect "${skopeo_tls[@]}" --raw "docker://$image" | sha256sum | cut -d' ' -f1)" ||
		die "cannot resolve $image in its registry"
	repo="$image"
	if [[ "${image##*/}" == *:* ]]; then repo="${image%:*}"; fi
	ref="$repo@$digest"
	log "resolved $image -> $ref (this digest, not the tag, is verified and deployed)"
fi

# --- 2. verify -------------------------------------------------------------------
if ! cosign/verify "${verify_args[@]}" "$ref"; then
	die "$ref failed verification (reason above); nothing was applied"
fi

# --- 3. render (a release asset is applied as published) -------------------------
if [[ -n "$release_file" ]]; then
	rm -rf "$out" && mkdir -p "$out"
	cp "$release_file" "$out/"
	log "applying $(basename "$release_file") as published, image $ref"
elif ! python3 scripts/deploy/render.py "$manifests" "$out" "$image_name" "$ref"; then
	die "the manifests in $manifests could not all be pointed at the verified image; nothing was applied"
fi

# --- 4. apply --------------------------------------------------------------------
case "$target" in
render)
	log "rendered into $out (not applied: --target render)"
	printf '%s\n' "$out"
	;;
kubectl)
	log "kubectl apply -f $out"
	kubectl apply -f "$out"
	log "deployed $ref"
	;;
podman)
	play=scripts/manifests/podman-play.sh
	[[ -x "$play" ]] || die "$play is missing (owned by the manifests work); rendered manifests are in $out"
	"$play" "$out" "$ref"
	log "deployed $ref with podman kube play"
	;;
esac
