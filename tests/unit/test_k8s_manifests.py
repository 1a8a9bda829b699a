"""deploy/k8s is kept right by construction (no cluster runs here): each overlay is rendered as kustomize
renders it, every object is validated against the schemas of one Kubernetes release (KEDA's, which
have none there, against their structure), and the wiring is checked against the code: the variables
each service reads, peers against Services and listen ports, probes against container ports, Secrets
against their template, who may reach whom, the executors' pools and queues and the migration Job's commands."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import sqlalchemy
import yaml
from rq.queue import Queue

from common.job import Lane, queue_for
from common.languages import LANGUAGES
from execution_service.models import metadata as execution_tables
from execution_service.settings import ExecutionServiceConfig
from executor.settings import ExecutorConfig
from gateway.auth import OPEN_PATHS
from gateway.settings import GatewayConfig
from session_service.models import metadata as session_tables
from session_service.settings import SessionServiceConfig
from tests.unit.test_compose import READ_BY_EVERY_SERVICE, RecordingEnviron

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SECRETS_EXAMPLE = K8S / "secrets.example.yaml"
# The oldest Kubernetes release the manifests are for, and the newest the bundled schemas know.
KUBERNETES_VERSIONS = ("1.33", "1.37")
# java-pool: production with a pool of executors for Java alone (the example of a pool per language).
OVERLAYS = ("dev", "production", "java-pool")
CONFIGS: dict[str, Any] = {
    "session-service": SessionServiceConfig,
    "execution-service": ExecutionServiceConfig,
    "executor": ExecutorConfig,
    "gateway": GatewayConfig,
}
GRPC_LISTEN = {
    "session-service": "LCE_SESSION_LISTEN",
    "execution-service": "LCE_EXECUTION_LISTEN",
    "executor": "LCE_EXECUTOR_HEALTH_LISTEN",
}
PEERS = {"LCE_SESSION_SERVICE_ADDR": "session-service", "LCE_EXECUTION_SERVICE_ADDR": "execution-service"}
# What a service reads and the manifests leave unset on purpose, and why.
TLS = {"LCE_GRPC_TLS_CERT", "LCE_GRPC_TLS_KEY", "LCE_GRPC_TLS_CA"}  # kubelet's gRPC probes cannot do mTLS
DEFAULTED = {
    # Tokens come as files (LCE_*_TOKEN_FILE), never as variables.
    "session-service": TLS | {"LCE_INTERNAL_TOKEN"},
    "execution-service": TLS
    | {"LCE_INTERNAL_TOKEN", "LCE_EXECUTOR_TOKEN"}
    # The README's policy defaults: limits, retries, leases, windows.
    | {
        "LCE_RUNS_PER_MINUTE",
        "LCE_FAILURE_STREAK_LIMIT",
        "LCE_FAILURE_COOLDOWN_S",
        "LCE_LEASE_S",
        "LCE_RETRY_BACKOFF_S",
        "LCE_RECONCILE_INTERVAL_S",
        "LCE_IDEMPOTENCY_WINDOW_S",
        "LCE_COMPILE_TIME_LIMIT_MS",
        "LCE_COMPILE_MEMORY_LIMIT_MB",
    }
    # Webhooks stay off until a deployment adds its secret (and, if it must, its allow list).
    | {"LCE_WEBHOOK_SECRET", "LCE_WEBHOOK_SECRET_FILE", "LCE_CALLBACK_ALLOW", "LCE_WEBHOOK_RETRY_S"}
    | {"LCE_WEBHOOK_TIMEOUT_S"},
    "executor": TLS
    | {"LCE_EXECUTOR_TOKEN", "LCE_OUTPUT_LIMIT_BYTES", "LCE_REPORT_RETRY_S", "LCE_COMPILE_CACHE_MB"}
    | {"LCE_EXECUTOR_HEARTBEAT_S"}
    # Warm runtimes are on by default (executor/sandbox/warm.py).
    | {"LCE_WARM_RUNTIMES"}
    # Never unconfined; and no metrics port, since nothing may reach an executor.
    | {"LCE_SANDBOX_ALLOW_UNCONFINED", "LCE_METRICS_LISTEN"}
    # The image installs the declared libraries and the compile aids where the executor looks by default.
    | {"LCE_PACKAGES_DIR", "LCE_COMPILE_AIDS_DIR"},
    # No CORS unless a deployment names its origins.
    "gateway": TLS | {"LCE_INTERNAL_TOKEN", "LCE_CORS_ORIGINS"},
}
# The executor's capabilities, each for a reason given in executor.yaml and deploy/k8s/README.md.
EXECUTOR_CAPABILITIES = {
    "SYS_ADMIN",
    "NET_ADMIN",
    "SETUID",
    "SETGID",
    "SETPCAP",
    "CHOWN",
    "FOWNER",
    "DAC_OVERRIDE",
    "KILL",
}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}

Object = dict[str, Any]


# --- rendering: the subset of kustomize these overlays use, refusing anything else ---


def render(directory: Path) -> list[Object]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
    assert not unknown, f"{directory}: kustomize fields this renderer does not apply: {sorted(unknown)}"
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects += render(path) if path.is_dir() else [o for o in yaml.safe_load_all(path.read_text()) if o]
    for patch in kustomization.get("patches", []):
        apply_json_patch(objects, patch["target"], yaml.safe_load(patch["patch"]))
    for image in kustomization.get("images", []):
        for container in containers(objects):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    if "namespace" in kustomization:
        for obj in objects:
            # Kustomize renames the one Namespace object too.
            if obj["kind"] == "Namespace":
                obj["metadata"]["name"] = kustomization["namespace"]
            else:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def apply_json_patch(objects: list[Object], target: dict[str, str], operations: list[dict[str, Any]]) -> None:
    """RFC 6902's replace and remove, the operations the overlays use, on the one object the target names."""
    assert set(target) <= {"kind", "name"}, target
    (obj,) = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
    for operation in operations:
        assert operation["op"] in ("replace", "remove"), f"unsupported patch operation {operation['op']!r}"
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
        node = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: int | str = int(last) if isinstance(node, list) else last
        if isinstance(node, dict):
            assert last in node, f"nothing at {operation['path']}"
        if operation["op"] == "remove":
            del node[key]  # IndexError when there is nothing to remove
        else:
            node[key] = operation["value"]  # IndexError when there is nothing to replace


def pod_specs(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]["spec"]


def containers(objects: list[Object]) -> Iterator[Object]:
    for _, spec in pod_specs(objects):
        yield from spec.get("initContainers", [])
        yield from spec["containers"]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> list[Object]:
    return render(K8S / "overlays" / request.param)


@pytest.fixture(scope="module")
def example_secrets() -> dict[str, dict[str, str]]:
    documents = yaml.safe_load_all(SECRETS_EXAMPLE.read_text())
    return {secret["metadata"]["name"]: secret["stringData"] for secret in documents}


def find(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name!r}"
    return found[0]


def deployment_container(objects: list[Object], name: str) -> Object:
    (container,) = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


def executor_pools(objects: list[Object]) -> list[str]:
    """The Deployments of executors, one per pool: the pods the executor NetworkPolicy holds."""
    return [
        obj["metadata"]["name"]
        for obj in objects
        if obj["kind"] == "Deployment"
        and obj["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "executor"
    ]


def env_of(container: Object) -> dict[str, Object]:
    return {variable["name"]: variable for variable in container.get("env", [])}


def listen_port(container: Object, variable: str) -> int:
    return int(env_of(container)[variable]["value"].rpartition(":")[2])


def container_port(container: Object, port: int | str) -> int:
    """A probe's or Service's port, named or numbered, as the container exposes it."""
    found = [p["containerPort"] for p in container["ports"] if port in (p["containerPort"], p.get("name"))]
    assert len(found) == 1, f"{container['name']} exposes no port {port!r}"
    return int(found[0])


# --- the schemas ---


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_kubernetes(overlay: list[Object], version: str) -> None:
    kinds = {obj["kind"] for obj in overlay}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler", "Job"} <= kinds
    for obj in overlay:
        if obj["kind"] not in KEDA_KINDS:
            # strict: an unknown or misspelt field fails too.
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_secret_template_is_valid_and_holds_no_value(example_secrets: dict[str, dict[str, str]]) -> None:
    for secret in yaml.safe_load_all(SECRETS_EXAMPLE.read_text()):
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(secret, version, strict=True)
    for data in example_secrets.values():
        for key, value in data.items():
            assert value == "" or "REPLACE_ME" in value or key == "keda-username", key


def test_no_overlay_carries_a_secret(overlay: list[Object]) -> None:
    assert not [o for o in overlay if o["kind"] == "Secret"]


# KEDA v2's fields, as far as these manifests use them: its CRDs are not in Kubernetes' schemas.
_NAME = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_KEDA_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": {"type": "object"}},
    "additionalProperties": False,
}
KEDA_SCHEMAS = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": _KEDA_METADATA,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {**_NAME, "additionalProperties": False},
                    "minReplicaCount": {"type": "integer", "minimum": 1},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "horizontalPodAutoscalerConfig": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"behavior": {"type": "object"}},
                            }
                        },
                    },
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"const": "redis"},
                                "authenticationRef": {**_NAME, "additionalProperties": False},
                                "metadata": {
                                    "type": "object",
                                    "required": ["address", "listName", "listLength"],
                                    "additionalProperties": False,
                                    # Every value a string, as KEDA's metadata is map[string]string.
                                    "properties": {
                                        "address": {"type": "string", "pattern": r"^[a-z0-9.-]+:[0-9]+$"},
                                        "databaseIndex": {"type": "string", "pattern": "^[0-9]+$"},
                                        "listName": {"type": "string"},
                                        "listLength": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "metadata": _KEDA_METADATA,
            "spec": {
                "type": "object",
                "required": ["secretTargetRef"],
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {
                                "parameter": {"enum": ["username", "password"]},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
    },
}


def test_keda_objects_have_keda_s_shape(overlay: list[Object]) -> None:
    keda = [o for o in overlay if o["kind"] in KEDA_KINDS]
    assert {o["kind"] for o in keda} == KEDA_KINDS
    for obj in keda:
        jsonschema.validate(obj, KEDA_SCHEMAS[obj["kind"]])


# --- the wiring ---


def secret_references(overlay: list[Object]) -> set[tuple[str, str]]:
    """(Secret, key) pairs that pods and KEDA use."""
    used = set()
    for container in containers(overlay):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                used.add((ref["name"], ref["key"]))
    for _, spec in pod_specs(overlay):
        for volume in spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                used |= {(source["secret"]["name"], item["key"]) for item in source["secret"]["items"]}
    for auth in (o for o in overlay if o["kind"] == "TriggerAuthentication"):
        used |= {(ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    return used


def test_secrets_used_are_the_template_s(overlay: list[Object], example_secrets: dict[str, dict[str, str]]) -> None:
    templated = {(name, key) for name, data in example_secrets.items() for key in data}
    assert secret_references(overlay) == templated


def environment(container: Object, spec: Object, secrets: dict[str, dict[str, str]], tmp_path: Path) -> dict[str, str]:
    """The container's variables as its process would see them: Secrets' values from the template,
    token files written where their volume mounts them."""
    mounted = {}
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        for source in volumes[mount["name"]].get("projected", {}).get("sources", []):
            for item in source["secret"]["items"]:
                mounted[f"{mount['mountPath']}/{item['path']}"] = source["secret"]["name"]
    env = {}
    for name, variable in env_of(container).items():
        if "value" in variable:
            env[name] = variable["value"]
        elif "secretKeyRef" in variable["valueFrom"]:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[name] = secrets[ref["name"]][ref["key"]]
        else:
            assert variable["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[name] = "executor-5d8f7-abcde"
        if name.endswith("_TOKEN_FILE"):
            assert env[name] in mounted, f"{name}: no Secret is mounted at {env[name]}"
            token = tmp_path / mounted[env[name]]
            # Distinct tokens per Secret, long enough for common.config.
            token.write_text(mounted[env[name]].ljust(64, "0"))
            env[name] = str(token)
    return env


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_variable_a_service_reads_is_set_or_deliberately_defaulted(
    overlay: list[Object],
    name: str,
    example_secrets: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Every pool of executors is an executor.
    for deployment in executor_pools(overlay) if name == "executor" else [name]:
        spec = find(overlay, "Deployment", deployment)["spec"]["template"]["spec"]
        recorder = RecordingEnviron()
        recorder.update(environment(deployment_container(overlay, deployment), spec, example_secrets, tmp_path))
        monkeypatch.setattr(os, "environ", recorder)
        CONFIGS[name].from_env()  # the manifest's values are ones the service accepts
        read = recorder.asked | READ_BY_EVERY_SERVICE
        given = set(env_of(deployment_container(overlay, deployment)))
        assert given - read == set(), f"{deployment} is given variables it never reads"
        assert read - given == DEFAULTED[name], f"{deployment}: what is left to its default is not what DEFAULTED says"


@pytest.mark.parametrize("variable", sorted(PEERS))
def test_peer_addresses_name_a_service_that_reaches_the_listening_port(overlay: list[Object], variable: str) -> None:
    peer = PEERS[variable]
    clients = [c for c in containers(overlay) if variable in env_of(c)]
    assert clients
    for client in clients:
        host, _, port = env_of(client)[variable]["value"].partition(":")
        service = find(overlay, "Service", host)
        matching = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
        assert len(matching) == 1, f"{variable}: Service {host} has no port {port}"
        (service_port,) = matching
        target = deployment_container(overlay, peer)
        assert service["spec"]["selector"].items() <= pod_labels(overlay, peer).items()
        assert container_port(target, service_port["targetPort"]) == listen_port(target, GRPC_LISTEN[peer])


def pod_labels(overlay: list[Object], deployment: str) -> dict[str, str]:
    labels: dict[str, str] = find(overlay, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_the_gateway_is_reached_through_its_service(overlay: list[Object]) -> None:
    gateway = deployment_container(overlay, "gateway")
    (port,) = find(overlay, "Service", "gateway")["spec"]["ports"]
    assert container_port(gateway, port["targetPort"]) == listen_port(gateway, "LCE_GATEWAY_LISTEN")
    for ingress in (o for o in overlay if o["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == "gateway"
                assert backend["port"]["name"] == port["name"]


def test_grpc_services_have_native_grpc_probes_on_their_listening_port(overlay: list[Object]) -> None:
    listening = {**GRPC_LISTEN, **dict.fromkeys(executor_pools(overlay), GRPC_LISTEN["executor"])}
    for name, variable in listening.items():
        container = deployment_container(overlay, name)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = container[kind]["grpc"]["port"]
            assert container_port(container, port) == listen_port(container, variable), (name, kind)


def test_gateway_probes_its_open_health_route_on_its_http_port(overlay: list[Object]) -> None:
    gateway = deployment_container(overlay, "gateway")
    readiness = gateway["readinessProbe"]["httpGet"]
    assert readiness["path"] in OPEN_PATHS  # answered without an API key
    listening = listen_port(gateway, "LCE_GATEWAY_LISTEN")
    assert container_port(gateway, readiness["port"]) == listening
    for kind in ("startupProbe", "livenessProbe"):
        assert container_port(gateway, gateway[kind]["tcpSocket"]["port"]) == listening


def test_every_container_has_requests_and_limits(overlay: list[Object]) -> None:
    for container in containers(overlay):
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request, limit = resources["requests"][resource], resources["limits"][resource]
            assert quantity(request) <= quantity(limit), (container["name"], resource)


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def test_every_deployment_has_a_disruption_budget(overlay: list[Object]) -> None:
    budgets = [o for o in overlay if o["kind"] == "PodDisruptionBudget"]
    for deployment in (o for o in overlay if o["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, deployment["metadata"]["name"]


def test_autoscaled_deployments_leave_the_count_to_their_autoscaler(overlay: list[Object]) -> None:
    hpa = find(overlay, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    for pool in executor_pools(overlay):
        scaled = find(overlay, "ScaledObject", pool)["spec"]
        assert scaled["scaleTargetRef"]["name"] == pool
        assert scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    for name in ("gateway", *executor_pools(overlay)):
        assert "replicas" not in find(overlay, "Deployment", name)["spec"]


def served_languages(executor: Object) -> set[str]:
    """What an executor serves by its LCE_EXECUTOR_LANGUAGES (empty: every language; the image has them all)."""
    listed = env_of(executor)["LCE_EXECUTOR_LANGUAGES"]["value"]
    return {name.strip() for name in listed.split(",")} if listed else {language.name for language in LANGUAGES}


def test_each_pool_scales_on_the_rq_lists_of_exactly_the_queues_it_serves(overlay: list[Object]) -> None:
    queue = env_of(deployment_container(overlay, "execution-service"))["LCE_QUEUE_NAME"]["value"]
    served: list[str] = []
    for pool in executor_pools(overlay):
        executor = deployment_container(overlay, pool)
        assert env_of(executor)["LCE_QUEUE_NAME"]["value"] == queue
        assert env_of(executor)["LCE_EXECUTOR_POOL"]["value"] == (
            "default" if pool == "executor" else pool.removeprefix("executor-")
        )
        languages = served_languages(executor)
        served += languages
        triggers = find(overlay, "ScaledObject", pool)["spec"]["triggers"]
        # RQ's own key for each queue the pool listens to, and no other.
        expected = {
            Queue.redis_queue_namespace_prefix + queue_for(queue, language, lane)
            for language in languages
            for lane in Lane
        }
        assert sorted(trigger["metadata"]["listName"] for trigger in triggers) == sorted(expected), pool
        for trigger in triggers:
            auth = find(overlay, "TriggerAuthentication", trigger["authenticationRef"]["name"])
            assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"username", "password"}
    # Every language has a pool, and one only: a run never waits for executors that are not there.
    assert sorted(served) == sorted(language.name for language in LANGUAGES)


# --- privileges ---


def test_every_pod_but_the_executor_meets_the_restricted_pod_security_level(overlay: list[Object]) -> None:
    for obj, spec in pod_specs(overlay):
        assert spec["automountServiceAccountToken"] is False
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec)
        if obj["metadata"]["name"] in executor_pools(overlay):
            continue
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            context = container["securityContext"]
            assert context == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, container["name"]


def test_every_pool_s_pods_are_the_default_pool_s_but_for_its_pool_and_languages(overlay: list[Object]) -> None:
    """A pool's Deployment is a copy of the base executor's: no drift in privileges, probes or resources."""

    def pod(deployment: str) -> Object:
        template = copy.deepcopy(find(overlay, "Deployment", deployment)["spec"]["template"])
        template["metadata"]["labels"].pop("app.kubernetes.io/name")
        for variable in template["spec"]["containers"][0]["env"]:
            if variable["name"] in ("LCE_EXECUTOR_POOL", "LCE_EXECUTOR_LANGUAGES"):
                variable["value"] = "<per pool>"
        return template  # type: ignore[no-any-return]

    default = pod("executor")
    for pool in executor_pools(overlay):
        assert pod(pool) == default, pool


def test_every_executor_pool_gets_only_what_the_sandbox_needs(overlay: list[Object]) -> None:
    for pool in executor_pools(overlay):
        check_sandbox_privileges(overlay, pool)


def check_sandbox_privileges(overlay: list[Object], pool: str) -> None:
    spec = find(overlay, "Deployment", pool)["spec"]["template"]["spec"]
    executor = deployment_container(overlay, pool)
    context = executor["securityContext"]
    assert context["privileged"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert set(context["capabilities"]["add"]) == EXECUTOR_CAPABILITIES
    assert context["readOnlyRootFilesystem"] is True
    host_paths = [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v]
    assert host_paths == ["/run/lce-slots"]  # slot uid locks, shared by the node's executors
    # It ends as the image's own command, and never runs code unconfined.
    assert executor["args"][0].endswith("&& exec python -m executor")
    assert "LCE_SANDBOX_ALLOW_UNCONFINED" not in env_of(executor)


# --- who reaches whom ---


@dataclass(frozen=True)
class Pod:
    labels: dict[str, str]
    namespace: str


def selects(selector: Object, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def peer_matches(selector: Object, pod: Pod, policy_namespace: str) -> bool:
    assert "ipBlock" not in selector
    if "namespaceSelector" in selector:
        if not selects(selector["namespaceSelector"], {"kubernetes.io/metadata.name": pod.namespace}):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return selects(selector.get("podSelector", {}), pod.labels)


def rule_admits(rule: Object, key: str, peer: Pod, policy_namespace: str, port: int) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("protocol", "TCP") == "TCP" and p["port"] == port for p in ports):
        return False
    peers = rule.get(key)
    return not peers or any(peer_matches(selector, peer, policy_namespace) for selector in peers)


def allowed(policies: list[Object], direction: str, subject: Pod, peer: Pod, port: int) -> bool:
    """Whether the policies selecting `subject` let it talk to `peer` (the sender for ingress, the receiver
    for egress) on port; a pod that no policy of this direction selects is not isolated in it."""
    kind, key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == subject.namespace
        and kind in policy["spec"]["policyTypes"]
        and selects(policy["spec"]["podSelector"], subject.labels)
    ]
    return not selecting or any(
        rule_admits(rule, key, peer, policy["metadata"]["namespace"], port)
        for policy in selecting
        for rule in policy["spec"].get(direction, [])
    )


def reaches(overlay: list[Object], source: Pod, destination: Pod, port: int) -> bool:
    policies = [o for o in overlay if o["kind"] == "NetworkPolicy"]
    return allowed(policies, "egress", source, destination, port) and allowed(
        policies, "ingress", destination, source, port
    )


def test_network_policies_admit_exactly_the_designed_paths(overlay: list[Object]) -> None:
    namespace = find(overlay, "Deployment", "gateway")["metadata"]["namespace"]
    pools = executor_pools(overlay)
    ours = {
        name: Pod(pod_labels(overlay, name), namespace)
        for name in ("session-service", "execution-service", *pools, "gateway")
    }
    ours["migrate"] = Pod(find(overlay, "Job", "migrate")["spec"]["template"]["metadata"]["labels"], namespace)
    ports = {
        name: [p["containerPort"] for p in deployment_container(overlay, name)["ports"]]
        for name in ("session-service", "execution-service", *pools, "gateway")
    }
    designed = {
        ("gateway", "session-service", 7051),
        ("gateway", "execution-service", 7052),
        ("execution-service", "session-service", 7051),
        *((pool, "execution-service", 7052) for pool in pools),
    }
    for source, source_pod in ours.items():
        for destination, destination_ports in ports.items():
            for port in destination_ports:
                admitted = reaches(overlay, source_pod, ours[destination], port)
                assert admitted == ((source, destination, port) in designed), (source, destination, port)
    stores = {"postgresql": 5432, "redis": 6379}
    store_clients = {
        "postgresql": {"session-service", "execution-service", "migrate"},
        "redis": {"session-service", "execution-service", *pools, "gateway"},
    }
    for store, port in stores.items():
        store_pod = Pod({"app.kubernetes.io/name": store}, namespace)
        clients = {name for name, pod in ours.items() if reaches(overlay, pod, store_pod, port)}
        assert clients == store_clients[store], store
    ingress_controller, prometheus = Pod({}, "ingress-nginx"), Pod({}, "monitoring")
    for name, destination_ports in ports.items():
        for port in destination_ports:
            from_ingress = reaches(overlay, ingress_controller, ours[name], port)
            assert from_ingress == ((name, port) == ("gateway", 8080))
            scraped = reaches(overlay, prometheus, ours[name], port)
            assert scraped == (port == 9464 and name in ("session-service", "execution-service", "gateway"))
    # Nothing reaches an executor on its own policy's word, whatever the others' egress says.
    policies = [o for o in overlay if o["kind"] == "NetworkPolicy"]
    for source in [*ours.values(), ingress_controller, prometheus]:
        for pool in pools:
            for port in ports[pool]:
                assert not allowed(policies, "ingress", ours[pool], source, port)


# --- the migration Job ---


def test_the_migration_job_migrates_each_service_s_tables(overlay: list[Object], tmp_path: Path) -> None:
    job = find(overlay, "Job", "migrate")["spec"]["template"]["spec"]
    steps = [*job["initContainers"], *job["containers"]]
    expected = {"session_service": set(session_tables.tables), "execution_service": set(execution_tables.tables)}
    assert [step["image"].rpartition("/")[2].split(":")[0].removeprefix("lce-") for step in steps] == [
        "session-service",
        "execution-service",
    ]
    for step, (package, tables) in zip(steps, expected.items(), strict=True):
        assert step["command"] == ["python", "-m", package, "migrate"]
        assert set(env_of(step)) == {"LCE_DATABASE_URL"}
        database = tmp_path / f"{package}.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LCE_")}
        command = [sys.executable, *step["command"][1:]]
        done = subprocess.run(command, cwd=K8S.parents[1], env={**env, "LCE_DATABASE_URL": f"sqlite:///{database}"})
        assert done.returncode == 0
        version_table = f"{package}_alembic_version"
        names = set(sqlalchemy.inspect(sqlalchemy.create_engine(f"sqlite:///{database}")).get_table_names())
        assert names == tables | {version_table}


def test_images_are_the_dockerfile_s_targets_at_one_tag(overlay: list[Object]) -> None:
    dockerfile = (K8S.parents[1] / "Dockerfile").read_text()
    tags = set()
    for container in containers(overlay):
        name, _, tag = container["image"].rpartition(":")
        target = name.rpartition("/")[2].removeprefix("lce-").replace("-", "_")
        assert f"AS {target}\n" in dockerfile, container["image"]
        tags.add(tag)
    assert len(tags) == 1 and "latest" not in tags
