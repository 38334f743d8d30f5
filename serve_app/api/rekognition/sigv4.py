"""AWS Signature Version 4 verification, with botocore's own signer computing the signature.

We rebuild the request the client signed (method, path, query, the headers it lists in
`SignedHeaders`, the body), let botocore's `SigV4Auth` canonicalise it with the request's own
`X-Amz-Date`, and compare signatures in constant time. No canonicalisation is written here,
so we agree with boto3 and the AWS CLI by construction; only SigV4's four-step HMAC key
derivation is, so that it can start from the digest the key store keeps instead of a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from serve_app.api.rekognition.errors import RekognitionError

SERVICE = "rekognition"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)  # what AWS allows between the client's clock and ours
_AUTH_PARAM = re.compile(r"\s*([A-Za-z]+)=([^,\s]*)\s*")
_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z")


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers, as received."""

    method: str
    raw_path: str  # path as sent, still percent-encoded
    query: str
    headers: list[tuple[str, str]]  # every header, lower-case names, repeats kept
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return ",".join(values) if values else None


@dataclass(frozen=True)
class Authorization:
    access_key: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def _denied(code: str, message: str) -> RekognitionError:
    return RekognitionError(code, message, status=403)


def parse_authorization(value: str) -> Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
    Signature=…` header; IncompleteSignatureException when it is malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _denied("IncompleteSignatureException", f"unsupported algorithm {algorithm[:32]!r}")
    params: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_PARAM.fullmatch(part)
        if match:
            params[match.group(1)] = match.group(2)
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not params.get(p)]
    if missing:
        raise _denied(
            "IncompleteSignatureException",
            f"Authorization header requires {', '.join(missing)} parameter(s)",
        )
    scope = params["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise _denied(
            "IncompleteSignatureException",
            "Credential must have the form KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request",
        )
    return Authorization(
        access_key=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=params["SignedHeaders"].lower().split(";"),
        signature=params["Signature"].lower(),
    )


class SigV4Verifier:
    """Checks requests against `keys` (access key id -> secret access key)."""

    def __init__(self, keys: Mapping[str, str], max_skew: timedelta = MAX_SKEW) -> None:
        self._keys = dict(keys)
        self.max_skew = max_skew

    def verify(self, request: SignedRequest, now: datetime | None = None) -> str:
        """The access key id that signed `request`; a 403 `RekognitionError` otherwise."""
        auth, timestamp = self.authorization(request, now)
        secret = self._keys.get(auth.access_key)
        self.check(request, auth, timestamp, None if secret is None else signing_key(secret))
        return auth.access_key

    def authorization(
        self, request: SignedRequest, now: datetime | None = None
    ) -> tuple[Authorization, str]:
        """The request's parsed Authorization and X-Amz-Date, checked up to the key: the
        caller then looks the key up and calls `check`."""
        header = request.header("authorization")
        if not header:
            raise _denied("MissingAuthenticationTokenException", "Missing Authentication Token")
        auth = parse_authorization(header)
        timestamp = request.header("x-amz-date") or ""
        if not _TIMESTAMP.fullmatch(timestamp):
            raise _denied(
                "IncompleteSignatureException",
                "Authorization header requires an X-Amz-Date header (YYYYMMDD'T'HHMMSS'Z')",
            )
        if auth.service != SERVICE:
            raise _denied(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{SERVICE}'.",
            )
        if auth.date != timestamp[:8]:
            raise _denied(
                "InvalidSignatureException",
                f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date: {auth.date}",
            )
        self._check_clock(timestamp, now or datetime.now(UTC))
        if "host" not in auth.signed_headers:
            raise _denied("InvalidSignatureException", "the host header must be signed")
        return auth, timestamp

    def check(
        self, request: SignedRequest, auth: Authorization, timestamp: str, key: bytes | None
    ) -> None:
        """Check the signature with the key's first-step HMAC key (`signing_key`; None:
        the key id is unknown)."""
        if key is None:
            raise _denied(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        self._check_payload_hash(request)
        expected = self.signature(request, auth, key, timestamp)
        if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
            raise _denied(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method.",
            )

    def _check_clock(self, timestamp: str, now: datetime) -> None:
        signed_at = datetime.strptime(timestamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
        if abs(now - signed_at) > self.max_skew:
            raise _denied(
                "InvalidSignatureException",
                f"Signature expired: {timestamp} is now outside the allowed window of "
                f"{int(self.max_skew.total_seconds() // 60)} minutes around "
                f"{now.strftime(SIGV4_TIMESTAMP)}",
            )

    @staticmethod
    def _check_payload_hash(request: SignedRequest) -> None:
        # botocore trusts a received X-Amz-Content-SHA256 instead of hashing the body; without
        # this check a captured signature would also cover any other body.
        claimed = request.header("x-amz-content-sha256")
        if claimed is not None and claimed.lower() != hashlib.sha256(request.body).hexdigest():
            raise _denied(
                "InvalidSignatureException",
                "The provided x-amz-content-sha256 header does not match the request body.",
            )

    @staticmethod
    def signature(
        request: SignedRequest, auth: Authorization, key: str | bytes, timestamp: str
    ) -> str:
        """The SigV4 signature of `request` as the client would have computed it: botocore
        builds the canonical request and string to sign; the HMAC chain starts from `key`,
        a secret or its `signing_key` (bytes)."""
        signed = set(auth.signed_headers)
        host = request.header("host") or ""
        url = f"http://{host}{request.raw_path}" + (f"?{request.query}" if request.query else "")
        aws_request = AWSRequest(method=request.method, url=url, data=request.body)
        for name, value in _signed(request.headers, signed):
            aws_request.headers[name] = value  # HTTPHeaders: assignment appends, repeats kept
        aws_request.context["timestamp"] = timestamp
        signer = SigV4Auth(Credentials(auth.access_key, "unused"), auth.service, auth.region)
        canonical = signer.canonical_request(aws_request)
        string_to_sign = signer.string_to_sign(aws_request, canonical)
        first = signing_key(key) if isinstance(key, str) else key
        # SigV4's derivation (the AWS docs' kDate, kRegion, kService, kSigning).
        k = first
        for part in (timestamp[:8], auth.region, auth.service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        return hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()


def signing_key(secret: str) -> bytes:
    """The HMAC key SigV4 starts from: "AWS4" + secret. HMAC hashes a key longer than its
    64-byte block first, so for a secret of 61+ characters its SHA-256 (what the key store
    keeps, `store.keys.secret_digest`) gives the same signatures."""
    return b"AWS4" + secret.encode()


def _signed(headers: Iterable[tuple[str, str]], names: set[str]) -> Iterable[tuple[str, str]]:
    return ((k, v) for k, v in headers if k in names)
