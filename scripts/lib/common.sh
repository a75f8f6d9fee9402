# shellcheck shell=bash
# The platform's one shell library; every script sources it first:
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# It defines
#   ROOT                       the repository root (scripts cd there themselves)
#   the pins of scripts/tools.env
#   log MSG / die MSG          "<name>: MSG" on stderr; die exits 1. <name> is
#                              LOG_NAME, by default the script's file name
#                              without .sh; DIE_PREFIX goes before die's MSG
#   at_exit CMD                runs CMD on exit (last registered first)
#   SCRATCH                    this run's scratch directory, removed on exit
#                              (`mktemp -d -p "$SCRATCH"` for one of several)
#   ok / fail / check          a test's record: count into $passed/$failed;
#                              check DESCRIPTION CMD... never aborts and shows
#                              the tail of CMD's output when it fails
#   usage                      the script's header comment on stderr, exit 2
#   use_engine                 ENGINE and IMAGE for the container scripts
#   play_args "$@"             MANIFEST_DIR IMAGE [WORD...] of the *-play.sh
#   TAG_RE / DIGEST_REF_RE     a release tag, an image reference by digest
#   cargo_version              the service's version, from Cargo.toml
#   apt_install_missing PKG... / cargo_tool CRATE VERSION / go_tool NAME ...
#                              pinned installs
#   registry_test_tools / test_registry PORT / test_image REPO NAME /
#   test_trusted_root ... / rehearsal_cosign / keyless_stand_ins DIR PORT
#                              the signing tests' tools, registry, images
#                              and trust roots
#   wait_for CMD...            retries CMD for up to 20 s

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/tools.env
source "$ROOT/scripts/tools.env"

LOG_NAME="${LOG_NAME:-$(basename "$0" .sh)}"
log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() {
	printf '%s: %s%s\n' "$LOG_NAME" "${DIE_PREFIX:-}" "$*" >&2
	exit 1
}

usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
	exit 2
}

# use_engine: exports ENGINE, the container engine (a Docker daemon that
# answers wins: laptops, GitHub runners; otherwise podman with this
# repository's containers.conf: this machine and CI; ENGINE=podman|docker
# overrides) and IMAGE, the local tag every target uses (make image /
# image-test / local-release).
use_engine() {
	if [[ -z "${ENGINE:-}" ]]; then
		ENGINE=podman
		if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then ENGINE=docker; fi
	fi
	# podman's defaults (systemd cgroups, crun, journald) do not work here; the
	# project's file says why. A caller may still point elsewhere on purpose.
	if [[ "$ENGINE" == podman ]]; then
		export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/containers/containers.conf}"
	fi
	IMAGE="${IMAGE:-localhost/wordcount:dev}"
	export ENGINE IMAGE
}

# play_args MANIFEST_DIR IMAGE [WORD...]: sets manifests, image and words
# (default: the coffee) for the scripts that play manifests locally.
play_args() {
	(($# >= 2)) || usage
	# shellcheck disable=SC2034 # read by the caller
	manifests=$1 image=$2
	shift 2
	words=("$@")
	((${#words[@]})) || words=(the coffee)
}

# Tags the release workflow accepts (cosign/identity.env's regexp accepts the
# same shape, so anything released is verifiable) and image references by
# digest, the only form the release and deploy steps take.
# shellcheck disable=SC2034 # used by the scripts that source this
readonly TAG_RE='^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$' DIGEST_REF_RE='^[a-z0-9.:/_-]+@sha256:[0-9a-f]{64}$'

_exit_hooks=()
cargo_version() { sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1; }

# A hook finds the script's exit status in $exit_status.
_run_exit_hooks() {
	# shellcheck disable=SC2034 # read by the hooks
	exit_status=$?
	local i
	for ((i = ${#_exit_hooks[@]} - 1; i >= 0; i--)); do eval "${_exit_hooks[i]}" || true; done
}
at_exit() {
	_exit_hooks+=("$*")
	trap _run_exit_hooks EXIT
}

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/wordcount-${LOG_NAME// /-}.XXXXXX")"
at_exit "rm -rf '$SCRATCH'"

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   - %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL - %s\n' "$*"; }
check() {
	local what=$1 out="$SCRATCH/check.out"
	shift
	if "$@" >"$out" 2>&1; then ok "$what"; else
		fail "$what"
		sed 's/^/       /' "$out" | tail -20
	fi
}

# apt_install_missing PKG...: installs those of PKG that are not installed
# yet (as root, or through sudo), and does nothing when all are there.
apt_install_missing() {
	local missing=() p
	for p in "$@"; do
		# No `grep -q`: under pipefail its early exit can fail the pipeline
		# and make an installed package look missing.
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	printf 'apt: installing %s\n' "${missing[*]}" >&2
	local sudo_cmd=()
	((EUID == 0)) || sudo_cmd=(sudo)
	# Fresh machines may have an empty package list, and other install
	# scripts may hold apt's lock: update first, and wait for the lock.
	"${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 \
		install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# cargo_tool CRATE VERSION [ARG...]: installs CRATE at exactly VERSION (ARGs
# go to `cargo install`, e.g. --features for a binary behind one) unless
# `cargo install` already recorded that version and its binary is on PATH.
# (Asking the tools is unreliable: `cargo auditable --version` prints cargo's.)
cargo_tool() {
	local crate=$1 version=$2 have
	have=$(cargo install --list 2>/dev/null | awk -v c="$crate" '$1 == c {sub(/^v/, "", $2); sub(/:$/, "", $2); print $2}')
	if [[ "$have" == "$version" ]] && command -v "$crate" >/dev/null; then
		return 0
	fi
	printf 'install: %s %s (found: %s)\n' "$crate" "$version" "${have:-none}" >&2
	# A private target dir keeps tool builds out of the project's target/ and
	# off its build lock. Fat LTO and one codegen unit (some of these crates
	# ask for them) make a cold install minutes slower on two cores for a tool
	# that runs for seconds; these overrides win over the crates' manifests.
	local dir
	dir="$(mktemp -d "${TMPDIR:-/tmp}/wordcount-tool-build-$crate.XXXXXX")"
	CARGO_TARGET_DIR="$dir" CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
		nice -n 10 cargo install --quiet --locked --version "$version" "${@:3}" "$crate"
	rm -rf "$dir"
}

# go_tool NAME MODULE@VERSION PKG|tools/go/DIR: prints the path of the Go
# program NAME, building it first unless a binary of exactly that version is
# cached. With PKG it is `go install PKG@VERSION` (for modules whose go.mod has
# no replace directives; checksums from the Go checksum database). With
# tools/go/DIR it builds, as NAME, that small module's `tool` whose package
# path ends in /NAME (or its only tool); the module requires MODULE at
# VERSION, repeats the upstream replace directives, and its committed go.sum
# verifies every dependency. The version is checked with
# `go version -m`, not taken from the file name. Binaries are cached in
# GO_TOOLS_DIR, one folder per pin, so a pin change builds anew and a fresh
# machine builds from nothing.
GO_TOOLS_DIR="${GO_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wordcount/go-tools}"
go_tool() {
	local name=$1 module=${2%@*} version=${2#*@} src=$3 moddir='' dir lock
	dir="$GO_TOOLS_DIR/$name-$version"
	if [[ $src == tools/go/* ]]; then
		moddir="$ROOT/$src"
		grep -qE "^[[:space:]]*(require )?$module $version( |$)" "$moddir/go.mod" ||
			die "$src/go.mod does not require $module $version (scripts/tools.env)"
		dir+="-$(cat "$moddir/go.mod" "$moddir/go.sum" | sha256sum | cut -c1-12)"
	fi
	mkdir -p "$GO_TOOLS_DIR"
	# One build per pin at a time: gates run side by side wait for it.
	exec {lock}>"$dir.lock"
	flock "$lock"
	if ! go version -m "$dir/$name" 2>/dev/null | grep -qE "^[[:space:]]+(mod|dep)[[:space:]]+${module}[[:space:]]+${version}([[:space:]]|$)"; then
		command -v go >/dev/null || die "go is not installed (the Go toolchain builds $name)"
		log "building $name ($module $version; minutes on two cores; cached in $dir)"
		rm -rf "$dir"
		mkdir -p "$dir"
		if [[ -n "$moddir" ]]; then
			local pkg
			pkg=$(awk -v n="$name" '/^tool \($/ { block = 1; next } block && /^\)/ { block = 0 }
				block || /^tool [^(]/ { all[++k] = $NF; if ($NF ~ ("/" n "$")) hit = $NF }
				END { print hit != "" ? hit : (k == 1 ? all[1] : "") }' "$moddir/go.mod")
			[[ -n "$pkg" ]] || die "$src/go.mod has no tool named $name"
			(cd "$moddir" && GOFLAGS="-mod=readonly -buildvcs=false" nice -n 10 go build -trimpath -o "$dir/$name" "$pkg") >&2
		else
			GOBIN="$dir" nice -n 10 go install -trimpath "$src@$version" >&2
		fi
		[[ -x "$dir/$name" ]] || die "the build wrote no $name into $dir"
	fi
	exec {lock}>&-
	printf '%s\n' "$dir/$name"
}

# cosign_bin: the pinned cosign (scripts/tools.env), built on first use.
cosign_bin() { go_tool cosign "$COSIGN" github.com/sigstore/cosign/v3/cmd/cosign; }

# registry_test_tools: for the tests that sign into a loopback registry with
# their own trust root: the pinned cosign first on PATH (exactly as shipped,
# no rehearsal flags), `crane` and `py` (the project's Python) set, and the
# registry and openssl installed.
registry_test_tools() {
	local cosign
	cosign="$(cosign_bin)"
	export PATH="${cosign%/*}:$PATH"
	# shellcheck disable=SC2034 # read by the caller
	crane="$(go_tool crane "$CRANE" github.com/google/go-containerregistry/cmd/crane)"
	# shellcheck disable=SC2034 # read by the caller
	py="$(python_bin)/python"
	apt_install_missing docker-registry openssl
}

# test_registry PORT: a loopback registry (scripts/deploy/registry.sh) on
# PORT with its state in this run's scratch directory, stopped when the
# script exits; its address in $registry.
test_registry() {
	export REGISTRY_PORT=$1 REGISTRY_STATE_DIR="$SCRATCH/registry"
	scripts/deploy/registry.sh start
	at_exit "scripts/deploy/registry.sh stop >/dev/null 2>&1"
	# shellcheck disable=SC2034 # read by the caller
	registry="$(scripts/deploy/registry.sh addr)"
}

# test_image REPO NAME: a new image REPO:NAME in a loopback registry, one
# layer whose content is NAME, so each NAME has its own digest; prints
# REPO@DIGEST. After registry_test_tools.
test_image() {
	local d
	d="$(mktemp -d -p "$SCRATCH")"
	printf '%s\n' "$2" >"$d/content" && tar -C "$d" -czf "$d/layer.tgz" content
	"$crane" append --insecure -f "$d/layer.tgz" -t "$1:$2" 2>/dev/null
}

# test_trusted_root OUT FULCIO_URL CA TSA_URL TSA: TEST ONLY. cosign's
# trusted root (OUT.json, with OUT-tsa-chain.pem) for a per-run CA standing
# in for Fulcio (CA.pem) and a timestamp authority whose certificate that CA
# issued (TSA.pem; its chain runs up to the CA). Needs cosign on PATH
# (registry_test_tools).
test_trusted_root() {
	cat "$5.pem" "$3.pem" >"$1-tsa-chain.pem"
	cosign trusted-root create --out "$1.json" --fulcio "url=$2,certificate-chain=$3.pem" \
		--tsa "url=$4,certificate-chain=$1-tsa-chain.pem" >/dev/null
}

# rehearsal_cosign: TEST ONLY, for the rehearsals (make signing-test,
# local-release, mock-prod, release-rehearsal), which must write nothing to
# Rekor. Puts first on PATH a `cosign` that runs $COSIGN_BIN (a path, or a
# name looked up on PATH first; default: the pinned cosign, cosign_bin) with the transparency log switched off, using
# cosign's own documented flags: --tlog-upload=false for sign, attest and
# sign-blob, --insecure-ignore-tlog for verify, verify-attestation and
# verify-blob. Every other argument is passed through unchanged, so the
# scripts under test (release.sh, cosign/verify) run with exactly the flags
# they ship with. release-rehearsal.yml passes cosign-installer's cosign;
# nothing in release.yml or deploy.yml calls this: there cosign writes to
# and checks against Rekor.
rehearsal_cosign() {
	local real="${COSIGN_BIN:-}" dir="$SCRATCH/rehearsal-bin"
	if [[ -z "$real" ]]; then real="$(cosign_bin)"; elif [[ "$real" != /* ]]; then real="$(command -v "$real")"; fi
	mkdir -p "$dir"
	cat >"$dir/cosign" <<-EOF
		#!/bin/sh
		# TEST ONLY (scripts/lib/common.sh rehearsal_cosign): no Rekor here.
		case "\$1" in
		sign | attest | sign-blob) c=\$1; shift; exec '$real' "\$c" --tlog-upload=false "\$@" ;;
		verify | verify-attestation | verify-blob) c=\$1; shift; exec '$real' "\$c" --insecure-ignore-tlog "\$@" ;;
		esac
		exec '$real' "\$@"
	EOF
	chmod +x "$dir/cosign"
	export PATH="$dir:$PATH"
}

# wait_for CMD...: true once CMD succeeds, false after 20 s of failures.
wait_for() {
	local i
	for ((i = 0; i < 100; i++)); do
		"$@" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# keyless_stand_ins DIR PORT: TEST ONLY, for the workflow step tests
# (scripts/workflows/test-steps.sh), which sign and verify keylessly as the
# release and deploy jobs do, with the real cosign, Fulcio and gh, where
# neither sigstore.dev nor GitHub is reachable. Call registry_test_tools
# first. Until the script exits, on 127.0.0.1, with a CA, a timestamping
# and a TLS certificate made per run in DIR (scripts/deploy/keyless-ca.py):
#   PORT      scripts/deploy/github-stand-in.py: the Actions ID-token
#             endpoint, and as an HTTPS proxy GitHub's OIDC issuer (for
#             Fulcio) and the release and attestation API (for gh)
#   PORT+1    a timestamp authority (keyless-ca.py serve-tsa)
#   PORT+2/3  the pinned Fulcio (HTTP/gRPC), issuing from the CA for GitHub
#             workflow tokens, no CT log. (Its Prometheus listener has no
#             host option: it takes a free port on every interface.)
# Then it exports ACTIONS_ID_TOKEN_REQUEST_TOKEN (ACTIONS_ID_TOKEN_REQUEST_URL
# is per job: actions_token_url), as the runner does; COSIGN_TRUSTED_ROOT
# (the CA and the TSA), COSIGN_INSECURE_IGNORE_TLOG and
# COSIGN_INSECURE_IGNORE_SCT (no Rekor, no CT log), as keyless-test does;
# and puts first on PATH
#   cosign  the pinned cosign; for sign, attest, sign-blob and attest-blob
#           with DIR/signing_config.json (this Fulcio and TSA, no Rekor)
#           where --use-signing-config[=true] asks for sigstore.dev's, and
#           with this Fulcio and no transparency log where
#           --use-signing-config=false
#   gh      the pinned gh, reaching api.github.com through the stand-in
#           (HTTPS_PROXY, SSL_CERT_FILE = the CA, a dummy GH_TOKEN);
#           `attestation verify` with --custom-trusted-root (the same root)
# Every other argument passes through unchanged, so the scripts under test
# run with exactly the flags they ship with.
keyless_stand_ins() {
	local dir=$1 port=$2 real fulcio gh
	real="$(cosign_bin)"
	fulcio="$(go_tool fulcio "$FULCIO" github.com/sigstore/fulcio)"
	gh="$(go_tool gh "$GH" github.com/cli/cli/v2/cmd/gh)"
	mkdir -p "$dir/bin" "$dir/gh"
	"$py" scripts/deploy/keyless-ca.py ca "$dir/ca"
	"$py" scripts/deploy/keyless-ca.py tsa "$dir/ca" "$dir/tsa"
	"$py" scripts/deploy/keyless-ca.py tls "$dir/ca" "$dir/tls" token.actions.githubusercontent.com api.github.com
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/request-token"
	"$py" scripts/deploy/github-stand-in.py "$port" "$dir" &
	at_exit "kill $!"
	"$py" scripts/deploy/keyless-ca.py serve-tsa "$dir/tsa" "$dir/ca" $((port + 1)) &
	at_exit "kill $!"
	# Fulcio reads the issuer's discovery document when it starts.
	wait_for curl -sS -o /dev/null "http://127.0.0.1:$port/" || die "the GitHub stand-in did not start"
	printf '{"OIDCIssuers": {"https://token.actions.githubusercontent.com": {"IssuerURL":
		"https://token.actions.githubusercontent.com", "ClientID": "sigstore", "Type": "github-workflow"}}}\n' >"$dir/fulcio.json"
	HTTPS_PROXY="http://127.0.0.1:$port" NO_PROXY='' SSL_CERT_FILE="$dir/ca.pem" "$fulcio" serve --log_type prod \
		--ca fileca --fileca-cert "$dir/ca.pem" --fileca-key "$dir/ca.key" --fileca-key-passwd unencrypted \
		--fileca-watch=false --ct-log-url '' --config-path "$dir/fulcio.json" --host 127.0.0.1 \
		--port $((port + 2)) --grpc-host 127.0.0.1 --grpc-port $((port + 3)) --metrics-port 0 \
		--legacy-unix-domain-socket "$dir/fulcio-legacy.sock" >"$dir/fulcio.log" 2>&1 &
	at_exit "kill $!"
	wait_for curl -fsS -o /dev/null "http://127.0.0.1:$((port + 2))/api/v2/configuration" ||
		die "Fulcio did not start: $(tail -5 "$dir/fulcio.log")"
	local start=2020-01-01T00:00:00Z
	test_trusted_root "$dir/trusted_root" "http://127.0.0.1:$((port + 2))" "$dir/ca" "http://127.0.0.1:$((port + 1))" "$dir/tsa"
	# gh reads one trusted root per line.
	"$py" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$dir/trusted_root.json" >"$dir/trusted_root.jsonl"
	"$real" signing-config create --out "$dir/signing_config.json" \
		--fulcio "url=http://127.0.0.1:$((port + 2)),api-version=1,start-time=$start,operator=test" \
		--tsa "url=http://127.0.0.1:$((port + 1))/,api-version=1,start-time=$start,operator=test" --tsa-config ANY >/dev/null
	cat >"$dir/bin/cosign" <<-EOF
		#!/usr/bin/env bash
		# TEST ONLY (scripts/lib/common.sh keyless_stand_ins): the test's Fulcio, TSA, no Rekor.
		case "\$1" in
		sign | attest | sign-blob | attest-blob) ;;
		*) exec '$real' "\$@" ;;
		esac
		c=\$1 args=()
		shift
		for a; do
			case "\$a" in
			--use-signing-config=false) exec '$real' "\$c" --fulcio-url=http://127.0.0.1:$((port + 2)) --insecure-skip-verify=true --tlog-upload=false "\$@" ;;
			--use-signing-config | --use-signing-config=true) ;;
			*) args+=("\$a") ;;
			esac
		done
		exec '$real' "\$c" --signing-config='$dir/signing_config.json' "\${args[@]}"
	EOF
	cat >"$dir/bin/gh" <<-EOF
		#!/bin/sh
		# TEST ONLY (scripts/lib/common.sh keyless_stand_ins): GitHub is the stand-in.
		export HTTPS_PROXY=http://127.0.0.1:$port NO_PROXY='' SSL_CERT_FILE='$dir/ca.pem' GH_TOKEN=stand-in \
			GH_CONFIG_DIR='$dir/gh' GH_NO_UPDATE_NOTIFIER=1 GH_PROMPT_DISABLED=1
		if [ "\$1 \$2" = "attestation verify" ]; then
			shift 2
			exec '$gh' attestation verify --custom-trusted-root '$dir/trusted_root.jsonl' "\$@"
		fi
		exec '$gh' "\$@"
	EOF
	chmod +x "$dir/bin/cosign" "$dir/bin/gh"
	ACTIONS_ID_TOKEN_REQUEST_TOKEN="$(cat "$dir/request-token")"
	export PATH="$dir/bin:$PATH" COSIGN_TRUSTED_ROOT="$dir/trusted_root.json" COSIGN_INSECURE_IGNORE_TLOG=true \
		COSIGN_INSECURE_IGNORE_SCT=true ACTIONS_ID_TOKEN_REQUEST_TOKEN
	KEYLESS_TOKEN_ENDPOINT="http://127.0.0.1:$port/token"
}

# actions_token_url WORKFLOW REF: after keyless_stand_ins, the
# ACTIONS_ID_TOKEN_REQUEST_URL of a job of WORKFLOW (a file under
# .github/workflows/; release.yml runs, or calls, it) of $GITHUB_REPOSITORY
# at REF.
actions_token_url() {
	printf '%s?repository=%s&ref=%s&workflow=%s&caller=release.yml' "$KEYLESS_TOKEN_ENDPOINT" "$GITHUB_REPOSITORY" "$2" "$1"
}

# python_bin: the bin directory of the project's one Python environment
# (scripts/lib/python.sh builds it on first use).
python_bin() { "$ROOT/scripts/lib/python.sh"; }

# The RustSec snapshot this environment provides beside the checkout. When it
# is absent (GitHub runners, laptops) cargo-deny and cargo-audit fetch the
# live database.
ADVISORY_SNAPSHOT="${WORDCOUNT_ADVISORY_SNAPSHOT:-$(dirname "$ROOT")/shared/advisory-db}"
# advisory_db: false without the snapshot; otherwise copies it into a scratch
# directory (the tools write into their database; ../shared is read-only) as
# the git repository cargo-deny expects under the name it derives from the
# default URL, and sets ADVISORY_DBS (cargo-deny's db-path) and ADVISORY_DB
# (the database itself, cargo-audit's --db).
advisory_db() {
	[[ -d "$ADVISORY_SNAPSHOT/crates" ]] || return 1
	ADVISORY_DBS="$SCRATCH/advisory-dbs"
	ADVISORY_DB="$ADVISORY_DBS/advisory-db-3157b0e258782691"
	mkdir -p "$ADVISORY_DBS"
	cp -r "$ADVISORY_SNAPSHOT" "$ADVISORY_DB"
	local g=(git -C "$ADVISORY_DB" -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false)
	"${g[@]}" init -q
	"${g[@]}" add -A
	"${g[@]}" commit -qm snapshot
}

# gate NAME CMD...: one of a target's independent checks: runs CMD under a
# "--- NAME" heading and records the outcome, never aborting, so one run
# lists every problem; gates_report LABEL then exits 1 if any failed.
failed_gates=()
gate() {
	local name=$1 start=$SECONDS
	shift
	printf '\n--- %s\n' "$name"
	if "$@"; then
		printf -- '--- %s: ok (%d s)\n' "$name" $((SECONDS - start))
	else
		printf -- '--- %s: FAILED\n' "$name"
		failed_gates+=("$name")
	fi
}
gates_report() {
	if ((${#failed_gates[@]})); then
		printf '\n%s: FAILED: %s\n' "$1" "${failed_gates[*]}" >&2
		exit 1
	fi
	printf '\n%s: all passed\n' "$1"
}
