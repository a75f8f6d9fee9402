"""The copy of a shipped admission policy that `make admission-test` runs:
cosign/policy/FILE with the trust root swapped for the test's, derived here
each run (never a kept copy).

    for-test.py POLICY OUT --registry HOST:PORT [--trust-root NAME] [--public-key FILE]

What changes, and nothing else (checked below, path by path):
  - image patterns: ghcr.io/ becomes HOST:PORT/, the loopback registry that
    stands in for ghcr.io;
  - policy-controller keyless authorities: keyless.url (Fulcio) becomes
    keyless.trustRootRef NAME (the test's TrustRoot: private CA and
    timestamp authority) with insecureIgnoreSCT (the private CA has no
    certificate transparency log), and ctlog (Rekor) becomes rfc3161timestamp with
    the same trustRootRef: the timestamp authority takes the log's place as
    the source of signing time, the one other way policy-controller accepts
    for bundles;
  - Kyverno keys.publicKeys becomes the test's public key;
  - Kyverno keyless entries get rekor.ignoreTlog: the test's bundles have no
    transparency log entry; their signed timestamp (the test's timestamp
    authority) is what Kyverno then requires as the source of signing time.
    Their trust root (the private CA and the timestamp authority) is not in
    the policy: Kyverno reads it from its TUF cache, which the test points
    at a per-run repository (TUF_ROOT, tools/go/kyverno/sigstore-tuf).
"""

import argparse
import copy
import sys

import yaml

ALLOWED = {"glob", "imageReferences", "url", "trustRootRef", "insecureIgnoreSCT", "ctlog", "rfc3161timestamp",
           "publicKeys", "ignoreTlog"}


def derive(doc: dict, registry: str, trust_root: str | None, public_key: str | None) -> dict:
    doc = copy.deepcopy(doc)
    spec = doc["spec"]
    if doc["kind"] == "ClusterImagePolicy":
        for image in spec["images"]:
            image["glob"] = image["glob"].replace("ghcr.io/", registry + "/", 1)
        for authority in spec["authorities"]:
            if "keyless" in authority:
                assert trust_root, "a keyless authority needs --trust-root"
                del authority["keyless"]["url"]
                authority["keyless"]["trustRootRef"] = trust_root
                authority["keyless"]["insecureIgnoreSCT"] = True
                del authority["ctlog"]
                authority["rfc3161timestamp"] = {"trustRootRef": trust_root}
        return doc
    for rule in spec["rules"]:
        for entry in rule["verifyImages"]:
            entry["imageReferences"] = [r.replace("ghcr.io/", registry + "/", 1) for r in entry["imageReferences"]]
            attestors = entry.get("attestors", []) + [a for t in entry.get("attestations", []) for a in t["attestors"]]
            for e in (e for attestor in attestors for e in attestor["entries"]):
                if "keys" in e:
                    assert public_key, "a key entry needs --public-key"
                    e["keys"]["publicKeys"] = open(public_key).read()
                elif "keyless" in e:
                    e["keyless"].setdefault("rekor", {})["ignoreTlog"] = True
                else:
                    sys.exit(f"{doc['metadata']['name']}: only key and keyless entries can take a test trust root here")
    return doc


def changed(a: object, b: object, path: str = "") -> list[str]:
    """Paths where a and b differ, down to the first differing key."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b), key=str)
                for p in (changed(a.get(k), b.get(k), f"{path}.{k}") if k in a and k in b else [f"{path}.{k}"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in changed(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("policy")
    p.add_argument("out")
    p.add_argument("--registry", required=True)
    p.add_argument("--trust-root")
    p.add_argument("--public-key")
    a = p.parse_args()
    docs = [d for d in yaml.safe_load_all(open(a.policy)) if d]
    out = [derive(d, a.registry, a.trust_root, a.public_key) for d in docs]
    for shipped, tested in zip(docs, out):
        for path in changed(shipped, tested):
            last = path.rsplit(".", 1)[-1].split("[")[0]
            if last not in ALLOWED:
                sys.exit(f"for-test.py: {a.policy}: {path} changed, which is not the trust root")
            print(f"{a.policy}: {path} (trust root / registry)", file=sys.stderr)
    with open(a.out, "w") as f:
        yaml.safe_dump_all(out, f, sort_keys=False)


if __name__ == "__main__":
    main()
