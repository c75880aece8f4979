"""deploy/kubernetes: renders offline, validates strictly, and hangs together.

Each overlay is rendered with `kubectl kustomize` once per module; built-in kinds go through
`kubernetes-validate --strict`; the Prometheus Operator resources, which it has no schema
for, are checked here for the fields the Operator requires and for what they select.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import validate_config
from tests.deploy.helpers import KUBERNETES, PROMETHEUSRULE, ROOT, kustomize, prometheusrule_document, run, tool

OVERLAYS = {
    "default": KUBERNETES,
    "standalone": KUBERNETES / "standalone",
    "sidecar": KUBERNETES / "sidecar",
    "sharded": KUBERNETES / "sharded",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
BUILTIN_API_VERSIONS = {"v1", "apps/v1"}
OPERATOR_API = "monitoring.coreos.com/v1"
# The oldest and newest Kubernetes minor versions kubernetes-validate ships schemas for and we check.
KUBERNETES_VERSIONS = ["1.28", "1.37"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(path) for name, path in OVERLAYS.items()}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The one Deployment or StatefulSet of an overlay."""
    found = [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]
    assert len(found) == 1, f"expected one workload, found {len(found)}"
    return found[0]


def exporter_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "itnio-exporter"]
    assert len(containers) == 1
    return containers[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_every_overlay_renders_what_it_should(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {name: sorted(doc["kind"] for doc in docs) for name, docs in rendered.items()}
    assert kinds["standalone"] == ["ConfigMap", "Deployment", "PrometheusRule", "Secret", "Service", "ServiceMonitor"]
    assert kinds["sidecar"] == ["ConfigMap", "Deployment", "PodMonitor", "PrometheusRule", "Secret"]
    assert kinds["sharded"] == ["ConfigMap", "PrometheusRule", "Secret", "Service", "ServiceMonitor", "StatefulSet"]
    assert rendered["default"] == rendered["standalone"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_kinds_pass_kubernetes_validate_strict(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path, version: str
) -> None:
    validate = tool("kubernetes-validate")
    for name in ("standalone", "sidecar", "sharded"):
        builtin = [doc for doc in rendered[name] if doc["apiVersion"] in BUILTIN_API_VERSIONS]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(builtin))
        result = run([validate, "--strict", "--kubernetes-version", version, str(path)])
        assert result.returncode == 0, result.stdout + result.stderr
        for doc in builtin:
            resource = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
            assert f"passed for resource {resource}" in result.stdout, result.stdout + result.stderr


def test_kubernetes_validate_strict_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The check above can fail: an unexpected property is an error under --strict."""
    doc = yaml.safe_load((KUBERNETES / "standalone" / "service.yaml").read_text())
    doc["spec"]["portz"] = []
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run([tool("kubernetes-validate"), "--strict", str(path)])
    assert result.returncode != 0 and "portz" in result.stdout + result.stderr


@pytest.mark.parametrize("overlay", ["standalone", "sidecar", "sharded"])
def test_exporter_container_is_locked_down_probed_and_sized(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    deployment = workload(rendered[overlay])
    pod = deployment["spec"]["template"]["spec"]
    container = exporter_container(deployment)

    assert pod["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert security["runAsUser"] != 0

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": 8437}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}

    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][section]), f"resources.{section}"


def test_sidecar_and_standalone_run_the_same_exporter_container(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert exporter_container(one(rendered["standalone"], "Deployment")) == exporter_container(
        one(rendered["sidecar"], "Deployment")
    )


@pytest.mark.parametrize("overlay", ["standalone", "sidecar", "sharded"])
def test_config_and_credentials_are_wired_up(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = rendered[overlay]
    deployment = workload(docs)
    pod = deployment["spec"]["template"]["spec"]
    container = exporter_container(deployment)
    configmap, secret = one(docs, "ConfigMap"), one(docs, "Secret")

    # The config in the ConfigMap is valid, and its secret file is a key of the mounted Secret.
    config = validate_config(yaml.safe_load(configmap["data"]["config.yaml"]))
    assert config.api.api_key is None, "the key comes from the Secret, not the ConfigMap"
    assert config.balance.enabled
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    config_arg = next(arg for arg in container["args"] if arg.startswith("--config.file="))
    config_mount = mounts[config_arg.split("=", 1)[1]]
    assert volumes[config_mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_mount["subPath"] in configmap["data"]

    # The key and the secret are both files of the one mounted Secret, so that updating the Secret
    # rotates both without a restart (an environment variable would keep the old key).
    key_file, secret_file = Path(str(config.api.api_key_file)), Path(str(config.api.api_secret_file))
    assert key_file.parent == secret_file.parent and key_file != secret_file
    secret_mount = mounts[str(secret_file.parent)]
    assert secret_mount["readOnly"] is True and "subPath" not in secret_mount, "a subPath mount never updates"
    assert volumes[secret_mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    assert {key_file.name, secret_file.name} <= set(secret["stringData"])
    env = container.get("env", [])
    assert not any(item["name"] in ("ITNIO_API_KEY", "ITNIO_API_SECRET") for item in env)
    assert all("value" not in item for item in env), "no credentials inline in the pod spec"


def test_service_and_servicemonitor_select_the_standalone_exporter(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["standalone"]
    deployment, service, monitor = one(docs, "Deployment"), one(docs, "Service"), one(docs, "ServiceMonitor")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], pod_labels)
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert service["metadata"]["name"] == "itnio-exporter", "the job label the alerts expect"
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"

    assert monitor["apiVersion"] == OPERATOR_API and monitor["metadata"]["name"]
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"], "spec.endpoints is required"
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"


def test_sharded_statefulset_splits_the_flows_and_one_servicemonitor_scrapes_every_replica(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["sharded"]
    statefulset, service, monitor = one(docs, "StatefulSet"), one(docs, "Service"), one(docs, "ServiceMonitor")
    container = exporter_container(statefulset)
    args = container["args"]
    # Each pod takes its shard index from its name (itnio-exporter-<ordinal>); the count is the replicas.
    assert "--shard.from-hostname" in args and not any(arg.startswith("--shard.index") for arg in args)
    counts = [arg.split("=", 1)[1] for arg in args if arg.startswith("--shard.count=")]
    assert counts == [str(statefulset["spec"]["replicas"])] and statefulset["spec"]["replicas"] > 1
    assert statefulset["metadata"]["name"] == "itnio-exporter"  # pod names end in -<ordinal>
    # The same container as standalone, but for the shard flags and its size.
    standalone = exporter_container(one(rendered["standalone"], "Deployment"))
    strip = lambda c: {k: v for k, v in c.items() if k not in ("args", "resources")}  # noqa: E731
    assert strip(container) == strip(standalone)
    assert [a for a in args if not a.startswith("--shard.")] == standalone["args"]

    # A headless Service gives every replica its own endpoint (and the pods stable names) ...
    assert service["spec"]["clusterIP"] == "None" and statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert selects(statefulset["spec"]["selector"], pod_labels)
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert service["metadata"]["name"] == "itnio-exporter", "the job label the alerts expect"
    # ... and the one ServiceMonitor scrapes them all through it.
    assert len(by_kind(docs, "ServiceMonitor")) == 1
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    (port,) = service["spec"]["ports"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    # The args parse, and any pod name of the StatefulSet gives a valid shard.
    from exporter.cli import _shard, build_parser

    parsed = build_parser().parse_args(["--config.file=c.yaml", *[a for a in args if a.startswith("--shard.")]])
    for ordinal in range(statefulset["spec"]["replicas"]):
        shard, problems = _shard(parsed, f"itnio-exporter-{ordinal}")
        assert problems == [] and shard is not None and shard.index == ordinal


def test_podmonitor_selects_the_sidecar_and_names_the_job(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["sidecar"]
    deployment, monitor = one(docs, "Deployment"), one(docs, "PodMonitor")
    assert monitor["apiVersion"] == OPERATOR_API and monitor["metadata"]["name"]
    assert selects(monitor["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert len(deployment["spec"]["template"]["spec"]["containers"]) >= 2, "a dialler with the exporter beside it"
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert endpoints, "spec.podMetricsEndpoints is required"
    exporter_ports = {port["name"] for port in exporter_container(deployment)["ports"]}
    for endpoint in endpoints:
        assert endpoint["port"] in exporter_ports and endpoint["path"] == "/metrics"
        assert {"action": "replace", "targetLabel": "job", "replacement": "itnio-exporter"} in endpoint["relabelings"]


@pytest.mark.parametrize("overlay", ["standalone", "sidecar", "sharded"])
def test_prometheusrule_has_the_required_fields(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    rule = one(rendered[overlay], "PrometheusRule")
    assert rule["apiVersion"] == OPERATOR_API and rule["metadata"]["name"]
    assert rule["spec"]["groups"]
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item) and isinstance(item["expr"], str)


def test_prometheusrule_carries_exactly_the_alerts_file() -> None:
    on_disk = yaml.safe_load(PROMETHEUSRULE.read_text())
    assert on_disk == prometheusrule_document(), (
        f"{PROMETHEUSRULE.relative_to(ROOT)} is out of date: run python tests/deploy/helpers.py"
    )


def test_kustomize_fails_on_a_broken_base(tmp_path: Path) -> None:
    """The render check can fail: a kustomization naming a missing resource is an error."""
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    result = run([tool("kubectl"), "kustomize", str(tmp_path)])
    assert result.returncode != 0
