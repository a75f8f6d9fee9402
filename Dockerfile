# syntax=docker/dockerfile:1
#
# wordcount: one static binary in a FROM-scratch image.
#
#   docker build -t wordcount .               # release path: musl build below,
#                                             # for this machine's platform
#                                             # (linux/amd64 or linux/arm64)
#   make image                                # this repo's local path, see
#                                             # BINARY_FROM=prebuilt
#
# The final stage is the same for both paths; only the stage that provides
# /out (the binary plus the CA bundle) differs:
#   BINARY_FROM=musl      (default) builds the binary from source on Alpine.
#   BINARY_FROM=prebuilt  takes target/image/prebuilt/ from the build context:
#                         scripts/image/build-image.sh puts the static gnu
#                         binary from `make static` and a CA bundle there, for
#                         machines that cannot pull the builder image or
#                         download the musl target (ours).
# Build arguments the scripts pass (defaults keep a bare build working):
#   SOURCE_DATE_EPOCH  the last commit's time; also the reason CREATED exists,
#   CREATED            since a Dockerfile cannot format a date: the scripts
#                      pass `date -u -d @$SOURCE_DATE_EPOCH +%FT%TZ`.
#   VERSION, REVISION  Cargo.toml's version and the commit, for the labels.
ARG BINARY_FROM=musl

# --- builder base: Rust on Alpine, on the BUILD platform ---------------------------
# Multi-arch without emulation: every build stage runs on $BUILDPLATFORM (the
# machine's own architecture) and cross-compiles to the musl target of
# $TARGETPLATFORM, x86_64-unknown-linux-musl or aarch64-unknown-linux-musl.
#   docker buildx build --platform linux/amd64,linux/arm64 .   # both, one index
#   docker build .                                              # this machine's
# tonistiigi/xx supplies that: xx-cargo adds `--target <triple>`, installs the
# target's standard library with rustup and points cargo's linker and the cc
# crate (ring's C and assembly) at clang/lld for the target; xx-apk installs
# the target's musl-dev into the sysroot clang uses.
# Both digests below are MULTI-ARCH INDEX digests (one per tag, covering
# amd64 and arm64), so `FROM --platform=$BUILDPLATFORM` picks the builder's
# own architecture from them: xx 1.6.1 and rust:1.95.0-alpine3.22 as public
# repositories pin them (found with a code search in 2026). This machine
# cannot pull, so these stages have not been built here; the release
# workflow builds them for both platforms and image-tests each result. Bump
# tag and digest together, with Cargo.toml's rust-version in mind.
FROM --platform=$BUILDPLATFORM docker.io/tonistiigi/xx:1.6.1@sha256:923441d7c25f1e2eb5789f82d987693c47b8ed987c4ab3b075d6ed2b5d6779a3 AS xx
FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.95.0-alpine3.22@sha256:064dfc925d68d1a63f4fd2871bd7dc6e6ea56692989a487185855d62885d90aa AS chef
# The xx image holds only its scripts, under /usr/bin.
COPY --from=xx /usr/bin/ /usr/bin/
# clang/lld: the cross C compiler and linker xx-cargo configures; `clang` and
# `lld` are the names Alpine's default LLVM packages (clang20, lld20 in 3.22)
# provide, so `=~20` holds while 20 is the default. musl-dev: the build
# platform's libc for build scripts (musl 1.2.5 in 3.22). The pins are
# apk's fuzzy `=~` on the major (LLVM) or major.minor (musl) version: a new
# toolchain or libc series (linked into the binary) is a visible build
# failure, while Alpine's rebuilds (-rN; the mirror keeps only the newest)
# still resolve. hadolint's DL3018 accepts `=~`; `make workflows-check`
# refuses an exact version or revision here (check-pins.py).
# cargo-chef gives a dependency layer that any registry cache can keep (BuildKit
# cache mounts are not exported to CI caches); cargo-auditable embeds the
# dependency list. The pins are scripts/tools.env's (build-image.sh and the
# release workflow pass them; `make workflows-check` fails if these defaults
# differ from that file).
ARG CARGO_CHEF=0.1.78
ARG CARGO_AUDITABLE=0.7.7
# cargo-about writes the licence notices shipped at /licenses/THIRD-PARTY.html.gz
# (GNU gzip: -n leaves name and time out, so the same notices give the same bytes).
ARG CARGO_ABOUT=0.9.3
RUN apk add --no-cache musl-dev=~1.2 clang=~20 lld=~20 gzip=~1 \
    && cargo install --locked --version "$CARGO_CHEF" cargo-chef \
    && cargo install --locked --version "$CARGO_AUDITABLE" cargo-auditable \
    && cargo install --locked --features cli --version "$CARGO_ABOUT" cargo-about \
    && rm -rf "$CARGO_HOME/registry" "$CARGO_HOME/git"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS musl
# From here on, per target platform (still running on the build platform).
ARG TARGETPLATFORM
# The target's musl headers and libc.a, in the sysroot xx-clang uses.
RUN xx-apk add --no-cache musl-dev=~1.2 \
    && xx-cargo --setup-target-triple
# The same flags as scripts/image/build-static.sh, for this builder's paths:
# the checkout, CARGO_HOME and the target dir are remapped so no build path is
# left in the binary. Set before `cook` so the dependency layer is reused.
# With --target (xx-cargo adds it) RUSTFLAGS apply to the target only, not to
# build scripts, which run here on the build platform.
ENV RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\" -C link-arg=-Wl,-z,pack-relative-relocs --remap-path-prefix=/usr/local/cargo=/cargo --remap-path-prefix=/usr/local/rustup=/rustup --remap-path-prefix=/src=/wordcount --remap-path-prefix=/src/target=/target"
COPY --from=planner /src/recipe.json recipe.json
RUN xx-cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# Declared only here: a new commit time must not invalidate the cook layer.
ARG SOURCE_DATE_EPOCH=0
ARG REVISION=unknown
# .git is not in the build context: build.rs takes the commit for --version
# from WORDCOUNT_COMMIT, 12 hex digits like its own `git rev-parse --short=12`.
# xx-verify --static: the binary is for $TARGETPLATFORM and statically linked.
RUN WORDCOUNT_COMMIT="$(printf '%.12s' "$REVISION")" xx-cargo auditable build --release --locked \
    && triple="$(xx-cargo --print-target-triple)" \
    && xx-verify --static "target/$triple/release/wordcount" \
    && mkdir -p /out/etc/ssl/certs /out/licenses \
    && cp "target/$triple/release/wordcount" /out/wordcount \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt \
    && cargo about generate --frozen --fail --target "$triple" -m Cargo.toml \
         -c scripts/supply-chain/about.toml -o /out/licenses/THIRD-PARTY.html \
         scripts/supply-chain/about.hbs \
    && gzip -9n /out/licenses/THIRD-PARTY.html

# --- local path: binary and CA bundle staged by scripts/image/build-image.sh ----
# (linux/amd64 only: `make static` builds x86_64-unknown-linux-gnu.)
FROM scratch AS prebuilt
COPY target/image/prebuilt/wordcount /out/wordcount
COPY target/image/prebuilt/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt
COPY target/image/prebuilt/THIRD-PARTY.html.gz /out/licenses/THIRD-PARTY.html.gz

FROM ${BINARY_FROM} AS binary

# --- the image ----------------------------------------------------------------
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="wordcount" \
      org.opencontainers.image.description="How often a word appears in each of Shakespeare's works, from BigQuery, as HTML and JSON" \
      org.opencontainers.image.source="https://github.com/wordcount/wordcount" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
# Exactly three files: the static binary, the CA bundle its rustls clients
# load through rustls-native-certs (/etc/ssl/certs/ca-certificates.crt), and
# the third-party licence notices of the crates in the binary
# (/licenses/THIRD-PARTY.html.gz, cargo-about's HTML, gzipped: 395 KiB of
# near-identical licence texts in 21 KiB), which their licences require to
# travel with every copy.
COPY --from=binary /out/ /
# 65532 is "nonroot" in distroless images; numeric, because scratch has no
# /etc/passwd and Kubernetes' runAsNonRoot can only verify a numeric user.
USER 65532:65532
EXPOSE 8080 9090
# No shell and no curl in the image: the binary probes its own admin port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/wordcount", "healthcheck"]
ENTRYPOINT ["/wordcount"]
