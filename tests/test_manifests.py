"""The Kubernetes manifests, checked offline: what `kubectl apply -k manifests/` would send.

- Built-in kinds validate with kubernetes-validate in strict mode (unknown fields are errors,
  as with kubectl's default `--validate=strict`) for KUBERNETES_VERSION.
- The RayService validates against KubeRay's CRD schema with jsonschema, unknown fields
  rejected.
- serveConfigV2 is serve_config.yaml (plus the cluster overrides): `make manifests` regenerates
  it and these tests fail when the two drift apart.

The FaceCollection CRD itself (schema, CEL rules) is tested in test_facecollection_crd.py.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.kube_manifests import (
    EXAMPLES,
    KUBERAY_CRDS,
    KUBERNETES_VERSION,
    MANIFESTS,
    REPO,
    applied_docs,
    crd_version,
    kustomization,
    load_docs,
    one,
    ray_pod_templates,
    rayservice,
    schema_errors,
)

DATABASE_SECRET = ("FACESERVE_DATABASE_URL", "faceserve-postgres", "url", False)
PINECONE_SECRET = ("FACESERVE_PINECONE_API_KEY", "faceserve-pinecone", "api-key", True)
# The Ray pods only: the service's first admin key (the operator needs none).
ADMIN_KEY_SECRET = ("FACESERVE_ADMIN_KEY", "faceserve-admin-key", "secret", True)


def sync_script():
    """scripts/sync_rayservice.py as a module (scripts/ is not a package)."""
    path = REPO / "scripts" / "sync_rayservice.py"
    spec = importlib.util.spec_from_file_location("sync_rayservice", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the kustomization ------------------------------------------------------------------------


def test_kustomization_lists_exactly_the_manifest_files():
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources)), "a file is listed twice"
    for name in resources:
        assert (MANIFESTS / name).is_file(), f"kustomization lists {name}, which does not exist"
    on_disk = {p.name for p in MANIFESTS.glob("*.y*ml")} - {"kustomization.yaml"}
    assert set(resources) == on_disk, "every manifest in manifests/ is applied, and only those"
    # The examples stay out: Secrets hold credentials, and a FaceCollection cannot be applied
    # in the same call that creates its CRD.
    assert not any(name.startswith("examples/") for name in resources)


def test_cluster_role_binding_names_the_operator_account_in_the_kustomization_namespace():
    binding = one("ClusterRoleBinding", "faceserve-operator")
    account = one("ServiceAccount")
    deployment = one("Deployment", "faceserve-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one("ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": kustomization()["namespace"],
        }
    ]
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    )
    assert one("Namespace")["metadata"]["name"] == kustomization()["namespace"]


# -- built-in kinds: kubernetes-validate, strict ----------------------------------------------


def built_in_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = applied_docs() + [
        (f"examples/{p.name}", doc) for p in sorted(EXAMPLES.glob("*.yaml")) for doc in load_docs(p)
    ]
    return [
        (name, doc) for name, doc in docs if doc["kind"] not in ("RayService", "FaceCollection")
    ]


@pytest.mark.parametrize(
    ("name", "document"),
    built_in_docs(),
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in built_in_docs()],
)
def test_built_in_manifest_validates_strictly(name, document):
    assert kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_rayservice_is_the_only_applied_custom_resource():
    """kubernetes-validate only warns on kinds it has no schema for: the only such kind applied
    is the RayService, validated against KubeRay's CRD below, so nothing passes unchecked."""
    custom = set()
    for _, document in applied_docs():
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.add(document["kind"])
    assert custom == {"RayService"}


def test_strict_validation_rejects_an_unknown_field():
    deployment = copy.deepcopy(one("Deployment", "faceserve-operator"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("group", ["head", "cpu", "gpu"])
def test_ray_pod_templates_validate_as_kubernetes_pod_templates(group):
    template = ray_pod_templates(rayservice())[group]
    document = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": f"faceserve-{group}"},
        "template": template,
    }
    assert kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


# -- the operator -----------------------------------------------------------------------------


def test_operator_rbac_is_the_least_kopf_needs():
    granted = {}
    for rule in one("ClusterRole", "faceserve-operator")["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "resourceNames" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == {
        ("faceserve.io", "facecollections"): {"list", "watch", "patch"},
        ("faceserve.io", "facecollections/status"): {"patch"},
        ("", "events"): {"create"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
    # No namespaced Role: everything kopf does with --all-namespaces is cluster-wide.
    assert not [doc for _, doc in applied_docs() if doc["kind"] in ("Role", "RoleBinding")]


def test_operator_runs_kopf_standalone_with_a_liveness_endpoint_its_probe_uses():
    spec = one("Deployment", "faceserve-operator")["spec"]
    assert spec["replicas"] == 1, "--standalone: a second replica would handle everything twice"
    container = spec["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:5] == [
        "kopf",
        "run",
        "/app/operator/handlers.py",
        "--all-namespaces",
        "--standalone",
    ]
    liveness = next(arg for arg in command if arg.startswith("--liveness="))
    url = re.fullmatch(r"--liveness=http://0\.0\.0\.0:(\d+)(/\S*)", liveness)
    assert url, liveness
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[probe["port"]] == int(url[1])
    assert probe["path"] == url[2]


def test_operator_is_non_root_with_resources():
    pod = one("Deployment", "faceserve-operator")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def secret_env(container: dict[str, Any]) -> set[tuple[str, str, str, bool]]:
    return {
        (
            env["name"],
            env["valueFrom"]["secretKeyRef"]["name"],
            env["valueFrom"]["secretKeyRef"]["key"],
            env["valueFrom"]["secretKeyRef"].get("optional", False),
        )
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }


def test_operator_and_every_ray_container_read_the_same_secrets():
    operator = one("Deployment", "faceserve-operator")["spec"]["template"]["spec"]["containers"][0]
    expected = secret_env(operator)
    assert expected == {DATABASE_SECRET, PINECONE_SECRET}
    for group, template in ray_pod_templates(rayservice()).items():
        ray_container = template["spec"]["containers"][0]
        assert secret_env(ray_container) == expected | {ADMIN_KEY_SECRET}, group


def test_secret_example_defines_what_the_manifests_reference():
    defined = {
        (doc["metadata"]["name"], key)
        for doc in load_docs(EXAMPLES / "secrets.example.yaml")
        for key in doc["stringData"]
    }
    secrets = (DATABASE_SECRET, PINECONE_SECRET, ADMIN_KEY_SECRET)
    referenced = {(name, key) for _, name, key, _ in secrets}
    assert defined == referenced
    for doc in load_docs(EXAMPLES / "secrets.example.yaml"):
        assert doc["metadata"]["namespace"] == kustomization()["namespace"]


# -- the RayService ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kuberay_rayservice_schema() -> dict[str, Any]:
    path = KUBERAY_CRDS / "ray.io_rayservices.yaml"
    if not path.is_file():
        pytest.skip(f"KubeRay's RayService CRD is not at {path} (../shared/data/kuberay-crds/)")
    definition = yaml.safe_load(path.read_text())
    return crd_version(definition, "v1")["schema"]["openAPIV3Schema"]


def test_rayservice_validates_against_kuberays_crd(kuberay_rayservice_schema):
    assert schema_errors(kuberay_rayservice_schema, rayservice()) == []


def test_kuberay_schema_check_rejects_an_unknown_field(kuberay_rayservice_schema):
    service = copy.deepcopy(rayservice())
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplica"] = 1
    assert schema_errors(kuberay_rayservice_schema, service)


def test_serve_config_v2_is_serve_config_yaml_with_the_cluster_host():
    """The drift check: regenerate with `make manifests` when this fails."""
    local = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    embedded = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    assert embedded["http_options"].pop("host") == "0.0.0.0"
    assert local["http_options"].pop("host") == "127.0.0.1"
    assert embedded == local


def test_rayservice_file_is_what_make_manifests_writes():
    sync = sync_script()
    text = (MANIFESTS / "rayservice.yaml").read_text()
    assert sync.synced_manifest(text, (REPO / "serve_config.yaml").read_text()) == text
    assert sync.main(["--check"]) == 0


def test_a_serve_config_change_is_detected_as_drift():
    sync = sync_script()
    text = (MANIFESTS / "rayservice.yaml").read_text()
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
    config["applications"][0]["deployments"][0]["autoscaling_config"]["max_replicas"] += 1
    changed = sync.synced_manifest(text, yaml.safe_dump(config))
    assert changed != text
    # Only the block changed: the manifest's other lines and comments stay as they were.
    assert (
        yaml.safe_load(changed)["spec"]["rayClusterConfig"]
        == rayservice()["spec"]["rayClusterConfig"]
    )
    assert [line for line in changed.splitlines() if line.lstrip().startswith("#")] == [
        line for line in text.splitlines() if line.lstrip().startswith("#")
    ]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own pydantic deprecations
def test_serve_config_v2_is_a_valid_ray_serve_config():
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load(rayservice()["spec"]["serveConfigV2"]))
    assert config.http_options.host == "0.0.0.0"
    assert [app.import_path for app in config.applications] == ["serve_app.app:build"]


def test_ray_version_matches_the_installed_ray_and_the_image():
    ray_version = importlib.metadata.version("ray")
    assert rayservice()["spec"]["rayClusterConfig"]["rayVersion"] == ray_version
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(rf"^ARG RAY_VERSION={re.escape(ray_version)}$", dockerfile, re.MULTILINE)


def test_ray_cluster_has_a_head_a_cpu_group_and_a_gpu_group_that_starts_empty():
    cluster = rayservice()["spec"]["rayClusterConfig"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}

    def limits(group: dict[str, Any]) -> dict[str, Any]:
        return group["template"]["spec"]["containers"][0]["resources"]["limits"]

    assert groups["gpu"]["minReplicas"] == 0 and groups["gpu"]["replicas"] == 0
    assert groups["gpu"]["maxReplicas"] >= 1
    assert int(limits(groups["gpu"])["nvidia.com/gpu"]) >= 1
    assert "nvidia.com/gpu" not in limits(groups["cpu"])
    assert groups["cpu"]["minReplicas"] >= 1
    assert cluster["enableInTreeAutoscaling"] is True, "GPU workers only come from the autoscaler"


def test_every_ray_pod_runs_the_operator_image_as_non_root():
    images = {
        one("Deployment", "faceserve-operator")["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
    }
    for group, template in ray_pod_templates(rayservice()).items():
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, group
        assert pod["securityContext"]["runAsUser"] == 1000, group
        for container in pod["containers"]:
            images.add(container["image"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert images == {"faceserve"}, "one image for the Serve app and the operator"
    assert [i["name"] for i in kustomization()["images"]] == ["faceserve"]
    # The image's user is the one the manifests run as.
    assert re.search(r"^USER 1000:1000$", (REPO / "Dockerfile").read_text(), re.MULTILINE)


def test_image_holds_what_the_manifests_run():
    """The operator's command and the image's own command name files the image has."""
    dockerfile = (REPO / "Dockerfile").read_text()
    runtime = dockerfile[dockerfile.index("AS runtime") :]
    workdir = re.search(r"^WORKDIR (\S+)$", runtime, re.MULTILINE)[1]
    copied = set()
    for source, destination in re.findall(r"^COPY (\S+) (\S+)$", runtime, re.MULTILINE):
        target = Path(workdir) / destination
        if destination.endswith("/"):  # into a directory: keeps the source's name
            target = target / Path(source).name
        copied.add(str(target))
    assert {f"{workdir}/operator", f"{workdir}/serve_config.yaml"} <= copied
    handlers = one("Deployment", "faceserve-operator")["spec"]["template"]["spec"]["containers"][0]
    assert handlers["command"][2] == f"{workdir}/operator/handlers.py"
    assert f'"--config", "{workdir}/serve_config.yaml"' in runtime
    allowed = (REPO / ".dockerignore").read_text().split()
    assert {"!operator/", "!serve_config.yaml", "!serve_app/", "!pyproject.toml"} <= set(allowed)


def test_head_declares_the_serve_port_kuberay_builds_its_serve_service_from():
    head = ray_pod_templates(rayservice())["head"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    serve_port = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])["http_options"]["port"]
    assert ports["serve"] == serve_port
    assert ports["gcs-server"] == 6379 and ports["dashboard"] == 8265
