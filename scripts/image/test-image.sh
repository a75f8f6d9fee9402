#!/usr/bin/env bash
# `make image-test`: checks what the static binary and localhost/wordcount:dev
# promise (the steps below), prints the budgets, writes the image SBOM. Run
# after `make image` (the Makefile does). Loopback only; every container and
# process started here is removed on exit, also on failure.
#
#   1. hadolint on the Dockerfile, shellcheck on these scripts
#   2. the binary: no PT_INTERP, no NEEDED, auditable data; runs in an empty
#      root directory as 65532 and serves the sample; start-up and RSS figures
#   3. the image: config (user, entrypoint, ports, healthcheck, labels),
#      contents (the binary, the CA bundle and the licence notices, nothing
#      else), the notices name every crate sbom/ says is compiled in, no
#      shell, size
#   4. hardened run: --read-only --cap-drop=ALL --security-opt
#      no-new-privileges; /hello, the sample table, healthcheck, SIGTERM
#   5. TLS: the BigQuery source against a local HTTPS server whose CA is
#      mounted as the bundle (works), and one whose CA is not (refused, 503);
#      the shipped bundle holds Google's roots
#   6. SBOM of the image (syft) -> target/image/sbom.cdx.json, compared with
#      sbom/ by scripts/supply-chain/compare-sbom.py
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
use_engine
cd "$ROOT"

VENV_BIN="$(python_bin)"
PROBE=(python3 scripts/image/probe.py)
OUT=target/image
DRAIN_TIMEOUT=5
mkdir -p "$OUT"
WORK="$(mktemp -d -p "$SCRATCH")"
BIN="$WORK/rootfs/wordcount"
RUN_ID="wc-imgtest-$$"
containers=()
pids=()

cleanup() {
	local c p
	for c in "${containers[@]}"; do "$ENGINE" rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
at_exit cleanup
section() { printf '\n--- %s\n' "$*"; }
start_time=$(date +%s)

# ------------------------------------------------------------------------------
section "lint"
check "hadolint is clean on the Dockerfile" "$VENV_BIN/hadolint" Dockerfile
check "shellcheck is clean on scripts/image" shellcheck -x scripts/image/*.sh

# The static/no-build-path gate (check-static.sh, run by every make static)
# must refuse what it exists to refuse: tiny programs compiled here.
gate="$WORK/gate"
mkdir -p "$gate"
printf 'fn main() { if std::env::args().count() > 5 { panic!("x"); } }\n' >"$gate/leak.rs"
rustc -O --target x86_64-unknown-linux-gnu "$gate/leak.rs" -o "$gate/dynamic" 2>/dev/null
rustc -O --target x86_64-unknown-linux-gnu -C target-feature=+crt-static "$gate/leak.rs" -o "$gate/leaky" 2>/dev/null
rustc -O --target x86_64-unknown-linux-gnu -C target-feature=+crt-static \
	--remap-path-prefix="$gate=/src" "$gate/leak.rs" -o "$gate/clean" 2>/dev/null
check "static gate refuses a dynamically linked binary" bash -c "! bash scripts/image/check-static.sh '$gate/dynamic'"
check "static gate refuses a binary with a build path in it" bash -c "! bash scripts/image/check-static.sh '$gate/leaky' '$gate'"
check "static gate passes the same program built with --remap-path-prefix" bash scripts/image/check-static.sh "$gate/clean" "$gate"

# ------------------------------------------------------------------------------
section "static binary (/wordcount from $IMAGE)"
# Saved and unpacked without the engine: the checks below read the layers
# themselves, so they cannot be fooled by what the engine chooses to show.
"$ENGINE" image save --format docker-archive -o "$WORK/image.tar" "$IMAGE" >/dev/null 2>&1 ||
	"$ENGINE" image save -o "$WORK/image.tar" "$IMAGE"
python3 scripts/image/inspect_archive.py "$WORK/image.tar" --extract-dir "$WORK/rootfs" >"$WORK/contents.json"
[[ -f "$BIN" ]] || { echo "test-image: no /wordcount in $IMAGE" >&2; exit 1; }
chmod 0755 "$BIN"
bin_sha=$(sha256sum "$BIN" | cut -d' ' -f1)
echo "sha256 $bin_sha"
check "static (no PT_INTERP, no NEEDED) and no build path of this machine in it" \
	bash scripts/image/check-static.sh "$BIN" "$ROOT" "$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)" "$HOME"
check "carries cargo-auditable dependency data (.dep-v0)" bash -c "readelf -SW '$BIN' | grep '\.dep-v0' >/dev/null"

read -r port admin_port < <("${PROBE[@]}" free-ports 2 | paste -sd' ')
root="$WORK/emptyroot"
mkdir -p "$root"
cp "$BIN" "$root/wordcount"
chroot_bin=$(command -v chroot)
# Nothing in the root but the binary: no /etc, /dev, /proc, /tmp, no CA
# bundle, no libc. 65532 as in the image.
if ((EUID == 0)); then
	in_root=("$chroot_bin" --userspec=65532:65532 "$root" /wordcount)
else
	in_root=(unshare --map-root-user "$chroot_bin" "$root" /wordcount)
fi
env_sample=(PORT="$port" ADMIN_PORT="$admin_port" BIND_ADDRESS=127.0.0.1 DRAIN_TIMEOUT="$DRAIN_TIMEOUT")
env -i "${env_sample[@]}" "${in_root[@]}" >"$WORK/emptyroot.log" 2>&1 &
pids+=($!)
check "serves in an empty root directory: /readyz" "${PROBE[@]}" wait "http://127.0.0.1:$admin_port/readyz"
check "empty root: /hello" "${PROBE[@]}" get "http://127.0.0.1:$port/hello" --contains "Hello from PSPDFKit Engineer!"
check "empty root: sample table (JSON)" "${PROBE[@]}" get "http://127.0.0.1:$port/api/v1/counts" --contains '"source":"sample"' --contains '"rows":[{'
emptyroot_pid=${pids[-1]}
if kill -TERM "$emptyroot_pid" 2>/dev/null; then
	check "empty root: SIGTERM -> exit 0" wait "$emptyroot_pid"
else
	fail "empty root: the process had already exited; its output:"
	sed 's/^/       /' "$WORK/emptyroot.log" | tail -20
fi
unset 'pids[-1]'

# Budgets measured on the bare process (no container runtime in the figure).
if "${PROBE[@]}" startup --runs 5 --admin-port "$admin_port" -- \
	env -i "${env_sample[@]}" "${in_root[@]}" >"$WORK/startup.json" 2>"$WORK/startup.err"; then
	ok "5 start-ups in the empty root, each ready and stopped with exit 0"
else
	fail "start-up runs"
	cat "$WORK/startup.err"
	echo '{}' >"$WORK/startup.json"
fi

# ------------------------------------------------------------------------------
section "image $IMAGE"
inspect() { "$ENGINE" image inspect --format "$1" "$IMAGE"; }
check "config user is 65532:65532" test "$(inspect '{{.Config.User}}')" = "65532:65532"
check "entrypoint is [/wordcount]" test "$(inspect '{{json .Config.Entrypoint}}')" = '["/wordcount"]'
check "exposes 8080 and 9090" test "$(inspect '{{json .Config.ExposedPorts}}')" = '{"8080/tcp":{},"9090/tcp":{}}'
check "healthcheck runs /wordcount healthcheck" test "$(inspect '{{json .Config.Healthcheck.Test}}')" = '["CMD","/wordcount","healthcheck"]'
# build-image.sh records the commit it labelled; created must be that
# commit's time (SOURCE_DATE_EPOCH), not the time of the build.
[[ -f "$OUT/build.env" ]] || { echo "test-image: $OUT/build.env missing; run make image" >&2; exit 1; }
built_revision=$(sed -n 's/^REVISION=//p' "$OUT/build.env")
check "image ID is the one build-image.sh built" test "$(inspect '{{.Id}}')" = "$(sed -n 's/^IMAGE_ID=//p' "$OUT/build.env")"
if [[ "$built_revision" != "$(git rev-parse HEAD)" ]]; then
	echo "note: the image was built from $built_revision, HEAD is $(git rev-parse HEAD); run make image to refresh"
fi
sde=$(git log -1 --format=%ct "$built_revision")
want_labels=(
	"org.opencontainers.image.revision=$built_revision"
	"org.opencontainers.image.created=$(date -u -d "@$sde" +%Y-%m-%dT%H:%M:%SZ)"
	"org.opencontainers.image.version=$(git show "$built_revision:Cargo.toml" | sed -n 's/^version = "\(.*\)"$/\1/p' | head -1)"
	"org.opencontainers.image.licenses=MIT OR Apache-2.0"
	"org.opencontainers.image.source=https://github.com/wordcount/wordcount"
)
for l in "${want_labels[@]}"; do
	check "label ${l%%=*}" test "$(inspect "{{index .Config.Labels \"${l%%=*}\"}}")" = "${l#*=}"
done

NOTICES=licenses/THIRD-PARTY.html.gz
check "contents: exactly /wordcount, /etc/ssl/certs/ca-certificates.crt and /$NOTICES" python3 -c '
import json, sys
files = json.load(open(sys.argv[1]))["files"]
want = {"wordcount": "0o755", "etc/ssl/certs/ca-certificates.crt": "0o644", sys.argv[2]: "0o644"}
if set(files) != set(want):
    sys.exit(f"image files {sorted(files)}, want {sorted(want)}")
if any(files[f]["mode"] != m for f, m in want.items()):
    sys.exit(f"modes: {files}")
' "$WORK/contents.json" "$NOTICES"
notices_bytes=$(stat -c %s "$WORK/rootfs/$NOTICES" 2>/dev/null || echo 0)
if grep -qx 'BINARY_FROM=prebuilt' "$OUT/build.env"; then
	check "the image's /wordcount is the binary make static built" \
		test "$(sha256sum target/x86_64-unknown-linux-gnu/release/wordcount | cut -d' ' -f1)" = "$bin_sha"
fi
check "no shell: --entrypoint /bin/sh fails" bash -c "! '$ENGINE' run --rm --network none --entrypoint /bin/sh '$IMAGE' -c true"
image_bytes=$(inspect '{{.Size}}')

# ------------------------------------------------------------------------------
# run_detached NAME ARGS...: `run -d`; podman's stderr (without systemd it
# complains on every run that it cannot schedule the healthcheck timer) is
# shown only if the run fails.
run_detached() {
	local name=$1
	shift
	containers+=("$name")
	if ! "$ENGINE" run -d --name "$name" "$@" >/dev/null 2>"$WORK/run-$name.err"; then
		cat "$WORK/run-$name.err" >&2
		return 1
	fi
}

section "hardened run (--read-only --cap-drop=ALL --security-opt no-new-privileges)"
# --network host with BIND_ADDRESS=127.0.0.1: the TLS test's server must be
# reachable at 127.0.0.1 from inside the container, and published ports would
# add the engine's NAT (iptables) to what is tested without testing the image.
hardened=(--read-only --cap-drop=ALL --security-opt no-new-privileges --network host)
# No systemd here to schedule the HEALTHCHECK timer; it is run by hand below.
if [[ "$ENGINE" == podman ]]; then hardened+=(--health-interval=disable); fi
read -r port admin_port < <("${PROBE[@]}" free-ports 2 | paste -sd' ')
c="$RUN_ID-hardened"
run_detached "$c" "${hardened[@]}" \
	-e PORT="$port" -e ADMIN_PORT="$admin_port" -e BIND_ADDRESS=127.0.0.1 -e DRAIN_TIMEOUT="$DRAIN_TIMEOUT" \
	"$IMAGE"
check "ready (/readyz 200)" "${PROBE[@]}" wait "http://127.0.0.1:$admin_port/readyz"
check "/hello" "${PROBE[@]}" get "http://127.0.0.1:$port/hello" --contains "Hello from PSPDFKit Engineer!"
check "sample table as JSON" "${PROBE[@]}" get "http://127.0.0.1:$port/api/v1/counts" --contains '"source":"sample"' --contains '"rows":[{'
check "sample table as HTML" "${PROBE[@]}" get "http://127.0.0.1:$port/" --contains "<table"
check "/metrics" "${PROBE[@]}" get "http://127.0.0.1:$admin_port/metrics" --contains "wordcount_ready 1"
if [[ "$ENGINE" == podman ]]; then
	check "podman healthcheck run (the image's HEALTHCHECK)" podman healthcheck run "$c"
fi
check "exec /wordcount healthcheck --ready" "$ENGINE" exec "$c" /wordcount healthcheck --ready
# The same probe must fail when nothing answers, or it proves nothing.
check "healthcheck fails against a port nobody serves" \
	bash -c "! '$ENGINE' exec -e ADMIN_PORT=1 '$c' /wordcount healthcheck"
pid=$("$ENGINE" inspect --format '{{.State.Pid}}' "$c")
container_rss_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
t0=$(date +%s%N)
"$ENGINE" kill --signal TERM "$c" >/dev/null
exit_code=$(timeout $((DRAIN_TIMEOUT + 5)) "$ENGINE" wait "$c" || echo "no exit")
stop_ms=$((($(date +%s%N) - t0) / 1000000))
check "SIGTERM -> exit 0 (got: $exit_code) within DRAIN_TIMEOUT=${DRAIN_TIMEOUT}s (took ${stop_ms} ms)" \
	test "$exit_code" = 0 -a "$stop_ms" -le $((DRAIN_TIMEOUT * 1000))

# ------------------------------------------------------------------------------
section "TLS from inside the image (BigQuery source, no internet)"
tls="$WORK/tls"
mkdir -p "$tls"
# Two throwaway CAs per run: "trusted" signs the server certificate, "other"
# does not. P-256 keys, 1-day validity, never written outside $WORK.
mkca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj "/CN=wordcount image-test $1 CA $$" -keyout "$tls/$1.key" -out "$tls/$1.pem" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
mkca trusted
mkca other
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
	-keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
	"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$tls/server.ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/trusted.pem" -CAkey "$tls/trusted.key" -set_serial 1 \
	-days 1 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
chmod 0644 "$tls"/*.pem

# A valid GCP project id (6-30 characters): the service validates it.
bq_project=wordcount-test
cargo build --locked --quiet -p testkit --bin fake-google
target/debug/fake-google --cert "$tls/server.pem" --key "$tls/server.key" \
	--project "$bq_project" --port-file "$tls/port" --log "$tls/requests.jsonl" &
pids+=($!)
for _ in $(seq 50); do [[ -s "$tls/port" ]] && break; sleep 0.1; done
bq_port=$(cat "$tls/port")

# run_bq NAME CA_FILE: the image with CA_FILE mounted as its only bundle.
run_bq() {
	local name="$RUN_ID-$1" ca=$2
	read -r port admin_port < <("${PROBE[@]}" free-ports 2 | paste -sd' ')
	run_detached "$name" "${hardened[@]}" \
		-v "$ca:/etc/ssl/certs/ca-certificates.crt:ro" \
		-e PORT="$port" -e ADMIN_PORT="$admin_port" -e BIND_ADDRESS=127.0.0.1 \
		-e SOURCE=bigquery -e BIGQUERY_AUTH=none -e BIGQUERY_PROJECT="$bq_project" \
		-e BIGQUERY_ENDPOINT="https://127.0.0.1:$bq_port" -e BIGQUERY_TIMEOUT=5 \
		"$IMAGE"
}
count_events() { grep -c "\"event\":\"$1\"" "$tls/requests.jsonl" || true; }

run_bq tls-ok "$tls/trusted.pem"
check "trusted CA: ready" "${PROBE[@]}" wait "http://127.0.0.1:$admin_port/readyz" --timeout 20
check "trusted CA: /api/v1/counts shows hamlet 994 from BigQuery" "${PROBE[@]}" get \
	"http://127.0.0.1:$port/api/v1/counts" --contains '"source":"bigquery"' --json-row hamlet=994
check "trusted CA: the server saw the jobs.query POST" \
	grep -q "\"path\":\"/bigquery/v2/projects/$bq_project/queries\"" "$tls/requests.jsonl"
"$ENGINE" logs "$RUN_ID-tls-ok" >"$WORK/tls-ok.log" 2>&1 || true
"$ENGINE" rm -f -t 0 "$RUN_ID-tls-ok" >/dev/null 2>&1

requests_before=$(count_events request)
log_lines_before=$(wc -l <"$tls/requests.jsonl")
run_bq tls-refused "$tls/other.pem"
# Readiness must stay 503 while the source cannot be reached.
check "untrusted CA: /readyz stays 503" "${PROBE[@]}" stays "http://127.0.0.1:$admin_port/readyz" --status 503 --for 6
# The server sees the client's alert: "unknown ca" means rustls refused the
# chain because the mounted bundle does not hold its root, not for any other
# reason (name mismatch, expiry, protocol).
check "untrusted CA: the client refused the certificate (alert: unknown ca)" \
	test "$(tail -n +$((log_lines_before + 1)) "$tls/requests.jsonl" | grep '"tls_error"' | grep -ci 'unknown.\?ca')" -gt 0
check "untrusted CA: no request got through" test "$(count_events request)" -eq "$requests_before"
"$ENGINE" logs "$RUN_ID-tls-refused" >"$WORK/tls-refused.log" 2>&1 || true
cp "$WORK/tls-refused.log" "$OUT/tls-refused.log"
check "untrusted CA: the service logged the failed refresh" grep -q '"message":"data refresh failed"' "$OUT/tls-refused.log"

# The bundle that ships: Google's roots must be in it for *.googleapis.com.
openssl crl2pkcs7 -nocrl -certfile "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt" |
	openssl pkcs7 -print_certs -noout | grep '^subject=' >"$WORK/subjects.txt"
ca_count=$(wc -l <"$WORK/subjects.txt")
for cn in "GTS Root R1" "GTS Root R2" "GTS Root R3" "GTS Root R4" "GlobalSign"; do
	check "shipped bundle ($ca_count CAs) holds $cn" grep -q "CN *= *$cn" "$WORK/subjects.txt"
done
check "shipped bundle holds no local or proxy CA (Mozilla set only)" \
	bash -c "! grep -qiE 'egress|sandbox|custom' '$WORK/subjects.txt'"

# ------------------------------------------------------------------------------
section "SBOM of the image"
SYFT_CHECK_FOR_APP_UPDATE=false "$VENV_BIN/syft" scan "docker-archive:$WORK/image.tar" \
	-q -o "cyclonedx-json=$OUT/sbom.cdx.json"
crates=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1])).get("components", [])
print(sum(1 for x in c if x.get("purl", "").startswith("pkg:cargo/")))' "$OUT/sbom.cdx.json")
check "syft found the crates in the image ($crates, via cargo-auditable data)" test "$crates" -gt 10
if [[ -f scripts/supply-chain/compare-sbom.py ]]; then
	check "image SBOM lists the same crates as sbom/ (compare-sbom.py)" \
		python3 scripts/supply-chain/compare-sbom.py "$OUT/sbom.cdx.json"
else
	fail "scripts/supply-chain/compare-sbom.py is missing (supply-chain issue); image SBOM not compared"
fi

# The notices must name every crate the crate SBOM's required scope lists
# (what the build compiles for the target, buildscope.py).
check "/$NOTICES names every crate of sbom/'s required scope" python3 -c '
import gzip, html, json, re, sys
listed = {html.unescape(x) for x in re.findall(r"<li class=\"crate\">([^<]+)</li>", gzip.open(sys.argv[1], "rt", encoding="utf-8").read())}
required = {c["name"] + " " + c["version"] for c in json.load(open(sys.argv[2]))["components"] if c["scope"] == "required"}
if required - listed:
    sys.exit(f"{len(required - listed)} crates without a notice: {sorted(required - listed)}")
print(f"{len(required)} crates, all named")
' "$WORK/rootfs/$NOTICES" sbom/wordcount.cdx.json

# ------------------------------------------------------------------------------
section "budgets (figures, not asserts)"
python3 - "$WORK/startup.json" "$image_bytes" "$container_rss_kib" "$OUT/budgets.json" "$notices_bytes" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
image, crss, notices = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
fig = {
    "image_bytes": image,
    "image_mib": round(image / 2**20, 2),
    "licence_notices_kib": round(notices / 1024, 1),
    "idle_rss_mib": round(s.get("idle_rss_kib_median", 0) / 1024, 2),
    "idle_rss_mib_max": round(s.get("idle_rss_kib_max", 0) / 1024, 2),
    "container_rss_after_requests_mib": round(crss / 1024, 2),
    "start_to_ready_ms_median": s.get("start_to_ready_ms_median"),
    "start_to_ready_ms_max": s.get("start_to_ready_ms_max"),
}
json.dump(fig, open(sys.argv[4], "w"), indent=2)
def line(name, value, unit, budget):
    mark = "within" if value is not None and value <= budget else "OVER"
    print(f"  {name:<34} {value} {unit}  (budget <= {budget} {unit}: {mark})")
line("image size, uncompressed", fig["image_mib"], "MiB", 6)
print(f"  {'  of which licence notices':<34} {fig['licence_notices_kib']} KiB (in the image)")
line("idle RSS (median of 5, sample)", fig["idle_rss_mib"], "MiB", 10)
line("start -> ready (median of 5)", fig["start_to_ready_ms_median"], "ms", 50)
print(f"  {'start -> ready (max of 5)':<34} {fig['start_to_ready_ms_max']} ms")
print(f"  {'RSS in container after requests':<34} {fig['container_rss_after_requests_mib']} MiB")
# Timings on a shared 2-core machine mean little without its load.
print(f"  {'load average (1/5/15 min)':<34} {' '.join(open('/proc/loadavg').read().split()[:3])}, {__import__('os').cpu_count()} CPUs")
PY

printf '\nimage-test took %s s\n' "$(($(date +%s) - start_time))"
printf '%s passed, %s failed\n' "$passed" "$failed"
((failed == 0))
