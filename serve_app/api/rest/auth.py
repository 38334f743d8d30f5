"""Authorization at the REST edge, declared once per route next to the route:

    @router.post(FACES, ..., dependencies=[allow("write")])

`allow(role)` authenticates the caller (`Authorization: Bearer <secret>` or `X-API-Key`),
checks its role and its collection scope (from the route's `{name}` path parameter), spends
a token of its rate limit, and opens the request's audit entry, which `AuditMiddleware`
completes with the status once the answer is sent. A test walks the app's routes and fails
for any /v1 route without exactly one `allow(...)`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.service.access import OPEN, AccessControl, Principal
from serve_app.store.audit import AuditEntry

AUDIT = "audit"  # scope["state"] keys: the entry, and whether to keep it whatever the status
AUDIT_ALWAYS = "audit_always"
# Outcomes worth an entry even for reads: someone tried and was turned away.
REFUSALS = frozenset({401, 403})
_PATH_IDS = {"face_id": "face_ids", "person_id": "person_ids"}


def bearer_secret(headers: Any) -> str | None:
    """The secret of `Authorization: Bearer …` or `X-API-Key: …`."""
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return (headers.get("x-api-key") or "").strip() or None


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class Requirement:
    """The dependency `allow()` declares: a role, and whether a scoped key may use it."""

    def __init__(self, role: str, *, scoped: bool = True) -> None:
        self.role = role
        self.scoped = scoped

    def __repr__(self) -> str:
        return f"allow({self.role!r}{'' if self.scoped else ', scoped=False'})"

    async def __call__(self, request: Request) -> Principal:
        access: AccessControl | None = request.app.state.access
        if access is None:
            request.state.principal = OPEN
            return OPEN
        route = request.scope.get("route")
        collection = request.path_params.get("name")
        entry = AuditEntry(
            operation=getattr(route, "name", request.url.path),
            client=client_address(request.scope),
            collection=collection,
        )
        for param, field in _PATH_IDS.items():
            if param in request.path_params:
                getattr(entry, field).append(request.path_params[param])
        request.state.audit = entry
        # Every write, search and admin call is kept; plain reads only when refused.
        setattr(request.state, AUDIT_ALWAYS, request.method != "GET" or self.role == "admin")
        principal = await access.authenticate(bearer_secret(request.headers), entry.client)
        entry.key_id = principal.key_id
        access.authorize(principal, self.role, collection, scoped=self.scoped)
        await access.rate_limit(principal, entry.client)
        request.state.principal = principal
        return principal


def allow(role: str, *, scoped: bool = True) -> DependsParam:
    """The route's required role (`read`, `write`, `admin`); `scoped=False` for operations
    across collections, which a key scoped to collections may not run."""
    return Depends(Requirement(role, scoped=scoped))


def _caller(request: Request) -> Principal:
    return getattr(request.state, "principal", OPEN)


# The authenticated caller, for routes that filter by scope (list collections).
CallerDep = Annotated[Principal, Depends(_caller)]


def requirement_of(route: Any) -> list[Requirement]:
    """The `allow(...)` declarations of a route (for the test that every route has one)."""
    found = [d.dependency for d in getattr(route, "dependencies", [])]
    return [d for d in found if isinstance(d, Requirement)]


def audit_note(
    request: Request,
    *,
    collection: str | None = None,
    face_ids: Any = (),
    person_ids: Any = (),
    **detail: Any,
) -> None:
    """Add what the operation touched to the request's audit entry (collection named in the
    body, ids, counts)."""
    entry: AuditEntry | None = getattr(request.state, AUDIT, None)
    if entry is None:
        return
    if collection is not None:
        entry.collection = collection
    entry.face_ids.extend(str(i) for i in face_ids)
    entry.person_ids.extend(str(i) for i in person_ids)
    entry.detail.update(detail)


class AuditMiddleware:
    """Pure ASGI: once a request is answered, append its audit entry (if it has one)."""

    def __init__(self, app: ASGIApp, access: AccessControl) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            entry: AuditEntry | None = state.get(AUDIT)
            if entry is not None and (state.get(AUDIT_ALWAYS) or status in REFUSALS):
                entry.status = status
                await self.access.record(entry)
