#!/usr/bin/env python3
"""Policy checks for raw-yaml/ that schema validation cannot express.

    validate.py --k8s-version 1.33.0 FILE...

1. apiVersion/kind allow-list: every object must be one of ALLOWED, and every
   entry of ALLOWED must be served by that Kubernetes version (checked against
   the OpenAPI definitions bundled with kubernetes-validate, which only warns
   about unknown kinds itself).
2. Pod security: every pod template (Deployment, StatefulSet, DaemonSet,
   ReplicaSet, Job, CronJob, Pod) must meet the Pod Security Standards
   "restricted" profile, every baseline control included, and this project's
   stricter rules (uid/gid 65532, read-only root, no service account token,
   image by digest). Each violation names the file, the object and the rule.

Runs with the manifests venv's Python (PyYAML comes with kubernetes-validate).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

# What raw-yaml/ may contain: GA APIs only, so an upgrade never silently
# drops one of our objects. Adding a kind is a reviewed change here.
ALLOWED = {
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"),
}

UID = 65532

# Pod Security Standards (v1.33), https://kubernetes.io/docs/concepts/security/pod-security-standards/
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")


def load_documents(paths: list[Path]) -> list[tuple[Path, dict]]:
    docs = []
    for path in paths:
        with path.open() as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    docs.append((path, doc))
    return docs


def served_kinds(k8s_version: str) -> set[tuple[str, str]]:
    import kubernetes_validate

    defs_file = (Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
                 / f"v{k8s_version}-local-strict" / "_definitions.json")
    if not defs_file.is_file():
        raise SystemExit(f"validate: no schemas for Kubernetes {k8s_version} in kubernetes-validate")
    defs = json.loads(defs_file.read_text())["$defs"]
    served = set()
    for definition in defs.values():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            served.add((api, gvk["kind"]))
    return served


def check_kinds(docs, served: set[tuple[str, str]]) -> list[str]:
    errors = []
    for entry in sorted(ALLOWED - served):
        errors.append(f"allow-list: {entry[0]} {entry[1]} is not served by this Kubernetes version")
    for path, doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key not in ALLOWED:
            errors.append(f"{path}: {name_of(doc)}: apiVersion/kind {key[0]} {key[1]} is not in the allow-list")
    return errors


def name_of(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def pod_spec_of(doc: dict) -> dict | None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}:
        return (spec.get("template") or {}).get("spec") or {}
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def pod_annotations_of(doc: dict) -> dict:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        meta = doc.get("metadata") or {}
    elif kind == "CronJob":
        meta = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
    else:
        meta = (spec.get("template") or {}).get("metadata") or {}
    return meta.get("annotations") or {}


def check_pod(spec: dict, annotations: dict) -> list[str]:
    """Violations of one pod spec, each '<rule>: <detail>'."""
    v: list[str] = []
    psc = spec.get("securityContext") or {}
    containers = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(field) or []:
            containers.append((f"{field[:-1]} {c.get('name')!r}", c))
    if not spec.get("containers"):
        v.append("containers: pod template has no containers")

    # --- baseline ------------------------------------------------------
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            v.append(f"host namespaces: {field} must be unset or false")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        v.append("HostProcess: pod securityContext.windowsOptions.hostProcess must not be true")
    for vol in spec.get("volumes") or []:
        if "hostPath" in vol:
            v.append(f"hostPath volumes: volume {vol.get('name')!r} is a hostPath")
        types = set(vol) - {"name"}
        bad = types - RESTRICTED_VOLUME_TYPES
        if bad:
            v.append(f"volume types: volume {vol.get('name')!r} uses {sorted(bad)} (restricted allows "
                     f"{sorted(RESTRICTED_VOLUME_TYPES)})")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            v.append(f"sysctls: {sysctl.get('name')!r} is not in the safe set")
    v += _selinux("pod", psc.get("seLinuxOptions"))
    v += _apparmor("pod", psc.get("appArmorProfile"))
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            if not (value == "runtime/default" or str(value).startswith("localhost/")):
                v.append(f"AppArmor: annotation {key}={value!r} must be runtime/default or localhost/*")
        if key.startswith("seccomp.security.alpha.kubernetes.io/") or \
                key.startswith("container.seccomp.security.alpha.kubernetes.io/"):
            v.append(f"seccomp: deprecated seccomp annotation {key} is not allowed")

    # --- restricted: pod level -----------------------------------------
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:
        v.append(f"seccomp: pod seccompProfile.type {pod_seccomp!r} must be RuntimeDefault or Localhost")
    if psc.get("runAsNonRoot") is False:
        v.append("runAsNonRoot: pod securityContext.runAsNonRoot must not be false")
    if psc.get("runAsUser") == 0:
        v.append("runAsUser: pod securityContext.runAsUser must not be 0")

    # --- beyond restricted: pod level -----------------------------------
    if spec.get("automountServiceAccountToken") is not False:
        v.append("service account token: pod automountServiceAccountToken must be false")
    if spec.get("hostUsers") is True:
        v.append("host namespaces: hostUsers must not be true")

    for label, c in containers:
        csc = c.get("securityContext") or {}
        # baseline
        if csc.get("privileged"):
            v.append(f"privileged: {label} must not be privileged")
        if (csc.get("windowsOptions") or {}).get("hostProcess"):
            v.append(f"HostProcess: {label} windowsOptions.hostProcess must not be true")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                v.append(f"host ports: {label} port {port.get('name') or port.get('containerPort')} "
                         f"sets hostPort {port['hostPort']}")
        if csc.get("procMount") not in (None, "Default"):
            v.append(f"/proc mount: {label} procMount must be Default")
        v += _selinux(label, csc.get("seLinuxOptions"))
        v += _apparmor(label, csc.get("appArmorProfile"))
        # restricted
        if csc.get("allowPrivilegeEscalation") is not False:
            v.append(f"privilege escalation: {label} allowPrivilegeEscalation must be false")
        caps = csc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"capabilities: {label} must drop ALL")
        added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            v.append(f"capabilities: {label} may add only NET_BIND_SERVICE, adds {sorted(added)}")
        if caps.get("add"):
            # beyond restricted: the service binds unprivileged ports only.
            v.append(f"capabilities: {label} must not add capabilities")
        seccomp = (csc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in SECCOMP_OK:
            v.append(f"seccomp: {label} needs seccompProfile.type RuntimeDefault or Localhost "
                     f"(pod or container), has {seccomp!r}")
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            v.append(f"runAsNonRoot: {label} must run with runAsNonRoot true (pod or container)")
        if csc.get("runAsUser") == 0:
            v.append(f"runAsUser: {label} runAsUser must not be 0")
        # beyond restricted
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        if uid != UID:
            v.append(f"runAsUser: {label} must run as uid {UID}, has {uid!r}")
        if gid != UID:
            v.append(f"runAsGroup: {label} must run as gid {UID}, has {gid!r}")
        if csc.get("readOnlyRootFilesystem") is not True:
            v.append(f"readOnlyRootFilesystem: {label} must have a read-only root filesystem")
        if not DIGEST_RE.search(str(c.get("image", ""))):
            v.append(f"image digest: {label} image {c.get('image')!r} must be referenced by @sha256 digest")
    return v


def _selinux(where: str, opts: dict | None) -> list[str]:
    if not opts:
        return []
    v = []
    if opts.get("type", "") not in SELINUX_TYPES:
        v.append(f"SELinux: {where} seLinuxOptions.type {opts.get('type')!r} is not allowed")
    for field in ("user", "role"):
        if opts.get(field):
            v.append(f"SELinux: {where} seLinuxOptions.{field} must be unset")
    return v


def _apparmor(where: str, profile: dict | None) -> list[str]:
    if profile and profile.get("type") == "Unconfined":
        return [f"AppArmor: {where} appArmorProfile.type must not be Unconfined"]
    return []


def check_pod_security(docs) -> list[str]:
    errors = []
    for path, doc in docs:
        spec = pod_spec_of(doc)
        if spec is None:
            continue
        for problem in check_pod(spec, pod_annotations_of(doc)):
            errors.append(f"{path}: {name_of(doc)}: {problem}")
    return errors


def check_all(paths: list[Path], k8s_version: str) -> tuple[list[str], int]:
    docs = load_documents(paths)
    errors = check_kinds(docs, served_kinds(k8s_version))
    errors += check_pod_security(docs)
    return errors, len(docs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-version", required=True)
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args(argv)
    errors, count = check_all(args.files, args.k8s_version)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"validate: {len(errors)} violation(s)", file=sys.stderr)
        return 1
    pods = sum(1 for _, d in load_documents(args.files) if pod_spec_of(d) is not None)
    print(f"validate: {count} objects use allowed GA APIs of Kubernetes {args.k8s_version}; "
          f"{pods} pod templates meet the restricted profile and the project's rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
