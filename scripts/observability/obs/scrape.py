"""scrape, manifests: the scrape relabelling and the Deployments' side of the scrape contract."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import yaml

from obs.common import OBS, PROMETHEUS_YML, ROOT, run, tool

# --- scrape ------------------------------------------------------------------------

def fake_pod(ip, port, port_name, ns, pod, instance, phase="Running", name="wordcount"):
    return {"targets": [f"{ip}:{port}"], "labels": {
        "__meta_kubernetes_namespace": ns,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_container_name": "wordcount",
        "__meta_kubernetes_pod_container_port_name": port_name,
        "__meta_kubernetes_pod_container_port_number": str(port),
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": name,
        "__meta_kubernetes_pod_label_app_kubernetes_io_instance": instance,
    }}


def check_scrape() -> list[str]:
    errors = []
    cfg = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    job = jobs.get("wordcount")
    if not job:
        return ["prometheus.yml: no job_name wordcount (the rules select up{job=\"wordcount\"})"]
    # Debian's promtool is built without the kubernetes SD plugin, so the
    # discovery block is checked here and replaced by file_sd below; the
    # relabel_configs, which do all the work, run unchanged in promtool.
    sd = job.get("kubernetes_sd_configs") or []
    if len(sd) != 1 or sd[0].get("role") != "pod":
        errors.append("prometheus.yml: wordcount job must use one kubernetes_sd_configs entry with role: pod")
    elif {"role": "pod", "label": "app.kubernetes.io/name=wordcount"} not in sd[0].get("selectors", []):
        errors.append("prometheus.yml: the pod selector app.kubernetes.io/name=wordcount is missing")
    if errors:
        return errors
    with tempfile.TemporaryDirectory() as tmp:
        targets = [
            fake_pod("10.8.0.12", 8080, "http", "wordcount", "wordcount-the-7d9f8b6c5-2xq4p", "the"),
            fake_pod("10.8.0.12", 9090, "admin", "wordcount", "wordcount-the-7d9f8b6c5-2xq4p", "the"),
            fake_pod("10.8.0.44", 9090, "admin", "wordcount", "wordcount-coffee-7c6b5d4f8-z8v1n", "coffee"),
            fake_pod("10.8.0.45", 9090, "admin", "wordcount", "wordcount-coffee-7c6b5d4f8-old00", "coffee", phase="Succeeded"),
        ]
        (Path(tmp) / "pods.json").write_text(json.dumps(targets))
        test_cfg = copy.deepcopy(cfg)
        test_cfg.pop("rule_files", None)  # checked by `promtool check rules`
        for j in test_cfg["scrape_configs"]:
            if j.pop("kubernetes_sd_configs", None) is not None:
                j["file_sd_configs"] = [{"files": [str(Path(tmp) / "pods.json")]}]
        cfg_path = Path(tmp) / "prometheus.yml"
        cfg_path.write_text(yaml.safe_dump(test_cfg))
        r = run([tool("promtool"), "check", "config", str(cfg_path)])
        if r.returncode != 0:
            return [f"promtool check config: {r.stdout}{r.stderr}"]
        r = run([tool("promtool"), "check", "service-discovery", "--timeout=10s", str(cfg_path), "wordcount"])
        if r.returncode != 0:
            return [f"promtool check service-discovery: {r.stdout}{r.stderr}"]
        got = sorted(
            ({k: v for k, v in t["labels"].items() if not k.startswith("__")} for t in json.loads(r.stdout)
             if t["labels"]),
            key=lambda l: l["instance"],
        )
    want = [
        {"instance": "10.8.0.12:9090", "job": "wordcount", "namespace": "wordcount",
         "pod": "wordcount-the-7d9f8b6c5-2xq4p", "word": "the"},
        {"instance": "10.8.0.44:9090", "job": "wordcount", "namespace": "wordcount",
         "pod": "wordcount-coffee-7c6b5d4f8-z8v1n", "word": "coffee"},
    ]
    if got != want:
        errors.append(f"relabelling: got targets {json.dumps(got)}\n  want {json.dumps(want)}")

    # The operator flavours must state the same contract.
    gmp = yaml.safe_load((OBS / "kubernetes" / "podmonitoring.yaml").read_text())
    spec = gmp["spec"]
    if gmp.get("apiVersion") != "monitoring.googleapis.com/v1" or gmp.get("kind") != "PodMonitoring":
        errors.append("podmonitoring.yaml: expected monitoring.googleapis.com/v1 PodMonitoring")
    if gmp["metadata"].get("name") != "wordcount":
        errors.append("podmonitoring.yaml: name must be wordcount (Managed Prometheus uses it as the job label)")
    if spec["selector"].get("matchLabels") != {"app.kubernetes.io/name": "wordcount"}:
        errors.append("podmonitoring.yaml: selector must be app.kubernetes.io/name=wordcount")
    if [(e.get("port"), e.get("path", "/metrics")) for e in spec["endpoints"]] != [("admin", "/metrics")]:
        errors.append("podmonitoring.yaml: must scrape port admin at /metrics, only")
    if {"from": "app.kubernetes.io/instance", "to": "word"} not in spec.get("targetLabels", {}).get("fromPod", []):
        errors.append("podmonitoring.yaml: targetLabels.fromPod must map app.kubernetes.io/instance to word")
    if "pod" not in spec.get("targetLabels", {}).get("metadata", []):
        errors.append("podmonitoring.yaml: targetLabels.metadata must include pod")
    pm = yaml.safe_load((OBS / "kubernetes" / "podmonitor.yaml").read_text())
    pspec = pm["spec"]
    if pm.get("apiVersion") != "monitoring.coreos.com/v1" or pm.get("kind") != "PodMonitor":
        errors.append("podmonitor.yaml: expected monitoring.coreos.com/v1 PodMonitor")
    if pspec.get("jobLabel") != "app.kubernetes.io/name":
        errors.append("podmonitor.yaml: jobLabel must be app.kubernetes.io/name (job=\"wordcount\")")
    if pspec["selector"].get("matchLabels") != {"app.kubernetes.io/name": "wordcount"}:
        errors.append("podmonitor.yaml: selector must be app.kubernetes.io/name=wordcount")
    eps = pspec["podMetricsEndpoints"]
    if [(e.get("port"), e.get("path", "/metrics")) for e in eps] != [("admin", "/metrics")]:
        errors.append("podmonitor.yaml: must scrape port admin at /metrics, only")
    relabel = {"sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"], "targetLabel": "word"}
    if not any(all(r.get(k) == v for k, v in relabel.items()) for r in eps[0].get("relabelings", [])):
        errors.append("podmonitor.yaml: relabelings must copy app.kubernetes.io/instance to word")
    return errors


# --- manifests contract ------------------------------------------------------------------

def check_manifests() -> list[str]:
    raw = ROOT / "raw-yaml"
    if not raw.is_dir():
        print("manifests: raw-yaml/ does not exist yet, contract not checked")
        return []
    errors, seen, scrape_allowed = [], 0, set()
    for f in sorted(raw.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "NetworkPolicy":
                for rule in doc["spec"].get("ingress", []):
                    if any(p.get("port") in (9090, "admin") for p in rule.get("ports", [])):
                        for peer in rule.get("from", []):
                            ns = (peer.get("namespaceSelector") or {}).get("matchLabels", {})
                            scrape_allowed.add(ns.get("kubernetes.io/metadata.name"))
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            tmpl = doc["spec"]["template"]
            labels = tmpl["metadata"].get("labels", {})
            if labels.get("app.kubernetes.io/name") != "wordcount":
                continue
            seen += 1
            where = f"{f.relative_to(ROOT)}: Deployment {doc['metadata']['name']}"
            containers = {c["name"]: c for c in tmpl["spec"]["containers"]}
            c = containers.get("wordcount")
            if not c:
                errors.append(f"{where}: no container named wordcount (kube-state-metrics/cAdvisor alerts select container=\"wordcount\")")
                continue
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if labels.get("app.kubernetes.io/instance") != env.get("WORD"):
                errors.append(f"{where}: pod label app.kubernetes.io/instance={labels.get('app.kubernetes.io/instance')!r}"
                              f" must equal WORD={env.get('WORD')!r} (it becomes the `word` label)")
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            if "admin" not in ports:
                errors.append(f"{where}: container port named admin missing (the scrape configs select it)")
    if seen == 0:
        errors.append("raw-yaml/: no Deployment with pod label app.kubernetes.io/name=wordcount")
    # GMP's collectors run in gmp-system; prometheus.yml's Prometheus in monitoring.
    for ns in ("gmp-system", "monitoring"):
        if ns not in scrape_allowed:
            errors.append(f"raw-yaml/: no NetworkPolicy admits the admin port (9090) from namespace {ns}")
    print(f"manifests: {seen} wordcount Deployments honour the scrape contract" if not errors else "")
    return errors
