"""Validates the deployment artefacts without Docker or a cluster: docker-compose.yml, the Kubernetes
base and overlays, Prometheus rules and the Grafana dashboard agree with the code (settings, topics,
metrics, ports). Services are never imported: their settings are read as text."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import shared.metrics
from shared.contracts.registry import Topic, dead_letter_topic

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
OVERLAYS = DEPLOY / "k8s" / "overlays"
SERVICES = ("gateway", "profile", "recsys", "sentiment", "churn", "support")
PORT = 8000

# PromQL words that are not metric names (functions, aggregations, keywords).
PROMQL_WORDS = frozenset(
    {
        "sum", "avg", "min", "max", "count", "group", "topk", "bottomk", "quantile", "stddev", "stdvar",
        "count_values", "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear",
        "histogram_quantile", "abs", "absent", "absent_over_time", "avg_over_time", "max_over_time",
        "min_over_time", "sum_over_time", "quantile_over_time", "clamp_min", "clamp_max", "changes",
        "resets", "label_replace", "label_join", "vector", "scalar", "time", "round", "ceil", "floor",
        "sort", "sort_desc", "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right",
    }
)  # fmt: skip
BUILTIN_METRICS = frozenset({"up"})  # written by Prometheus itself for every scrape target


# ---------------------------------------------------------------------------------------------- helpers


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def yaml_files() -> list[Path]:
    return [ROOT / "docker-compose.yml", *sorted(DEPLOY.rglob("*.yml")), *sorted(DEPLOY.rglob("*.yaml"))]


def compose() -> dict[str, Any]:
    return yaml_documents(ROOT / "docker-compose.yml")[0]


def base_documents() -> list[dict[str, Any]]:
    kustomization = yaml_documents(K8S_BASE / "kustomization.yaml")[0]
    return [doc for name in kustomization["resources"] for doc in yaml_documents(K8S_BASE / name)]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def command_port(command: list[str]) -> int:
    return int(command[command.index("--port") + 1])


def class_body(text: str, class_name: str) -> str:
    start = text.index(f"class {class_name}(")
    body_start = text.index("\n", start) + 1
    end = re.search(r"^\S", text[body_start:], re.M)  # the next top-level statement
    return text[start : body_start + end.start()] if end else text[start:]


def field_names(body: str) -> set[str]:
    """Annotated attributes at class level (4 spaces in), i.e. pydantic fields."""
    return set(re.findall(r"^    ([a-z_][a-z0-9_]*)\s*:", body, re.M))


SHARED_SETTINGS = (ROOT / "shared" / "settings.py").read_text()
BASE_FIELDS = field_names(class_body(SHARED_SETTINGS, "ServiceSettings"))
KAFKA_FIELDS = field_names(class_body(SHARED_SETTINGS, "KafkaSettings"))


def unknown_setting(name: str) -> str | None:
    """Why ``name`` is not a setting the fleet reads, or None when it is (or cannot be checked yet)."""
    if name.startswith("CRM_KAFKA_"):
        field = name.removeprefix("CRM_KAFKA_").lower()
        return None if field in KAFKA_FIELDS else f"{name}: KafkaSettings has no field {field!r}"
    match = re.fullmatch(r"CRM_([A-Z]+)_([A-Z0-9_]+)", name)
    if not match or match.group(1).lower() not in SERVICES:
        return f"{name}: not CRM_KAFKA_* nor CRM_<SERVICE>_* for a known service"
    service, field = match.group(1).lower(), match.group(2).lower()
    settings_file = ROOT / "services" / service / "settings.py"
    if not settings_file.exists():
        return None  # the service is not written yet; its prefix is all we can check
    text = settings_file.read_text()
    prefix = re.search(r"env_prefix\s*=\s*[\"']([^\"']+)[\"']", text)
    if prefix is None or prefix.group(1) != f"CRM_{service.upper()}_":
        return f"{name}: services/{service}/settings.py does not use env_prefix CRM_{service.upper()}_"
    if field not in field_names(text) | BASE_FIELDS:
        return f"{name}: services/{service}/settings.py has no field {field!r}"
    return None


def defined_metric_names() -> set[str]:
    """Every sample name shared/metrics.py exposes (counters end in _total, histograms have _bucket etc.)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
    }
    names: set[str] = set()
    for value in vars(shared.metrics).values():
        if isinstance(value, MetricWrapperBase):
            for metric in value.describe():
                names |= {metric.name + suffix for suffix in suffixes[metric.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (label matchers, ranges, groupings and strings removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    return {token for token in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr) if token not in PROMQL_WORDS}


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml_documents(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "crm-fleet.json").read_text())


def dashboard_exprs() -> Iterator[str]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]


def kustomizations() -> list[Path]:
    return sorted((DEPLOY / "k8s").rglob("kustomization.yaml"))


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses_to_mappings(path: Path) -> None:
    docs = yaml_documents(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(doc, (dict, list)) for doc in docs)


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.json")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_json_file_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def test_every_kubernetes_document_has_kind_and_name() -> None:
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        for doc in yaml_documents(path):
            if isinstance(doc, list):  # a JSON 6902 patch
                assert all({"op", "path"} <= set(op) for op in doc), path
            elif "kind" in doc and doc["kind"] != "Kustomization":
                assert doc.get("apiVersion"), path
                assert doc["metadata"]["name"], path


# ---------------------------------------------------------------------------------------------- compose


def test_compose_runs_every_service_from_the_one_image_on_port_8000_with_a_readyz_healthcheck() -> None:
    services = compose()["services"]
    fleet = {name for name, spec in services.items() if "services." in " ".join(spec.get("command", []))}
    assert fleet == set(SERVICES)
    for name in SERVICES:
        spec = services[name]
        command = spec["command"]
        assert command[:2] == ["uvicorn", f"services.{name}.app:create_app"], name
        assert "--factory" in command
        assert command_port(command) == PORT
        assert spec["build"] == "."
        probe = " ".join(spec["healthcheck"]["test"])
        assert f"127.0.0.1:{PORT}/readyz" in probe, name
        assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"
        published = spec.get("ports", [])
        assert published == ([f"{PORT}:{PORT}"] if name == "gateway" else []), (
            f"only the gateway is published: {name}"
        )


def test_compose_environment_names_are_settings_and_values_fit_together() -> None:
    services = compose()["services"]
    volume_names = set(compose()["volumes"])
    for name in SERVICES:
        env = services[name]["environment"]
        problems = [p for p in map(unknown_setting, env) if p]
        assert not problems, problems
        assert env["CRM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env[f"CRM_{name.upper()}_INTERNAL_API_KEY"]
        # The data dir is a named volume, so trained models survive a restart.
        data_dir = env[f"CRM_{name.upper()}_DATA_DIR"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(data_dir) in volume_names, name
        url = env.get(f"CRM_{name.upper()}_DATABASE_URL")
        if url:
            assert urlsplit(url).hostname == "postgres"
            database = urlsplit(url).path.lstrip("/")
            assert f"CREATE DATABASE {database};" in (DEPLOY / "compose" / "postgres-init.sql").read_text()
    gateway = services["gateway"]["environment"]
    for name in SERVICES[1:]:
        assert gateway[f"CRM_GATEWAY_{name.upper()}_URL"] == f"http://{name}:{PORT}"


def test_compose_kafka_is_kraft_and_advertises_the_bootstrap_the_services_use() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "ZOOKEEPER" not in " ".join(env).upper()


def test_compose_bind_mounts_exist_and_grafana_and_prometheus_get_their_files() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
    prometheus = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    config = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")[0]
    assert set(config["rule_files"]) <= prometheus
    provider = yaml_documents(DEPLOY / "grafana" / "provisioning" / "dashboards" / "crm.yml")[0]
    grafana = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert provider["providers"][0]["options"]["path"] in grafana


# ---------------------------------------------------------------------------------------------- kubernetes


def test_k8s_deployment_per_service_with_probes_ports_resources_and_non_root() -> None:
    docs = base_documents()
    deployments = of_kind(docs, "Deployment")
    services = of_kind(docs, "Service")
    assert set(deployments) == set(SERVICES) == set(services)
    for name in SERVICES:
        pod = deployments[name]["spec"]["template"]
        container = container_of(deployments[name])
        assert container["command"][:2] == ["uvicorn", f"services.{name}.app:create_app"]
        port = command_port(container["command"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": port}
        assert port == PORT
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name} {probe}"
            assert get["port"] in ("http", port)
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["securityContext"]["runAsUser"] != 0
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == port
        assert annotations["prometheus.io/path"] == "/metrics"
        # The Service selects these pods and forwards to the container's port.
        service = services[name]["spec"]
        assert service["selector"].items() <= pod["metadata"]["labels"].items()
        assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(PORT, "http")]
        data_dir = {e["name"]: e.get("value") for e in container["env"]}[f"CRM_{name.upper()}_DATA_DIR"]
        assert data_dir in {m["mountPath"] for m in container["volumeMounts"]}


def test_k8s_environment_names_are_settings_and_references_resolve() -> None:
    docs = base_documents()
    config = of_kind(docs, "ConfigMap")["crm-config"]["data"]
    secret = of_kind(docs, "Secret")["crm-secrets"]["stringData"]
    names = set(config)
    for overlay in OVERLAYS.iterdir():
        for doc in yaml_documents(overlay / "config.yaml"):
            names |= set(doc["data"])
    for deployment in of_kind(docs, "Deployment").values():
        container = container_of(deployment)
        assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == ["crm-config"]
        for env in container["env"]:
            names.add(env["name"])
            if "valueFrom" in env:
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "crm-secrets", env["name"]
                assert ref["key"] in secret, env["name"]
    problems = [p for p in map(unknown_setting, sorted(names)) if p]
    assert not problems, problems
    for name in SERVICES[1:]:
        url = urlsplit(config[f"CRM_GATEWAY_{name.upper()}_URL"])
        assert (url.hostname, url.port) == (name, PORT)


def test_k8s_kafka_is_strimzi_kraft_with_a_node_pool_and_the_bootstrap_matches() -> None:
    docs = base_documents()
    (kafka,) = of_kind(docs, "Kafka").values()
    cluster = kafka["metadata"]["name"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    pools = of_kind(docs, "KafkaNodePool").values()
    assert {"controller", "broker"} <= {role for pool in pools for role in pool["spec"]["roles"]}
    assert all(pool["metadata"]["labels"]["strimzi.io/cluster"] == cluster for pool in pools)
    plain = next(listener for listener in kafka["spec"]["kafka"]["listeners"] if not listener["tls"])
    config = of_kind(docs, "ConfigMap")["crm-config"]["data"]
    assert config["CRM_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap:{plain['port']}"
    # Strimzi owns the topics, so the services must not create them with other partition counts.
    assert config["CRM_KAFKA_AUTO_CREATE_TOPICS"] == "false"


def test_every_topic_and_its_dead_letter_topic_has_a_kafka_topic() -> None:
    docs = base_documents()
    cluster = next(iter(of_kind(docs, "Kafka")))
    topics = of_kind(docs, "KafkaTopic").values()
    expected = {t.value for t in Topic} | {dead_letter_topic(t.value) for t in Topic}
    assert {t["spec"]["topicName"] for t in topics} == expected
    for topic in topics:
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", topic["metadata"]["name"])
        assert topic["spec"]["partitions"] >= 1


def test_generated_topic_file_is_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("generate_topics", DEPLOY / "k8s" / "generate_topics.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (K8S_BASE / "kafka-topics.yaml").read_text() == module.render(), (
        "run .venv/bin/python deploy/k8s/generate_topics.py"
    )


def test_gateway_autoscales_and_every_service_has_a_disruption_budget() -> None:
    docs = base_documents()
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    labels = {
        name: d["spec"]["template"]["metadata"]["labels"] for name, d in of_kind(docs, "Deployment").items()
    }
    budgets = of_kind(docs, "PodDisruptionBudget").values()
    covered = {
        name
        for pdb in budgets
        for name, pod in labels.items()
        if pdb["spec"]["selector"]["matchLabels"].items() <= pod.items()
    }
    assert covered == set(SERVICES)


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_kustomization_references_existing_files_and_targets(path: Path) -> None:
    kustomization = yaml_documents(path)[0]
    here = path.parent
    for resource in kustomization.get("resources", []):
        target = here / resource
        assert target.is_file() or (target / "kustomization.yaml").is_file(), resource
    kinds = {doc["kind"] for doc in base_documents()}
    deployments = set(of_kind(base_documents(), "Deployment"))
    for patch in kustomization.get("patches", []):
        assert (here / patch["path"]).is_file(), patch["path"]
        if "target" in patch:
            assert patch["target"]["kind"] in kinds, patch
    for replica in kustomization.get("replicas", []):
        assert replica["name"] in deployments


def test_overlays_size_the_fleet_as_documented() -> None:
    dev = yaml_documents(OVERLAYS / "dev" / "kustomization.yaml")[0]
    assert {r["name"]: r["count"] for r in dev["replicas"]} == dict.fromkeys(SERVICES, 1)
    prod = yaml_documents(OVERLAYS / "prod" / "kustomization.yaml")[0]
    assert all(r["count"] >= 2 for r in prod["replicas"])
    topic_patch = next(p for p in prod["patches"] if p.get("target", {}).get("kind") == "KafkaTopic")
    ops = yaml_documents(OVERLAYS / "prod" / topic_patch["path"])[0]
    assert {"op": "replace", "path": "/spec/partitions", "value": 12} in ops
    assert yaml_documents(OVERLAYS / "prod" / "config.yaml")[0]["data"]["CRM_KAFKA_PARTITIONS"] == "12"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) not installed")
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kubectl_kustomize_renders_the_overlay(overlay: str) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    namespace = of_kind(docs, "Namespace")
    assert len(namespace) == 1
    assert all(doc["metadata"].get("namespace") in namespace for doc in docs if doc["kind"] != "Namespace")
    topics = of_kind(docs, "KafkaTopic").values()
    assert len(topics) == 2 * len(Topic)
    deployments = of_kind(docs, "Deployment")
    if overlay == "prod":
        assert {t["spec"]["partitions"] for t in topics} == {12}
        assert all(d["spec"]["replicas"] >= 2 for d in deployments.values())
    else:
        assert {t["spec"]["replicas"] for t in topics} == {1}
        assert {d["spec"]["replicas"] for d in deployments.values()} == {1}
    # Probes survive the patches.
    for deployment in deployments.values():
        container = container_of(deployment)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"


# ---------------------------------------------------------------------------------------------- metrics


def test_prometheus_scrapes_every_compose_service() -> None:
    config = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")[0]
    crm = next(job for job in config["scrape_configs"] if job["job_name"] == "crm")
    targets = {t for group in crm["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{PORT}" for name in SERVICES}
    k8s = yaml_documents(DEPLOY / "prometheus" / "prometheus-k8s.yml")[0]
    assert [job["job_name"] for job in k8s["scrape_configs"]] == ["crm"]  # the alerts use job="crm"


def test_alert_expressions_use_only_metrics_defined_in_shared_metrics() -> None:
    defined = defined_metric_names() | BUILTIN_METRICS
    used: set[str] = set()
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= defined, f"{rule['alert']}: unknown {names - defined}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        used |= names
    # Lag, dead letters, 5xx, p99 latency and service down are all covered.
    assert {
        "crm_consumer_lag",
        "crm_events_dead_lettered_total",
        "crm_http_requests_total",
        "crm_http_request_seconds_bucket",
        "up",
    } <= used
    exprs = " ".join(rule["expr"] for rule in alert_rules())
    assert 'status=~"5.."' in exprs
    assert "histogram_quantile(0.99" in exprs


def test_metric_name_parser_sees_through_promql_syntax() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(crm_x_bucket{route!~"/a|b"}[$__rate_interval]))) > 1'
    assert metric_names(expr) == {"crm_x_bucket"}


def test_dashboard_panels_use_defined_metrics_and_the_provisioned_datasource() -> None:
    defined = defined_metric_names() | BUILTIN_METRICS
    used: set[str] = set()
    for expr in dashboard_exprs():
        names = metric_names(expr)
        assert names, expr
        assert names <= defined, f"{expr}: unknown {names - defined}"
        used |= names
    assert {
        "crm_http_requests_total",
        "crm_http_request_seconds_bucket",
        "crm_consumer_lag",
        "crm_events_dead_lettered_total",
        "crm_event_handler_seconds_bucket",
        "crm_model_inference_seconds_bucket",
    } <= used
    datasource = yaml_documents(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]
    uid = datasource["datasources"][0]["uid"]
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
    for variable in dashboard()["templating"]["list"]:
        metric = re.search(r"label_values\((\w+)", variable["definition"])
        assert metric is not None
        assert metric.group(1) in defined


# ---------------------------------------------------------------------------------------------- image


def test_dockerfile_builds_one_non_root_image_with_cpu_torch_and_the_data_packages() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions[0].startswith("FROM python:3.11-slim")
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    assert "--no-deps -r requirements-data.txt" in text
    assert f"EXPOSE {PORT}" in text
    cmd = json.loads(next(line for line in instructions if line.startswith("CMD ")).removeprefix("CMD "))
    assert cmd[:2] == ["uvicorn", "services.gateway.app:create_app"]
    assert "--factory" in cmd
    assert command_port(cmd) == PORT
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "var", ".git"} <= ignored
    assert not ignored & {"shared", "services", "pyproject.toml", "requirements-data.txt"}
