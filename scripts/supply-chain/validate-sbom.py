#!/usr/bin/env python3
"""Check that SBOMs are valid documents of their formats and carry the NTIA
minimum elements.

    validate-sbom.py FILE.cdx.json|FILE.spdx.json ...

Run with the project's Python environment (scripts/lib/python.sh), which
holds the two format projects' own validators:
* CycloneDX: cyclonedx-python-lib's strict JSON validator with the JSON
  schema of the document's specVersion (shipped in the wheel, no download);
* SPDX: spdx-tools' parser and validator (what `pyspdxtools -i FILE` runs).
The NTIA minimum elements ("The Minimum Elements For a Software Bill of
Materials", 2021), for the document and for every component/package:
supplier or author, name, version, a unique identifier (purl; for SPDX also
the SPDXID), dependency relationships, the SBOM's author, a timestamp.
Every finding is printed with the element and the component it concerns.
Exit status 0 when every file passes, 1 otherwise.
"""
import json
import sys

MAX_SHOWN = 10  # findings per file and kind; the count is always printed


def cyclonedx(doc, text):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    version = doc.get("specVersion", "")
    try:
        schema = SchemaVersion.from_version(version)
    except ValueError:
        return [f"schema: unknown CycloneDX specVersion {version!r}"]
    error = JsonStrictValidator(schema).validate_str(text)
    if error is not None:
        return [f"schema: not valid CycloneDX {version} JSON: {error.data.message} "
                f"(at {'/'.join(map(str, error.data.absolute_path)) or 'the top'})"]
    problems = []
    meta = doc.get("metadata", {})
    if not meta.get("authors") and not meta.get("tools"):
        problems.append("NTIA: no author of the SBOM (metadata.authors or metadata.tools)")
    if not meta.get("timestamp"):
        problems.append("NTIA: no timestamp (metadata.timestamp)")
    components = doc.get("components", [])
    with_deps = {d.get("ref") for d in doc.get("dependencies", [])}
    refs = [c.get("bom-ref") for c in components]
    for c in components:
        who = f"{c.get('name', '?')} {c.get('version', '?')}"
        for element, present in (
            ("supplier or author", c.get("supplier") or c.get("author")),
            ("name", c.get("name")),
            ("version", c.get("version")),
            ("unique identifier (purl)", c.get("purl")),
            ("dependency relationships (an entry in dependencies)", c.get("bom-ref") in with_deps),
        ):
            if not present:
                problems.append(f"NTIA: component {who}: no {element}")
    if len(set(refs)) != len(refs):
        problems.append("NTIA: bom-refs are not unique")
    return problems


def spdx(path, doc):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    try:
        parsed = parse_file(path)
        problems = [f"SPDX: {m.validation_message}" for m in validate_full_spdx_document(parsed)]
    except Exception as e:  # the parser raises SPDXParsingError and others
        problems = [f"SPDX: does not parse: {e}"]
    info = doc.get("creationInfo", {})
    if not info.get("creators"):
        problems.append("NTIA: no author of the SBOM (creationInfo.creators)")
    if not info.get("created"):
        problems.append("NTIA: no timestamp (creationInfo.created)")
    related = set()
    for r in doc.get("relationships", []):
        if r.get("relationshipType") in ("DEPENDS_ON", "DEPENDENCY_OF"):
            related |= {r.get("spdxElementId"), r.get("relatedSpdxElement")}
    for p in doc.get("packages", []):
        who = f"{p.get('name', '?')} {p.get('versionInfo', '?')}"
        purl = any(ref.get("referenceType") == "purl" for ref in p.get("externalRefs", []))
        for element, present in (
            ("supplier or originator", p.get("supplier") or p.get("originator")),
            ("name", p.get("name")),
            ("version (versionInfo)", p.get("versionInfo")),
            ("unique identifier (purl external reference)", purl),
            ("dependency relationships (DEPENDS_ON)", p.get("SPDXID") in related),
        ):
            if not present:
                problems.append(f"NTIA: package {who}: no {element}")
    return problems


def main(paths):
    if not paths:
        sys.exit(__doc__)
    bad = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        doc = json.loads(text)
        if doc.get("bomFormat") == "CycloneDX":
            problems = cyclonedx(doc, text)
        elif str(doc.get("spdxVersion", "")).startswith("SPDX-"):
            problems = spdx(path, doc)
        else:
            problems = ["neither CycloneDX nor SPDX JSON"]
        if problems:
            bad += 1
            print(f"validate-sbom: {path}: {len(problems)} problem(s)", file=sys.stderr)
            for p in problems[:MAX_SHOWN]:
                print(f"  {p}", file=sys.stderr)
            if len(problems) > MAX_SHOWN:
                print(f"  ... and {len(problems) - MAX_SHOWN} more", file=sys.stderr)
        else:
            print(f"validate-sbom: {path}: valid, NTIA minimum elements present")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
