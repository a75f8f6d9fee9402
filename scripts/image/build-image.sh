#!/usr/bin/env bash
# Builds localhost/wordcount:dev from the Dockerfile's final stage.
#
#   podman (this machine, CI): BINARY_FROM=prebuilt, i.e. the static binary
#     from `make static` (target/x86_64-unknown-linux-gnu/release/wordcount),
#     the Mozilla CA bundle from Debian's ca-certificates and the licence
#     notices (scripts/supply-chain/licence-notices.sh), staged in
#     target/image/prebuilt/. Nothing is pulled.
#   docker with a daemon: the full musl build inside the Dockerfile
#     (BUILD_FROM_SOURCE=1 forces that with podman too, where pulls work).
#
# Labels and (podman) file times come from the last commit's
# SOURCE_DATE_EPOCH, so the same binary and CA bundle give the same layer
# digest. The image ID still differs per build: podman's docker-format config
# records a random build container ID and hostname (the OCI format would
# not, but it has no HEALTHCHECK). The binary's reproducibility is what
# `make repro-check` proves.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
use_engine
cd "$ROOT"

SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
revision="$(git rev-parse HEAD)"
version="$(cargo_version)"

args=(
	--build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
	--build-arg "CREATED=$created"
	--build-arg "REVISION=$revision"
	--build-arg "VERSION=$version"
	--build-arg "CARGO_CHEF=$CARGO_CHEF"
	--build-arg "CARGO_AUDITABLE=$CARGO_AUDITABLE"
	--build-arg "CARGO_ABOUT=$CARGO_ABOUT"
	--tag "$IMAGE"
)
mkdir -p target/image

if [[ "$ENGINE" == docker || "${BUILD_FROM_SOURCE:-0}" == 1 ]]; then
	args+=(--build-arg BINARY_FROM=musl)
else
	bin="target/x86_64-unknown-linux-gnu/release/wordcount"
	[[ -x "$bin" ]] || { echo "build-image: $bin missing; run make static" >&2; exit 1; }
	stage=target/image/prebuilt
	rm -rf "$stage" && mkdir -p "$stage"
	cp "$bin" "$stage/wordcount"
	# The bundle is assembled from the package's Mozilla certificates, not
	# copied from /etc/ssl/certs: that file also holds whatever CAs the local
	# admin added (this sandbox adds its egress proxy's CA), which must not
	# ship. Sorted, so the same package version gives the same bytes.
	: >"$stage/ca-certificates.crt"
	while IFS= read -r crt; do
		cat "$crt" >>"$stage/ca-certificates.crt"
	done < <(find /usr/share/ca-certificates/mozilla -name '*.crt' | LC_ALL=C sort)
	[[ -s "$stage/ca-certificates.crt" ]] || { echo "build-image: no CA certificates found (apt ca-certificates)" >&2; exit 1; }
	# The licence notices of the crates in this binary (its gnu target).
	scripts/supply-chain/licence-notices.sh x86_64-unknown-linux-gnu "$stage/THIRD-PARTY.html"
	gzip -9nf "$stage/THIRD-PARTY.html"
	chmod 0755 "$stage/wordcount"
	chmod 0644 "$stage/ca-certificates.crt" "$stage/THIRD-PARTY.html.gz"
	touch -d "@$SOURCE_DATE_EPOCH" "$stage/wordcount" "$stage/ca-certificates.crt" "$stage/THIRD-PARTY.html.gz"
	args+=(--build-arg BINARY_FROM=prebuilt)
fi

start=$(date +%s)
if [[ "$ENGINE" == podman ]]; then
	# docker format: the OCI image config has no HEALTHCHECK field, podman
	# would drop it. --timestamp pins the created time and file mtimes.
	# --no-cache: buildah 1.28 reuses a cached LABEL step when only the
	# build-arg values changed, which left a stale revision label (seen in
	# image-test); without the musl stages this build takes seconds anyway.
	podman build --quiet --no-cache --format docker --timestamp "$SOURCE_DATE_EPOCH" "${args[@]}" . >/dev/null
else
	DOCKER_BUILDKIT=1 docker build "${args[@]}" .
fi
id=$("$ENGINE" image inspect --format '{{.Id}}' "$IMAGE")
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
# What this image claims to be, for image-test's label checks.
binary_from=$(printf '%s\n' "${args[@]}" | sed -n 's/^BINARY_FROM=//p')
printf 'IMAGE=%s\nIMAGE_ID=%s\nREVISION=%s\nVERSION=%s\nCREATED=%s\nSOURCE_DATE_EPOCH=%s\nBINARY_FROM=%s\n' \
	"$IMAGE" "$id" "$revision" "$version" "$created" "$SOURCE_DATE_EPOCH" "$binary_from" >target/image/build.env
printf 'build-image: %s (%s) id %s, %s bytes uncompressed, built in %s s\n' \
	"$IMAGE" "$ENGINE" "$id" "$size" "$(($(date +%s) - start))"
