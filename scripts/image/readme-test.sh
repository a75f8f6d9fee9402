#!/usr/bin/env bash
# Runs the README's container quickstart: the commands of the fenced block
# after the `<!-- readme-docker-test -->` marker in README.md, read from there
# (never copied here), with the engine use_engine picks (podman on this machine).
# What changes on the way, and only this, is printed per command:
#   docker build  -> ENGINE build, plus --build-arg BINARY_FROM=prebuilt with
#                    podman (no pulls here: the binary `make image` staged)
#   docker run    -> ENGINE run -d --name ..., so the test can probe it; a host
#                    port already taken on this machine moves up by 10000
#   docker compose-> not run: it builds the default musl stage, which pulls
#   anything else -> run as written (e.g. chmod)
# Every command but the build runs in a scratch directory that is also its
# HOME, where the key the README's BigQuery run mounts is created.
# Each run must answer /hello and / (sample data, the WORD asked for); the
# BigQuery run must start with the mounted key (its account in the log) and
# answer /hello while Google is unreachable (README_FILE=path reads another
# copy, e.g. to see a check fail). Containers, the `wordcount`
# image and the throwaway key are removed on exit.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
use_engine
cd "$ROOT"

PROBE=(python3 scripts/image/probe.py)
WORK="$(mktemp -d -p "$SCRATCH")"
containers=()
built=""
cleanup() {
	local c
	for c in "${containers[@]}"; do "$ENGINE" rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
	if [[ -n "$built" ]]; then "$ENGINE" rmi "$built" >/dev/null 2>&1 || true; fi
}
at_exit cleanup

check "README.md, SECURITY.md, cosign/README.md and docs/ name only paths and make targets that exist" \
	python3 scripts/check-doc-refs.py README.md SECURITY.md cosign/README.md docs/*.md

# The block's commands, continuation lines joined, comments dropped.
mapfile -t commands < <(awk '/<!-- readme-docker-test -->/ {m = 1; next}
	m == 1 && /^```/ {m = 2; next}
	m == 2 && /^```/ {exit}
	m == 2' "${README_FILE:-README.md}" | sed -e ':a' -e '/\\$/N; s/\\\n[[:space:]]*//; ta' | grep -vE '^[[:space:]]*(#|$)')
((${#commands[@]} >= 4)) || {
	echo "readme-test: no command block after <!-- readme-docker-test --> in README.md" >&2
	exit 1
}

# A throwaway service-account key, as `gcloud iam service-accounts keys
# create` writes one (mode 0600); the account cannot reach Google from here.
account="readme-test@wordcount-test.iam.gserviceaccount.com"
key="$WORK/.config/wordcount/key.json"
mkdir -p "${key%/*}"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/pk.pem" 2>/dev/null
python3 - "$WORK/pk.pem" "$account" >"$key" <<'PY'
import json, sys
print(json.dumps({
    "type": "service_account", "project_id": "wordcount-test", "private_key_id": "0",
    "private_key": open(sys.argv[1]).read(), "client_email": sys.argv[2], "client_id": "0",
    "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
}))
PY
chmod 0600 "$key"
rm "$WORK/pk.pem"

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

i=0
for cmd in "${commands[@]}"; do
	i=$((i + 1))
	printf '\n--- README: %s\n' "$cmd"
	case "$cmd" in
	"docker build "*)
		run=("$ENGINE" build)
		if [[ "$ENGINE" == podman ]]; then run+=(--build-arg BINARY_FROM=prebuilt); fi
		[[ "$cmd" =~ -t\ ([^ ]+) ]] && built="${BASH_REMATCH[1]}"
		echo "runs: ${run[*]} ${cmd#docker build }"
		check "builds" bash -c "${run[*]} ${cmd#docker build }"
		;;
	"docker run "*)
		name="wc-readme-$$-$i"
		args="${cmd#docker run }"
		# Host ports: those the command publishes for 8080 and 9090.
		[[ "$args" =~ -p\ ([0-9]+):8080 ]] && port=${BASH_REMATCH[1]}
		[[ "$args" =~ -p\ ([0-9]+):9090 ]] && admin=${BASH_REMATCH[1]}
		for p in "$port" "$admin"; do
			if ! port_free "$p"; then
				args="${args//-p $p:/-p $((p + 10000)):}"
				echo "note: host port $p is taken on this machine; published on $((p + 10000)) instead"
			fi
		done
		[[ "$args" =~ -p\ ([0-9]+):8080 ]] && port=${BASH_REMATCH[1]}
		[[ "$args" =~ -p\ ([0-9]+):9090 ]] && admin=${BASH_REMATCH[1]}
		word=the
		[[ "$args" =~ -e\ WORD=([^ ]+) ]] && word=${BASH_REMATCH[1]}
		echo "runs: $ENGINE run -d --name $name $args"
		containers+=("$name")
		if ! (cd "$WORK" && HOME="$WORK" bash -c "$ENGINE run -d --name $name $args") >"$WORK/run.out" 2>&1; then
			fail "starts"
			sed 's/^/       /' "$WORK/run.out" | tail -10
			continue
		fi
		check "/hello on :$port" "${PROBE[@]}" wait "http://127.0.0.1:$port/hello" --timeout 20
		if [[ "$args" == *SOURCE=bigquery* ]]; then
			"$ENGINE" logs "$name" >"$WORK/logs" 2>&1 || true
			check "reads the mounted key file as its user (the account is logged)" grep -q "$account" "$WORK/logs"
			check "still running (a key it cannot read stops it with exit 64)" \
				test "$("$ENGINE" inspect --format '{{.State.Running}}' "$name")" = true
			check "not ready while Google is unreachable (/readyz 503 on :$admin)" \
				"${PROBE[@]}" get "http://127.0.0.1:$admin/readyz" --status 503
		else
			check "ready (/readyz 200 on :$admin)" "${PROBE[@]}" wait "http://127.0.0.1:$admin/readyz"
			check "/ shows the table for '$word'" "${PROBE[@]}" get "http://127.0.0.1:$port/" \
				--contains "Amount of times '$word' appears" --contains "<table"
		fi
		"$ENGINE" rm -f -t 5 "$name" >/dev/null 2>&1 || true
		;;
	"docker compose "*)
		echo "skip: not run here (it builds the Dockerfile's default musl stage, which pulls the Rust image)"
		;;
	docker*)
		fail "no rule for this docker command; teach $0 how to run it"
		;;
	*)
		echo "runs as written, in the scratch directory"
		check "succeeds" env HOME="$WORK" bash -c "cd '$WORK' && $cmd"
		;;
	esac
done

printf '\nreadme-test: %s failed\n' "$failed"
((failed == 0))
