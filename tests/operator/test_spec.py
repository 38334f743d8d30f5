"""The operator's own spec checks agree with the CRD (schema and CEL), and diff immutables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from serve_app.errors import InvalidParameter
from serve_app.kube.spec import FaceCollectionSpec, immutable_changes, parse_spec
from serve_app.store.records import CollectionRecord
from tests.kube_manifests import (
    cel_violations,
    facecollection,
    facecollection_schema,
    schema_errors,
    with_defaults,
)

SPECS: list[dict[str, Any]] = [
    {},
    {"modelPack": "buffalo_l"},
    {"modelPack": "arcface"},
    {"vectorBackend": "pinecone"},
    {"vectorBackend": "pinecone", "pinecone": {"cloud": "gcp", "region": "europe-west4"}},
    {"vectorBackend": "pinecone", "pinecone": {"cloud": "ibm"}},
    {"vectorBackend": "pinecone", "pinecone": {"region": "US East"}},
    {"vectorBackend": "pinecone", "pinecone": {"zone": "a"}},
    {"vectorBackend": "pgvector", "pinecone": {"cloud": "aws"}},
    {"vectorBackend": "milvus"},
    {"deletionPolicy": "Delete"},
    {"deletionPolicy": "delete"},
    {"description": "staff photos"},
    {"description": "x" * 1025},
    {"replicas": 3},
]


def crd_accepts(spec: dict[str, Any]) -> bool:
    document = with_defaults(facecollection_schema(), facecollection(**spec))
    return not schema_errors(facecollection_schema(), document) and not cel_violations(document)


def operator_accepts(spec: dict[str, Any]) -> bool:
    try:
        parse_spec(spec)
    except InvalidParameter:
        return False
    return True


@pytest.mark.parametrize("spec", SPECS, ids=[str(s)[:60] for s in SPECS])
def test_the_operator_accepts_exactly_what_the_crd_accepts(spec: dict[str, Any]) -> None:
    # The API server enforces the CRD; the operator must not be laxer where it is bypassed.
    assert operator_accepts(spec) == crd_accepts(spec)


def test_defaults_match_the_crd() -> None:
    defaults = with_defaults(facecollection_schema(), facecollection())["spec"]
    parsed = parse_spec({})
    assert parsed.model_pack == defaults["modelPack"]
    assert parsed.vector_backend == defaults["vectorBackend"]
    assert parsed.deletion_policy == defaults["deletionPolicy"]
    pinecone = parse_spec({"vectorBackend": "pinecone"}).pinecone
    assert pinecone == {"cloud": "aws", "region": "us-east-1"}


def test_a_bad_spec_names_the_field() -> None:
    with pytest.raises(InvalidParameter, match=r"spec\.pinecone\.cloud.*'ibm'"):
        parse_spec({"vectorBackend": "pinecone", "pinecone": {"cloud": "ibm"}})


def record(model_version: str, backend: str, options: dict[str, str]) -> CollectionRecord:
    return CollectionRecord(
        id="00000000-0000-0000-0000-000000000001",
        name="staff",
        schema_name="c_" + "0" * 31 + "1",
        model_version=model_version,
        embedding_dim=128,
        vector_backend=backend,
        metadata={},
        created_at=datetime.now(UTC),
        face_count=None,
        vector_options=options,
    )


def test_immutable_changes_lists_every_difference() -> None:
    pgvector = record("dlib-r29:1", "pgvector", {})
    assert immutable_changes(FaceCollectionSpec(), pgvector) == []
    changes = immutable_changes(
        parse_spec({"modelPack": "buffalo_l", "vectorBackend": "pinecone"}), pgvector
    )
    assert changes == [
        "spec.modelPack: dlib-r29 -> buffalo_l",
        "spec.pinecone: (unset) -> cloud=aws,region=us-east-1",
        "spec.vectorBackend: pgvector -> pinecone",
    ]
    pinecone = record("dlib-r29:1", "pinecone", {"cloud": "aws", "region": "us-east-1"})
    moved = parse_spec({"vectorBackend": "pinecone", "pinecone": {"region": "eu-west-1"}})
    assert immutable_changes(moved, pinecone) == [
        "spec.pinecone: cloud=aws,region=us-east-1 -> cloud=aws,region=eu-west-1"
    ]
