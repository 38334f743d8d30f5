"""API keys, for admins: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from serve_app.api.rest.auth import allow, audit_note
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.models_security import CreatedKey, CreateKeyRequest, KeyList, KeyOut
from serve_app.errors import NotFound
from serve_app.service.access import AccessControl

router = APIRouter(tags=["keys"])
CREATE = ReadBody(CreateKeyRequest)
ADMIN = [allow("admin", scoped=False)]


def _access(request: Request) -> AccessControl:
    access: AccessControl | None = request.app.state.access
    if access is None or access.store is None:
        raise NotFound("this service keeps no keys (authentication is not configured)")
    return access


AccessDep = Annotated[AccessControl, Depends(_access)]


@router.post(
    "/v1/keys",
    summary="Create an API key",
    description="The response is the only time the secret is shown.",
    status_code=201,
    response_model=CreatedKey,
    responses=error_responses(404, 413, 415),
    openapi_extra=CREATE.openapi,
    dependencies=ADMIN,
)
async def create_key(
    request: Request,
    access: AccessDep,
    body: Annotated[Parsed[CreateKeyRequest], Depends(CREATE)],
) -> CreatedKey:
    f = body.fields
    record, secret = await access.create_key(f.role, f.collections, f.expires_in_days)
    audit_note(request, made_key=record.key_id, role=record.role)  # never the secret
    return CreatedKey(**KeyOut.of(record).model_dump(), secret=secret)


@router.get(
    "/v1/keys",
    summary="List API keys (never their secrets)",
    response_model=KeyList,
    responses=error_responses(404),
    dependencies=ADMIN,
)
async def list_keys(access: AccessDep) -> KeyList:
    return KeyList(keys=[KeyOut.of(k) for k in await access.list_keys()])


@router.delete(
    "/v1/keys/{key_id}",
    summary="Revoke an API key",
    description="Refused everywhere within a second.",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
    dependencies=ADMIN,
)
async def revoke_key(key_id: str, request: Request, access: AccessDep) -> Response:
    audit_note(request, revoked_key=key_id[:40])
    await access.revoke_key(key_id)
    return Response(status_code=204)
