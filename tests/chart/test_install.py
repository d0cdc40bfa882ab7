"""`helm install / upgrade / uninstall` on a real API server (see control_plane.py).

Each test gets a namespace that enforces the restricted Pod Security Standard,
so the API server itself refuses a pod that is not locked down.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.control_plane import NODE
from tests.chart.helm import CHART, Helm, set_args
from tests.chart.kube import Kube, KubeError, Obj, wait_for

RELEASE = "orders"
NAME = f"{RELEASE}-consumer"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
WAIT = ("--wait", "--timeout", "180s")
SINK = {"sink.url": "postgresql://consumer:s3cret@postgres/events"}
#: Where each kind lives, for "nothing is left after uninstall".
KINDS = {
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    "ReplicaSet": "/apis/apps/v1/namespaces/{ns}/replicasets",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
}
OPERATOR_KINDS = {
    "ScaledObject": "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects",
    "TriggerAuthentication": "/apis/keda.sh/v1alpha1/namespaces/{ns}/triggerauthentications",
    "ServiceMonitor": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors",
    "PrometheusRule": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules",
}
ALL_KINDS = {**KINDS, **OPERATOR_KINDS}


def restricted_namespace(kube: Kube, name: str) -> str:
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted"
              for mode in ("enforce", "warn", "audit")}
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": name, "labels": labels}})
    wait_for(lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60,
             f"namespace {name}")
    return name


def settled(kube: Kube, ns: str, count: int, checksum: str) -> list[Obj] | None:
    """The release's pods once exactly `count` run the template with `checksum`."""
    pods = kube.items(f"/api/v1/namespaces/{ns}/pods", SELECTOR)
    if len(pods) != count:
        return None
    for pod in pods:
        if (pod["metadata"].get("deletionTimestamp") or pod["status"].get("phase") != "Running"
                or pod["metadata"]["annotations"]["checksum/config"] != checksum):
            return None
    return pods


def workload_of(kube: Kube, ns: str) -> Obj:
    found = [kube.get(ALL_KINDS[kind].format(ns=ns) + f"/{NAME}")
             for kind in ("Deployment", "StatefulSet")
             if kube.items(ALL_KINDS[kind].format(ns=ns), SELECTOR)]
    assert len(found) == 1
    return found[0]


def checksum_of(workload: Obj) -> str:
    value: str = workload["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    return value


def status(helm: Helm, ns: str) -> Obj:
    info: Obj = json.loads(helm.run("status", RELEASE, "-n", ns, "-o", "json").stdout)
    return info


def leftovers(kube: Kube, ns: str, kinds: dict[str, str]) -> list[str]:
    found = []
    for kind, path in kinds.items():
        for item in kube.items(path.format(ns=ns), SELECTOR):
            found.append(f"{kind}/{item['metadata']['name']}")
    return found


def install(helm: Helm, kube: Kube, ns: str, values: dict[str, Any], replicas: int) -> str:
    """`helm install --wait`: deployed, every rendered object on the server, the
    pods Running on the simulated node. Returns helm's output."""
    installed = helm.run("install", RELEASE, str(CHART), "-n", ns, *WAIT, *set_args(values))
    assert "STATUS: deployed" in installed.stdout
    assert status(helm, ns)["info"]["status"] == "deployed"
    manifest = helm.run("get", "manifest", RELEASE, "-n", ns).stdout
    for obj in (m for m in yaml.safe_load_all(manifest) if m):
        path = ALL_KINDS[obj["kind"]].format(ns=ns)
        assert kube.get(f"{path}/{obj['metadata']['name']}")["kind"] == obj["kind"]
    checksum = checksum_of(workload_of(kube, ns))
    pods = wait_for(lambda: settled(kube, ns, replicas, checksum), 60, "pods Running")
    assert {p["spec"]["nodeName"] for p in pods} == {NODE}
    return installed.stdout


def upgrade_rolls(helm: Helm, kube: Kube, ns: str, replicas: int) -> None:
    """A changed setting reaches the ConfigMap and replaces every pod."""
    before = checksum_of(workload_of(kube, ns))
    helm.run("upgrade", RELEASE, str(CHART), "-n", ns, "--reuse-values", *WAIT,
             *set_args({"config.concurrency": 64}))
    after = checksum_of(workload_of(kube, ns))
    assert after != before
    wait_for(lambda: settled(kube, ns, replicas, after), 90, "the rollout")
    config = kube.get(f"/api/v1/namespaces/{ns}/configmaps/{NAME}")["data"]
    assert config["CONSUMER_CONCURRENCY"] == "64"
    assert status(helm, ns)["version"] == 2


def bad_value_refused(helm: Helm, ns: str, values: dict[str, Any], message: str) -> None:
    """The schema refuses the upgrade; the release stays as it was."""
    before = status(helm, ns)["version"]
    refused = helm.run("upgrade", RELEASE, str(CHART), "-n", ns, "--reuse-values", *WAIT,
                       *set_args(values), check=False)
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr
    after = status(helm, ns)
    assert (after["version"], after["info"]["status"]) == (before, "deployed")


def uninstall_removes_everything(helm: Helm, kube: Kube, ns: str, kinds: dict[str, str]) -> None:
    helm.run("uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "120s")
    wait_for(lambda: not leftovers(kube, ns, kinds), 90, "everything removed")
    assert json.loads(helm.run("list", "-n", ns, "-a", "-o", "json").stdout) == []


def test_install_upgrade_uninstall(cluster_helm: Helm, kube: Kube) -> None:
    ns = restricted_namespace(kube, "chart-defaults")
    # The namespace really enforces the restricted standard the chart's pods pass.
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
             "spec": {"containers": [{"name": "c", "image": "consumer:0.1.0"}]}}
    with pytest.raises(KubeError, match="violates PodSecurity"):
        kube.create(f"/api/v1/namespaces/{ns}/pods", plain)
    installed = install(cluster_helm, kube, ns, {**SINK, "replicaCount": 2}, replicas=2)
    print(installed)
    notes = installed[installed.index("NOTES:"):]
    # Where events go (never the password), how to check and watch the pods.
    assert "postgresql://postgres/events" in notes
    assert "s3cret" not in notes
    assert f"helm test {RELEASE} -n {ns}" in notes
    assert f"kubectl -n {ns} port-forward svc/{NAME} 8080:8080" in notes
    assert "consumer top http://localhost:8080" in notes
    assert "WARNING" not in notes
    assert workload_of(kube, ns)["kind"] == "Deployment"
    upgrade_rolls(cluster_helm, kube, ns, replicas=2)
    bad_value_refused(cluster_helm, ns, {"config.ordering": "random"}, "/config/ordering")
    uninstall_removes_everything(cluster_helm, kube, ns, KINDS)


def install_crds(kube: Kube, path: Path) -> list[str]:
    names = []
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd:
            continue
        try:
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except KubeError as exc:
            if exc.status != 409:  # already there from an earlier run in this session
                raise
        names.append(crd["metadata"]["name"])
    for name in names:
        wait_for(partial(_established, kube, name), 60, f"CRD {name} established")
    return names


def _established(kube: Kube, name: str) -> bool:
    crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    return any(c["type"] == "Established" and c["status"] == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])  # null at first


def test_install_with_keda_and_prometheus_operator(cluster_helm: Helm, kube: Kube,
                                                   tools: dict[str, Path]) -> None:
    crds = install_crds(kube, tools["keda-crds"] / "crds.yaml")
    crds += install_crds(kube, tools["prometheus-operator-crds"] / "crds.yaml")
    assert {"scaledobjects.keda.sh", "servicemonitors.monitoring.coreos.com",
            "prometheusrules.monitoring.coreos.com"} <= set(crds)
    ns = restricted_namespace(kube, "chart-operators")
    # The brokers' CA, as a platform team would provide it.
    kube.create(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-tls"},
        "stringData": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}})
    values = {**SINK, "keda.enabled": True, "kafka.partitions": 4,
              "metrics.serviceMonitor.enabled": True, "metrics.prometheusRule.enabled": True,
              "staticMembership.enabled": True, "networkPolicy.enabled": True,
              "dashboard.enabled": True, "kafka.security.protocol": "SASL_SSL",
              "kafka.security.sasl.mechanism": "SCRAM-SHA-512",
              "kafka.security.sasl.username": "consumer",
              "kafka.security.sasl.password": "s3cret",
              "kafka.security.tls.secretName": "kafka-tls"}
    # Without a KEDA operator the StatefulSet keeps the API default of one replica.
    install(cluster_helm, kube, ns, values, replicas=1)
    scaled = kube.get(OPERATOR_KINDS["ScaledObject"].format(ns=ns) + f"/{NAME}")["spec"]
    assert scaled["maxReplicaCount"] == 4
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                        "name": NAME}
    auth = kube.get(OPERATOR_KINDS["TriggerAuthentication"].format(ns=ns) + f"/{NAME}-kafka")
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {
        "username", "password", "ca"}
    rules = kube.get(OPERATOR_KINDS["PrometheusRule"].format(ns=ns) + f"/{NAME}")["spec"]
    assert rules["groups"]
    upgrade_rolls(cluster_helm, kube, ns, replicas=1)
    bad_value_refused(cluster_helm, ns, {"keda.maxReplicaCount": 0}, "/keda/maxReplicaCount")
    uninstall_removes_everything(cluster_helm, kube, ns, ALL_KINDS)


def test_install_refuses_what_would_lose_events(cluster_helm: Helm, kube: Kube) -> None:
    """The default values name no sink; an existing Secret must hold one; SQLite
    needs a claim per pod. Each is refused before anything is created."""
    ns = restricted_namespace(kube, "chart-refusals")
    kube.create(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "no-sink"},
        "stringData": {"CONSUMER_SASL_USERNAME": "consumer"}})
    for values, message in [
        ({}, "sink.url: say where events are stored"),
        ({"existingSecret": "no-sink"}, "existingSecret: Secret no-sink has no key "
                                        "CONSUMER_SINK_URL"),
        ({"sink.url": "sqlite:///consumer.db"}, "/persistence/enabled"),
    ]:
        refused = cluster_helm.run("install", RELEASE, str(CHART), "-n", ns, *set_args(values),
                                   check=False)
        print(f"$ helm install {RELEASE} helm/consumer {' '.join(set_args(values))}\n"
              f"{refused.stdout}{refused.stderr}")
        assert refused.returncode != 0
        assert message in refused.stderr, refused.stderr
        assert json.loads(cluster_helm.run("list", "-n", ns, "-a", "-o", "json").stdout) == []
