"""SigV4 verification: requests signed by botocore pass; any change to what was signed, a
wrong or unknown key, another service's scope or a stale clock is refused with AWS's codes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from serve_app.api.rekognition.errors import RekognitionError
from serve_app.api.rekognition.sigv4 import SignedRequest, SigV4Verifier

KEY_ID, SECRET = "AKIAFACESERVETEST001", "s3cr3t/s3cr3t+s3cr3t"
HOST = "127.0.0.1:8765"
BODY = b'{"CollectionId": "people"}'


def signed(
    body: bytes = BODY,
    secret: str = SECRET,
    key_id: str = KEY_ID,
    service: str = "rekognition",
    extra_headers: dict[str, str] | None = None,
) -> SignedRequest:
    """A request as boto3 would send it to http://HOST/ (botocore signs `host` itself)."""
    request = AWSRequest(
        method="POST",
        url=f"http://{HOST}/",
        data=body,
        headers={
            "X-Amz-Target": "RekognitionService.DescribeCollection",
            "Content-Type": "application/x-amz-json-1.1",
            **(extra_headers or {}),
        },
    )
    SigV4Auth(Credentials(key_id, secret), service, "us-east-1").add_auth(request)
    headers = [(k.lower(), v) for k, v in request.headers.items()] + [("host", HOST)]
    return SignedRequest("POST", "/", "", headers, body)


def refusal(request: SignedRequest, now: datetime | None = None) -> RekognitionError:
    with pytest.raises(RekognitionError) as caught:
        SigV4Verifier({KEY_ID: SECRET}).verify(request, now)
    assert caught.value.status == 403
    return caught.value


def replace_header(request: SignedRequest, name: str, value: str) -> SignedRequest:
    headers = [(k, value if k == name else v) for k, v in request.headers]
    return SignedRequest(request.method, request.raw_path, request.query, headers, request.body)


def test_a_botocore_signed_request_is_accepted() -> None:
    assert SigV4Verifier({KEY_ID: SECRET, "OTHER": "x"}).verify(signed()) == KEY_ID


def test_a_wrong_secret_is_an_invalid_signature() -> None:
    assert refusal(signed(secret="wrong")).code == "InvalidSignatureException"


def test_an_unknown_key_is_an_unrecognized_client() -> None:
    assert refusal(signed(key_id="AKIAUNKNOWN")).code == "UnrecognizedClientException"


def test_changing_the_body_or_a_signed_header_breaks_the_signature() -> None:
    request = signed()
    tampered = SignedRequest("POST", "/", "", request.headers, b'{"CollectionId": "other"}')
    assert refusal(tampered).code == "InvalidSignatureException"
    retargeted = replace_header(request, "x-amz-target", "RekognitionService.DeleteCollection")
    assert refusal(retargeted).code == "InvalidSignatureException"
    # The Host the client signed is what must arrive (a proxy that rewrites it breaks this).
    assert refusal(replace_header(request, "host", "example.com")).code == (
        "InvalidSignatureException"
    )


def test_a_signed_payload_hash_must_match_the_body() -> None:
    # botocore takes a received X-Amz-Content-SHA256 as the body's hash without hashing the
    # body: a signature made for one body must not carry another.
    digest = hashlib.sha256(BODY).hexdigest()
    request = signed(extra_headers={"X-Amz-Content-SHA256": digest})
    assert SigV4Verifier({KEY_ID: SECRET}).verify(request) == KEY_ID
    swapped = SignedRequest("POST", "/", "", request.headers, b'{"CollectionId": "other"}')
    assert refusal(swapped).code == "InvalidSignatureException"


def test_a_signature_older_or_newer_than_15_minutes_is_refused() -> None:
    request = signed()
    now = datetime.now(UTC)
    assert SigV4Verifier({KEY_ID: SECRET}).verify(request, now + timedelta(minutes=14))
    late = refusal(request, now + timedelta(minutes=16))
    assert late.code == "InvalidSignatureException" and "expired" in late.message
    assert refusal(request, now - timedelta(minutes=16)).code == "InvalidSignatureException"


def test_a_signature_for_another_service_is_refused() -> None:
    error = refusal(signed(service="s3"))
    assert error.code == "InvalidSignatureException" and "rekognition" in error.message


def test_missing_or_malformed_authorization() -> None:
    request = signed()
    unsigned = SignedRequest(
        "POST", "/", "", [(k, v) for k, v in request.headers if k != "authorization"], BODY
    )
    assert refusal(unsigned).code == "MissingAuthenticationTokenException"
    garbled = replace_header(request, "authorization", "AWS4-HMAC-SHA256 Credential=x")
    assert refusal(garbled).code == "IncompleteSignatureException"
    other = replace_header(request, "authorization", "Basic dXNlcjpwYXNz")
    assert refusal(other).code == "IncompleteSignatureException"
    undated = SignedRequest(
        "POST", "/", "", [(k, v) for k, v in request.headers if k != "x-amz-date"], BODY
    )
    assert refusal(undated).code == "IncompleteSignatureException"
