#!/usr/bin/env bash
# Builds the statically linked release binary this machine can make without a
# musl toolchain: the gnu target with +crt-static (a static-pie), through
# cargo-auditable so the binary carries its dependency list (for
# `cargo audit bin` and syft). The Dockerfile's musl builder uses the same
# flags; keep the two in step (scripts/image/README.md says where).
#
# Reproducible: SOURCE_DATE_EPOCH comes from the last commit, and every
# machine-specific directory that rustc could write into the binary (the
# checkout, CARGO_HOME, RUSTUP_HOME, the target dir) is remapped to a fixed
# name; the build then fails if any of those paths is still in the binary.
#
# Usage: build-static.sh [--target-dir DIR]   (default: ./target)
# Prints the binary's path and sha256; writes target/image/static.stamp with
# the commit it was built from (repro-check reuses a clean build by it).
set -euo pipefail

readonly TRIPLE=x86_64-unknown-linux-gnu
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"

target_dir="$ROOT/target"
while (($#)); do
	case "$1" in
	--target-dir) target_dir="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
	*) echo "build-static: unknown argument $1" >&2; exit 2 ;;
	esac
done

cargo_home="$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)"
rustup_home=""
if [[ -d "${RUSTUP_HOME:-$HOME/.rustup}" ]]; then rustup_home="$(cd "${RUSTUP_HOME:-$HOME/.rustup}" && pwd -P)"; fi
root_real="$(pwd -P)"

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"
# rustc's own paths (std, core) are already /rustc/<hash>/...; these cover
# ours. Order matters: rustc applies the LAST matching prefix, so the most
# specific directories (the target dir, possibly inside the checkout) go last.
# getrandom_backend="linux_getrandom": getrandom 0.3+ otherwise finds glibc's
# getrandom() through dlsym, which a static binary cannot do, and falls back
# to opening /dev/urandom, so ThreadRng panics in an empty root (found by
# image-test). This links getrandom() directly; musl builds do that anyway.
# -z pack-relative-relocs: the static-pie's ~9,800 relative relocations as
# DT_RELR bitmaps instead of 24-byte RELA entries (~230 KB smaller; glibc
# >= 2.36 and musl >= 1.2.4 apply them at start-up).
flags=(-C target-feature=+crt-static --cfg 'getrandom_backend="linux_getrandom"' -C 'link-arg=-Wl,-z,pack-relative-relocs')
[[ -n "$rustup_home" ]] && flags+=("--remap-path-prefix=$rustup_home=/rustup")
flags+=("--remap-path-prefix=$cargo_home=/cargo")
flags+=("--remap-path-prefix=$root_real=/wordcount")
[[ "$ROOT" != "$root_real" ]] && flags+=("--remap-path-prefix=$ROOT=/wordcount")
flags+=("--remap-path-prefix=$target_dir=/target")
# RUSTFLAGS with --target applies to the target artifacts only, so build
# scripts and proc macros stay dynamic host programs (without --target,
# crt-static breaks proc-macro crates). It replaces any build.rustflags from
# a .cargo/config.toml; there is none in this repository.
# (RUSTFLAGS is split on spaces; none of the values contain one.)
RUSTFLAGS="${flags[*]}"
export RUSTFLAGS

start=$(date +%s)
CARGO_TARGET_DIR="$target_dir" cargo auditable build --release --locked --target "$TRIPLE"
bin="$target_dir/$TRIPLE/release/wordcount"
echo "build-static: built in $(($(date +%s) - start)) s"

# Static, and no build path left in it (scripts/image/check-static.sh).
bash "$ROOT/scripts/image/check-static.sh" "$bin" \
	"$root_real" "$ROOT" "$cargo_home" "$rustup_home" "$target_dir" "$HOME"

sha=$(sha256sum "$bin" | cut -d' ' -f1)
dirty=$(git status --porcelain --untracked-files=no | wc -l)
mkdir -p "$target_dir/image"
printf 'commit=%s\ndirty=%s\nsha256=%s\nsource_date_epoch=%s\n' \
	"$(git rev-parse HEAD)" "$dirty" "$sha" "$SOURCE_DATE_EPOCH" >"$target_dir/image/static.stamp"
printf 'build-static: %s\nbuild-static: sha256 %s  size %s bytes\n' "$bin" "$sha" "$(stat -c %s "$bin")"
