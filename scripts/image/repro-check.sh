#!/usr/bin/env bash
# `make repro-check`: two clean builds of the static binary from the same
# commit must have the same sha256.
#
# Each build is a fresh clone of HEAD (uncommitted changes are not part of
# the check) in its own directory, with its own target dir; the second one
# also gets a different CARGO_HOME path (sharing the downloaded registry via
# a symlink, offline) and different path lengths, so a build path that
# leaked into the binary shows up as a different hash, not just in `strings`.
#
# REPRO_REUSE_STATIC=1 (set by .ci/run): the first build is the checkout's own
# `make static` output, if target/image/static.stamp says it was built from
# HEAD with a clean tree and its hash still matches. In CI the checkout is a
# fresh clone, so that build is a clean one too, and it is the binary that
# went into the image: one release build saved (~5 min on 2 cores).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

commit=$(git rev-parse HEAD)
readonly TRIPLE=x86_64-unknown-linux-gnu
WORK="$(mktemp -d -p "$SCRATCH")"

clone() {
	git clone --quiet --no-hardlinks "$ROOT" "$1"
	git -C "$1" checkout --quiet --detach "$commit"
}

# build NAME DIR [env...]: clean build in a fresh clone at DIR; prints sha256.
build() {
	local name=$1 dir=$2 start
	shift 2
	clone "$dir"
	start=$(date +%s)
	echo "repro-check: build $name in $dir" >&2
	env "$@" bash "$dir/scripts/image/build-static.sh" >"$WORK/$name.log" 2>&1 || {
		tail -30 "$WORK/$name.log" >&2
		echo "repro-check: build $name failed" >&2
		return 1
	}
	echo "repro-check: build $name took $(($(date +%s) - start)) s" >&2
	sha256sum "$dir/target/$TRIPLE/release/wordcount" | cut -d' ' -f1
}

sha_a=""
stamp=target/image/static.stamp
if [[ "${REPRO_REUSE_STATIC:-0}" == 1 && -f "$stamp" ]]; then
	bin="target/$TRIPLE/release/wordcount"
	if grep -qx "commit=$commit" "$stamp" && grep -qx 'dirty=0' "$stamp" &&
		[[ -f "$bin" ]] && grep -qx "sha256=$(sha256sum "$bin" | cut -d' ' -f1)" "$stamp"; then
		sha_a=$(sha256sum "$bin" | cut -d' ' -f1)
		a_where="$ROOT (make static, reused)"
		bin_a="$ROOT/$bin"
	else
		echo "repro-check: $stamp is not a clean build of $commit; building A afresh" >&2
	fi
fi
if [[ -z "$sha_a" ]]; then
	sha_a=$(build A "$WORK/a")
	a_where="$WORK/a"
	bin_a="$WORK/a/target/$TRIPLE/release/wordcount"
fi

# B: longer paths everywhere, another CARGO_HOME. Offline: every crate is
# already in the registry after A, and offline cargo cannot race other cargo
# processes writing the shared registry.
cargo_home_b="$WORK/cargo-home-for-the-second-build"
mkdir -p "$cargo_home_b"
ln -s "$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)/registry" "$cargo_home_b/registry"
sha_b=$(build B "$WORK/second-clean-build-in-a-longer-directory/wordcount" \
	CARGO_HOME="$cargo_home_b" CARGO_NET_OFFLINE=true)

printf 'repro-check: commit %s\n  A %s  %s\n  B %s  %s\n' "$commit" "$sha_a" "$a_where" \
	"$sha_b" "$WORK/second-clean-build-in-a-longer-directory/wordcount"
if [[ "$sha_a" != "$sha_b" ]]; then
	bin_b="$WORK/second-clean-build-in-a-longer-directory/wordcount/target/$TRIPLE/release/wordcount"
	echo "repro-check: FAIL, the builds differ ($(cmp -l "$bin_a" "$bin_b" 2>/dev/null | wc -l) bytes; sizes $(stat -c %s "$bin_a") / $(stat -c %s "$bin_b"))." >&2
	echo "  strings only in B (first 10):" >&2
	comm -13 <(strings -a "$bin_a" | sort -u) <(strings -a "$bin_b" | sort -u) | head -10 | sed 's/^/    /' >&2
	exit 1
fi
echo "repro-check: ok, identical"
