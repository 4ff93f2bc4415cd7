"""The deployment files (infra/kubernetes, infra/compose.yaml, the Dockerfile) agree with the
Kubernetes API and with the code they deploy.

No cluster and no Docker engine run here: the Kubernetes objects are checked against the API's
own published schemas (kubernetes-validate, strict: an unknown field is an error), and every
name that must match the code is checked against the code itself: the settings
(``GUAHAO_<FIELD>``), the commands, the health route, the simulator's options, the files the
image copies.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from guahao.cli import main as cli
from guahao.config import Settings
from guahao.hospital_connectors.simulator.__main__ import _arguments as simulator_arguments

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "infra" / "kubernetes"
COMPOSE = ROOT / "infra" / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES_VERSION = "1.32.0"
"""The oldest Kubernetes release the manifests must be valid for."""

SETTINGS = {f"GUAHAO_{name.upper()}" for name in Settings.__struct_fields__}
SECRET_SETTINGS = {
    "GUAHAO_DATABASE_URL",  # holds the database password
    "GUAHAO_REDIS_URL",
    "GUAHAO_MEILI_API_KEY",
    "GUAHAO_SECRET_KEY",
    "GUAHAO_DATA_KEY",
    "GUAHAO_PAYMENT_SECRET",
    "GUAHAO_PAYMENT_SANDBOX_REDIS_URL",  # holds that Redis's password
}


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return loaded


def manifests() -> list[dict[str, Any]]:
    documents = []
    for name in kustomization()["resources"]:
        documents += [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d]
    return documents


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests() if d["kind"] == kind]


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    found = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in of_kind("Deployment")]
    found += [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in of_kind("Job")]
    return found


def test_kustomization_lists_every_manifest_of_the_folder() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@pytest.mark.parametrize(
    "document", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_every_object_is_valid_for_the_kubernetes_api(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_broken_object_is_refused_by_the_validation() -> None:
    deployment = next(d for d in of_kind("Deployment"))
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_settings_are_real_and_secrets_live_in_the_secret() -> None:
    config = of_kind("ConfigMap")[0]["data"]
    secret = of_kind("Secret")[0]["stringData"]
    inline = {
        e["name"] for _, spec in pod_specs() for c in spec["containers"] for e in c.get("env", [])
    }
    assert set(config) | set(secret) | inline <= SETTINGS
    assert set(secret) == SECRET_SETTINGS
    assert not SECRET_SETTINGS & (set(config) | inline)
    for _, spec in pod_specs():
        for container in spec["containers"]:
            sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
            assert sources == {"guahao-settings", "guahao-secrets"}


def test_containers_run_commands_the_image_has_and_probe_the_health_route() -> None:
    image = kustomization()["images"][0]["name"]
    for name, spec in pod_specs():
        for container in spec["containers"]:
            assert container["image"] == image, name
            assert container["args"][0] in cli.commands, (name, container["args"])
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["path"] == "/health", (name, probe)


def test_services_budgets_and_autoscaling_reach_real_pods_and_ports() -> None:
    pods = {
        d["metadata"]["name"]: (
            d["spec"]["template"]["metadata"]["labels"],
            {p["name"] for c in d["spec"]["template"]["spec"]["containers"] for p in c["ports"]},
        )
        for d in of_kind("Deployment")
    }

    def matching(selector: dict[str, str]) -> list[str]:
        return [n for n, (labels, _) in pods.items() if selector.items() <= labels.items()]

    for service in of_kind("Service"):
        targets = matching(service["spec"]["selector"])
        assert len(targets) == 1, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in pods[targets[0]][1]
    for budget in of_kind("PodDisruptionBudget"):
        assert len(matching(budget["spec"]["selector"]["matchLabels"])) == 1
    for scaler in of_kind("HorizontalPodAutoscaler"):
        assert scaler["spec"]["scaleTargetRef"]["name"] in pods
    services = {s["metadata"]["name"] for s in of_kind("Service")}
    for ingress in of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] in services
    web = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == "guahao-web")
    jobs = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == "guahao-jobs")
    run_jobs = {
        d["metadata"]["name"]: next(
            e["value"]
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"] == "GUAHAO_RUN_JOBS"
        )
        for d in (web, jobs)
    }
    assert run_jobs == {"guahao-web": "false", "guahao-jobs": "true"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_services_depend_on_services_and_set_real_settings() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "meilisearch", "migrate", "jobs", "his"} <= set(services)
    assert sum(1 for s in services.values() if s.get("command") == ["serve"]) >= 3
    for name, service in services.items():
        depends = service.get("depends_on", [])
        assert set(depends) <= set(services), name
        for key in service.get("environment", {}):
            if key.startswith("GUAHAO_"):
                assert key in SETTINGS, (name, key)


def test_compose_runs_commands_the_image_has() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if service.get("image") != "guahao:latest":
            continue
        entrypoint = service.get("entrypoint", ["guahao"])
        if entrypoint == ["guahao"]:
            assert service["command"][0] in cli.commands, name
        else:
            assert entrypoint == ["guahao", "his-simulator"]
            simulator_arguments(service["command"])  # exits on an unknown option
    build = services["web-1"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_the_dockerfile_copies_what_exists_and_serves_the_app() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for line in lines:
        if line.startswith("COPY") and "--from=" not in line:
            *sources, _ = shlex.split(line)[1:]
            for source in sources:
                assert (ROOT / source).exists(), line
    assert 'ENTRYPOINT ["guahao"]' in lines
    assert 'CMD ["serve"]' in lines
    assert any(line.startswith("USER ") and line != "USER root" for line in lines)
    assets = [
        a
        for a in (ROOT / "infra" / "web_assets.txt").read_text().splitlines()
        if a and not a.startswith("#")
    ]
    for asset in assets:  # what setup.sh copies, from what package.json installs
        assert (ROOT / "node_modules" / asset).is_file(), asset
        assert (ROOT / "guahao" / "web" / "static" / "vendor" / Path(asset).name).is_file()


def test_the_sandbox_payment_gateway_keeps_its_orders_in_a_redis_of_its_own() -> None:
    """A loss of the platform's Redis must not touch the gateway's orders, or reconciliation
    after the loss meets a gateway that forgot them (docs/operations.md)."""
    services = compose()["services"]
    environment = services["web-1"]["environment"]
    gateway = environment["GUAHAO_PAYMENT_SANDBOX_REDIS_URL"]
    host = gateway.split("//", 1)[1].split(":", 1)[0]
    assert host in services
    assert host != "redis"
    assert services[host]["image"].startswith("redis:")
    assert "--appendonly" in services[host]["command"]
    assert "payment-sandbox-redis" in services["web-1"]["depends_on"]
    secret = of_kind("Secret")[0]["stringData"]
    servers = {
        key: secret[key].split("@", 1)[1].split("/", 1)[0]
        for key in ("GUAHAO_REDIS_URL", "GUAHAO_PAYMENT_SANDBOX_REDIS_URL")
    }
    assert servers["GUAHAO_REDIS_URL"] != servers["GUAHAO_PAYMENT_SANDBOX_REDIS_URL"]
