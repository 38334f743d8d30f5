"""The Rekognition surface over the one key store: keys made in the database sign with SigV4
like AWS keys, their role is enforced (AccessDeniedException), their scope hides other
collections, a revoked key stops working within a second, and a spent bucket throttles."""

from __future__ import annotations

import time
import uuid

import pytest
from botocore.exceptions import ClientError

from serve_app.store.security import SecurityStore

from .conftest import make_client


def error_code(caught: pytest.ExceptionInfo[ClientError]) -> str:
    return caught.value.response["Error"]["Code"]


def test_a_stored_key_signs_with_sigv4_and_its_role_is_enforced(
    endpoint: str, rekognition, security: SecurityStore, astronaut_bytes: bytes
) -> None:
    name = f"keys-{uuid.uuid4().hex[:8]}"
    rekognition.create_collection(CollectionId=name)
    writer, secret = security.create_key("write", None, None)
    client = make_client(endpoint, writer.key_id, secret)
    indexed = client.index_faces(CollectionId=name, Image={"Bytes": astronaut_bytes})
    assert len(indexed["FaceRecords"]) == 1
    with pytest.raises(ClientError) as caught:
        client.delete_collection(CollectionId=name)  # admin only
    assert error_code(caught) == "AccessDeniedException"
    reader, read_secret = security.create_key("read", None, None)
    reading = make_client(endpoint, reader.key_id, read_secret)
    assert reading.describe_collection(CollectionId=name)["FaceCount"] == 1
    with pytest.raises(ClientError) as caught:
        reading.index_faces(CollectionId=name, Image={"Bytes": astronaut_bytes})
    assert error_code(caught) == "AccessDeniedException"
    with pytest.raises(ClientError) as caught:
        make_client(endpoint, reader.key_id, "wrong" * 13).list_collections()
    assert error_code(caught) == "InvalidSignatureException"
    # The audit log has the Rekognition calls too (written within 50 ms of the answers).
    time.sleep(0.3)
    entries, _ = security.audit_page(collection=name, limit=100)
    got = [(e["operation"], e["key_id"], e["status"]) for e in entries]
    assert ("rekognition:IndexFaces", writer.key_id, 200) in got, got
    assert ("rekognition:DeleteCollection", writer.key_id, 400) in got, got  # refused
    assert ("rekognition:IndexFaces", reader.key_id, 400) in got, got
    face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    assert any(face_id in e["face_ids"] for e in entries)


def test_a_scoped_key_sees_only_its_collections_through_boto3(
    endpoint: str, rekognition, security: SecurityStore
) -> None:
    mine, other = (f"scope-{uuid.uuid4().hex[:8]}" for _ in range(2))
    rekognition.create_collection(CollectionId=mine)
    rekognition.create_collection(CollectionId=other)
    record, secret = security.create_key("admin", [mine], None)
    scoped = make_client(endpoint, record.key_id, secret)
    assert scoped.list_collections()["CollectionIds"] == [mine]
    assert scoped.describe_collection(CollectionId=mine)["FaceCount"] == 0
    for call in (
        lambda: scoped.describe_collection(CollectionId=other),
        lambda: scoped.list_faces(CollectionId=other),
        lambda: scoped.delete_collection(CollectionId=other),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_code(caught) == "ResourceNotFoundException"
    assert other in rekognition.list_collections()["CollectionIds"]  # untouched


def test_a_revoked_key_is_refused_within_a_second(endpoint: str, security: SecurityStore) -> None:
    record, secret = security.create_key("write", None, None)  # no rate limit for write here
    client = make_client(endpoint, record.key_id, secret)
    client.list_collections()
    security.revoke_key(record.key_id)
    started = time.monotonic()
    while True:
        try:
            client.list_collections()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "UnrecognizedClientException"
            break
        assert time.monotonic() - started < 1.0, "still accepted after a second"
        time.sleep(0.05)


def test_a_spent_bucket_is_a_throttling_exception(endpoint: str, security: SecurityStore) -> None:
    record, secret = security.create_key("read", None, None)  # 1/s, 2 at once
    client = make_client(endpoint, record.key_id, secret)
    codes = []
    for _ in range(5):
        try:
            client.list_collections()
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
    assert codes[:2] == ["ok"] * 2 and "ThrottlingException" in codes[2:], codes
