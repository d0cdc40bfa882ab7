"""The chart installed on the real node, and what the tests read back from it:
pods as the API server reports them (a watch, so the termination state of a
pod that is gone is still known), metrics scraped from each pod or through the
Service, `kubectl` as users run it."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.chart.helm import CHART, Helm, set_args
from tests.chart.kube import Kube, Obj, wait_for
from tests.chart.node.node import Node
from tests.chart.test_install import restricted_namespace

RELEASE = "orders"
NAME = f"{RELEASE}-consumer"
#: The Service's selector: the release's consumer pods (not its `helm test` pod).
SELECTOR = f"app.kubernetes.io/name=consumer,app.kubernetes.io/instance={RELEASE}"
IMAGE_VALUES = {"image.repository": "consumer", "image.tag": "test",
                "image.pullPolicy": "Never"}
# Two shared cores: ask for little, keep the chart's limits.
RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"},
             "limits": {"cpu": "1", "memory": "512Mi"}}


@dataclass
class Release:
    """One `helm install` of the chart in its own restricted namespace."""

    node: Node
    helm: Helm
    ns: str
    installed: str = ""  # helm install's output, notes included

    @classmethod
    def install(cls, node: Node, helm: Helm, ns: str, values: dict[str, Any]) -> Release:
        restricted_namespace(node.kube, ns)
        out = helm.run("install", RELEASE, str(CHART), "-n", ns, "--wait", "--timeout", "240s",
                       *set_args({**IMAGE_VALUES, "resources": RESOURCES, **values}))
        assert "STATUS: deployed" in out.stdout, out.stdout
        return cls(node, helm, ns, out.stdout)

    @property
    def kube(self) -> Kube:
        return self.node.kube

    def upgrade(self, values: dict[str, Any]) -> str:
        return self.helm.run("upgrade", RELEASE, str(CHART), "-n", self.ns, "--reuse-values",
                             "--wait", "--timeout", "240s", *set_args(values)).stdout

    def uninstall(self) -> None:
        self.helm.run("uninstall", RELEASE, "-n", self.ns, "--wait", "--timeout", "120s")

    def kubectl(self, *args: str) -> str:
        return kubectl(self.node, "-n", self.ns, *args)

    def pods(self) -> list[Obj]:
        """The release's pods that are not terminating."""
        return [p for p in self.kube.items(f"/api/v1/namespaces/{self.ns}/pods", SELECTOR)
                if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, count: int) -> list[Obj] | None:
        """Exactly `count` pods, all Ready, and nothing terminating; else None."""
        pods = self.kube.items(f"/api/v1/namespaces/{self.ns}/pods", SELECTOR)
        if len(pods) != count or not all(ready(p) for p in pods):
            return None
        return pods

    def wait_ready(self, count: int, timeout: float = 180) -> list[Obj]:
        return wait_for(lambda: self.ready_pods(count), timeout, f"{count} pods Ready")

    def balanced(self, count: int, partitions: int) -> list[Obj] | None:
        """The `count` Ready pods once the group has settled: each owns some of
        the `partitions`, together all of them; else None."""
        pods = self.ready_pods(count)
        if pods is None:
            return None
        owned = [metric(scrape(p) or "", "consumer_assigned_partitions") for p in pods]
        return pods if sum(owned) == partitions and all(owned) else None

    def wait_balanced(self, count: int, partitions: int, timeout: float = 180) -> list[Obj]:
        return wait_for(lambda: self.balanced(count, partitions), timeout,
                        f"{count} pods Ready sharing {partitions} partitions")

    def service_ip(self) -> str:
        ip: str = self.kube.get(f"/api/v1/namespaces/{self.ns}/services/{NAME}")["spec"][
            "clusterIP"]
        return ip


def kubectl(node: Node, *args: str) -> str:
    proc = subprocess.run([str(node.tool("kubectl")), f"--kubeconfig={node.kubeconfig}", *args],
                          capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    """GET `url`: (status, body); (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            if all(w in head for w in wanted):
                total += float(value)
    return total


def scrape(pod: Obj, port: int = 8080) -> str | None:
    """/metrics straight from the pod's IP (the host routes the pod range)."""
    ip = pod["status"].get("podIP")
    if not ip:
        return None
    status, body = get(f"http://{ip}:{port}/metrics", timeout=2)
    return body if status == 200 else None


@dataclass
class Termination:
    """How a pod's container ended, from the last status the API server had."""

    name: str
    exit_code: int
    reason: str
    drain_seconds: float  # SIGTERM (deletion) to exit, by the API's whole seconds
    grace_seconds: int
    observed_seconds: float  # the same, by when the watch saw each (sub-second)


@dataclass
class PodWatch:
    """Records every version of the namespace's pods from `start()` on: the
    last one of a deleted pod carries its container's termination state."""

    kube: Kube
    ns: str
    last: dict[str, Obj] = field(default_factory=dict)
    deleting: dict[str, Obj] = field(default_factory=dict)  # first version marked deleted
    deleted: set[str] = field(default_factory=set)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)  # (uid, what) -> time
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PodWatch:
        listing = self.kube.get(f"/api/v1/namespaces/{self.ns}/pods")
        for pod in listing["items"]:
            self.last[pod["metadata"]["uid"]] = pod
        version = listing["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._follow, args=(version,), daemon=True)
        self._thread.start()
        return self

    def _follow(self, version: str) -> None:
        url = (f"{self.kube.server}/api/v1/namespaces/{self.ns}/pods?watch=1"
               f"&resourceVersion={version}&timeoutSeconds=900")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.kube.token}"})
        context = ssl.create_default_context(cafile=str(self.kube.cafile))
        with urllib.request.urlopen(req, context=context, timeout=900) as stream:
            for line in stream:
                event = json.loads(line)
                pod = event["object"]
                with self._lock:
                    uid = pod["metadata"]["uid"]
                    self.last[uid] = pod
                    if pod["metadata"].get("deletionTimestamp"):
                        self.deleting.setdefault(uid, pod)
                        self.seen.setdefault((uid, "deleting"), time.monotonic())
                    if any(s["state"].get("terminated")
                           for s in pod["status"].get("containerStatuses", [])):
                        self.seen.setdefault((uid, "terminated"), time.monotonic())
                    if event["type"] == "DELETED":
                        self.deleted.add(pod["metadata"]["uid"])

    def gone(self, uids: set[str], timeout: float = 120) -> None:
        wait_for(lambda: uids <= self.deleted, timeout, f"pods {sorted(uids)} deleted")

    def termination(self, uid: str) -> Termination:
        with self._lock:
            pod, deleting = self.last[uid], self.deleting[uid]
        meta = pod["metadata"]
        statuses = pod["status"].get("containerStatuses", [])
        assert statuses, f"no container status for {meta['name']}"
        term = statuses[0]["state"].get("terminated")
        assert term, f"{meta['name']}: last state {statuses[0]['state']}, not terminated"
        # When deletion was asked for, deletionTimestamp was set to that time
        # plus the grace period (the kubelet's final delete later sets 0).
        grace = int(deleting["metadata"]["deletionGracePeriodSeconds"])
        sigterm = _time(deleting["metadata"]["deletionTimestamp"]).timestamp() - grace
        observed = self.seen[uid, "terminated"] - self.seen[uid, "deleting"]
        return Termination(meta["name"], term["exitCode"], term.get("reason", ""),
                           _time(term["finishedAt"]).timestamp() - sigterm, grace, observed)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
