#!/usr/bin/env python3
"""Unit tests for check-egress.py on the real workflows: they pass as they
are; removing one needed host from one job fails and names the job, the
step and the host; a host no step needs is a warning; an action without a
table entry fails. Needs PyYAML (the workflow tools venv)."""
from __future__ import annotations

import copy
import importlib.util
import unittest
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_egress", HERE / "check-egress.py")
ce = importlib.util.module_from_spec(spec)
assert spec.loader is not None
spec.loader.exec_module(ce)

WORKFLOWS = HERE.parents[1] / ".github/workflows"
FOLLOW = ce.Follower(HERE.parents[1])


def load(name: str):
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def release():
    return load("release.yml")


# The image build and the provenance moved into the reusable build.yml.
IN_BUILD_YML = {"build", "provenance"}


def without(doc, job: str, host: str):
    doc = copy.deepcopy(doc)
    w = doc["jobs"][job]["steps"][0]["with"]
    hosts = w["allowed-endpoints"].split()
    assert host in hosts, f"{job} does not allow {host}"
    w["allowed-endpoints"] = " ".join(h for h in hosts if h != host)
    return doc


class Egress(unittest.TestCase):
    def test_real_workflows_pass_without_warnings(self):
        for f in sorted(WORKFLOWS.glob("*.yml")):
            errors, warnings = ce.check_workflow(yaml.safe_load(f.read_text(encoding="utf-8")), f.name, FOLLOW)
            self.assertEqual((errors, warnings), ([], []), f.name)

    def assert_missing(self, job: str, host: str, step_part: str, why_part: str):
        name = "build.yml" if job in IN_BUILD_YML else "release.yml"
        errors, _ = ce.check_workflow(without(load(name), job, host), name, FOLLOW)
        hit = [e for e in errors if f"jobs.{job}.steps[" in e and f"needs {host} " in e]
        self.assertTrue(hit, f"removing {host} from {job} was not refused: {errors}")
        self.assertTrue(any(step_part in e and why_part in e for e in hit), hit)

    # The three hosts the release lacked before this gate, each derived from
    # what the job runs, not from a list.
    def test_docker_hub_cloudfront_from_the_dockerfile(self):
        self.assert_missing("build", "production.cloudfront.docker.com:443",
                            "docker/build-push-action", "FROM docker.io/library/rust")

    def test_rustup_from_xx_cargo_in_the_dockerfile(self):
        self.assert_missing("build", "static.rust-lang.org:443", "docker/build-push-action", "xx-cargo")

    def test_pypi_from_generate_py_in_the_follow_up(self):
        self.assert_missing("follow-up", "files.pythonhosted.org:443", "steps[2]", "release.sh follow-up")

    def test_alpine_from_apk_add(self):
        self.assert_missing("build", "dl-cdn.alpinelinux.org:443", "docker/build-push-action", "apk add")

    def test_sigstore_from_cosign_sign_in_release_sh(self):
        self.assert_missing("sign", "fulcio.sigstore.dev:443", "steps[5]", "release.sh sign")

    def test_github_sigstore_from_attest_build_provenance(self):
        self.assert_missing("provenance", "fulcio.githubapp.com:443", "attest-build-provenance",
                            "actions/attest-build-provenance")

    def test_apt_through_make_supply_chain(self):
        # make supply-chain -> audit-bin -> make static -> image-tools -> install.sh image
        self.assert_missing("gates", "packages.microsoft.com:443", "steps[4]", "install.sh image")

    def test_wildcard_covers_and_its_removal_is_named(self):
        self.assertTrue(ce.covered("x.blob.core.windows.net:443", {"*.blob.core.windows.net:443"}))
        self.assertFalse(ce.covered("blob.core.windows.net.evil:443", {"*.blob.core.windows.net:443"}))
        self.assertFalse(ce.covered("x.blob.core.windows.net:80", {"*.blob.core.windows.net:443"}))
        self.assert_missing("build", "*.blob.core.windows.net:443", "upload-artifact", "actions/upload-artifact")

    def test_login_needs_its_registry(self):
        doc = release()
        doc["jobs"]["publish"]["steps"].insert(1, {"uses": "docker/login-action@" + "0" * 40,
                                                   "with": {"registry": "ghcr.io"}})
        errors, _ = ce.check_workflow(doc, "release.yml", FOLLOW)
        self.assertTrue(any("jobs.publish.steps[1]" in e and "needs ghcr.io:443" in e for e in errors), errors)

    def test_unneeded_host_is_a_warning(self):
        doc = release()
        doc["jobs"]["publish"]["steps"][0]["with"]["allowed-endpoints"] += " pypi.org:443"
        errors, warnings = ce.check_workflow(doc, "release.yml", FOLLOW)
        self.assertEqual(errors, [])
        self.assertEqual(warnings, ["release.yml: jobs.publish: allows pypi.org:443, which no step needs"])

    def test_unknown_action_fails(self):
        doc = release()
        doc["jobs"]["publish"]["steps"].insert(1, {"uses": "someone/thing@" + "0" * 40})
        errors, _ = ce.check_workflow(doc, "release.yml", FOLLOW)
        self.assertTrue(any("someone/thing has no entry" in e for e in errors), errors)

    def test_audit_jobs_are_not_checked(self):
        doc = without(load("build.yml"), "build", "static.rust-lang.org:443")
        doc["jobs"]["build"]["steps"][0]["with"]["egress-policy"] = "audit"
        errors, _ = ce.check_workflow(doc, "build.yml", FOLLOW)
        self.assertFalse([e for e in errors if "jobs.build." in e])

    def test_a_reusable_workflow_call_has_no_steps_to_check(self):
        # release.yml's `image` job is `uses: ./.github/workflows/build.yml`;
        # build.yml's own jobs carry the allow-lists and are checked above.
        self.assertIn("uses", release()["jobs"]["image"])
        errors, warnings = ce.check_workflow(release(), "release.yml", FOLLOW)
        self.assertEqual((errors, warnings), ([], []))

    def test_prose_names_no_tools(self):
        self.assertNotIn("cosign", ce.scrub('die "run cosign verify first"'))
        self.assertNotIn("kubectl", ce.scrub('gh pr create --body "then kubectl create -f it"'))
        self.assertIn("cosign verify", ce.scrub('if ! cosign verify "$image"; then'))


if __name__ == "__main__":
    unittest.main()
