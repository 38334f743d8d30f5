"""The FaceCollection CRD (manifests/crd-facecollection.yaml): the contract the operator is
written against, its schema (examples accepted, bad specs rejected) and its CEL rules
(immutable fields), evaluated in cel-python on (old, new) pairs as the API server would."""

from __future__ import annotations

import celpy
import pytest

from tests.kube_manifests import (
    EXAMPLES,
    cel_rules,
    cel_violations,
    crd,
    crd_version,
    facecollection,
    facecollection_schema,
    load_docs,
    schema_errors,
    with_defaults,
)

# -- the FaceCollection CRD -------------------------------------------------------------------


def test_crd_names_scope_and_status_subresource():
    spec = crd()["spec"]
    assert spec["group"] == "faceserve.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "FaceCollection",
        "listKind": "FaceCollectionList",
        "plural": "facecollections",
        "singular": "facecollection",
        "shortNames": ["fcol"],
    }
    version = crd_version(crd(), "v1alpha1")
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1"]


def test_crd_printer_columns():
    columns = crd_version(crd(), "v1alpha1")["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c["jsonPath"]) for c in columns] == [
        ("Backend", "string", ".spec.vectorBackend"),
        ("Pack", "string", ".spec.modelPack"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Faces", "integer", ".status.faces"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


def test_crd_spec_fields_enums_and_defaults():
    spec = facecollection_schema()["properties"]["spec"]["properties"]
    assert spec["modelPack"]["enum"] == ["dlib-r29", "buffalo_l", "buffalo_s", "antelopev2"]
    assert spec["modelPack"]["default"] == "dlib-r29"
    assert spec["vectorBackend"]["enum"] == ["pgvector", "pinecone"]
    assert spec["vectorBackend"]["default"] == "pgvector"
    assert spec["pinecone"]["properties"]["cloud"]["enum"] == ["aws", "gcp", "azure"]
    assert spec["pinecone"]["properties"]["cloud"]["default"] == "aws"
    assert spec["pinecone"]["properties"]["region"]["default"] == "us-east-1"
    assert spec["deletionPolicy"]["enum"] == ["Retain", "Delete"]
    assert spec["deletionPolicy"]["default"] == "Retain"
    assert spec["description"]["maxLength"] == 1024


def test_crd_model_packs_are_the_services_packs():
    from serve_app.vision.packs.registry import PACKS

    enum = facecollection_schema()["properties"]["spec"]["properties"]["modelPack"]["enum"]
    assert set(enum) == set(PACKS)


def test_crd_schema_is_structural_where_kopf_needs_it():
    status = facecollection_schema()["properties"]["status"]["properties"]
    assert status["kopf"]["x-kubernetes-preserve-unknown-fields"] is True
    assert status["faces"]["type"] == "integer"
    assert set(status) >= {
        "observedGeneration", "conditions", "collectionId", "schema", "modelVersion",
        "vectorBackend", "pineconeIndex", "faces", "applied", "kopf",
    }  # fmt: skip


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("facecollection*.yaml")), ids=lambda p: p.name
)
def test_facecollection_examples_validate_against_the_crd(path):
    schema = facecollection_schema()
    for document in load_docs(path):
        assert document["apiVersion"] == "faceserve.io/v1alpha1"
        assert schema_errors(schema, with_defaults(schema, document)) == []
        assert cel_violations(document) == []


def test_an_empty_spec_gets_the_defaults():
    schema = facecollection_schema()
    document = with_defaults(schema, facecollection())
    assert document["spec"] == {
        "modelPack": "dlib-r29",
        "vectorBackend": "pgvector",
        "deletionPolicy": "Retain",
    }
    del document["spec"]
    assert with_defaults(schema, document)["spec"]["modelPack"] == "dlib-r29"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"vectorBackend": "faiss"}, "spec.vectorBackend"),
        ({"modelPack": "arcface"}, "spec.modelPack"),
        ({"deletionPolicy": "retain"}, "spec.deletionPolicy"),
        ({"deletionPolicy": "Orphan"}, "spec.deletionPolicy"),
        ({"replicas": 2}, "spec"),
        (
            {"vectorBackend": "pinecone", "pinecone": {"region": "US_EAST_1"}},
            "spec.pinecone.region",
        ),
        ({"vectorBackend": "pinecone", "pinecone": {"region": "a" * 65}}, "spec.pinecone.region"),
        ({"vectorBackend": "pinecone", "pinecone": {"cloud": "ibm"}}, "spec.pinecone.cloud"),
        ({"vectorBackend": "pinecone", "pinecone": {"namespace": "x"}}, "spec.pinecone"),
        ({"description": "x" * 1025}, "spec.description"),
    ],
)
def test_bad_specs_are_rejected_by_the_schema(spec, field):
    errors = schema_errors(facecollection_schema(), facecollection(**spec))
    assert errors, f"{spec} was accepted"
    assert any(error.startswith(f"{field}:") for error in errors), errors


def test_status_the_operator_writes_is_accepted():
    schema = facecollection_schema()
    document = facecollection()
    document["status"] = {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Created",
                "message": "collection staff created",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
                "observedGeneration": 3,
            }
        ],
        "collectionId": "0f6d7c1e",
        "schema": "c_0123456789abcdef0123456789abcdef",
        "modelVersion": "dlib-r29:1",
        "vectorBackend": "pinecone",
        "pineconeIndex": "faceserve-staff",
        "faces": 12,
        "applied": {
            "modelPack": "dlib-r29",
            "vectorBackend": "pinecone",
            "pinecone": {"cloud": "aws", "region": "us-east-1"},
        },
        "kopf": {"progress": {"reconcile": {"retries": 1, "success": True}}},
    }
    assert schema_errors(schema, document) == []
    document["status"]["conditions"][0]["status"] = "Yes"
    document["status"]["faces"] = -1
    assert len(schema_errors(schema, document)) == 2


# -- the CRD's CEL rules ----------------------------------------------------------------------


def test_every_immutable_field_has_a_transition_rule():
    rules = {(path, rule) for path, rule, _ in cel_rules(facecollection_schema())}
    for field in ("modelPack", "vectorBackend", "pinecone"):
        assert (("spec", field), "self == oldSelf") in rules, field
    # pinecone has no default, so adding or removing it is caught one level up.
    assert (("spec",), "has(self.pinecone) == has(oldSelf.pinecone)") in rules
    for field in ("deletionPolicy", "description"):
        assert not [r for p, r, _ in cel_rules(facecollection_schema()) if p == ("spec", field)]


def test_every_cel_rule_compiles():
    environment = celpy.Environment()
    for _, rule, _ in cel_rules(facecollection_schema()):
        environment.compile(rule)


def test_pinecone_settings_need_the_pinecone_backend():
    assert cel_violations(facecollection(pinecone={"region": "eu-west-1"})) == [
        "spec.pinecone is only allowed when spec.vectorBackend is pinecone"
    ]
    assert cel_violations(facecollection(vectorBackend="pinecone", pinecone={})) == []
    assert cel_violations(facecollection(vectorBackend="pinecone")) == []


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ({}, {"modelPack": "buffalo_l"}, "spec.modelPack is immutable"),
        ({"modelPack": "buffalo_l"}, {}, "spec.modelPack is immutable"),
        (
            {},
            {"vectorBackend": "pinecone", "pinecone": {}},
            "spec.vectorBackend is immutable",
        ),
        (
            {"vectorBackend": "pinecone", "pinecone": {"region": "us-east-1"}},
            {"vectorBackend": "pinecone", "pinecone": {"region": "eu-west-1"}},
            "spec.pinecone is immutable",
        ),
        (
            {"vectorBackend": "pinecone", "pinecone": {}},
            {"vectorBackend": "pinecone", "pinecone": {"cloud": "gcp"}},
            "spec.pinecone is immutable",
        ),
        (
            {"vectorBackend": "pinecone"},
            {"vectorBackend": "pinecone", "pinecone": {"region": "eu-west-1"}},
            "spec.pinecone is immutable; it cannot be added or removed after creation",
        ),
        (
            {"vectorBackend": "pinecone", "pinecone": {}},
            {"vectorBackend": "pinecone"},
            "spec.pinecone is immutable; it cannot be added or removed after creation",
        ),
    ],
)
def test_changing_an_immutable_field_is_rejected(old, new, message):
    violations = cel_violations(facecollection(**new), facecollection(**old))
    assert any(v.startswith(message) for v in violations), violations


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({}, {"deletionPolicy": "Delete"}),
        ({"deletionPolicy": "Delete"}, {"deletionPolicy": "Retain", "description": "now kept"}),
        # Spelling out the defaults, or dropping them again, changes nothing.
        ({}, {"modelPack": "dlib-r29", "vectorBackend": "pgvector"}),
        ({"modelPack": "dlib-r29"}, {}),
        (
            {"vectorBackend": "pinecone", "pinecone": {}},
            {"vectorBackend": "pinecone", "pinecone": {"cloud": "aws", "region": "us-east-1"}},
        ),
        (
            {"vectorBackend": "pinecone", "pinecone": {"region": "eu-west-1"}},
            {"vectorBackend": "pinecone", "pinecone": {"region": "eu-west-1"}, "description": "x"},
        ),
    ],
)
def test_allowed_changes_pass(old, new):
    assert cel_violations(facecollection(**new), facecollection(**old)) == []
