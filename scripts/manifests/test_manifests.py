"""Tests of the manifest generator, the policy checks and the mock-production
transformation, including negative tests that break a good manifest one rule
at a time and require the check to name the object and the rule.

Run: make manifests-test (with the manifests venv's Python: PyYAML).
"""

from __future__ import annotations

import copy
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402
import validate  # noqa: E402

_spec = __import__("importlib.util").util.spec_from_file_location("mockprod_render", HERE / "mockprod-render.py")
mockprod_render = __import__("importlib.util").util.module_from_spec(_spec)
_spec.loader.exec_module(mockprod_render)

ROOT = generate.ROOT
RAW = ROOT / "raw-yaml"
K8S_VERSION = generate.load_config()["kubernetes_version"]


def raw_docs() -> list[tuple[Path, dict]]:
    return validate.load_documents(sorted(RAW.glob("*.yaml")))


def find(docs, kind: str, name: str) -> dict:
    for _, doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"{kind}/{name} not in raw-yaml/")


class GeneratorTests(unittest.TestCase):
    def setUp(self):
        self.cfg = generate.load_config()

    def test_yaml_round_trips_to_the_same_objects(self):
        files = generate.manifests(self.cfg)
        for inst in self.cfg["instances"]:
            parsed = list(yaml.safe_load_all(files[f"10-instance-{inst['word']}.yaml"]))
            want = [generate.deployment(self.cfg, inst), generate.service(self.cfg, inst),
                    generate.pdb(self.cfg, inst), generate.hpa(self.cfg, inst)]
            self.assertEqual(parsed, want)
        self.assertEqual(list(yaml.safe_load_all(files["02-networkpolicies.yaml"])),
                         generate.network_policies(self.cfg))
        self.assertEqual(list(yaml.safe_load_all(files["20-ingress.yaml"])), generate.ingresses(self.cfg))

    def test_ambiguous_strings_stay_strings(self):
        tricky = ["true", "no", "on", "1", "0.5", "1e3", "", "/$2", "a: b", "#x", "- x", "null",
                  "~", "@x", "*x", "&x", "!x", "%x", "{x}", "[x]", "x #y", "'q'", "\"q\"", "50m"]
        doc = {"k": tricky, "nested": {s: s for s in tricky if s}}
        self.assertEqual(list(yaml.safe_load_all(generate.to_yaml([doc]))), [doc])

    def test_adding_a_word_is_one_line(self):
        text = generate.CONFIG.read_text()
        anchor = '  { word = "coffee" },\n'
        self.assertIn(anchor, text)
        new_text = text.replace(anchor, anchor + '  { word = "ale" },\n')
        diff = [line for line in difflib.unified_diff(text.splitlines(), new_text.splitlines(), lineterm="")
                if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
        self.assertEqual(diff, ['+  { word = "ale" },'])
        with tempfile.TemporaryDirectory() as tmp:
            cfg_path = Path(tmp) / "instances.toml"
            cfg_path.write_text(new_text)
            files, compose = generate.render(generate.load_config(cfg_path))
        self.assertIn("10-instance-ale.yaml", files)
        kinds = [d["kind"] for d in yaml.safe_load_all(files["10-instance-ale.yaml"])]
        self.assertEqual(kinds, ["Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"])
        self.assertIn('path: "/ale(/|$)(.*)"', files["20-ingress.yaml"])
        self.assertIn("wordcount-ale:", compose)

    def test_bad_configs_are_refused(self):
        text = generate.CONFIG.read_text()
        cases = {
            "uppercase word": text.replace('word = "tea"', 'word = "Tea"'),
            "apostrophe": text.replace('word = "tea"', "word = \"o'er\""),
            "duplicate": text.replace('word = "tea"', 'word = "and"'),
            "default not an instance": text.replace('default_word = "the"', 'default_word = "ale"'),
            "image by tag": text.replace(generate.load_config()["image"], "ghcr.io/wordcount/wordcount:1.0"),
            "unknown key": text.replace('{ word = "tea" }', '{ word = "tea", replica = 3 }'),
            "zero replicas": text.replace('{ word = "tea" }', '{ word = "tea", replicas = 0 }'),
            "key Secret not a name": text.replace('{ word = "tea" }', '{ word = "tea", gcp_key_secret = "../key" }'),
        }
        for label, bad in cases.items():
            with self.subTest(label), tempfile.TemporaryDirectory() as tmp:
                self.assertNotEqual(bad, text, label)
                path = Path(tmp) / "instances.toml"
                path.write_text(bad)
                with self.assertRaises(generate.ConfigError):
                    generate.load_config(path)

    def test_key_secret_option_mounts_the_key_read_only(self):
        text = generate.CONFIG.read_text().replace('{ word = "tea" }', '{ word = "tea", gcp_key_secret = "tea-key" }')
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "instances.toml"
            path.write_text(text)
            files, _ = generate.render(generate.load_config(path))
        docs = {name: [d for d in yaml.safe_load_all(t) if d] for name, t in files.items()}
        tea = docs["10-instance-tea.yaml"][0]["spec"]["template"]["spec"]
        the = docs["10-instance-the.yaml"][0]["spec"]["template"]["spec"]
        self.assertEqual(tea["volumes"], [{"name": "gcp-key", "secret": {
            "secretName": "tea-key", "items": [{"key": "key.json", "path": "key.json"}], "defaultMode": 0o440}}])
        c = tea["containers"][0]
        self.assertEqual(c["volumeMounts"], [{"name": "gcp-key", "mountPath": generate.KEY_DIR, "readOnly": True}])
        self.assertIn({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{generate.KEY_DIR}/key.json"}, c["env"])
        self.assertEqual(tea["securityContext"]["fsGroup"], generate.UID)
        self.assertNotIn("volumes", the)
        self.assertNotIn("fsGroup", the["securityContext"])
        # Still the restricted profile and the project's pod rules.
        flat = [(Path(n), d) for n, ds in docs.items() for d in ds]
        self.assertEqual(validate.check_pod_security(flat), [])

    def test_committed_output_is_current(self):
        files, compose = generate.render(self.cfg)
        self.assertEqual(generate.check(files, compose), [])

    def test_stale_or_foreign_files_are_reported(self):
        files, compose = generate.render(self.cfg)
        with tempfile.TemporaryDirectory() as tmp:
            fake_raw = Path(tmp) / "raw-yaml"
            shutil.copytree(RAW, fake_raw)
            saved = generate.RAW, generate.ROOT
            generate.RAW, generate.ROOT = fake_raw, Path(tmp)
            shutil.copy(generate.COMPOSE, Path(tmp) / "compose.yaml")
            saved_compose, generate.COMPOSE = generate.COMPOSE, Path(tmp) / "compose.yaml"
            try:
                self.assertEqual(generate.check(files, compose), [])
                p = fake_raw / "10-instance-tea.yaml"
                p.write_text(p.read_text().replace("value: tea", "value: coffee"))
                (fake_raw / "99-extra.yaml").write_text("kind: ConfigMap\n")
                problems = generate.check(files, compose)
            finally:
                generate.RAW, generate.ROOT = saved
                generate.COMPOSE = saved_compose
        self.assertTrue(any("10-instance-tea.yaml" in p and "-          value: coffee" in p for p in problems), problems)
        self.assertTrue(any("99-extra.yaml" in p and "not generated" in p for p in problems), problems)


class IngressRoutingTests(unittest.TestCase):
    """ingress-nginx turns each regex path into `location ~* "^PATH"` (longest
    first) and rewrite-target into `rewrite "(?i)PATH" /$2 break;`. Emulate
    that with Python's re (same syntax for these patterns) to pin down what
    each URL reaches and with which path."""

    def route(self, url: str) -> tuple[str, str]:
        import re
        docs = [d for _, d in raw_docs() if d["kind"] == "Ingress"]
        locations = []
        for ing in docs:
            rewrite = (ing["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/rewrite-target")
            for rule in ing["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    locations.append((p["path"], rewrite, p["backend"]["service"]["name"]))
        for path, rewrite, service in sorted(locations, key=lambda x: -len(x[0])):
            m = re.match("(?i)^" + path, url)
            if m:
                if rewrite:
                    return service, re.sub(r"\$(\d)", lambda g: m.group(int(g.group(1))) or "", rewrite)
                return service, url
        raise AssertionError(f"no location for {url}")

    def test_word_prefixes_are_stripped(self):
        cases = {
            "/": ("wordcount-the", "/"),
            "/api/v1/counts": ("wordcount-the", "/api/v1/counts"),
            "/coffee": ("wordcount-coffee", "/"),
            "/coffee/": ("wordcount-coffee", "/"),
            "/coffee/api/v1/counts": ("wordcount-coffee", "/api/v1/counts"),
            "/tea/hello": ("wordcount-tea", "/hello"),
            "/and/api/v1/counts": ("wordcount-and", "/api/v1/counts"),
            "/the/api/v1/counts": ("wordcount-the", "/api/v1/counts"),
            # a word that merely starts like an instance is not that instance
            "/coffeehouse": ("wordcount-the", "/coffeehouse"),
            "/teapot/x": ("wordcount-the", "/teapot/x"),
        }
        for url, want in cases.items():
            with self.subTest(url):
                self.assertEqual(self.route(url), want)


class KindTests(unittest.TestCase):
    def test_committed_manifests_use_allowed_served_kinds(self):
        self.assertEqual(validate.check_kinds(raw_docs(), validate.served_kinds(K8S_VERSION)), [])

    def test_unlisted_or_beta_kinds_are_refused(self):
        served = validate.served_kinds(K8S_VERSION)
        for api, kind in [("policy/v1beta1", "PodDisruptionBudget"), ("batch/v1", "CronJob"),
                          ("gateway.networking.k8s.io/v1", "HTTPRoute")]:
            with self.subTest(kind=kind, api=api):
                doc = {"apiVersion": api, "kind": kind, "metadata": {"name": "x"}}
                errors = validate.check_kinds([(Path("f.yaml"), doc)], served)
                self.assertTrue(any("not in the allow-list" in e and f"{kind}/x" in e for e in errors), errors)

    def test_allow_list_entry_not_served_is_refused(self):
        saved = validate.ALLOWED
        validate.ALLOWED = saved | {("extensions/v1beta1", "Ingress")}
        try:
            errors = validate.check_kinds([], validate.served_kinds(K8S_VERSION))
        finally:
            validate.ALLOWED = saved
        self.assertEqual(errors, ["allow-list: extensions/v1beta1 Ingress is not served by this Kubernetes version"])


def _container(d):
    return d["spec"]["template"]["spec"]["containers"][0]


def _pod(d):
    return d["spec"]["template"]["spec"]


def _set(path_fn, key, value):
    def mutate(d):
        path_fn(d)[key] = value
    return mutate


def _del(path_fn, key):
    def mutate(d):
        path_fn(d).pop(key, None)
    return mutate


csc = lambda d: _container(d)["securityContext"]  # noqa: E731
psc = lambda d: _pod(d)["securityContext"]  # noqa: E731

# (label, mutation, rule words the error must contain)
MUTATIONS = [
    ("hostNetwork", _set(_pod, "hostNetwork", True), "host namespaces"),
    ("hostPID", _set(_pod, "hostPID", True), "host namespaces"),
    ("hostIPC", _set(_pod, "hostIPC", True), "host namespaces"),
    ("hostUsers", _set(_pod, "hostUsers", True), "host namespaces"),
    ("pod hostProcess", _set(psc, "windowsOptions", {"hostProcess": True}), "HostProcess"),
    ("container hostProcess", _set(csc, "windowsOptions", {"hostProcess": True}), "HostProcess"),
    ("privileged", _set(csc, "privileged", True), "privileged"),
    ("allowPrivilegeEscalation true", _set(csc, "allowPrivilegeEscalation", True), "privilege escalation"),
    ("allowPrivilegeEscalation unset", _del(csc, "allowPrivilegeEscalation"), "privilege escalation"),
    ("capabilities not dropped", _set(csc, "capabilities", {"drop": ["NET_RAW"]}), "capabilities"),
    ("capability added", _set(csc, "capabilities", {"drop": ["ALL"], "add": ["SYS_ADMIN"]}), "capabilities"),
    ("NET_BIND_SERVICE added", _set(csc, "capabilities", {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
     "must not add capabilities"),
    ("seccomp unconfined", _set(csc, "seccompProfile", {"type": "Unconfined"}), "seccomp"),
    ("seccomp pod unconfined", _set(psc, "seccompProfile", {"type": "Unconfined"}), "seccomp"),
    ("seccomp unset everywhere", lambda d: (csc(d).pop("seccompProfile"), psc(d).pop("seccompProfile")), "seccomp"),
    ("seccomp annotation", lambda d: d["spec"]["template"]["metadata"]["annotations"].update(
        {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}), "seccomp"),
    ("runAsNonRoot false", _set(csc, "runAsNonRoot", False), "runAsNonRoot"),
    ("runAsNonRoot pod false", _set(psc, "runAsNonRoot", False), "runAsNonRoot"),
    ("runAsNonRoot unset", lambda d: (csc(d).pop("runAsNonRoot"), psc(d).pop("runAsNonRoot")), "runAsNonRoot"),
    ("runAsUser 0", _set(csc, "runAsUser", 0), "runAsUser"),
    ("runAsUser pod 0", lambda d: (psc(d).update(runAsUser=0), csc(d).pop("runAsUser")), "runAsUser"),
    ("runAsUser other", _set(csc, "runAsUser", 1000), "runAsUser"),
    ("runAsGroup 0", _set(csc, "runAsGroup", 0), "runAsGroup"),
    ("readOnlyRootFilesystem false", _set(csc, "readOnlyRootFilesystem", False), "readOnlyRootFilesystem"),
    ("readOnlyRootFilesystem unset", _del(csc, "readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
    ("token automounted", _set(_pod, "automountServiceAccountToken", True), "service account token"),
    ("token default", _del(_pod, "automountServiceAccountToken"), "service account token"),
    ("hostPath volume", _set(_pod, "volumes", [{"name": "h", "hostPath": {"path": "/"}}]), "hostPath volumes"),
    ("nfs volume", _set(_pod, "volumes", [{"name": "n", "nfs": {"server": "x", "path": "/"}}]), "volume types"),
    ("hostPort", lambda d: _container(d)["ports"][0].update(hostPort=8080), "host ports"),
    ("procMount", _set(csc, "procMount", "Unmasked"), "/proc mount"),
    ("SELinux type", _set(csc, "seLinuxOptions", {"type": "spc_t"}), "SELinux"),
    ("SELinux user", _set(psc, "seLinuxOptions", {"user": "system_u"}), "SELinux"),
    ("AppArmor field", _set(csc, "appArmorProfile", {"type": "Unconfined"}), "AppArmor"),
    ("AppArmor annotation", lambda d: d["spec"]["template"]["metadata"]["annotations"].update(
        {"container.apparmor.security.beta.kubernetes.io/wordcount": "unconfined"}), "AppArmor"),
    ("unsafe sysctl", _set(psc, "sysctls", [{"name": "kernel.msgmax", "value": "1"}]), "sysctls"),
    ("image by tag", _set(_container, "image", "ghcr.io/wordcount/wordcount:latest"), "image digest"),
    ("init container without context", lambda d: _pod(d).update(
        initContainers=[{"name": "init", "image": _container(d)["image"]}]), "initContainer 'init'"),
    ("ephemeral container privileged", lambda d: _pod(d).update(ephemeralContainers=[
        {"name": "debug", "image": _container(d)["image"], "securityContext": {**csc(d), "privileged": True}}]),
     "ephemeralContainer 'debug'"),
]


class PodSecurityTests(unittest.TestCase):
    def setUp(self):
        self.docs = raw_docs()
        self.good = find(self.docs, "Deployment", "wordcount-the")

    def test_committed_manifests_pass(self):
        self.assertEqual(validate.check_pod_security(self.docs), [])
        deployments = [d for _, d in self.docs if d["kind"] == "Deployment"]
        self.assertGreaterEqual(len(deployments), 4)

    def test_every_rule_catches_its_violation(self):
        for label, mutate, rule in MUTATIONS:
            with self.subTest(label):
                bad = copy.deepcopy(self.good)
                mutate(bad)
                errors = validate.check_pod_security([(Path("raw-yaml/x.yaml"), bad)])
                self.assertTrue(errors, f"{label}: no violation reported")
                self.assertTrue(all("raw-yaml/x.yaml: Deployment/wordcount-the: " in e for e in errors), errors)
                self.assertTrue(any(rule in e for e in errors), f"{label}: {rule!r} not in {errors}")

    def test_other_workload_kinds_are_checked(self):
        pod_spec = copy.deepcopy(_pod(self.good))
        pod_spec["hostNetwork"] = True
        meta = {"name": "x"}
        cases = {
            "Pod": {"kind": "Pod", "metadata": meta, "spec": pod_spec},
            "StatefulSet": {"kind": "StatefulSet", "metadata": meta, "spec": {"template": {"spec": pod_spec}}},
            "DaemonSet": {"kind": "DaemonSet", "metadata": meta, "spec": {"template": {"spec": pod_spec}}},
            "Job": {"kind": "Job", "metadata": meta, "spec": {"template": {"spec": pod_spec}}},
            "CronJob": {"kind": "CronJob", "metadata": meta,
                        "spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}},
        }
        for kind, doc in cases.items():
            with self.subTest(kind):
                errors = validate.check_pod_security([(Path("f.yaml"), doc)])
                self.assertTrue(any(f"{kind}/x: host namespaces" in e for e in errors), errors)


class SchemaStrictnessTest(unittest.TestCase):
    """kubernetes-validate must reject an unknown field (needs --strict)."""

    def test_unknown_field_is_rejected(self):
        tool = Path(sys.executable).with_name("kubernetes-validate")
        bad = copy.deepcopy(find(raw_docs(), "Deployment", "wordcount-the"))
        bad["spec"]["replicass"] = 2
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bad.yaml"
            path.write_text(yaml.safe_dump(bad))
            r = subprocess.run([str(tool), "-k", K8S_VERSION, "--strict", "--quiet", str(path)],
                               capture_output=True, text=True, check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("replicass", r.stdout + r.stderr)


class MockprodRenderTests(unittest.TestCase):
    IMAGE = "127.0.0.1:5000/wordcount@sha256:" + "ab" * 32

    def test_only_image_and_source_change(self):
        before, after, found = mockprod_render.render(RAW, self.IMAGE, ["the", "coffee"])
        self.assertEqual(sorted(found), ["coffee", "the"])
        a, b = before.splitlines(), after.splitlines()
        self.assertEqual(len(a), len(b))
        changed = [(x.strip(), y.strip()) for x, y in zip(a, b) if x != y]
        self.assertEqual(len(changed), 4, changed)
        for old, new in changed:
            self.assertIn((old.split(":")[0], new), [("image", f"image: {self.IMAGE}"),
                                                     ("value", "value: sample")])
        parsed = list(yaml.safe_load_all(after))
        self.assertEqual({d["kind"] for d in parsed}, {"Deployment"})
        for d in parsed:
            env = {e["name"]: e["value"] for e in _container(d)["env"]}
            self.assertEqual(env["SOURCE"], "sample")
            self.assertEqual(_container(d)["image"], self.IMAGE)

    def test_whole_folder_for_kind(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            words = mockprod_render.render_dir(RAW, self.IMAGE, out)
            self.assertEqual(sorted(words), sorted(i["word"] for i in generate.load_config()["instances"]))
            self.assertEqual(sorted(p.name for p in out.iterdir()), sorted(p.name for p in RAW.glob("*.yaml")))
            before = [d for _, d in raw_docs()]
            after = [d for _, d in validate.load_documents(sorted(out.glob("*.yaml")))]
        self.assertEqual(len(before), len(after))
        for b, a in zip(before, after):
            if b["kind"] == "Deployment":
                b = copy.deepcopy(b)
                _container(b)["image"] = self.IMAGE
                for e in _container(b)["env"]:
                    if e["name"] == "SOURCE":
                        e["value"] = "sample"
            self.assertEqual(a, b)

    def test_unknown_word_is_refused(self):
        with self.assertRaisesRegex(mockprod_render.RenderError, "no Deployment .* for WORD ale"):
            mockprod_render.render(RAW, self.IMAGE, ["the", "ale"])

    def test_unexpected_layout_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            src = (RAW / "10-instance-tea.yaml").read_text()
            cases = {
                "second image": src.replace("        imagePullPolicy:", "        image: other@sha256:x\n"
                                            "        imagePullPolicy:", 1),
                "source not bigquery": src.replace("value: bigquery", "value: file"),
            }
            for label, text in cases.items():
                with self.subTest(label):
                    self.assertNotEqual(text, src)
                    (d / "x.yaml").write_text(text)
                    with self.assertRaises(mockprod_render.RenderError):
                        mockprod_render.render(d, self.IMAGE, ["tea"])


if __name__ == "__main__":
    unittest.main()
