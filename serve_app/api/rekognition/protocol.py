"""The AWS JSON 1.1 wire protocol: `POST /` with `X-Amz-Target: RekognitionService.<Op>`.

One request: read the body (capped), verify its SigV4 signature, find the operation, parse
and validate the JSON against botocore's model, run the handler, answer in AWS's shapes.
Every failure becomes an AWS-shaped error; tracebacks go to the log only.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serve_app.api.body import BODY_SLACK, read_body
from serve_app.api.rekognition import users  # noqa: F401  (registers the user operations)
from serve_app.api.rekognition.errors import (
    CONTENT_TYPE,
    RekognitionError,
    from_service_error,
    internal_error,
    is_capacity_error,
    throughput_exceeded,
)
from serve_app.api.rekognition.images import ImageLoader
from serve_app.api.rekognition.operations import OPERATIONS, Context
from serve_app.api.rekognition.sigv4 import SignedRequest, SigV4Verifier
from serve_app.api.rekognition.validation import operation_model, validate_input
from serve_app.api.rest.auth import AUDIT, AUDIT_ALWAYS, client_address
from serve_app.config import RekognitionConfig
from serve_app.errors import FaceserveError, Forbidden, Unauthenticated
from serve_app.service.access import AccessControl, Principal
from serve_app.service.services import Services
from serve_app.store.audit import AuditEntry

logger = logging.getLogger(__name__)

TARGET_PREFIX = "RekognitionService."
MAX_BYTES_IMAGE = 5 * 1024 * 1024
# CompareFaces carries two 5 MB images, base64-encoded (4/3 larger).
BODY_LIMIT = 2 * (MAX_BYTES_IMAGE * 4 // 3 + 4) + BODY_SLACK
_JSON_TYPES = {"application/x-amz-json-1.1", "application/x-amz-json-1.0", "application/json"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RekognitionError(
            "SerializationException", f"request body is not JSON: {exc}"
        ) from None


def _signed_request(request: Request, body: bytes) -> SignedRequest:
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode()
    return SignedRequest(
        method=request.method,
        raw_path=raw_path.decode("latin-1").split("?", 1)[0],
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]],
        body=body,
    )


class RekognitionEndpoint:
    """The `POST /` handler over the service layer. With `access`, keys come from its key
    store (the same as REST's) and each operation's declared role, the key's collection
    scope, its rate limit and the audit log apply."""

    def __init__(
        self, service: Services, config: RekognitionConfig, access: AccessControl | None = None
    ) -> None:
        self.context = Context(
            service, ImageLoader(config.s3_endpoint_url, config.region), config.region
        )
        self.access = access if access is not None and access.enabled else None
        self.verifier: SigV4Verifier | None = None
        if self.access is not None:
            self.verifier = SigV4Verifier({})
        elif access is not None:
            pass  # FACESERVE_AUTH=disabled: both surfaces open (AccessControl logged it)
        elif config.auth == "disabled":
            logger.warning(
                "Rekognition API: SigV4 verification is DISABLED (FACESERVE_AWS_AUTH=disabled); "
                "anyone who can reach this port can call it. For local development only."
            )
        else:
            self.verifier = SigV4Verifier(config.keys)
            if not config.keys:
                logger.warning(
                    "Rekognition API: no access keys configured (FACESERVE_AWS_KEYS or "
                    "FACESERVE_AWS_KEYS_FILE); every request will be refused"
                )

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        errors: dict[str, str] = {}
        state = request.scope.setdefault("state", {})
        entry = AuditEntry("rekognition", client=client_address(request.scope))
        try:
            body = await read_body(request, BODY_LIMIT)
            context = self.context
            if self.access is not None:
                state[AUDIT] = entry
                principal = await self._authenticate(_signed_request(request, body))
                entry.key_id = principal.key_id
                context = replace(context, caller=principal)
            elif self.verifier is not None:
                self.verifier.verify(_signed_request(request, body))
            name = self._operation_name(request)
            operation = OPERATIONS[name]
            entry.operation = f"rekognition:{name}"
            state[AUDIT_ALWAYS] = not name.startswith(("List", "Describe"))
            errors = operation.errors
            params = validate_input(operation_model(name), _parse_json(body))
            if self.access is not None:
                entry.collection = params.get("CollectionId")
                _note_ids(entry, params)
                self.access.authorize(context.caller, operation.role, entry.collection)
                await self.access.rate_limit(context.caller, entry.client)
            result = await operation.handler(context, params)
            _note_ids(entry, result)
            return JSONResponse(
                result, headers={"x-amzn-RequestId": request_id}, media_type=CONTENT_TYPE
            )
        except RekognitionError as exc:
            state[AUDIT_ALWAYS] = True  # a refused signature is worth a line
            return exc.response(request_id)
        except FaceserveError as exc:
            if isinstance(exc, Forbidden):
                state[AUDIT_ALWAYS] = True
            error = from_service_error(exc, errors)
            if error.status >= 500:
                logger.error("Rekognition request %s failed: %s", request_id, exc.message)
            return error.response(request_id)
        except Exception as exc:
            if is_capacity_error(exc):
                return throughput_exceeded().response(request_id)
            logger.error("Rekognition request %s raised", request_id, exc_info=exc)
            return internal_error().response(request_id)

    async def _authenticate(self, signed: SignedRequest) -> Principal:
        """The caller whose key signed the request (SigV4 against the key store)."""
        assert self.access is not None and self.verifier is not None
        auth, timestamp = self.verifier.authorization(signed)
        try:
            found = await self.access.sigv4_key(auth.access_key)
        except Unauthenticated as exc:  # revoked or expired
            raise RekognitionError("UnrecognizedClientException", exc.message, 403) from None
        self.verifier.check(signed, auth, timestamp, None if found is None else found[1])
        assert found is not None
        return found[0]

    @staticmethod
    def _operation_name(request: Request) -> str:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type and media_type not in _JSON_TYPES:
            raise RekognitionError(
                "SerializationException",
                f"content type {media_type!r} is not accepted; send {CONTENT_TYPE}",
            )
        target = request.headers.get("x-amz-target", "")
        if not target.startswith(TARGET_PREFIX):
            raise RekognitionError(
                "UnknownOperationException",
                f"X-Amz-Target must be {TARGET_PREFIX}<Operation>, got {target[:100]!r}",
            )
        name = target[len(TARGET_PREFIX) :]
        if name not in OPERATIONS:
            raise RekognitionError(
                "UnknownOperationException", f"operation {name[:64]!r} is not supported here"
            )
        return name


def _note_ids(entry: AuditEntry, shape: dict[str, Any]) -> None:
    """The face and user ids a request or response names, for its audit entry."""
    entry.face_ids.extend(str(i) for i in shape.get("FaceIds") or ())
    if isinstance(shape.get("FaceId"), str):
        entry.face_ids.append(shape["FaceId"])
    for record in shape.get("FaceRecords") or ():
        face_id = (record.get("Face") or {}).get("FaceId")
        if face_id:
            entry.face_ids.append(face_id)
    if isinstance(shape.get("UserId"), str):
        entry.person_ids.append(shape["UserId"])


def rekognition_route(
    service: Services, config: RekognitionConfig, access: AccessControl | None = None
) -> Route:
    """`POST /`: the Rekognition-compatible API, for mounting into the REST app."""
    return Route("/", RekognitionEndpoint(service, config, access).handle, methods=["POST"])
