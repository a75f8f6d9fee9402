#!/usr/bin/env bash
# Negative tests for the supply-chain gates. Each case takes a fresh copy of
# the repository (tracked and untracked-but-not-ignored files of the working
# tree, so uncommitted work is tested too), breaks one thing, runs the gate
# script the Makefile runs, and passes only if the gate FAILS and its output
# names the reason. Nothing is built: deny, audit and sbom work on metadata
# and Cargo.lock; the tools and the cargo registry cache are reused.
#
#   selftest.sh            all cases
#   selftest.sh CASE...    only these (names: see `cases` below)
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$ROOT"
scratch="$(mktemp -d -p "$SCRATCH")"

# Crates the cases add, under renamed keys so they cannot clash with a real
# dependency of the same name. Both resolve from crates.io (or the local
# registry cache after the first run).
readonly BANNED_DEP='selftest-banned = { package = "native-tls", version = "=0.2.18" }'
# base64 0.5.1: RUSTSEC-2017-0004 (integer overflow), fixed in 0.5.2.
readonly ADVISORY_DEP='selftest-advisory = { package = "base64", version = "=0.5.1" }'
readonly ADVISORY_ID=RUSTSEC-2017-0004

results=()

# fresh_copy NAME: copies the working tree to $scratch/NAME, prints the path.
fresh_copy() {
	local dest="$scratch/$1"
	rm -rf "$dest"
	mkdir -p "$dest"
	git ls-files -z --cached --others --exclude-standard |
		tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$dest"
	printf '%s\n' "$dest"
}

# add_dependency DIR LINE: appends LINE to [dependencies] and re-resolves
# Cargo.lock (only the new crate and what it pulls in are added).
add_dependency() {
	local dir=$1 line=$2
	python3 - "$dir/Cargo.toml" "$line" <<'EOF'
import sys
path, line = sys.argv[1], sys.argv[2]
text = open(path).read()
marker = "[dependencies]\n"
assert marker in text, "no [dependencies] table"
open(path, "w").write(text.replace(marker, marker + line + "\n", 1))
EOF
	cargo update --manifest-path "$dir/Cargo.toml" --workspace --quiet
}

# expect_failure NAME PATTERN CMD...: CMD must exit non-zero and its output
# must match PATTERN (extended regex; with a "P:" prefix a Perl regex over the
# whole output, for findings that span lines): the gate failed for the right
# reason.
expect_failure() {
	local name=$1 pattern=$2 log="$scratch/$1.log" rc=0 grep_opts=(-E)
	shift 2
	if [[ "$pattern" == P:* ]]; then
		pattern=${pattern#P:}
		grep_opts=(-Pzo)
	fi
	"$@" >"$log" 2>&1 || rc=$?
	if ((rc == 0)); then
		results+=("FAIL  $name: the gate passed, it should have refused")
		failed=$((failed + 1))
		tail -n 30 "$log" >&2
	elif ! grep -q "${grep_opts[@]}" -- "$pattern" "$log"; then
		results+=("FAIL  $name: the gate failed (exit $rc) but not with /$pattern/")
		failed=$((failed + 1))
		tail -n 30 "$log" >&2
	else
		# Show the rule id and the end of the match (the offending line).
		results+=("ok    $name: refused (exit $rc): $(grep -m1 "${grep_opts[@]}" -- "$pattern" "$log" | tr -s ' \n\0' ' ' |
			sed -E 's/^(semgrep\.[a-z-]+) .*┆/\1 ... ┆/' | cut -c1-150)")
		passed=$((passed + 1))
	fi
}

# expect_in_log NAME CASE PATTERN: a further reason the output of an earlier
# expect_failure CASE must contain.
expect_in_log() {
	local name=$1 log="$scratch/$2.log" pattern=$3
	if grep -Eq -- "$pattern" "$log"; then
		results+=("ok    $name: $(grep -Em1 -- "$pattern" "$log" | sed 's/^[[:space:]]*//' | cut -c1-150)")
		passed=$((passed + 1))
	else
		results+=("FAIL  $name: output of $2 lacks /$pattern/")
		failed=$((failed + 1))
	fi
}

# expect_success NAME CMD...: the control case, so a refusal above is known
# to come from the change and not from a gate that always fails.
expect_success() {
	local name=$1 log="$scratch/$1.log"
	shift
	if "$@" >"$log" 2>&1; then
		results+=("ok    $name: passes")
		passed=$((passed + 1))
	else
		results+=("FAIL  $name: should pass")
		failed=$((failed + 1))
		tail -n 30 "$log" >&2
	fi
}

# The copies have no ../shared beside them: they use this run's advisory
# source (the snapshot when there is one, the live database otherwise).
export WORDCOUNT_ADVISORY_SNAPSHOT="$ADVISORY_SNAPSHOT"

case_banned_crate() {
	local d
	d=$(fresh_copy banned)
	add_dependency "$d" "$BANNED_DEP"
	expect_failure banned-crate "error\[banned\]: crate 'native-tls" "$d/scripts/supply-chain/deny.sh"
	# openssl comes along with native-tls and is refused in its own right.
	expect_in_log banned-crate-openssl banned-crate "error\[banned\]: crate 'openssl"
}

case_advisory() {
	local d
	d=$(fresh_copy advisory)
	add_dependency "$d" "$ADVISORY_DEP"
	expect_failure advisory-cargo-deny "$ADVISORY_ID" "$d/scripts/supply-chain/deny.sh"
	expect_failure advisory-cargo-audit "$ADVISORY_ID" "$d/scripts/supply-chain/audit.sh" lock
	# Same copy: Cargo.lock changed and sbom/ was not regenerated.
	expect_failure sbom-stale "sbom/ is stale.*" "$d/scripts/supply-chain/sbom.sh" check
	expect_in_log sbom-stale-names-crate sbom-stale "\+ base64 0\.5\.1"
	# ... and `make sbom` (sbom.sh generate) is the fix.
	"$d/scripts/supply-chain/sbom.sh" generate >"$scratch/sbom-regenerate.log" 2>&1
	expect_success sbom-regenerated "$d/scripts/supply-chain/sbom.sh" check
}

case_expired_ignore() {
	local d
	d=$(fresh_copy expired)
	python3 - "$d/deny.toml" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
entry = '    { id = "RUSTSEC-2017-0004", reason = "selftest; revisit 2000-01-01" },\n'
assert "ignore = [\n" in text
open(path, "w").write(text.replace("ignore = [\n", "ignore = [\n" + entry, 1))
EOF
	expect_failure expired-ignore "revisit date 2000-01-01 has passed" "$d/scripts/supply-chain/deny.sh"
}

case_binary_without_audit_data() {
	# A binary built with plain `cargo build` carries no dependency list;
	# cargo-audit would guess and pass. The gate must refuse it instead.
	expect_failure audit-bin-no-data "no cargo-auditable data" \
		env AUDIT_BIN=/bin/true "scripts/supply-chain/audit.sh" bin
}

case_image_sbom() {
	# compare-sbom.py (called by `make image-test` on syft's image SBOM): an
	# image SBOM listing sbom/'s normal crates passes, also with a crate
	# cargo-auditable records from cargo metadata that the build does not
	# compile (zlib-rs, a flate2 back-end the build does not select); one
	# where a crate has another version fails and names it. Synthetic image
	# SBOMs keep this independent of syft and of an image build.
	python3 - "$ROOT/sbom/wordcount.cdx.json" "$scratch/image-ok.json" "$scratch/image-bad.json" <<'PY'
import json, sys
ref, ok, bad = sys.argv[1:]
comps = [{"type": "library", "name": c["name"], "version": c["version"], "purl": c["purl"]}
         for c in json.load(open(ref))["components"] if c.get("scope") == "required"]
recorded = [{"type": "library", "name": "zlib-rs", "version": "0.6.8", "purl": "pkg:cargo/zlib-rs@0.6.8"}]
json.dump({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": comps + recorded}, open(ok, "w"))
for c in comps:
    if c["name"] == "tokio":
        c["purl"] = c["purl"].replace("@" + c["version"], "@1.0.0")
json.dump({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": comps}, open(bad, "w"))
PY
	expect_success image-sbom-match python3 "scripts/supply-chain/compare-sbom.py" "$scratch/image-ok.json"
	expect_failure image-sbom-mismatch "tokio 1\.0\.0" python3 "scripts/supply-chain/compare-sbom.py" "$scratch/image-bad.json"
}

case_sbom_validity() {
	# validate-sbom.py (make sbom-check): the committed SBOMs pass; a
	# CycloneDX file that breaks its schema, and SBOMs that lack an NTIA
	# element, are refused and the element is named.
	local venv
	venv="$(python_bin)"
	python3 - "$ROOT/sbom" "$scratch" <<'PY'
import json, sys
src, out = sys.argv[1:]
cdx = json.load(open(f"{src}/wordcount.cdx.json"))
bad = json.loads(json.dumps(cdx))
bad["components"][0]["scope"] = "shipped"  # not one of the schema's scopes
json.dump(bad, open(f"{out}/schema-invalid.cdx.json", "w"))
ntia = json.loads(json.dumps(cdx))
tokio = next(c for c in ntia["components"] if c["name"] == "tokio")
tokio.pop("supplier"), tokio.pop("author", None)
json.dump(ntia, open(f"{out}/no-supplier.cdx.json", "w"))
spdx = json.load(open(f"{src}/wordcount.spdx.json"))
next(p for p in spdx["packages"] if p["name"] == "tokio").pop("supplier")
json.dump(spdx, open(f"{out}/no-supplier.spdx.json", "w"))
PY
	expect_success sbom-valid "$venv/python" scripts/supply-chain/validate-sbom.py sbom/wordcount.cdx.json sbom/wordcount.spdx.json
	expect_failure sbom-schema-invalid "schema: not valid CycloneDX 1\.5" \
		"$venv/python" scripts/supply-chain/validate-sbom.py "$scratch/schema-invalid.cdx.json"
	expect_failure sbom-ntia-supplier "NTIA: component tokio [0-9.]+: no supplier or author" \
		"$venv/python" scripts/supply-chain/validate-sbom.py "$scratch/no-supplier.cdx.json"
	expect_failure sbom-ntia-spdx-supplier "NTIA: package tokio [0-9.]+: no supplier or originator" \
		"$venv/python" scripts/supply-chain/validate-sbom.py "$scratch/no-supplier.spdx.json"
}

case_vex() {
	# A synthetic ignore of an advisory against a shipped crate (idna:
	# RUSTSEC-2024-0421): without an OpenVEX justification in its reason the
	# VEX cannot be written; with one, the committed VEX is stale until
	# `make sbom` writes the statement.
	local d
	d=$(fresh_copy vex)
	add_ignore() {
		python3 - "$d/deny.toml" "$1" <<'PY'
import sys
path, reason = sys.argv[1:]
text = open(path).read()
entry = f'    {{ id = "RUSTSEC-2024-0421", reason = "{reason}; revisit 2099-01-01" }},\n'
open(path, "w").write(text.replace("ignore = [\n", "ignore = [\n" + entry, 1))
PY
	}
	cp "$d/deny.toml" "$scratch/vex-deny.toml"
	add_ignore "selftest: only ASCII host names reach idna"
	expect_failure vex-no-justification "RUSTSEC-2024-0421 against idna.*OpenVEX justification" \
		"$d/scripts/supply-chain/sbom.sh" check
	cp "$scratch/vex-deny.toml" "$d/deny.toml"
	add_ignore "selftest: vulnerable_code_not_in_execute_path, only ASCII host names reach idna"
	expect_failure vex-stale "sbom/ is stale: wordcount.openvex.json" "$d/scripts/supply-chain/sbom.sh" check
	"$d/scripts/supply-chain/sbom.sh" generate >"$scratch/vex-regenerate.log" 2>&1
	expect_success vex-regenerated "$d/scripts/supply-chain/sbom.sh" check
	expect_success vex-statement python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["statements"]
assert [(x["vulnerability"]["name"], x["status"], x["justification"]) for x in s] == \
    [("RUSTSEC-2024-0421", "not_affected", "vulnerable_code_not_in_execute_path")], s
assert s[0]["products"][0]["subcomponents"][0]["@id"].startswith("pkg:cargo/idna@"), s
' "$d/sbom/wordcount.openvex.json"
}

# One snippet per Semgrep rule, appended to a request-handling module. Each is
# the kind of line a reviewer would otherwise have to catch.
semgrep_snippet() {
	case "$1" in
	rust-sql-built-from-strings)
		printf '%s\n' 'pub fn selftest_sql(selftest_word: &str) -> String {' \
			'    format!("SELECT corpus FROM t WHERE word = '"'"'{selftest_word}'"'"'")' '}'
		;;
	rust-panic-in-request-path)
		printf '%s\n' 'pub fn selftest_panic(selftest_query: Option<&str>) -> &str {' \
			'    selftest_query.unwrap()' '}'
		;;
	rust-secret-in-log)
		printf '%s\n' 'pub fn selftest_log(selftest_access_token: &str) {' \
			'    tracing::debug!(token = %selftest_access_token, "got a token");' '}'
		;;
	rust-tls-verification-disabled)
		printf '%s\n' 'pub fn selftest_tls(selftest_builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {' \
			'    selftest_builder.danger_accept_invalid_certs(true)' '}'
		;;
	rust-unsafe)
		printf '%s\n' 'pub fn selftest_unsafe(selftest_ptr: *const u8) -> u8 {' \
			'    unsafe { *selftest_ptr }' '}'
		;;
	*) return 1 ;;
	esac
}

case_semgrep() {
	local d rule id target
	d=$(fresh_copy semgrep-clean)
	expect_success semgrep-clean-src "$d/scripts/supply-chain/semgrep.sh" scan
	for rule in .semgrep/*.yaml; do
		id=$(basename "$rule" .yaml)
		d=$(fresh_copy "semgrep-$id")
		# Any module but main.rs (which the panic rule exempts); routes.rs is
		# where requests are handled.
		target="$d/src/routes.rs"
		[[ -f "$target" ]] || target="$d/src/lib.rs"
		semgrep_snippet "$id" >>"$target" || {
			results+=("FAIL  semgrep-$id: no snippet for this rule in selftest.sh")
			failed=$((failed + 1))
			continue
		}
		# The finding must be this rule at the injected line (whose code
		# Semgrep prints under the rule id), not some other finding.
		expect_failure "semgrep-$id" "P:semgrep\\.$id(?:(?!❯❯❱)[\\s\\S])*?┆[^\\n]*selftest_[^\\n]*" \
			"$d/scripts/supply-chain/semgrep.sh" scan
	done
}

cases=(banned_crate advisory expired_ignore binary_without_audit_data image_sbom sbom_validity vex semgrep)
selected=("$@")
((${#selected[@]})) || selected=("${cases[@]}")

start=$SECONDS
for c in "${selected[@]}"; do
	log "case: $c"
	"case_$c"
done

printf '\nsupply-chain self-test (%ss):\n' "$((SECONDS - start))"
printf '  %s\n' "${results[@]}"
printf '%s passed, %s failed\n' "$passed" "$failed"
((failed == 0)) || die "a gate did not refuse what it must refuse (details above)"
