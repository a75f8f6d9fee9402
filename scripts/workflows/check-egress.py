#!/usr/bin/env python3
"""The egress gate: every job with `egress-policy: block` allows every host
its steps contact, and each allowed host is one some step needs.

A job's needs are derived, never listed per job: each step is followed to
the code it runs, and the code is matched against one table (HOSTS, ACTIONS,
TOOLS below) of which tool or action contacts which hosts.

  uses: ACTION          ACTIONS[ACTION]; docker/build-push-action also
                        follows its Dockerfile: the `# syntax=` frontend and
                        each FROM (by registry), every RUN line as shell code
                        (apk add, cargo install, xx-cargo's rustup ...);
                        docker/login-action the registry of its input
  run: make T...        the Makefile recipe of T and of its prerequisites
  run: SCRIPT [SUB]     the script; with SUB, only the `cmd_SUB` function or
                        the `SUB)` case branch, plus the script's functions
                        they call; scripts named in the followed code are
                        followed the same way (with their first argument),
                        `make T` inside a script too
  every job             the runner's own traffic (HOSTS["runner"])

Shell code is matched line by line, comment lines dropped, against TOOLS
(cargo -> crates, python_bin -> PyPI, cosign sign -> Sigstore, ...).
scripts/lib/ is not followed: its helpers are themselves TOOLS entries.
A need missing from allowed-endpoints fails, naming the job, the step, the
host and why it is needed; an allowed host no step needs is a warning.

Usage: check-egress.py [FILE.yml ...]   (default: .github/workflows/*.yml)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

# Host groups: each is every host one service is reached at.
HOSTS = {
    # The runner itself: logs, results, artifact and OIDC token services.
    "runner": ["*.actions.githubusercontent.com:443"],
    "github": ["github.com:443", "api.github.com:443"],
    "github-uploads": ["uploads.github.com:443"],
    # Release downloads redirect to these (the older and the newer name).
    "github-downloads": ["objects.githubusercontent.com:443", "release-assets.githubusercontent.com:443"],
    # upload-artifact / download-artifact: Azure blob storage behind the runner.
    "artifacts": ["*.blob.core.windows.net:443"],
    "ghcr": ["ghcr.io:443", "pkg-containers.githubusercontent.com:443"],
    # Docker Hub serves blobs from Cloudflare and, since May 2026, CloudFront.
    "docker-hub": ["registry-1.docker.io:443", "auth.docker.io:443",
                   "production.cloudflare.docker.com:443", "production.cloudfront.docker.com:443"],
    "alpine": ["dl-cdn.alpinelinux.org:443"],
    "crates": ["index.crates.io:443", "static.crates.io:443"],
    "rustup": ["static.rust-lang.org:443"],
    "pypi": ["pypi.org:443", "files.pythonhosted.org:443"],
    # apt on GitHub's Ubuntu runners: Azure's Ubuntu mirror, the security
    # pocket, and Microsoft's repository the runner image configures (an
    # unreachable source makes `apt-get update` fail).
    "apt": ["azure.archive.ubuntu.com:80", "security.ubuntu.com:80", "packages.microsoft.com:443"],
    "go": ["proxy.golang.org:443", "sum.golang.org:443"],
    # Sigstore public good. Signing: Fulcio, Rekor v1 and the v2 shards the
    # signing config may name, TUF (trust root, signing config), the TSA.
    "sigstore-sign": ["fulcio.sigstore.dev:443", "rekor.sigstore.dev:443", "*.rekor.sigstore.dev:443",
                      "tuf-repo-cdn.sigstore.dev:443", "timestamp.sigstore.dev:443"],
    "sigstore-verify": ["rekor.sigstore.dev:443", "*.rekor.sigstore.dev:443", "tuf-repo-cdn.sigstore.dev:443"],
    # GitHub's own Sigstore instance (attestations of private repositories)
    # and the TUF repository `gh attestation verify` reads its root from.
    "github-sigstore": ["fulcio.githubapp.com:443", "timestamp.githubapp.com:443"],
    "github-tuf": ["tuf-repo.github.com:443"],
    "gcp-auth": ["sts.googleapis.com:443", "iamcredentials.googleapis.com:443"],
    "gke": ["container.googleapis.com:443", "*.gke.goog:443"],
}

# Actions -> host groups. An action missing here fails the gate.
ACTIONS = {
    "step-security/harden-runner": [],
    "actions/checkout": ["github"],
    "actions/upload-artifact": ["artifacts"],
    "actions/download-artifact": ["artifacts"],
    # The docker-container builder it creates is moby/buildkit from Docker Hub.
    "docker/setup-buildx-action": ["docker-hub"],
    # Runs tonistiigi/binfmt from Docker Hub.
    "docker/setup-qemu-action": ["docker-hub"],
    "docker/login-action": [],  # + the registry of its `registry:` input
    "docker/build-push-action": ["ghcr"],  # + its Dockerfile, followed
    "sigstore/cosign-installer": ["github", "github-downloads"],
    # Signs with Fulcio/Rekor (public repositories) or GitHub's instance
    # (private ones), stores in GitHub's attestation API, pushes to GHCR.
    "actions/attest-build-provenance": ["github", "sigstore-sign", "github-sigstore", "ghcr"],
    "google-github-actions/auth": ["gcp-auth"],
    "google-github-actions/get-gke-credentials": ["gke"],
}

# Shell code (a line of a followed script or recipe) -> host groups.
ENGINE = r"(?:docker|podman|\$\{?engine\}?|\$\{?ENGINE\}?)\"?"
TOOLS = [
    (r"(?<![\w:/.$-])cargo(?:_tool)?\s", ["crates"]),
    (r"\bcargo (?:deny|audit)\b", ["github"]),  # the RustSec database, a git clone from github.com
    (r"\brustup (?:target|toolchain|component)\b|\bxx-cargo\b", ["rustup"]),  # xx-cargo: rustup target add
    (r"\bpython_bin\b|scripts/lib/python\.sh", ["pypi"]),
    (r"\bapt_install_missing\b|\bapt-get\b", ["apt"]),
    (r"\bgo_tool\b", ["go"]),
    (r"\bapk add\b", ["alpine"]),
    (r"\bcosign (?:sign|attest|sign-blob)\b", ["sigstore-sign"]),
    (r"\bcosign (?:verify|verify-attestation|verify-blob|download)\b", ["sigstore-verify"]),
    (r"\bcosign (?:sign|attest|verify|verify-attestation|download|tree)(?=\s)", ["ghcr"]),
    (ENGINE + r" (?:pull|push)\b", ["ghcr"]),
    (r"\bsyft\"? scan \"?registry:", ["ghcr"]),
    (r"\bgh (?:api|pr|release|auth|attestation|run|workflow)\b", ["github"]),
    (r"\bgh release create\b", ["github-uploads"]),
    (r"\bgh release download\b", ["github-downloads"]),
    (r"\bgh attestation verify\b", ["github-tuf", "sigstore-verify"]),
    (r"\bgit (?:push|fetch|clone|pull)\b", ["github"]),
    (r"\bkubectl\b", ["gke"]),
]

SCRIPT_REF = re.compile(
    r"""(?:^|[\s"'(;&|])(?:"?\$\{?ROOT\}?/|\./)?((?:scripts|cosign)/[\w./-]+)"?(?:[ \t]+([A-Za-z][\w-]*))?""")
MAKE_CALL = re.compile(r"(?:^|[;&|(]\s*|\s)make\s+((?:[\w-]+\s*)+)")
MESSAGE = re.compile(r"(?:^|[\s;&|(])(?:log|die|echo|printf|refuse|warn|ok|fail|check|gate)\s+[\"']|^\s*[\"']")
QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'")
PROSE_OPTION = re.compile(r"(?:--(?:notes|body|title)|-m)\s+(?:\"(?:[^\"\\]|\\.)*\"|'[^']*')")


def scrub(line: str) -> str:
    """A line of shell code without prose: the quoted words of messages (log,
    die, echo ... and their continuation lines) and of --notes/--body/
    --title/-m, and `command -v X`, name tools the line does not run."""
    line = PROSE_OPTION.sub("''", re.sub(r"\bcommand -v \S+", "", line))
    if not MESSAGE.search(line):
        return line
    return QUOTED.sub(lambda m: "''" if re.search(r"\s", m.group(0)) else m.group(0), line)


def code_lines(text: str) -> list[str]:
    return [scrub(ln) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


class Follower:
    """Collects (code line, where it came from) for what a step runs."""

    def __init__(self, root: Path):
        self.root = root
        self.make_vars, self.targets = self._makefile()

    def _makefile(self):
        mvars, targets, cur = {}, {}, None
        for ln in (self.root / "Makefile").read_text(encoding="utf-8").splitlines():
            if ln.startswith("\t") and cur:
                for t in cur:
                    targets[t]["recipe"].append(ln.strip())
                continue
            m = re.match(r"^([A-Z_]+)\s*:?=\s*(.*)$", ln)
            if m:
                mvars[m.group(1)] = m.group(2).strip()
                cur = None
                continue
            m = re.match(r"^([\w-]+(?:\s+[\w-]+)*)\s*:(?!=)([^#]*)", ln)
            cur = m.group(1).split() if m else None
            for t in cur or []:
                targets.setdefault(t, {"prereqs": [], "recipe": []})["prereqs"] += m.group(2).replace("|", " ").split()
        return mvars, targets

    def make(self, target: str, seen: set) -> list[tuple[str, str]]:
        if ("make", target) in seen:
            return []
        seen.add(("make", target))
        t = self.targets.get(target)
        if t is None:
            raise KeyError(f"make target {target!r} is not in the Makefile")
        out = []
        for p in t["prereqs"]:
            out += self.make(p, seen)
        for line in t["recipe"]:
            line = re.sub(r"\$\((\w+)\)", lambda m: self.make_vars.get(m.group(1), ""), line)
            out += self.shell(scrub(line), f"make {target}", seen)
        return out

    def script(self, rel: str, arg: str | None, seen: set) -> list[tuple[str, str]]:
        if (rel, arg) in seen:
            return []
        seen.add((rel, arg))
        text = (self.root / rel).read_text(encoding="utf-8")
        lines = code_lines(text)
        body = "\n".join(lines)
        funcs = dict(re.findall(r"(?ms)^(\w+)\(\) \{\n(.*?)^\}", body))
        seed = None
        if arg:
            fn = "cmd_" + arg.replace("-", "_")
            if fn in funcs:
                seed = funcs[fn]
            else:
                m = re.search(rf"(?ms)^\s*(?:[\w-]+\s*\|\s*)*{re.escape(arg)}(?:\s*\|\s*[\w-]+)*\)(.*?);;", body)
                seed = m.group(1) if m else None
        if seed is None:
            chosen = lines
        else:
            chosen, todo, done = [], [seed], set()
            while todo:
                part = todo.pop()
                chosen += part.splitlines()
                for name, fbody in funcs.items():
                    if name not in done and re.search(rf"\b{name}\b", part):
                        done.add(name)
                        todo.append(fbody)
        where = rel + (f" {arg}" if arg else "")
        out = []
        for line in chosen:
            out += self.shell(line, where, seen)
        return out

    def shell(self, line: str, where: str, seen: set) -> list[tuple[str, str]]:
        out = [(line, where)]
        for m in SCRIPT_REF.finditer(line):
            rel = m.group(1).rstrip(".")
            path = self.root / rel
            # scripts/lib/ helpers are TOOLS entries; only shell scripts are
            # followed (the Python ones contact nothing themselves).
            if rel.startswith("scripts/lib/") or not path.is_file() or \
                    not re.match(r"#!.*\b(?:ba)?sh\b", path.read_text(encoding="utf-8")):
                continue
            out += self.script(rel, m.group(2), seen)
        for m in MAKE_CALL.finditer(line):
            for t in m.group(1).split():
                if t in self.targets:
                    out += self.make(t, seen)
        return out

    def run(self, run: str) -> list[tuple[str, str]]:
        seen: set = set()
        words = run.split()
        if words[0] == "make":
            out = []
            for t in words[1:]:
                if not t.startswith("-") and "=" not in t:
                    out += self.make(t, seen)
            return out
        return self.shell(run, "run", seen)

    def dockerfile(self, rel: str) -> list[tuple[str, list[str]]]:
        """(why, groups) for a docker build of REL."""
        needs = []
        text = (self.root / rel).read_text(encoding="utf-8")
        m = re.match(r"#\s*syntax=(\S+)", text)
        if m:
            needs.append((f"{rel}: # syntax={m.group(1)}", [registry_group(m.group(1))]))
        # Continuation lines joined, so a RUN is one line.
        for ln in code_lines(re.sub(r"\\\n", " ", text)):
            f = re.match(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", ln)
            if f and f.group(1) != "scratch" and not f.group(1).startswith("$"):
                stages = re.findall(r"(?mi)^FROM\s.*\sAS\s+(\S+)", text)
                if f.group(1) not in stages:
                    needs.append((f"{rel}: FROM {f.group(1).split('@')[0]}", [registry_group(f.group(1))]))
            if ln.startswith("RUN "):
                for pattern, groups in TOOLS:
                    if re.search(pattern, ln):
                        needs.append((f"{rel}: RUN …{re.search(pattern, ln).group(0)}…", groups))
        return needs


def registry_group(image: str) -> str:
    first = image.split("/")[0]
    if "." not in first and ":" not in first and first != "localhost":
        return "docker-hub"  # no registry host: Docker Hub
    return {"docker.io": "docker-hub", "ghcr.io": "ghcr"}.get(first, f"unknown registry {first}")


def covered(host: str, allowed: set[str]) -> bool:
    if host in allowed:
        return True
    name, _, port = host.rpartition(":")
    for a in allowed:
        aname, _, aport = a.rpartition(":")
        if aport == port and aname.startswith("*.") and name.endswith(aname[1:]):
            return True
    return False


def step_needs(step: dict, follow: Follower) -> list[tuple[str, list[str]]]:
    uses = step.get("uses")
    if isinstance(uses, str) and not uses.startswith("./"):
        action = "/".join(uses.split("@")[0].split("/")[:2]).lower()
        if action not in ACTIONS:
            raise KeyError(f"action {action} has no entry in check-egress.py's ACTIONS table")
        needs = [(action, ACTIONS[action])]
        w = step.get("with") or {}
        if action == "docker/login-action":
            needs.append((f"{action} registry: {w.get('registry')}", [registry_group(f"{w.get('registry') or 'docker.io'}/x")]))
        if action == "docker/build-push-action":
            needs += follow.dockerfile(str(w.get("file") or "Dockerfile"))
        return needs
    run = step.get("run")
    if not isinstance(run, str) or not run.strip():
        return []
    needs = []
    for line, where in follow.run(run.strip()):
        for pattern, groups in TOOLS:
            m = re.search(pattern, line)
            if m:
                needs.append((f"{where}: {m.group(0).strip()}", groups))
    return needs


def check_workflow(doc: dict, name: str, follow: Follower) -> tuple[list[str], list[str]]:
    errors, warnings = [], []
    for job_id, job in (doc.get("jobs") or {}).items():
        steps = job.get("steps") or [] if isinstance(job, dict) else []
        if not steps or (steps[0].get("with") or {}).get("egress-policy") != "block":
            continue
        allowed = set(str(steps[0]["with"].get("allowed-endpoints", "")).split())
        used: set[str] = set()
        for host in HOSTS["runner"]:
            if covered(host, allowed):
                used |= {a for a in allowed if covered(host, {a})}
            else:
                errors.append(f"{name}: jobs.{job_id}: needs {host} (the runner itself), not in allowed-endpoints")
        for i, step in enumerate(steps):
            label = step.get("name") or str(step.get("uses", "")).split("@")[0] or str(step.get("run", "")).strip()
            swhere = f"jobs.{job_id}.steps[{i}] ({label})"
            try:
                needs = step_needs(step, follow)
            except KeyError as e:
                errors.append(f"{name}: {swhere}: {e.args[0]}")
                continue
            for why, groups in needs:
                for g in groups:
                    if g not in HOSTS:
                        errors.append(f"{name}: {swhere}: {why}: {g}")
                        continue
                    for host in HOSTS[g]:
                        hit = {a for a in allowed if covered(host, {a})}
                        if hit:
                            used |= hit
                        else:
                            errors.append(f"{name}: {swhere}: needs {host} ({g}, for {why}), not in allowed-endpoints")
        for a in sorted(allowed - used):
            warnings.append(f"{name}: jobs.{job_id}: allows {a}, which no step needs")
    return sorted(set(errors), key=errors.index), warnings


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or sorted((ROOT / ".github/workflows").glob("*.y*ml"))
    follow = Follower(ROOT)
    errors, warnings = [], []
    for f in files:
        e, w = check_workflow(yaml.safe_load(f.read_text(encoding="utf-8")), f.name, follow)
        errors += e
        warnings += w
    for w in warnings:
        print(f"check-egress: warning: {w}", file=sys.stderr)
    for e in errors:
        print(f"check-egress: {e}", file=sys.stderr)
    if errors:
        print(f"check-egress: FAILED, {len(errors)} missing host(s)", file=sys.stderr)
        return 1
    print(f"check-egress: ok, every blocked job allows what its steps need ({len(warnings)} warning(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
