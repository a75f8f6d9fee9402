#!/usr/bin/env python3
"""OpenVEX from deny.toml's judged advisories.

    vex.py --db ADVISORY_DB [--out FILE]          the committed document
    vex.py --image REPO@sha256:DIGEST --out FILE  the release's

Every advisory ignored in deny.toml whose crate the service ships (a
component of scope "required" in sbom/wordcount.cdx.json) becomes one
statement: status not_affected, the justification named in the ignore's
reason (one of OpenVEX's five labels, e.g. vulnerable_code_not_in_execute_path,
written as is), the reason as the impact statement, and as products the
service (its purl; with --image, also the image by digest) with the crate as
subcomponent. With --image, the committed sbom/wordcount.openvex.json
(which `make sbom-check` keeps in step with deny.toml) is written again with
the image by digest as a further product of every statement and
SOURCE_DATE_EPOCH as its time. An ignore of an advisory whose crate the product does not ship
(a development-only crate) makes no statement: no SBOM of the product lists
that crate, so there is nothing for a scanner to match.

The document is deterministic (epoch timestamp, content-derived @id), so the
committed file can be compared with a fresh one.
Exits 1, naming the ignore, when a shipped crate's ignore names no
justification.
"""
import argparse
import datetime
import glob
import hashlib
import json
import os
import re
import sys
import tomllib
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
JUSTIFICATIONS = ("component_not_present", "vulnerable_code_not_present",
                  "vulnerable_code_not_in_execute_path",
                  "vulnerable_code_cannot_be_controlled_by_adversary",
                  "inline_mitigations_already_exist")


def advisory_crate(db, rustsec_id):
    """The crate an advisory concerns, from its TOML front matter in the database."""
    paths = glob.glob(os.path.join(db, "crates", "*", f"{rustsec_id}.md"))
    if not paths:
        sys.exit(f"vex: {rustsec_id} (ignored in deny.toml) is not in the advisory database {db}")
    with open(paths[0], encoding="utf-8") as f:
        front = re.search(r"```toml\n(.*?)```", f.read(), re.S)
    return tomllib.loads(front.group(1))["advisory"]["package"]


def finish(doc, out):
    """Sets the content-derived @id and writes the document."""
    doc["@id"] = ""
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    doc["@id"] = f"https://github.com/wordcount/wordcount/vex/{digest}"
    text = json.dumps(doc, indent=2) + "\n"
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def timestamp(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def release(args):
    repo, _, digest = args.image.partition("@")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        sys.exit(f"vex: --image {args.image}: not REPOSITORY@sha256:DIGEST")
    image = (f"pkg:oci/{repo.rsplit('/', 1)[-1]}@{urllib.parse.quote(digest)}"
             f"?repository_url={urllib.parse.quote(repo, safe='')}")
    with open(args.committed, encoding="utf-8") as f:
        doc = json.load(f)
    for st in doc["statements"]:
        st["products"].append({"@id": image, "subcomponents": st["products"][0]["subcomponents"]})
    doc["timestamp"] = timestamp(int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    finish(doc, args.out)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db")
    ap.add_argument("--deny", default=os.path.join(ROOT, "deny.toml"))
    ap.add_argument("--sbom", default=os.path.join(ROOT, "sbom", "wordcount.cdx.json"))
    ap.add_argument("--image", help="the released image, REPOSITORY@sha256:DIGEST")
    ap.add_argument("--committed", default=os.path.join(ROOT, "sbom", "wordcount.openvex.json"))
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.image:
        return release(args)
    if not args.db:
        ap.error("--db or --image")

    with open(args.deny, "rb") as f:
        ignores = tomllib.load(f).get("advisories", {}).get("ignore", [])
    with open(args.sbom, encoding="utf-8") as f:
        sbom = json.load(f)
    product = sbom["metadata"]["component"]["purl"].split("?")[0]
    shipped = {}
    for c in sbom.get("components", []):
        if c.get("scope", "required") == "required":
            shipped.setdefault(c["name"], []).append(c["purl"])

    statements, problems = [], []
    for entry in ignores:
        rustsec_id = entry.get("id") if isinstance(entry, dict) else entry
        if not rustsec_id:
            continue
        crate = advisory_crate(args.db, rustsec_id)
        if crate not in shipped:
            continue
        reason = entry.get("reason", "")
        found = [j for j in JUSTIFICATIONS if j in reason]
        if len(found) != 1:
            problems.append(f"deny.toml ignores {rustsec_id} against {crate}, which the service ships: "
                            f"its reason must name exactly one OpenVEX justification ({', '.join(JUSTIFICATIONS)})")
            continue
        statements.append({
            "vulnerability": {"name": rustsec_id},
            "products": [{"@id": product, "subcomponents": [{"@id": s} for s in sorted(shipped[crate])]}],
            "status": "not_affected",
            "justification": found[0],
            "impact_statement": reason,
        })
    if problems:
        print("\n".join(f"vex: {p}" for p in problems), file=sys.stderr)
        return 1
    finish({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "",
        "author": "wordcount project",
        "role": "Document Creator",
        "timestamp": timestamp(0),
        "version": 1,
        "statements": statements,
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
