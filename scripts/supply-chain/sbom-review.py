#!/usr/bin/env python3
"""A security reviewer's view of what a change does to the dependency tree.

    sbom-review.py --base REV --audit-json FILE [--image-sbom FILE] [--out FILE.md]

Compares the tree at REV with the working tree and prints Markdown: crates
added, removed and changed (old -> new version), by scope --
  shipped      compiled into the service binary for the image's target
               (normal dependencies, not through a proc macro);
  build-only   run at build time only: build-dependencies, proc macros and
               what only they need;
  development  dev-dependencies and the development-only workspace members
               (testkit);
  elsewhere    in Cargo.lock for another platform or a non-default feature;
-- each with its licence, whether it has a build script or is a proc macro,
and its RustSec status (AUDIT_JSON: `cargo audit --json` on the working
tree's Cargo.lock, against the advisory database the gates use); then the
image SBOM's reconciliation with the crate SBOM (compare-sbom.py, when
make image-test wrote one) and the licences new to the tree. With no crate
change the output is one line. Scopes come from `cargo metadata` for the
target the crate SBOM records, with default features, narrowed to what
`cargo tree` says the builds compile (buildscope.py).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib

import buildscope

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCOPES = ("shipped", "build-only", "development", "elsewhere")
TARGET = "x86_64-unknown-linux-musl"  # sbom.sh's target
ROOT_CRATE = "wordcount"


def tree(path):
    """{scope: {name: {version: package}}} for the checkout at path."""
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", TARGET,
         "--manifest-path", os.path.join(path, "Cargo.toml")],
        check=True, capture_output=True, text=True).stdout)
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = set(meta["workspace_members"])
    root = next(i for i in members if pkgs[i]["name"] == ROOT_CRATE)

    def proc_macro(pid):
        return any("proc-macro" in t["kind"] for t in pkgs[pid]["targets"])

    def reach(starts, follow):
        seen, todo = set(), list(starts)
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for dep in nodes[pid]["deps"]:
                if follow(pid, dep):
                    todo.append(dep["pkg"])
        return seen

    kinds = lambda dep: {k["kind"] for k in dep["dep_kinds"]}  # noqa: E731
    shipped = reach([root], lambda _, d: None in kinds(d) and not proc_macro(d["pkg"]))
    built = reach([root], lambda p, d: p not in members or kinds(d) & {None, "build"})
    everything = reach(members, lambda *_: True)
    # cargo metadata's resolve is wider than any build's (buildscope.py):
    # a crate is shipped or build-only only if the build compiles it.
    compiled = buildscope.crates(path, TARGET, "normal,build")
    developed = buildscope.crates(path, TARGET, "normal,build,dev", ("--workspace",))
    scope_of = {}
    for pid in everything - members:
        key = (pkgs[pid]["name"], pkgs[pid]["version"])
        scope_of[pid] = ("shipped" if pid in shipped and key in compiled
                         else "build-only" if pid in built and key in compiled
                         else "development" if key in developed else "elsewhere")
    out = {s: {} for s in SCOPES}
    for pid, scope in scope_of.items():
        p = pkgs[pid]
        out[scope].setdefault(p["name"], {})[p["version"]] = {
            "license": p.get("license") or (f"file {p['license_file']}" if p.get("license_file") else "none declared"),
            "build_script": any("custom-build" in t["kind"] for t in p["targets"]),
            "proc_macro": proc_macro(pid),
        }
    listed = {(pkgs[i]["name"], pkgs[i]["version"]) for i in everything}
    with open(os.path.join(path, "Cargo.lock"), "rb") as f:
        for p in tomllib.load(f).get("package", []):
            if (p["name"], p["version"]) not in listed:
                out["elsewhere"].setdefault(p["name"], {})[p["version"]] = {
                    "license": None, "build_script": None, "proc_macro": None}
    return out


def checkout(rev, dest):
    """The tree at rev, unpacked into dest (git archive: committed files only)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", rev],
                             check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        with tarfile.open(fileobj=f) as t:
            t.extractall(dest, filter="data")
    return dest


def advisories(path):
    """{(name, version): ["vulnerable RUSTSEC-...", ...]} from cargo audit --json."""
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    status = {}

    def add(entry, word):
        pkg = entry.get("package", {})
        adv = entry.get("advisory") or {}
        label = f"{word} {adv['id']}" if adv.get("id") else word
        status.setdefault((pkg.get("name"), pkg.get("version")), []).append(label)

    for v in report.get("vulnerabilities", {}).get("list", []):
        add(v, "vulnerable")
    for kind, entries in (report.get("warnings") or {}).items():
        for w in entries:
            add(w, kind)
    return status


def licence_ids(expression):
    return set(re.findall(r"[A-Za-z0-9.+-]+", expression or "")) - {"OR", "AND", "WITH"}


def describe(name, version, info, status):
    """One table row's cells; crates outside the target's graph have no metadata."""
    flags = [f for f, on in (("build script", info["build_script"]), ("proc macro", info["proc_macro"])) if on]
    rustsec = ", ".join(status.get((name, version), [])) or "none"
    return f"`{name}` {version} | {info['license'] or '-'} | {', '.join(flags) or '-'} | {rustsec}"


def review(base, new, status):
    """Markdown lines for the crate changes, and whether there were any."""
    lines, changed_any = [], False
    for scope in SCOPES:
        old_s, new_s = base[scope], new[scope]
        added = sorted(set(new_s) - set(old_s))
        removed = sorted(set(old_s) - set(new_s))
        changed = sorted(n for n in set(old_s) & set(new_s) if set(old_s[n]) != set(new_s[n]))
        if not (added or removed or changed):
            continue
        changed_any = True
        lines += [f"### {scope}: {len(added)} added, {len(removed)} removed, {len(changed)} changed", "",
                  "| | crate and version | licence | runs at build | RustSec |", "|---|---|---|---|---|"]
        for n in added:
            lines += [f"| added | {describe(n, v, i, status)} |" for v, i in sorted(new_s[n].items())]
        for n in changed:
            gone = ", ".join(sorted(set(old_s[n]) - set(new_s[n]))) or "-"
            for v, i in sorted(new_s[n].items()):
                if v not in old_s[n]:
                    lines.append(f"| changed (was {gone}) | {describe(n, v, i, status)} |")
        for n in removed:
            lines += [f"| removed | {describe(n, v, i, {})} |" for v, i in sorted(old_s[n].items())]
        lines.append("")
    return lines, changed_any


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--audit-json", required=True)
    ap.add_argument("--image-sbom")
    ap.add_argument("--out")
    args = ap.parse_args()

    base_sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", args.base],
                              check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        base = tree(checkout(args.base, tmp))
    new = tree(ROOT)
    status = advisories(args.audit_json)
    title = f"SBOM review: {args.base} ({base_sha}) → working tree"
    lines, changed = review(base, new, status)
    if not changed:
        md = [f"{title}: no crate added, removed or changed."]
    else:
        md = [f"## {title}", "", "Scopes: *shipped* is compiled into the image's binary; *build-only* "
              "runs at build time (build scripts, proc macros); *development* is tests and testkit; "
              "*elsewhere* is other platforms and non-default features (Cargo.lock only).", ""] + lines
        shipped_or_built = lambda t: {l for s in ("shipped", "build-only") for n in t[s].values()  # noqa: E731
                                      for i in n.values() for l in licence_ids(i["license"])}
        fresh = sorted(shipped_or_built(new) - shipped_or_built(base))
        md += ["### Licences new to the shipped and build-only tree", "",
               ", ".join(fresh) if fresh else "none", ""]
        md += ["### Image SBOM", ""]
        if args.image_sbom and os.path.exists(args.image_sbom):
            r = subprocess.run([sys.executable, os.path.join(HERE, "compare-sbom.py"), args.image_sbom],
                               capture_output=True, text=True)
            md += ["```", (r.stdout + r.stderr).strip(), "```", ""]
        else:
            md += ["No image SBOM here (`make image-test` writes target/image/sbom.cdx.json); "
                   "not reconciled.", ""]
    text = "\n".join(md).rstrip() + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
