#!/usr/bin/env python3
"""Refuse GitHub Actions references that are not pinned to a full commit SHA.

Every `uses:` in .github/workflows/*.y{a,}ml and .github/actions/**/action.y{a,}ml
must be one of:

  owner/repo[/path]@<40 lowercase hex>  # vX.Y.Z   (a remote action or reusable workflow)
  ./path                                             (an action in this repository)
  docker://image@sha256:<64 hex>                     (a container action, by digest)

Why each rule:
  * a tag or branch (`@v4`, `@main`) can be moved by whoever controls the
    action's repository, so the code we run changes without a diff here;
  * a short SHA can become ambiguous, and GitHub refuses short refs anyway;
  * the `# vX.Y.Z` comment is what a reviewer (and Dependabot) reads; a bare
    major (`# v4`) names a moving tag, so nobody can check the SHA against it;
  * one action, one pin: the same action at two SHAs in the tree is drift;
  * every pinned SHA must appear in the provenance table in docs/pipeline.md,
    so each pin records where it was checked (see that file).

The Dockerfile's `apk add` / `xx-apk add` packages are pins too: each must be
`name=~MAJOR` or `name=~MAJOR.MINOR` (apk's fuzzy match). Alpine's mirror
keeps only the newest revision of a package, so an exact `=1.2.5-r12` breaks
the build at the next rebuild, and an unpinned name lets a new series in
unseen (hadolint's DL3018 asks for a version; `=~` satisfies it).

Line-based on purpose: a YAML parser drops comments, and the comment is part of
the rule. A `uses:` this scanner cannot read (flow style, several on a line) is
an error rather than something silently skipped.

Usage: check-pins.py [--root DIR] [--provenance FILE | --no-provenance]
Exit 0 when every reference is pinned, 1 with one line per problem otherwise.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# `uses:` as a mapping key, optionally as the first key of a sequence item, with
# an optional quoted or plain scalar value and an optional trailing comment.
# As in YAML, '#' starts a comment only after whitespace, so `@sha#v1` is one
# (invalid) ref, not a ref plus a comment.
USES_LINE = re.compile(
    r"""^(?P<indent>\s*)(?:-\s+)?uses\s*:\s*
        (?P<quote>["']?)(?P<ref>[^"'\s]+)(?P=quote)
        (?P<rest>.*)$""",
    re.X,
)
REMOTE = re.compile(
    r"^(?P<action>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_./-]+)?)@(?P<ref>.+)$"
)
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
DOCKER_DIGEST = re.compile(r"^docker://[^@\s]+@sha256:[0-9a-f]{64}$")
# At least one space before '#', then a full semantic version. Anything after
# the version (e.g. "# v4.2.2 (node24)") is allowed as a note.
VERSION_COMMENT = re.compile(r"^\s+#\s*(?P<version>v\d+\.\d+\.\d+)(?:\s.*)?$")


def workflow_files(root: Path) -> list[Path]:
    gh = root / ".github"
    files: list[Path] = []
    for pattern in ("workflows/*.yml", "workflows/*.yaml",
                    "actions/**/action.yml", "actions/**/action.yaml"):
        files.extend(gh.glob(pattern))
    return sorted(set(files))


def check_text(text: str, name: str) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    """Returns (errors, pins) for one file; a pin is (action, sha, version, where)."""
    errors: list[str] = []
    pins: list[tuple[str, str, str, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        where = f"{name}:{lineno}"
        stripped = line.split("#", 1)[0]
        if not re.search(r"(^|[\s{,-])[\"']?uses[\"']?\s*:", stripped):
            continue
        m = USES_LINE.match(line)
        if m is None or "uses" in m.group("rest").split("#", 1)[0]:
            errors.append(f"{where}: cannot read this `uses:` (use block style, one per line): {line.strip()}")
            continue
        ref, rest = m.group("ref"), m.group("rest")
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            if not DOCKER_DIGEST.match(ref):
                errors.append(f"{where}: {ref}: container actions must be pinned by @sha256 digest")
            continue
        r = REMOTE.match(ref)
        if r is None:
            errors.append(f"{where}: {ref}: not owner/repo[/path]@ref")
            continue
        action, sha = r.group("action"), r.group("ref")
        if not FULL_SHA.match(sha):
            if re.fullmatch(r"[0-9a-fA-F]{7,39}", sha):
                why = "a short SHA"
            elif re.fullmatch(r"[0-9A-F]{40}", sha, re.I):
                why = "an upper-case SHA (GitHub refs are lower-case hex)"
            else:
                why = "a tag or branch, which can be moved"
            errors.append(f"{where}: {action}@{sha}: {why}; pin the full 40-hex commit SHA")
            continue
        c = VERSION_COMMENT.match(rest)
        if c is None:
            errors.append(
                f"{where}: {action}@{sha[:12]}: needs a `# vX.Y.Z` comment naming the exact release "
                f"(found {rest.strip() or 'no comment'!r})"
            )
            continue
        pins.append((action, sha, c.group("version"), where))
    return errors, pins


def consistency(pins: list[tuple[str, str, str, str]]) -> list[str]:
    """One action (owner/repo, any sub-path) at one SHA and one version everywhere."""
    errors: list[str] = []
    seen: dict[str, tuple[str, str, str]] = {}
    for action, sha, version, where in pins:
        repo = "/".join(action.split("/")[:2]).lower()
        if repo in seen:
            s_sha, s_version, s_where = seen[repo]
            if (s_sha, s_version) != (sha, version):
                errors.append(
                    f"{where}: {repo} pinned to {sha[:12]} {version}, but {s_where} has "
                    f"{s_sha[:12]} {s_version}; use one pin per action"
                )
        else:
            seen[repo] = (sha, version, where)
    return errors


def provenance(pins: list[tuple[str, str, str, str]], table: str, table_name: str) -> list[str]:
    errors = []
    for action, sha, version, where in pins:
        repo = "/".join(action.split("/")[:2])
        if not re.search(rf"\b{re.escape(sha)}\b", table) or repo.lower() not in table.lower():
            errors.append(
                f"{where}: {repo}@{sha[:12]} {version} is not in the pin provenance table "
                f"of {table_name}; record where this SHA/tag pair was checked"
            )
    return errors


APK_ADD = re.compile(r"\b(?:xx-)?apk add\b([^&;|]*)")
APK_PIN = re.compile(r"^[a-z0-9][\w.+-]*=~\d+(?:\.\d+)?$")


def apk_pins(text: str, name: str) -> list[str]:
    """Every package of every `apk add` in a Dockerfile pinned by `=~X[.Y]`."""
    errors = []
    for lineno, line in enumerate(re.sub(r"\\\n", " ", text).splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        for m in APK_ADD.finditer(line):
            for pkg in (w for w in m.group(1).split() if not w.startswith("-")):
                if APK_PIN.match(pkg):
                    continue
                why = ("an exact revision: Alpine keeps only the newest -rN" if re.search(r"-r\d+$", pkg)
                       else "unpinned (hadolint DL3018)" if "=" not in pkg
                       else "not a fuzzy major[.minor] pin")
                errors.append(f"{name}: apk add {pkg}: {why}; pin it as NAME=~MAJOR.MINOR")
    return errors


def run(root: Path, provenance_file: Path | None) -> list[str]:
    files = workflow_files(root)
    if not files:
        return [f"{root}/.github: no workflow files found"]
    errors: list[str] = []
    pins: list[tuple[str, str, str, str]] = []
    for f in files:
        e, p = check_text(f.read_text(encoding="utf-8"), str(f.relative_to(root)))
        errors += e
        pins += p
    errors += consistency(pins)
    if (root / "Dockerfile").is_file():
        errors += apk_pins((root / "Dockerfile").read_text(encoding="utf-8"), "Dockerfile")
    if provenance_file is not None:
        if not provenance_file.is_file():
            errors.append(f"{provenance_file}: missing (it holds the pin provenance table)")
        else:
            errors += provenance(pins, provenance_file.read_text(encoding="utf-8"), str(provenance_file))
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    ap.add_argument("--provenance", type=Path, default=None,
                    help="file with the pin provenance table (default: ROOT/docs/pipeline.md)")
    ap.add_argument("--no-provenance", action="store_true")
    args = ap.parse_args(argv)
    prov = None if args.no_provenance else (args.provenance or args.root / "docs" / "pipeline.md")
    errors = run(args.root, prov)
    for e in errors:
        print(f"check-pins: {e}", file=sys.stderr)
    if errors:
        print(f"check-pins: FAILED, {len(errors)} problem(s)", file=sys.stderr)
        return 1
    n = sum(len(check_text(f.read_text(encoding='utf-8'), f.name)[1]) for f in workflow_files(args.root))
    print(f"check-pins: ok, {n} remote references pinned to full SHAs with version comments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
