"""The chart rendered offline: lint, Kubernetes schemas, and one test per rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from consumer.config import SaslMechanism, SecurityProtocol, Settings, load_settings
from consumer.observability.http import HEALTH_PATH, METRICS_PATH, READY_PATH
from devtools.chart import config_schema, schema_path
from tests.chart.helm import (
    CHART,
    Helm,
    Manifest,
    container,
    grace_period,
    one,
    set_args,
    settings_map,
    workload,
)

#: The one value an install needs: where events go.
SINK = {"sink.url": "postgresql://consumer:pg-secret@postgres/events"}
#: Each optional feature on its own, as users switch them on.
FEATURES: dict[str, dict[str, Any]] = {
    "defaults": SINK,
    "static-membership": {**SINK, "staticMembership.enabled": True},
    "hpa": {**SINK, "autoscaling.enabled": True},
    "keda": {**SINK, "keda.enabled": True},
    "service-monitor": {**SINK, "metrics.serviceMonitor.enabled": True},
    "prometheus-rule": {**SINK, "metrics.prometheusRule.enabled": True},
    "dashboard": {**SINK, "dashboard.enabled": True},
    "network-policy": {**SINK, "networkPolicy.enabled": True,
                       "networkPolicy.metricsFrom": [{"namespaceSelector": {}}]},
    "existing-secret": {"existingSecret": "consumer-credentials"},
    "sqlite-on-claims": {"sink.url": "sqlite:///consumer.db", "persistence.enabled": True,
                         "persistence.storageClassName": "local"},
    "kafka-sasl-ssl": {
        **SINK, "kafka.security.protocol": "SASL_SSL",
        "kafka.security.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.security.sasl.username": "consumer", "kafka.security.sasl.password": "s3cret",
        "kafka.security.tls.secretName": "kafka-tls", "kafka.security.tls.certKey": "tls.crt",
        "kafka.security.tls.keyKey": "tls.key", "keda.enabled": True},
    "kafka-password-file": {
        **SINK, "kafka.security.protocol": "SASL_PLAINTEXT",
        "kafka.security.sasl.mechanism": "PLAIN",
        "kafka.security.sasl.username": "consumer",
        "kafka.security.sasl.passwordSecret.name": "kafka-password"},
    "schema-registry": {
        **SINK, "config": {"value_format": "avro",
                           "schema_registry_url": "https://registry:8081"},
        "schemaRegistry.user": "reader", "schemaRegistry.password": "sr-s3cret",
        "schemaRegistry.caSecret.name": "registry-ca"},
    "schema-registry-password-file": {
        **SINK, "config": {"value_format": "auto", "schema_registry_url": "http://registry:8081"},
        "schemaRegistry.user": "reader",
        "schemaRegistry.passwordSecret.name": "registry-password"},
}
#: Kinds from CRDs: no offline schema; the install test applies them to the real CRDs.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]


def env_names(manifests: list[Manifest]) -> set[str]:
    """Every variable the chart hands the service."""
    names = set(settings_map(manifests)["data"])
    for m in manifests:
        if m["kind"] == "Secret":
            names |= set(m.get("stringData", {})) | set(m.get("data", {}))
    names |= {e["name"] for e in container(manifests).get("env", [])}
    return names


def settings_from(manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch,
                  files: Path | None = None) -> Settings:
    """Settings as the service would load them from the rendered ConfigMap and
    Secret. A setting naming a file must point into a mounted volume; the file
    is then made under `files`."""
    env = dict(settings_map(manifests)["data"])
    for m in manifests:
        if m["kind"] == "Secret":
            env.update(m["stringData"])
    mounts = [m["mountPath"] for m in container(manifests)["volumeMounts"]]
    for name, value in env.items():
        if not value.startswith("/etc/consumer/"):
            monkeypatch.setenv(name, value)
            continue
        assert any(value.startswith(f"{mount}/") for mount in mounts), (name, value)
        assert files is not None
        local = files / value.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("secret\n")
        monkeypatch.setenv(name, str(local))
    return load_settings()


def test_lint_strict(helm: Helm) -> None:
    everything = {k: v for f, vals in FEATURES.items() if f != "hpa" for k, v in vals.items()}
    for values in (SINK, everything):
        # `run` raises on a non-zero exit; the summary line says so too.
        out = helm.run("lint", "--strict", str(CHART), *set_args(values)).stdout
        assert "0 chart(s) failed" in out, out


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("feature", FEATURES)
def test_manifests_match_kubernetes_schemas(helm: Helm, feature: str, kube_version: str) -> None:
    manifests = helm.template(FEATURES[feature], kube_version=kube_version)
    checked = 0
    for m in manifests:
        if m["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(m, kube_version, strict=True)
        checked += 1
    assert checked >= 5  # ServiceAccount, ConfigMap, Service, workload, PDB (+ Secret...)


GRACE_TERMS = ["shutdownTimeout", "config.commit_timeout", "config.dlq_send_timeout",
               "terminationGraceMarginSeconds"]


def _grace_case(sink: dict[str, Any], *deadlines: float) -> dict[str, Any]:
    return {**sink, **dict(zip(GRACE_TERMS, deadlines, strict=True))}


#: Value sets for the grace period: the sink, then GRACE_TERMS in order.
GRACE_CASES = [
    _grace_case(SINK, 30, 10, 10, 5),
    _grace_case({"sink.url": "none"}, 0.5, 0.25, 1, 5),
    _grace_case({"sink.url": "kafka://stored"}, 90.5, 30, 5, 20),
    _grace_case(FEATURES["existing-secret"], 600, 2.5, 60, 5),
    _grace_case(FEATURES["sqlite-on-claims"], 10, 1, 1, 10),
]


def _grace(helm: Helm, values: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """(the rendered grace period, the one the service's deadlines call for)."""
    manifests = helm.template(values)
    grace: int = workload(manifests)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    sink = None if values.get("existingSecret") else values["sink.url"]
    settings = settings_from(manifests, monkeypatch)
    # The service reads the same deadlines from the ConfigMap.
    assert (settings.shutdown_timeout, settings.commit_timeout, settings.dlq_send_timeout) == (
        values["shutdownTimeout"], values["config.commit_timeout"],
        values["config.dlq_send_timeout"])
    return grace, grace_period(settings, sink, values["terminationGraceMarginSeconds"])


@pytest.mark.parametrize("values", GRACE_CASES)
def test_grace_period_covers_every_stop_deadline(helm: Helm, values: dict[str, Any],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    grace, expected = _grace(helm, values, monkeypatch)
    print(f"\n{values} -> terminationGracePeriodSeconds {grace}")
    assert grace == expected
    # Each deadline moves the grace period with it.
    for term in GRACE_TERMS:
        longer, expected = _grace(helm, {**values, term: values[term] + 1}, monkeypatch)
        assert longer == expected > grace, term


def refusal(helm: Helm, values: dict[str, Any]) -> str:
    """helm's message when it refuses to render `values`."""
    result = helm.run("template", "rel", str(CHART), "--kube-version", "1.30.0",
                      *set_args(values), check=False)
    assert result.returncode != 0, "rendered"
    return result.stderr


def test_grace_period_deadlines_must_be_set(helm: Helm) -> None:
    message = refusal(helm, {**SINK, "config": {"commit_timeout": None}})
    assert "config.commit_timeout: terminationGracePeriodSeconds is derived from it" in message


def test_chart_defaults_follow_the_service(helm: Helm) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = Settings()
    assert values["shutdownTimeout"] == defaults.shutdown_timeout
    assert values["config"]["commit_timeout"] == defaults.commit_timeout
    assert values["config"]["dlq_send_timeout"] == defaults.dlq_send_timeout
    assert values["httpPort"] == defaults.http_port
    assert values["image"]["pullPolicy"] == "IfNotPresent"
    assert container(helm.template(SINK))["image"] == f"consumer:{_app_version()}"


@pytest.mark.parametrize("feature", ["defaults", "static-membership", "service-monitor"])
def test_probes_use_the_service_paths(helm: Helm, feature: str) -> None:
    manifests = helm.template({**FEATURES[feature], "httpPort": 9100})
    c = container(manifests)
    assert c["startupProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 9100, "protocol": "TCP"}]
    assert settings_map(manifests)["data"]["CONSUMER_HTTP_PORT"] == "9100"
    assert one(manifests, "Service")["spec"]["ports"][0]["targetPort"] == "http"
    for monitor in (m for m in manifests if m["kind"] == "ServiceMonitor"):
        assert monitor["spec"]["endpoints"][0]["path"] == METRICS_PATH
        assert monitor["spec"]["endpoints"][0]["port"] == "http"
        # ConsumerTargetDown selects up{job="consumer"}: the job must not be
        # the release-dependent Service name.
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"


@pytest.mark.parametrize("feature", FEATURES)
def test_security_context_is_restricted(helm: Helm, feature: str) -> None:
    manifests = helm.template(FEATURES[feature])
    pod = workload(manifests)["spec"]["template"]["spec"]
    c = container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc
    assert all(set(v) <= {"name", "emptyDir", "configMap", "secret", "projected"}
               for v in pod["volumes"])
    tmp = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}["/tmp"]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp)
    assert pod["automountServiceAccountToken"] is False
    assert one(manifests, "ServiceAccount")["automountServiceAccountToken"] is False
    assert set(c["resources"]) == {"requests", "limits"}


@pytest.mark.parametrize("feature", FEATURES)
def test_env_names_are_known_settings(helm: Helm, feature: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    values = {**FEATURES[feature], "config": {
        **FEATURES[feature].get("config", {}), "ordering": "partition", "concurrency": 32,
        "max_in_flight_bytes": 52428800, "retry_on": ["TimeoutError", "ConnectionError"],
        "allow_unknown_types": True}}
    manifests = helm.template(values)
    known = {f"CONSUMER_{name.upper()}" for name in Settings.model_fields}
    assert env_names(manifests) <= known, env_names(manifests) - known
    if feature != "existing-secret":  # an existing Secret is the user's to fill
        settings = settings_from(manifests, monkeypatch, tmp_path)
        assert settings.max_in_flight_bytes == 52428800
        assert settings.retry_on == ["TimeoutError", "ConnectionError"]


def test_config_schema_is_the_settings_model() -> None:
    schema = json.loads(schema_path().read_text())
    assert schema["properties"]["config"] == config_schema(), (
        "values.schema.json is stale: run `python -m devtools.chart`")


@pytest.mark.parametrize(("values", "message"), [
    ({"config": {"ordering": "random"}}, "/config/ordering"),
    ({"config": {"no_such_setting": 1}}, "no_such_setting"),
    ({"config": {"concurrency": 0}}, "/config/concurrency"),
    ({"kafka": {"topics": []}}, "/kafka/topics"),
    ({"shutdownTimeout": 0}, "/shutdownTimeout"),
    ({"replicas": 3}, "replicas"),
    ({"sink": {"url": "mysql://db"}}, "/sink/url"),
    ({"image": {"tag": "latest"}}, "image.tag"),
    ({"autoscaling": {"enabled": True}, "keda": {"enabled": True}}, "choose one autoscaler"),
])
def test_bad_values_are_refused(helm: Helm, values: dict[str, Any], message: str) -> None:
    assert message in refusal(helm, {**SINK, **values})


@pytest.mark.parametrize("kind", ["keda", "hpa"])
@pytest.mark.parametrize(("partitions", "explicit"), [(3, None), (12, None), (12, 4)])
def test_autoscaling_is_capped_by_partitions(helm: Helm, kind: str, partitions: int,
                                             explicit: int | None) -> None:
    key = {"keda": "keda.maxReplicaCount", "hpa": "autoscaling.maxReplicas"}[kind]
    manifests = helm.template({**FEATURES[kind], "kafka.partitions": partitions, key: explicit})
    if kind == "keda":
        spec = one(manifests, "ScaledObject")["spec"]
        maximum = spec["maxReplicaCount"]
        trigger = spec["triggers"][0]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == "consumer"
        assert trigger["metadata"]["lagThreshold"] == "1000"
    else:
        maximum = one(manifests, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
    assert maximum == (explicit or partitions)
    assert "replicas" not in workload(manifests)["spec"]  # the autoscaler owns it


def test_static_membership_names_members_after_pods(helm: Helm) -> None:
    manifests = helm.template(FEATURES["static-membership"])
    assert workload(manifests)["kind"] == "StatefulSet"
    env = {e["name"]: e for e in container(manifests)["env"]}
    assert env["CONSUMER_GROUP_INSTANCE_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}}
    assert settings_map(manifests)["data"]["CONSUMER_SESSION_TIMEOUT_MS"] == "60000"
    assert workload(helm.template(SINK))["kind"] == "Deployment"


def test_changed_settings_roll_the_pods(helm: Helm) -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        template = workload(helm.template({**SINK, **values}))["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    base = checksums({})
    assert checksums({})["checksum/config"] == base["checksum/config"]
    assert checksums({"config.concurrency": 64})["checksum/config"] != base["checksum/config"]
    assert checksums({"sink.url": "none"})["checksum/secret"] != base["checksum/secret"]


def test_existing_secret_replaces_the_chart_secret(helm: Helm) -> None:
    manifests = helm.template(FEATURES["existing-secret"])
    assert not [m for m in manifests if m["kind"] == "Secret"]
    refs = [r["secretRef"]["name"] for r in container(manifests)["envFrom"] if "secretRef" in r]
    assert refs == ["consumer-credentials"]


def test_rules_and_dashboard_are_the_shared_files(helm: Helm) -> None:
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    manifests = helm.template({**SINK, "metrics.prometheusRule.enabled": True,
                               "dashboard.enabled": True, "dashboard.folder": "Kafka"})
    assert one(manifests, "PrometheusRule")["spec"]["groups"] == rules["groups"]
    board = next(m for m in manifests
                 if m["kind"] == "ConfigMap" and m["metadata"]["name"].endswith("-dashboard"))
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "Kafka"}
    assert json.loads(board["data"]["consumer.json"]) == json.loads(
        (CHART / "files" / "dashboard.json").read_text())


def test_kafka_credentials_stay_in_secrets(helm: Helm) -> None:
    manifests = helm.template(FEATURES["kafka-sasl-ssl"])
    config = settings_map(manifests)["data"]
    secret = one(manifests, "Secret")["stringData"]
    assert "s3cret" not in json.dumps(config)
    assert secret["CONSUMER_SASL_PASSWORD"] == "s3cret"
    assert config["CONSUMER_SSL_CAFILE"] == "/etc/consumer/kafka-tls/ca.crt"
    volumes = workload(manifests)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "kafka-tls", "secret": {"secretName": "kafka-tls", "defaultMode": 0o440}} \
        in volumes
    # KEDA reads the lag with the same credentials.
    trigger = one(manifests, "ScaledObject")["spec"]["triggers"][0]
    assert (trigger["metadata"]["sasl"], trigger["metadata"]["tls"]) == ("scram_sha512", "enable")
    auth = one(manifests, "TriggerAuthentication")
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"username": ("rel-consumer", "CONSUMER_SASL_USERNAME"),
                    "password": ("rel-consumer", "CONSUMER_SASL_PASSWORD"),
                    "ca": ("kafka-tls", "ca.crt"), "cert": ("kafka-tls", "tls.crt"),
                    "key": ("kafka-tls", "tls.key")}


def test_registry_credentials_stay_in_secrets(helm: Helm, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = helm.template(FEATURES["schema-registry"])
    config = settings_map(manifests)["data"]
    secret = one(manifests, "Secret")["stringData"]
    assert "sr-s3cret" not in json.dumps(config)
    assert secret["CONSUMER_SCHEMA_REGISTRY_USER"] == "reader"
    assert secret["CONSUMER_SCHEMA_REGISTRY_PASSWORD"] == "sr-s3cret"
    assert config["CONSUMER_SCHEMA_REGISTRY_CA"] == "/etc/consumer/registry-ca/ca.crt"
    settings = settings_from(manifests, monkeypatch, tmp_path)
    assert settings.value_format.value == "avro"
    assert settings.schema_registry_password is not None

    manifests = helm.template(FEATURES["schema-registry-password-file"])
    assert "CONSUMER_SCHEMA_REGISTRY_PASSWORD" not in one(manifests, "Secret")["stringData"]
    config = settings_map(manifests)["data"]
    assert config["CONSUMER_SCHEMA_REGISTRY_PASSWORD_FILE"] == \
        "/etc/consumer/registry-password/password"
    volumes = workload(manifests)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "registry-password", "secret": {
        "secretName": "registry-password", "defaultMode": 0o440,
        "items": [{"key": "password", "path": "password"}]}} in volumes


def test_security_choices_are_the_service_choices() -> None:
    security = json.loads(schema_path().read_text())["properties"]["kafka"]["properties"][
        "security"]["properties"]
    assert security["protocol"]["enum"] == [p.value for p in SecurityProtocol]
    assert security["sasl"]["properties"]["mechanism"]["enum"] == [
        "", *(m.value for m in SaslMechanism)]


def test_network_policy_lets_in_only_the_scrape(helm: Helm) -> None:
    policy = one(helm.template(FEATURES["network-policy"]), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert [r["ports"] for r in policy["ingress"]] == [[{"port": "http", "protocol": "TCP"}]]
    egress_ports = {p["port"] for r in policy["egress"] for p in r["ports"]}
    assert egress_ports == {53, 9092, 9093, 5432}


def _app_version() -> str:
    version: str = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    return version


def test_readme_lists_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    missing = [key for key in _value_keys(values, "") if f"| `{key}` |" not in readme]
    assert not missing, f"helm/consumer/README.md lacks rows for {missing}"


#: Values documented as one row, not key by key.
_WHOLE = {"config", "resources", "probes", "updateStrategy", "podSecurityContext",
          "securityContext"}


def _value_keys(values: dict[str, Any], prefix: str) -> list[str]:
    keys = []
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in _WHOLE:
            keys += _value_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def test_install_without_a_sink_is_refused(helm: Helm) -> None:
    message = refusal(helm, {})
    assert "sink.url: say where events are stored, e.g. --set sink.url=postgresql://" in message


@pytest.mark.parametrize(("values", "message"), [
    ({"sink.url": "sqlite:///consumer.db"}, "/persistence/enabled"),
    ({"sink.url": "sqlite:////data/consumer.db", "replicaCount": 1}, "/persistence/enabled"),
    ({"sink.url": "sqlite:////tmp/consumer.db", "persistence.enabled": True},
     "sink.url: the SQLite file must be on the claim at /var/lib/consumer"),
])
def test_sqlite_without_a_claim_is_refused(helm: Helm, values: dict[str, Any],
                                           message: str) -> None:
    assert message in refusal(helm, values)


def _workdir() -> str:
    dockerfile = (CHART.parent.parent / "Dockerfile").read_text()
    return [line.split()[1] for line in dockerfile.splitlines() if line.startswith("WORKDIR")][-1]


@pytest.mark.parametrize("url", ["sqlite:///consumer.db", "sqlite:////var/lib/consumer/x.db"])
def test_sqlite_is_a_file_per_pod_on_its_own_claim(helm: Helm, url: str) -> None:
    values = {**FEATURES["sqlite-on-claims"], "sink.url": url, "replicaCount": 2}
    manifests = helm.template(values)
    stateful = workload(manifests)
    assert stateful["kind"] == "StatefulSet"
    (claim,) = stateful["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                             "resources": {"requests": {"storage": "1Gi"}}}
    mounts = {m["name"]: m["mountPath"] for m in container(manifests)["volumeMounts"]}
    # The claim is the image's working directory, where a relative path lands.
    assert mounts["data"] == _workdir() == "/var/lib/consumer"
    assert "data" not in {v["name"] for v in stateful["spec"]["template"]["spec"]["volumes"]}
    # No static membership unless asked for.
    assert "env" not in container(manifests)
    default_class = helm.template({**values, "persistence.storageClassName": ""})
    assert "storageClassName" not in workload(default_class)["spec"]["volumeClaimTemplates"][0][
        "spec"]


def test_existing_secret_must_hold_the_sink_url(helm: Helm) -> None:
    env = container(helm.template(FEATURES["existing-secret"]))["env"]
    # Named, so a Secret without it keeps the pod from starting rather than
    # letting the service fall back to its own default sink.
    assert {"name": "CONSUMER_SINK_URL", "valueFrom": {"secretKeyRef": {
        "name": "consumer-credentials", "key": "CONSUMER_SINK_URL"}}} in env


def _test_pod(manifests: list[Manifest]) -> Manifest:
    return next(m for m in manifests
                if m["kind"] == "Pod" and m["metadata"]["annotations"]["helm.sh/hook"] == "test")


@pytest.mark.parametrize("feature", ["defaults", "static-membership", "network-policy"])
def test_helm_test_asks_readyz_through_the_service(helm: Helm, feature: str) -> None:
    manifests = helm.template({**FEATURES[feature], "service.port": 9200, "replicaCount": 3})
    pod = _test_pod(manifests)
    spec = pod["spec"]
    (c,) = spec["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    service = one(manifests, "Service")
    name = service["metadata"]["name"]
    assert env["READYZ_URL"] == f"http://{name}.ns.svc:9200{READY_PATH}"
    assert int(env["REQUESTS"]) >= 3
    assert c["image"] == container(manifests)["image"]
    assert spec["restartPolicy"] == "Never"
    # Restricted like the service's pods.
    assert spec["securityContext"] == workload(manifests)["spec"]["template"]["spec"][
        "securityContext"]
    assert c["securityContext"] == container(manifests)["securityContext"]
    assert spec["automountServiceAccountToken"] is False
    # The Service never routes to the test pod.
    selector = service["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    for policy in (m for m in manifests if m["kind"] == "NetworkPolicy"):
        peers = policy["spec"]["ingress"][0]["from"]
        assert any(p.get("podSelector", {}).get("matchLabels", {}).items()
                   <= pod["metadata"]["labels"].items() for p in peers)

