"""Loading and checking the Kubernetes manifests offline: shared by the manifest tests.

The CRDs' OpenAPI v3 schemas become JSON Schema for jsonschema (strict, as the API server's
field validation), their defaults are applied as the API server does, and their CEL rules
(x-kubernetes-validations) run in cel-python.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "manifests"
EXAMPLES = MANIFESTS / "examples"
KUBERAY_CRDS = REPO.parent / "shared" / "data" / "kuberay-crds"
# The Kubernetes version the manifests are validated against (README says so too).
KUBERNETES_VERSION = "1.33"


# -- loading --------------------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def applied_docs() -> list[tuple[str, dict[str, Any]]]:
    """(file, document) for everything `kubectl apply -k manifests/` applies."""
    return [
        (name, doc) for name in kustomization()["resources"] for doc in load_docs(MANIFESTS / name)
    ]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for _, doc in applied_docs()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def crd() -> dict[str, Any]:
    return one("CustomResourceDefinition", "facecollections.faceserve.io")


def crd_version(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in definition["spec"]["versions"] if v["name"] == name)


def facecollection_schema() -> dict[str, Any]:
    return crd_version(crd(), "v1alpha1")["schema"]["openAPIV3Schema"]


def rayservice() -> dict[str, Any]:
    return one("RayService", "faceserve")


def ray_pod_templates(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    for group in cluster["workerGroupSpecs"]:
        templates[group["groupName"]] = group["template"]
    return templates


# -- OpenAPI v3 (Kubernetes flavour) to JSON Schema -------------------------------------------


def to_json_schema(node: Any) -> Any:
    """A CRD's structural schema as the JSON Schema jsonschema understands, strict like the API
    server's field validation: an object with `properties` admits no other field unless it
    preserves unknown fields. `nullable` becomes a null type, int-or-string an anyOf, and the
    other x-kubernetes-* extensions (CEL rules, list types) are dropped (CEL is tested apart)."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: (to_json_schema(value) if key not in ("enum", "default", "example") else value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def schema_errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(to_json_schema(schema))
    return sorted(
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    )


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in, as the API server does before validating."""
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    result = copy.deepcopy(value)
    for key, sub in schema["properties"].items():
        if key not in result and "default" in sub:
            result[key] = copy.deepcopy(sub["default"])
        if key in result:
            result[key] = with_defaults(sub, result[key])
    return result


# -- CEL (x-kubernetes-validations) -----------------------------------------------------------


def cel_rules(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple]:
    """(path, rule, message) for every x-kubernetes-validations rule under `schema`."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], rule.get("message", rule["rule"])
    for key, sub in schema.get("properties", {}).items():
        yield from cel_rules(sub, (*path, key))


def lookup(document: dict[str, Any] | None, path: tuple[str, ...]) -> tuple[bool, Any]:
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def cel_violations(new: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Messages of the CRD's CEL rules that `new` (an update of `old`, or a create) breaks.

    As the API server: defaults first; a rule runs where its field exists; a transition rule
    (one that mentions oldSelf) only on update, and only where the field exists in both."""
    schema = facecollection_schema()
    new, old = with_defaults(schema, new), (with_defaults(schema, old) if old else None)
    environment = celpy.Environment()
    broken = []
    for path, rule, message in cel_rules(schema):
        exists, value = lookup(new, path)
        if not exists:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if "oldSelf" in rule:
            old_exists, old_value = lookup(old, path)
            if old is None or not old_exists:
                continue
            activation["oldSelf"] = celpy.json_to_cel(old_value)
        result = environment.program(environment.compile(rule)).evaluate(activation)
        if result is not True and result != celpy.celtypes.BoolType(True):
            broken.append(message)
    return broken


def facecollection(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "faceserve.io/v1alpha1",
        "kind": "FaceCollection",
        "metadata": {"name": "staff", "namespace": "faceserve"},
        "spec": spec,
    }
