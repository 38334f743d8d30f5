"""Erasure of a person in one call ("right to be forgotten"), with a receipt."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve_app.api.rest.auth import AUDIT, allow
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.models_security import ErasureReceipt
from serve_app.api.rest.persons import PERSON

router = APIRouter(tags=["persons"])


@router.post(
    PERSON + "/erase",
    summary="Erase a person and every trace of them",
    description="Deletes the person, their faces and vectors (pgvector or Pinecone, pending "
    "writes included), the stored photos of those faces and every record naming them; earlier "
    "audit entries lose their ids, and the log keeps only that an erasure happened, with "
    "counts. Idempotent: erasing again answers zeros.",
    response_model=ErasureReceipt,
    responses=error_responses(404),
    dependencies=[allow("write")],
)
async def erase_person(
    name: str, person_id: str, request: Request, services: ServicesDep
) -> ErasureReceipt:
    access = request.app.state.access
    if access is not None:
        await access.flush_audit()  # queued entries naming the person are redacted too
    receipt = await services.erasure.erase_person(name, person_id)
    entry = getattr(request.state, AUDIT, None)
    if entry is not None:
        entry.person_ids.clear()  # the log keeps that an erasure happened, not whose
        entry.detail.update(receipt.erased)
    return ErasureReceipt(
        collection=receipt.collection, erased=receipt.erased, already_erased=receipt.already_erased
    )
