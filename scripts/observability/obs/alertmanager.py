"""routes, inhibit: Alertmanager routing and inhibition, the latter against a real Alertmanager."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from obs.common import ALERTMANAGER_YML, SEVERITY_RECEIVER, load_rule_groups, run, tool

# --- alertmanager ------------------------------------------------------------------------

def alerts_with_severity() -> list[tuple[str, str]]:
    return [(r["alert"], r.get("labels", {}).get("severity", "")) for _, r in load_rule_groups() if "alert" in r]


def check_routes() -> list[str]:
    errors = []
    r = run([tool("amtool"), "check-config", str(ALERTMANAGER_YML)])
    if r.returncode != 0:
        return [f"amtool check-config: {r.stdout}{r.stderr}"]
    cases = [(a, {"alertname": a, "severity": s, "namespace": "wordcount", "word": "the"}, SEVERITY_RECEIVER.get(s))
             for a, s in alerts_with_severity()]
    # an alert without severity still reaches people
    cases.append(("(no severity)", {"alertname": "Unlabelled", "namespace": "wordcount"}, "wordcount-ticket"))
    for name, labels, want in cases:
        r = run([tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}"]
                + [f"{k}={v}" for k, v in labels.items()])
        got = r.stdout.strip()
        if r.returncode != 0 or got != want:
            errors.append(f"routing {name}: got receiver {got!r}, want {want!r} {r.stderr.strip()}")
    return errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_inhibit() -> list[str]:
    """Post alerts to a real Alertmanager and read back which are inhibited."""
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = yaml.safe_load(ALERTMANAGER_YML.read_text())
        # Same routes and inhibit rules; receivers without integrations so the
        # test never tries to reach PagerDuty, Slack or SMTP.
        cfg["receivers"] = [{"name": r["name"]} for r in cfg["receivers"]]
        cfg["global"] = {"resolve_timeout": "5m"}
        (Path(tmp) / "am.yml").write_text(yaml.safe_dump(cfg))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [tool("prometheus-alertmanager"), f"--config.file={tmp}/am.yml", f"--storage.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "am.log", "w"), start_new_session=True)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=1).read()
                    break
                except (urllib.error.URLError, ConnectionError):
                    if proc.poll() is not None:
                        return [f"alertmanager exited: {(Path(tmp) / 'am.log').read_text()}"]
                    time.sleep(0.1)
            else:
                return ["alertmanager did not become ready in 10 s"]
            base = {"namespace": "wordcount"}
            alerts = {
                # SLO: page mutes the ticket tier of the same SLO and word only
                "fast-the": {"alertname": "WordcountAvailabilityFastBurn", "severity": "page", "slo": "availability", "word": "the"},
                "drain-the": {"alertname": "WordcountAvailabilityBudgetDrain", "severity": "ticket", "slo": "availability", "word": "the"},
                "latdrain-the": {"alertname": "WordcountLatencyBudgetDrain", "severity": "ticket", "slo": "latency", "word": "the"},
                "drain-tea": {"alertname": "WordcountAvailabilityBudgetDrain", "severity": "ticket", "slo": "availability", "word": "tea"},
                # no ready pod mutes the per-pod tickets of that word only
                "unavail-and": {"alertname": "WordcountInstanceUnavailable", "severity": "page", "word": "and"},
                "notready-and": {"alertname": "WordcountPodNotReady", "severity": "ticket", "word": "and", "pod": "wordcount-and-1"},
                "notready-tea": {"alertname": "WordcountPodNotReady", "severity": "ticket", "word": "tea", "pod": "wordcount-tea-1"},
                "stale-and": {"alertname": "WordcountDataStale", "severity": "ticket", "word": "and"},
            }
            want_inhibited = {"drain-the", "notready-and"}
            body = json.dumps([{"labels": {**base, **l}} for l in alerts.values()]).encode()
            req = urllib.request.Request(f"{url}/api/v2/alerts", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=5).read()
            got = json.loads(urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5).read())
            by_labels = {json.dumps(a["labels"], sort_keys=True): a for a in got}
            for key, labels in alerts.items():
                a = by_labels.get(json.dumps({**base, **labels}, sort_keys=True))
                if a is None:
                    errors.append(f"inhibit: alert {key} not found in Alertmanager")
                    continue
                inhibited = bool(a["status"]["inhibitedBy"])
                if inhibited != (key in want_inhibited):
                    errors.append(f"inhibit: {key} inhibited={inhibited}, want {key in want_inhibited}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    return errors
