#!/usr/bin/env python3
"""This project's workflow rules, on top of zizmor and action-validator.

zizmor finds known-dangerous patterns; these are the house rules a reviewer
would otherwise check by eye in every workflow change:

  P1  top-level `permissions: {}`; every job states its own `permissions`
  P2  every job has `timeout-minutes` (an integer, at most 120)
  P3  every job starts with step-security/harden-runner and an egress-policy;
      a job that can write (contents/packages/attestations/deployments: write)
      or mint an OIDC token (id-token: write) must use `egress-policy: block`
      with an `allowed-endpoints` list
  P4  every actions/checkout sets `persist-credentials: false`
  P5  no `pull_request_target` trigger at all
  P6  concurrency: at workflow level, or on every job
  P7  `run:` holds no `${{ ... }}`: values reach the shell through `env:`
  P8  `run:` calls the repository's entry points only: `make ...`,
      `scripts/...` or `cosign/...`, so every step can be run locally
  P9  release.yml uses no cache (actions/cache, rust-cache, `cache:` inputs,
      buildx cache-from/cache-to): a cache written by a branch or PR run
      must never reach a release artifact
  P10 what `run:` calls exists: every `make` target is defined in the
      Makefile, every script is in the repository and executable (git mode
      100755), so a workflow cannot call an entry point that was renamed
  P11 cosign is pinned: every sigstore/cosign-installer step sets
      `cosign-release:` to the version of COSIGN in scripts/tools.env (the
      installer's default moves with its own version; the tests run that pin)
  P12 the release journey (release.yml): the image is built for linux/amd64
      and linux/arm64 in one push, and each platform's image is checked; the
      assets (binaries, SBOMs, manifests, SHA256SUMS) are built, then signed
      in this workflow's own job with id-token: write (the identity);
      a read-only job verifies them with the tag's exact identity
      (TAG = github.ref_name) before the job that runs `gh release create`
      may start; after publishing, a job opens the raw-yaml/ follow-up pull
      request. Jobs of a local reusable workflow a release job calls
      (`uses: ./.github/workflows/X.yml`) count as that job's
  P13 SLSA Build Level 3 (SECURITY.md): actions/attest-build-provenance runs
      only in a reusable workflow (`on: workflow_call` and nothing else), so
      the provenance is signed as that workflow, never as its caller; the
      release builds its image in that same called workflow, in a job
      without id-token: write (the build's code cannot sign as the workflow)

Needs PyYAML (the workflow tools venv has it, through yamllint).
Usage: check-policy.py [FILE.yml ...]   (default: .github/workflows/*.yml)
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import yaml

WRITE_SCOPES = {"contents", "packages", "attestations", "deployments", "id-token",
                "actions", "checks", "issues", "pull-requests", "security-events",
                "statuses", "pages"}
# security-events: write only uploads SARIF; it is how code scanning works and
# carries no release or deploy power, so it alone does not force `block`.
SENSITIVE_WRITES = WRITE_SCOPES - {"security-events"}
ENTRY_POINT = re.compile(r"^(make|scripts/|cosign/)")
CACHE_ACTIONS = ("actions/cache", "swatinem/rust-cache")
PLATFORMS = {"linux/amd64", "linux/arm64"}
ROOT = Path(__file__).resolve().parents[2]
PROVENANCE = "actions/attest-build-provenance"
COSIGN = re.search(r"^COSIGN=\S+@(v\S+)$", (ROOT / "scripts/tools.env").read_text(encoding="utf-8"), re.M)[1]


class Loader(yaml.SafeLoader):
    """YAML 1.1 reads `on` (the trigger key) as True; GitHub, like YAML 1.2,
    reads only true/false as booleans. Resolve booleans the 1.2 way."""


Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def action_of(step: dict) -> str:
    uses = step.get("uses", "")
    return uses.split("@", 1)[0].lower() if isinstance(uses, str) else ""


def makefile_targets(root: Path) -> set[str]:
    targets: set[str] = set()
    mk = root / "Makefile"
    if mk.is_file():
        for line in mk.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^([A-Za-z0-9_.%-]+(?:\s+[A-Za-z0-9_.%-]+)*)\s*:(?!=)", line)
            if m:
                targets.update(m.group(1).split())
    return targets


def entry_point_errors(run: str, root: Path, targets: set[str]) -> list[str]:
    words = run.strip().split()
    if not words:
        return []
    if words[0] == "make":
        names = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return [f"make target {t!r} is not defined in the Makefile" for t in names if t not in targets]
    path = root / words[0]
    if not path.is_file():
        return [f"{words[0]} does not exist"]
    if not os.access(path, os.X_OK):
        return [f"{words[0]} is not executable (git update-index --chmod=+x)"]
    return []


def local_workflows(jobs: dict, root: Path, called: dict | None) -> dict[str, dict]:
    """The local reusable workflows (`uses: ./...` or `$/...`) jobs call, by
    that `uses:` value: from `called` when given (tests pass mutated copies),
    else read from root."""
    out: dict[str, dict] = {}
    for job in jobs.values():
        uses = job.get("uses") if isinstance(job, dict) else None
        if not isinstance(uses, str) or not uses.startswith(("./", "$/")) or uses in out:
            continue
        if called is not None and uses in called:
            out[uses] = called[uses]
            continue
        path = root / uses[2:]
        out[uses] = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader) if path.is_file() else {}
    return out


def trigger_names(doc: dict) -> list[str]:
    triggers = doc.get("on")
    return ([triggers] if isinstance(triggers, str)
            else list(triggers) if isinstance(triggers, (list, dict)) else [])


def check_workflow(doc: object, name: str, root: Path | None = None,
                   called: dict | None = None) -> list[str]:
    """root: the repository, for P10; None skips P10. called: local reusable
    workflows by `uses:` path, instead of reading them from the repository."""
    errs: list[str] = []
    targets = makefile_targets(root) if root is not None else set()

    def err(rule: str, where: str, msg: str) -> None:
        errs.append(f"{name}: {where}: {rule}: {msg}")

    if not isinstance(doc, dict):
        return [f"{name}: not a mapping"]
    triggers = trigger_names(doc)
    if "pull_request_target" in triggers:
        err("P5", "on", "pull_request_target runs with a write token and secrets on PR events; use pull_request")
    if doc.get("permissions") != {}:
        err("P1", "permissions", f"top level must be `permissions: {{}}`, found {doc.get('permissions')!r}")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        return errs + [f"{name}: no jobs"]
    workflow_concurrency = "concurrency" in doc
    is_release = Path(name).name in ("release.yml", "release.yaml")

    for job_id, job in jobs.items():
        where = f"jobs.{job_id}"
        if not isinstance(job, dict):
            err("P0", where, "not a mapping")
            continue
        perms = job.get("permissions")
        if not isinstance(perms, dict):
            err("P1", where, "states no `permissions:` mapping of its own")
            perms = {}
        if "uses" in job:  # a reusable workflow call has no steps or timeout
            continue
        timeout = job.get("timeout-minutes")
        if not isinstance(timeout, int) or not 0 < timeout <= 120:
            err("P2", where, f"timeout-minutes must be an integer in 1..120, found {timeout!r}")
        if not workflow_concurrency and "concurrency" not in job:
            err("P6", where, "no concurrency group (workflow or job level)")
        steps = job.get("steps") or []
        if not steps or action_of(steps[0]) != "step-security/harden-runner":
            err("P3", where, "first step must be step-security/harden-runner")
        else:
            w = steps[0].get("with") or {}
            policy = w.get("egress-policy")
            writes = sorted(k for k, v in perms.items() if v == "write" and k in SENSITIVE_WRITES)
            if policy not in ("block", "audit"):
                err("P3", where, f"harden-runner egress-policy must be block or audit, found {policy!r}")
            elif writes and policy != "block":
                err("P3", where, f"can write ({', '.join(writes)}) so it must use egress-policy: block")
            if policy == "block" and not str(w.get("allowed-endpoints", "")).strip():
                err("P3", where, "egress-policy: block needs an allowed-endpoints list")
        for i, step in enumerate(steps):
            swhere = f"{where}.steps[{i}]" + (f" ({step.get('name')})" if step.get("name") else "")
            act = action_of(step)
            w = step.get("with") or {}
            if act == "actions/checkout" and w.get("persist-credentials") is not False:
                err("P4", swhere, "actions/checkout needs `persist-credentials: false`")
            run = step.get("run")
            if isinstance(run, str):
                if "${{" in run:
                    err("P7", swhere, "expression inside run:; pass the value through env: and quote it")
                first = run.strip().splitlines()[0] if run.strip() else ""
                if not ENTRY_POINT.match(first) or len(run.strip().splitlines()) > 1:
                    err("P8", swhere, f"run: must be one `make ...`, `scripts/...` or `cosign/...` command, found {first!r}")
                elif root is not None:
                    for e in entry_point_errors(first, root, targets):
                        err("P10", swhere, e)
            if is_release:
                if act in CACHE_ACTIONS or "cache" in w or "cache-from" in w or "cache-to" in w:
                    err("P9", swhere, "release jobs use no caches (cache poisoning)")
            if act == PROVENANCE and triggers != ["workflow_call"]:
                err("P13", swhere, "build provenance must be signed in a reusable workflow (on: workflow_call only), "
                    "or it names the calling workflow and is SLSA Build Level 2")
            if act == "sigstore/cosign-installer":
                if w.get("cosign-release") != COSIGN:
                    err("P11", swhere, f"cosign-release must be {COSIGN} (scripts/tools.env), found {w.get('cosign-release')!r}")
    if is_release:
        flat = flatten(jobs, local_workflows(jobs, root or ROOT, called))
        errs += [f"{name}: jobs: P12: {e}" for e in release_journey_errors(flat)]
        errs += [f"{name}: jobs: P13: {e}" for e in build_level_3_errors(flat)]
    return errs


def flatten(jobs: dict, workflows: dict[str, dict]) -> dict:
    """jobs with each call of a local reusable workflow replaced by the called
    jobs, as CALLER/JOB (needs: their own, prefixed, plus the caller's; the
    caller stays as a node that needs all of them). Called jobs are marked
    `called: True`."""
    flat: dict = {}
    for job_id, job in jobs.items():
        uses = job.get("uses") if isinstance(job, dict) else None
        if not isinstance(uses, str) or uses not in workflows:
            flat[job_id] = job
            continue
        outer = job.get("needs", [])
        outer = [outer] if isinstance(outer, str) else list(outer)
        inner = workflows[uses].get("jobs") or {}
        for cid, cjob in inner.items():
            if not isinstance(cjob, dict):
                continue
            own = cjob.get("needs", [])
            own = [own] if isinstance(own, str) else list(own)
            flat[f"{job_id}/{cid}"] = {**cjob, "needs": [f"{job_id}/{n}" for n in own] + outer, "called": True}
        flat[job_id] = {**job, "needs": outer + [f"{job_id}/{cid}" for cid in inner]}
    return flat


def build_level_3_errors(jobs: dict) -> list[str]:
    """P13 on the release's flattened jobs (see the header)."""
    errs: list[str] = []
    steps = [(j, action_of(st)) for j, job in jobs.items() if isinstance(job, dict)
             for st in job.get("steps") or [] if isinstance(st, dict)]
    prov = sorted({j for j, a in steps if a == PROVENANCE})
    if not prov:
        errs.append("no job attests build provenance (actions/attest-build-provenance)")
    for j in prov:
        if not jobs[j].get("called"):
            errs.append(f"{j} attests build provenance in release.yml itself, not in a called reusable workflow")
    for j in sorted({j for j, a in steps if a == "docker/build-push-action"}):
        if not jobs[j].get("called") or {p.split("/")[0] for p in prov} != {j.split("/")[0]}:
            errs.append(f"{j} builds the image outside the reusable workflow that attests its provenance")
        if (jobs[j].get("permissions") or {}).get("id-token") == "write":
            errs.append(f"{j} builds with id-token: write: the build's code could sign provenance as the workflow")
    return errs


def release_journey_errors(jobs: dict) -> list[str]:
    """P12: what the release must do, and in which order (see the header)."""
    def runs(job: dict) -> list[tuple[str, dict]]:
        return [(str(st.get("run", "")).strip(), st.get("env") or {})
                for st in (job.get("steps") or []) if isinstance(st, dict) and "run" in st]

    def needs(job_id: str, seen=None) -> set[str]:
        seen = set() if seen is None else seen
        n = jobs.get(job_id, {}).get("needs", [])
        for dep in [n] if isinstance(n, str) else n:
            if dep not in seen:
                seen.add(dep)
                needs(dep, seen)
        return seen

    def job_running(prefix: str) -> list[str]:
        return [j for j, job in jobs.items() if isinstance(job, dict)
                and any(r.startswith(prefix) for r, _ in runs(job))]

    errs: list[str] = []
    build = [(j, st.get("with") or {}) for j, job in jobs.items() if isinstance(job, dict)
             for st in job.get("steps") or [] if action_of(st) == "docker/build-push-action"]
    if not any(PLATFORMS <= {p.strip() for p in str(w.get("platforms", "")).split(",")} for _, w in build):
        errs.append("no docker/build-push-action step builds linux/amd64 and linux/arm64 in one image")
    tested = {p for j in job_running("scripts/workflows/release.sh image-test")
              for p in ((jobs[j].get("strategy") or {}).get("matrix") or {}).get("platform", [])}
    if not PLATFORMS <= tested:
        errs.append(f"release.sh image-test must run for each of {sorted(PLATFORMS)} (matrix.platform), found {sorted(tested)}")
    stage = {k: job_running(f"scripts/workflows/release.sh {k}")
             for k in ("assets", "sign", "verify-signed", "publish", "follow-up")}
    for k, found in stage.items():
        if len(found) != 1:
            errs.append(f"exactly one job must run release.sh {k}, found {found}")
    if errs:
        return errs
    assets, sign, verify, publish, follow = (stage[k][0] for k in
                                             ("assets", "sign", "verify-signed", "publish", "follow-up"))
    if (jobs[sign].get("permissions") or {}).get("id-token") != "write":
        errs.append(f"{sign} runs release.sh sign without id-token: write (keyless signing as release.yml)")
    if assets not in needs(sign):
        errs.append(f"{sign} (signing) must come after {assets} (the assets it signs)")
    if sign not in needs(verify):
        errs.append(f"{verify} must verify what {sign} signed (needs it)")
    if verify not in needs(publish):
        errs.append(f"{publish} runs gh release create without needing {verify}: publishing before verification")
    if publish not in needs(follow):
        errs.append(f"{follow} must come after {publish}")
    vjob = jobs[verify]
    if any(v == "write" for v in (vjob.get("permissions") or {}).values()):
        errs.append(f"{verify} must be read-only: the job that decides to publish cannot sign")
    tag_envs = [env.get("TAG") for r, env in runs(vjob) if r.startswith("scripts/workflows/release.sh verify-signed")]
    if tag_envs != ["${{ github.ref_name }}"]:
        errs.append(f"{verify}: TAG must be ${{{{ github.ref_name }}}} (the exact tag identity), found {tag_envs}")
    return errs


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[2]
    files = [Path(a) for a in argv] or sorted((root / ".github/workflows").glob("*.y*ml"))
    if not files:
        print("check-policy: no workflow files", file=sys.stderr)
        return 1
    errs: list[str] = []
    for f in files:
        errs += check_workflow(yaml.load(f.read_text(encoding="utf-8"), Loader=Loader), str(f), root)
    for e in errs:
        print(f"check-policy: {e}", file=sys.stderr)
    if errs:
        print(f"check-policy: FAILED, {len(errs)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-policy: ok, {len(files)} workflows follow P1-P13")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
