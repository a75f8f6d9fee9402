#!/usr/bin/env python3
"""Make generated SBOMs reproducible, in place.

    normalise-sbom.py --root REPO_ROOT --target TRIPLE FILE.cdx.json|FILE.spdx.json ...

Unchanged Cargo.toml/Cargo.lock must give byte-identical files, so the
committed SBOMs only change when the dependency tree does:
* the checkout's absolute path (in bom-refs, SPDX ids, download locations)
  becomes "." -- the same tree cloned elsewhere, under any directory name,
  gives the same SBOM;
* timestamps become the epoch; CycloneDX serialNumber is dropped (optional in
  the spec; a random UUID per run would make every regeneration a diff); the
  SPDX documentNamespace (required, unique per document) is derived from the
  document's content instead of a random UUID;
* arrays whose order carries no meaning are sorted, and exact duplicate
  entries dropped (cargo-sbom 0.10 lists its Cargo.lock file entry twice,
  which repeats an SPDXID).
Both generators read `cargo metadata`, which lists crates no build compiles
(buildscope.py): crates outside what `cargo tree` resolves for the target
(normal and build dependencies) are dropped, with their relationships, and
a CycloneDX component is scope "required" exactly when it is a normal
dependency ("excluded": build-only).
It also fills in what the generators leave out and the NTIA minimum elements
need (validate-sbom.py checks them):
* the SBOM's author: the wordcount project, beside the generating tool;
* a supplier for each crate: crates.io, the registry it is taken from (the
  CycloneDX "author" from Cargo.toml stays where the crate declares one);
* SPDX download locations: cargo-sbom writes the registry's index as
  "registry+https://...", which is not an SPDX download location; each crate's
  crates.io download URL is; the service's own SPDX package gets its purl
  (cargo-sbom gives one to every crate but the root).
"""
import argparse
import hashlib
import json
import re
import sys

import buildscope

EPOCH = "1970-01-01T00:00:00Z"
PROJECT = "wordcount project"
PROJECT_URL = "https://github.com/wordcount/wordcount"
REGISTRY = "registry+https://github.com/rust-lang/crates.io-index"
CRATES_IO = {"name": "crates.io", "url": ["https://crates.io"]}


# cargo names a path package path+file:///DIR#NAME@VERSION, but
# path+file:///DIR#VERSION when DIR's last component is NAME (a clone into
# wordcount/): the long form, so the checkout's name does not matter.
SHORT_PATH_ID = re.compile(r"(path\+file://[^#\s]*/)([^/#\s]+)#(\d)")


def replace_root(value, root):
    if isinstance(value, str):
        value = SHORT_PATH_ID.sub(r"\1\2#\2@\3", value)
        return value.replace("file://" + root, "file://.").replace(root, ".")
    if isinstance(value, list):
        return [replace_root(v, root) for v in value]
    if isinstance(value, dict):
        return {k: replace_root(v, root) for k, v in value.items()}
    return value


def cyclonedx(doc, normal, built):
    doc.pop("serialNumber", None)
    dropped = {c["bom-ref"] for c in doc.get("components", []) if (c["name"], c["version"]) not in built}
    doc["components"] = [c for c in doc.get("components", []) if c["bom-ref"] not in dropped]
    for c in doc["components"]:
        c["scope"] = "required" if (c["name"], c["version"]) in normal else "excluded"
    doc["dependencies"] = [{**d, "dependsOn": [r for r in d.get("dependsOn", []) if r not in dropped]}
                           for d in doc.get("dependencies", []) if d.get("ref") not in dropped]
    meta = doc.get("metadata", {})
    if "timestamp" in meta:
        meta["timestamp"] = EPOCH
    meta["authors"] = [{"name": PROJECT}]
    if "component" in meta:
        meta["component"]["supplier"] = {"name": PROJECT, "url": [PROJECT_URL]}
    for c in doc.get("components", []):
        if c.get("bom-ref", "").startswith(REGISTRY):
            c["supplier"] = CRATES_IO
    doc.get("components", []).sort(key=lambda c: (c.get("bom-ref", ""), c.get("purl", "")))
    for dep in doc.get("dependencies", []):
        dep.get("dependsOn", []).sort()
    doc.get("dependencies", []).sort(key=lambda d: d.get("ref", ""))
    return doc


def dedupe(items):
    seen, out = set(), []
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def spdx(doc, built):
    dropped = {p["SPDXID"] for p in doc.get("packages", [])
               if p.get("name") != doc.get("name") and (p["name"], p.get("versionInfo")) not in built}
    doc["packages"] = [p for p in doc.get("packages", []) if p["SPDXID"] not in dropped]
    doc["relationships"] = [r for r in doc.get("relationships", [])
                            if not {r.get("spdxElementId"), r.get("relatedSpdxElement")} & dropped]
    info = doc.setdefault("creationInfo", {})
    info["created"] = EPOCH
    info["creators"] = sorted(set(info.get("creators", [])) | {f"Organization: {PROJECT}"})
    for p in doc.get("packages", []):
        if p.get("downloadLocation") == REGISTRY:
            p["downloadLocation"] = f"https://crates.io/api/v1/crates/{p['name']}/{p['versionInfo']}/download"
            p["supplier"] = "Organization: crates.io"
        elif p.get("name") == doc.get("name"):
            p["supplier"] = f"Organization: {PROJECT}"
            p["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                  "referenceLocator": f"pkg:cargo/{p['name']}@{p['versionInfo']}"}]
    for key in ("packages", "files", "relationships"):
        if isinstance(doc.get(key), list):
            doc[key] = dedupe(doc[key])
    doc.get("packages", []).sort(key=lambda p: p.get("SPDXID", ""))
    doc.get("files", []).sort(key=lambda f: f.get("SPDXID", ""))
    doc.get("relationships", []).sort(
        key=lambda r: (r.get("spdxElementId", ""), r.get("relationshipType", ""),
                       r.get("relatedSpdxElement", "")))
    for key in ("documentDescribes",):
        if isinstance(doc.get(key), list):
            doc[key].sort()
    doc["documentNamespace"] = ""
    digest = hashlib.sha256(dump(doc).encode()).hexdigest()
    name = doc.get("name", "wordcount")
    doc["documentNamespace"] = f"https://spdx.org/spdxdocs/{name}-{digest}"
    return doc


def dump(doc):
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, help="absolute path of the checkout")
    ap.add_argument("--target", required=True, help="the target triple the SBOMs describe")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    root = args.root.rstrip("/")
    normal = buildscope.crates(root, args.target)
    built = buildscope.crates(root, args.target, "normal,build")
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            doc = replace_root(json.load(f), root)
        if doc.get("bomFormat") == "CycloneDX":
            doc = cyclonedx(doc, normal, built)
        elif str(doc.get("spdxVersion", "")).startswith("SPDX-"):
            doc = spdx(doc, built)
        else:
            sys.exit(f"{path}: neither CycloneDX nor SPDX JSON")
        with open(path, "w", encoding="utf-8") as f:
            f.write(dump(doc))


if __name__ == "__main__":
    main()
