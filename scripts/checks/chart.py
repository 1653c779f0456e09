"""Render the Helm chart in several configurations and check what comes out.

    uv run python scripts/checks/chart.py --helm PATH --node-modules DIR

For each configuration: `helm template`, then
- every built-in kind against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
  fields fail), offline;
- ServiceMonitors against the prometheus-operator CRD schema (a node script);
- Strimzi resources against what the code says (not their CRD schema: no registry package ships it):
  a KafkaTopic for every topic and `.dlq` twin of topics.py under the prefix, `retention.ms=-1`;
- every ConfigMap/Secret key is an environment variable the service's settings class reads, and
  every Deployment runs an entry point the service's pyproject declares; api Deployments probe
  /livez and /readyz, which the app serves.
Values missing the required secrets, misspelt (values.schema.json) or with a finite retention must
fail to render.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from advocacy_common.topics import TopicNames

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from openapi import SERVICES, settings_class  # noqa: E402  (the generator's own lookup of settings classes)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "advocacy"
KUBERNETES_VERSION = "1.31.0"
STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic"}
# Read by pydantic under this exact name (validation_alias on the shared settings), not prefixed.
UNPREFIXED_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT"}

CONFIGURATIONS: dict[str, list[str]] = {
    "ci values (everything on)": ["-f", str(CHART / "ci" / "test-values.yaml")],
    "external Kafka, existing secret, prefix, fixed replicas": [
        "--set", "kafka.strimzi.enabled=false", "--set", "kafka.bootstrapServers=kafka.example.internal:9093",
        "--set", "kafka.topics.cluster=shared", "--set", "settings.topic_prefix=staging.",
        "--set", "existingSecret=advocacy-secrets", "--set", "networkPolicy.enabled=false",
        "--set", "services.content.api.autoscaling.enabled=false",
        "--set", "services.metrics.worker.podDisruptionBudget.enabled=false",
        "--set", "services.ambassador.enabled=false"],
}

# Values the chart must refuse, with a word of the expected error.
REFUSED: dict[str, tuple[list[str], str]] = {
    "without secrets": ([], "is required"),
    "a misspelt value (values.schema.json)": (
        ["-f", str(CHART / "ci" / "test-values.yaml"), "--set", "serviceMonitor.enable=true"], "enable"),
    "retention other than forever": (
        ["-f", str(CHART / "ci" / "test-values.yaml"), "--set", "kafka.topics.config.retention\\.ms=86400000"],
        "retention.ms"),
}


def report(name: str, problems: list[str]) -> int:
    """Print the problems of one check and its verdict; the exit code of the check."""
    for problem in problems:
        print("FAIL", problem, file=sys.stderr)
    print(f" -- {name}: {'ok' if not problems else 'FAILED'}")
    return 1 if problems else 0


def render(helm: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, "template", "advocacy", str(CHART), "--namespace", "advocacy",
                           "--kube-version", KUBERNETES_VERSION, *args], capture_output=True, text=True)


def check_builtin(documents: list[dict[str, Any]]) -> list[str]:
    problems = []
    for document in documents:
        if document["kind"] in STRIMZI_KINDS or document["kind"] == "ServiceMonitor":
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{document['kind']}/{document['metadata']['name']}: {error.message} "
                            f"at {'.'.join(map(str, error.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{document['kind']} ({document['apiVersion']}): no Kubernetes schema, not a CRD we know")
    return problems


def check_service_monitors(documents: list[dict[str, Any]], node_modules: str) -> list[str]:
    monitors = [d for d in documents if d["kind"] == "ServiceMonitor"]
    if not monitors:
        return []
    result = subprocess.run(["node", str(Path(__file__).with_name("validate-servicemonitors.mjs"))],
                            input=json.dumps(monitors), capture_output=True, text=True,
                            env={"NODE_MODULES": node_modules, "PATH": "/usr/local/bin:/usr/bin:/bin"})
    print("   ", result.stdout.strip())
    return [line for line in result.stderr.splitlines() if line.strip()] if result.returncode else []


def check_topics(documents: list[dict[str, Any]], prefix: str) -> list[str]:
    topics = [d for d in documents if d["kind"] == "KafkaTopic"]
    names = sorted(t["spec"]["topicName"] for t in topics)
    problems = []
    if names != sorted(TopicNames(prefix).all()):
        problems.append(f"KafkaTopics {names} are not the topics of topics.py {sorted(TopicNames(prefix).all())}")
    for topic in topics:
        if topic["spec"].get("config", {}).get("retention.ms") != -1:
            problems.append(f"KafkaTopic {topic['spec']['topicName']}: retention.ms must be -1 (replayable)")
        if not topic["metadata"].get("labels", {}).get("strimzi.io/cluster"):
            problems.append(f"KafkaTopic {topic['spec']['topicName']}: no strimzi.io/cluster label")
    return problems


def entry_points(service: str) -> set[str]:
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    return set(project["project"].get("scripts", {}))


def env_names(service: str) -> set[str]:
    cls = settings_class(service)
    prefix = cls.model_config.get("env_prefix", "")
    return {prefix + name.upper() for name in cls.model_fields} | UNPREFIXED_ENV


def check_wiring(documents: list[dict[str, Any]]) -> list[str]:
    problems = []
    for document in documents:
        kind, labels = document["kind"], document["metadata"].get("labels", {})
        service = labels.get("app.kubernetes.io/name")
        if kind in {"ConfigMap", "Secret"} and service in SERVICES:
            keys = set(document.get("data") or {}) | set(document.get("stringData") or {})
            unknown = keys - env_names(service)
            if unknown:
                problems.append(f"{kind}/{document['metadata']['name']}: {sorted(unknown)} are not settings of "
                                f"{service} (see services/{service}/src/{service}/settings.py)")
        if kind == "Deployment":
            container = document["spec"]["template"]["spec"]["containers"][0]
            command = container["command"][0]
            if command not in entry_points(service):
                problems.append(f"Deployment/{document['metadata']['name']}: {command} is no entry point of {service}")
            if labels.get("app.kubernetes.io/component") == "api":
                probed = {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
                if probed != {"/livez", "/readyz"}:
                    problems.append(f"Deployment/{document['metadata']['name']}: probes {probed}")
    return problems


def served_paths(service: str) -> set[str]:
    import importlib

    app = importlib.import_module(f"{service}.bootstrap").create_app(settings_class(service).model_construct())
    return {getattr(route, "path", "") for route in app.routes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", required=True)
    parser.add_argument("--node-modules", required=True)
    args = parser.parse_args()
    problems: list[str] = []

    lint = subprocess.run([args.helm, "lint", "--strict", str(CHART), "-f", str(CHART / "ci" / "test-values.yaml"),
                           "--kube-version", KUBERNETES_VERSION], capture_output=True, text=True)
    print(" -- helm lint --strict:", "ok" if lint.returncode == 0 else "FAILED")
    if lint.returncode:
        problems.append(lint.stdout + lint.stderr)

    for name, values in CONFIGURATIONS.items():
        result = render(args.helm, values)
        if result.returncode:
            problems.append(f"{name}: helm template failed: {result.stderr}")
            continue
        documents = [d for d in yaml.safe_load_all(result.stdout) if d]
        prefix = "staging." if "settings.topic_prefix=staging." in values else ""
        kinds = sorted({d["kind"] for d in documents})
        print(f" -- {name}: {len(documents)} resources ({', '.join(kinds)})")
        problems += [f"{name}: {p}" for p in check_builtin(documents) + check_service_monitors(
            documents, args.node_modules) + check_topics(documents, prefix) + check_wiring(documents)]

    for name, (values, expected) in REFUSED.items():
        refused = render(args.helm, values)
        if refused.returncode == 0 or expected not in refused.stderr:
            problems.append(f"{name}: helm template should fail with {expected!r}")
        else:
            print(f" -- {name}: refused as it should be")

    for service in SERVICES:
        missing = {"/livez", "/readyz", "/metrics"} - served_paths(service)
        if missing:
            problems.append(f"{service} serves no {sorted(missing)}, which the chart probes or scrapes")

    return report("helm chart", problems)


if __name__ == "__main__":
    sys.exit(main())
