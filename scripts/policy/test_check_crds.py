#!/usr/bin/env python3
"""The CRD gate must refuse what the API server would: tests against the real
policies and the real upstream CRDs (../shared/crds), each mutated in one
way. Run by scripts/policy/check.sh before the gate itself."""
from __future__ import annotations

import copy
import importlib.util
import unittest
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_crds", HERE / "check-crds.py")
cc = importlib.util.module_from_spec(spec)
assert spec.loader is not None
spec.loader.exec_module(cc)

POLICY = cc.ROOT / "cosign" / "policy"
CRDS = cc.load_crds(cc.DEFAULT_CRDS)


def load(name: str) -> dict:
    return copy.deepcopy([d for d in yaml.safe_load_all((POLICY / name).read_text()) if d][0])


def problems(obj: dict) -> list[str]:
    return cc.check_object(obj, CRDS)[0]


class Gate(unittest.TestCase):
    def test_reference_set_is_complete(self):
        releases = {r for schemas in CRDS.values() for r, _ in schemas}
        self.assertTrue({"policy-controller v0.15.1", "kyverno v1.13.0", "kyverno v1.19.0"} <= releases, releases)

    def test_policies_pass_for_every_release(self):
        for name in ("policy-controller-keyless.yaml", "kyverno-keyless.yaml", "kyverno-key.yaml"):
            obj = load(name)
            errs, releases = cc.check_object(obj, CRDS)
            self.assertEqual(errs, [], name)
            self.assertTrue(releases, name)

    def test_misspelled_field_fails(self):
        obj = load("policy-controller-keyless.yaml")
        authority = obj["spec"]["authorities"][0]
        authority["signatureFormt"] = authority.pop("signatureFormat")
        errs = problems(obj)
        self.assertEqual(len(errs), 1, errs)
        self.assertIn("spec.authorities[0]", errs[0])
        self.assertIn("'signatureFormt' was unexpected", errs[0])

    def test_misspelled_kyverno_field_fails_for_both_releases(self):
        obj = load("kyverno-keyless.yaml")
        entry = obj["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]
        entry["keyless"]["subjectRegexp"] = entry["keyless"].pop("subjectRegExp")
        errs = problems(obj)
        self.assertEqual(sorted(e.split(":")[0] for e in errs), ["kyverno v1.13.0", "kyverno v1.19.0"], errs)

    def test_field_of_a_newer_kyverno_fails_for_the_older(self):
        # validate.cel.generate exists from Kyverno 1.14: the 1.13.0 schema
        # must refuse it while the 1.19.0 schema accepts it.
        obj = load("kyverno-keyless.yaml")
        obj["spec"]["rules"][0]["validate"] = {"cel": {"generate": True, "expressions": [{"expression": "true"}]}}
        errs = problems(obj)
        self.assertEqual(len(errs), 1, errs)
        self.assertTrue(errs[0].startswith("kyverno v1.13.0: spec.rules[0].validate.cel"), errs)
        self.assertIn("'generate' was unexpected", errs[0])

    def test_value_outside_the_enum_fails(self):
        obj = load("kyverno-keyless.yaml")
        obj["spec"]["rules"][0]["verifyImages"][0]["type"] = "Sigstore"
        errs = problems(obj)
        self.assertEqual(len(errs), 2, errs)
        self.assertIn("is not one of", errs[0])

    def test_unknown_kind_and_metadata_fail(self):
        obj = load("kyverno-key.yaml")
        obj["apiVersion"] = "kyverno.io/v9"
        self.assertIn("no CRD for it", problems(obj)[0])
        obj = load("kyverno-key.yaml")
        obj["metadata"]["namespace"] = "wordcount"
        self.assertEqual(problems(obj), ["metadata.namespace: unknown or not for a policy file"])

    def test_cel_rules_are_not_silently_skipped(self):
        with self.assertRaises(ValueError):
            cc.structural({"type": "object", "x-kubernetes-validations": [{"rule": "self.a > 0"}]})

    def test_preserve_unknown_fields_is_honoured(self):
        schema = cc.structural({"type": "object", "properties": {
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "closed": {"type": "object"}}})
        validator = cc.jsonschema.Draft4Validator(schema)
        self.assertTrue(validator.is_valid({"open": {"anything": 1}}))
        self.assertFalse(validator.is_valid({"closed": {"anything": 1}}))


if __name__ == "__main__":
    unittest.main()
