#!/usr/bin/env python3
"""Check that an image's SBOM lists the crates sbom/ says the binary contains.

    compare-sbom.py IMAGE_SBOM.json [--reference sbom/wordcount.cdx.json]

IMAGE_SBOM.json is syft's CycloneDX JSON of the built image; syft finds the
crates through the dependency list cargo-auditable embeds in the binary.
The reference is the committed CycloneDX SBOM (cargo-cyclonedx): its
components with scope "required" are the normal dependencies (build-only
crates are scope "excluded"; dev-dependencies are not listed at all).

Two differences are accepted, both identified with `cargo metadata` for the
SBOM's target:
  * cargo-auditable leaves out crates that only run inside the compiler:
    proc macros and what only they depend on;
  * cargo-auditable records `cargo metadata`'s resolve, which lists crates
    the build does not compile (buildscope.py); sbom/ does not.
Everything else must match by name and version, in both directions:
  * a crate in the image but not in sbom/: the image was built from another
    Cargo.lock (or sbom/ is stale);
  * a crate in sbom/ but not in the image: built with other features, for
    another target, or without cargo-auditable data.
Exit status 0 when they agree, 1 with the differences printed otherwise.
"""
import argparse
import json
import os
import subprocess
import sys
import urllib.parse

import buildscope

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TARGET_PROPERTY = "cdx:rustc:sbom:target:triple"


def flatten(components):
    for c in components or []:
        yield c
        yield from flatten(c.get("components"))


def cargo_crates(doc):
    """(name, version) of every pkg:cargo component in a CycloneDX document."""
    out = set()
    for c in flatten(doc.get("components")):
        purl = c.get("purl", "")
        if not purl.startswith("pkg:cargo/"):
            continue
        name_version = urllib.parse.unquote(purl[len("pkg:cargo/"):].split("?")[0].split("#")[0])
        name, _, version = name_version.rpartition("@")
        out.add((name, version))
    return out


def metadata_scopes(target, manifest):
    """(runtime, compile-time-only) crates of `cargo metadata`'s resolve:
    reachable from the root over normal edges not through proc macros, and
    reachable only through proc macros."""
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked",
           "--filter-platform", target, "--manifest-path", manifest]
    meta = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    pkgs = {p["id"]: p for p in meta["packages"]}
    proc_macro = {pid for pid, p in pkgs.items()
                  if any("proc-macro" in t.get("kind", []) for t in p.get("targets", []))}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    runtime, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in runtime:
            continue
        runtime.add(pid)
        for dep in nodes[pid].get("deps", []):
            normal = any(k.get("kind") is None for k in dep.get("dep_kinds", []))
            if normal and dep["pkg"] not in proc_macro:
                todo.append(dep["pkg"])
    everything = {(p["name"], p["version"]) for p in pkgs.values()}
    runtime = {(pkgs[i]["name"], pkgs[i]["version"]) for i in runtime}
    return runtime, everything - runtime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image_sbom")
    ap.add_argument("--reference", default=os.path.join(ROOT, "sbom", "wordcount.cdx.json"))
    ap.add_argument("--manifest-path", default=os.path.join(ROOT, "Cargo.toml"))
    args = ap.parse_args()

    with open(args.reference, encoding="utf-8") as f:
        ref_doc = json.load(f)
    with open(args.image_sbom, encoding="utf-8") as f:
        img_doc = json.load(f)

    root = ref_doc.get("metadata", {}).get("component", {})
    root_key = (root.get("name"), root.get("version"))
    target = next((p["value"] for p in ref_doc.get("metadata", {}).get("properties", [])
                   if p.get("name") == TARGET_PROPERTY), "x86_64-unknown-linux-musl")

    reference = {(c["name"], c["version"]) for c in flatten(ref_doc.get("components"))
                 if c.get("scope", "required") == "required" and c.get("purl", "").startswith("pkg:cargo/")
                 and not c.get("purl", "").startswith(f"pkg:cargo/{root_key[0]}@")}
    image = cargo_crates(img_doc) - {root_key}

    if not image:
        print(f"compare-sbom: {args.image_sbom} lists no Rust crates: the binary has no "
              "cargo-auditable data (built with plain `cargo build`?)", file=sys.stderr)
        return 1

    runtime, exempt = metadata_scopes(target, args.manifest_path)
    not_compiled = runtime - buildscope.crates(os.path.dirname(os.path.abspath(args.manifest_path)), target)
    extra = sorted(image - reference - not_compiled)
    recorded_only = sorted((image - reference) & not_compiled)
    missing = sorted((reference - image) - exempt)
    skipped = sorted((reference - image) & exempt)

    def show(items):
        return "\n".join(f"    {n} {v}" for n, v in items)

    if extra or missing:
        print(f"compare-sbom: {args.image_sbom} and {os.path.relpath(args.reference)} disagree",
              file=sys.stderr)
        if extra:
            print(f"  in the image, not in sbom/ ({len(extra)}):\n{show(extra)}", file=sys.stderr)
        if missing:
            print(f"  in sbom/ (normal dependencies), not in the image ({len(missing)}):\n{show(missing)}",
                  file=sys.stderr)
        print("  Was the image built from this Cargo.lock (and is sbom/ current: make sbom-check)?",
              file=sys.stderr)
        return 1
    print(f"compare-sbom: the image lists the {len(image) - len(recorded_only)} crates sbom/ lists "
          f"({len(skipped)} compile-time-only crates, proc macros and their dependencies, "
          "are not in binaries and were not expected; cargo-auditable also recorded "
          f"{len(recorded_only)} crates of cargo metadata's resolve the build does not compile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
