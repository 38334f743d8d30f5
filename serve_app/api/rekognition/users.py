"""Rekognition's user operations over the service's persons (a Rekognition "user" is our
person; its UserId is the person's id)."""

from __future__ import annotations

from typing import Any

from serve_app.api.rekognition import shapes
from serve_app.api.rekognition.errors import invalid_parameter
from serve_app.api.rekognition.operations import (
    PAGINATION_ERRORS,
    Context,
    image_frame,
    operation,
    page_size,
)
from serve_app.service import thresholds
from serve_app.service.quality_filter import QualityFilter, quality_reasons
from serve_app.vision.types import DetectedFace

DEFAULT_LIST_USERS = 100
# An existing user id is a ConflictException for user operations (not ResourceAlreadyExists).
USER_ERRORS = {"already_exists": "ConflictException"}


def _status(person: Any) -> str:
    return shapes.user(person)["UserStatus"]


@operation("CreateUser", "write", errors=USER_ERRORS)
async def create_user(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    await ctx.service.persons.create_person(
        p["CollectionId"], p["UserId"], request_token=p.get("ClientRequestToken")
    )
    return {}


@operation("DeleteUser", "write", errors=USER_ERRORS)
async def delete_user(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    # As in Rekognition, the user's faces stay in the collection, disassociated.
    await ctx.service.persons.delete_person(
        p["CollectionId"],
        p["UserId"],
        delete_faces=False,
        request_token=p.get("ClientRequestToken"),
    )
    return {}


@operation("ListUsers", "read", errors=PAGINATION_ERRORS)
async def list_users(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    persons, cursor = await ctx.service.persons.list_persons(
        p["CollectionId"],
        limit=page_size(p.get("MaxResults"), DEFAULT_LIST_USERS),
        cursor=p.get("NextToken"),
    )
    result: dict[str, Any] = {"Users": [shapes.user(person) for person in persons]}
    if cursor is not None:
        result["NextToken"] = cursor
    return result


@operation("AssociateFaces", "write", errors=USER_ERRORS)
async def associate_faces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    result = await ctx.service.persons.associate_faces(
        p["CollectionId"],
        p["UserId"],
        list(dict.fromkeys(p["FaceIds"])),
        threshold=p.get("UserMatchThreshold", thresholds.ASSOCIATION),
        request_token=p.get("ClientRequestToken"),
    )
    unsuccessful = []
    for item in result.unsuccessful:
        entry: dict[str, Any] = {"FaceId": item.face_id}
        if item.person_id is not None:
            entry["UserId"] = item.person_id
        if item.similarity is not None:
            entry["Confidence"] = float(item.similarity)
        entry["Reasons"] = [str(r) for r in item.reasons]
        unsuccessful.append(entry)
    return {
        "AssociatedFaces": [{"FaceId": face_id} for face_id in result.associated],
        "UnsuccessfulFaceAssociations": unsuccessful,
        "UserStatus": _status(result.person),
    }


@operation("DisassociateFaces", "write", errors=USER_ERRORS)
async def disassociate_faces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    result = await ctx.service.persons.disassociate_faces(
        p["CollectionId"],
        p["UserId"],
        list(dict.fromkeys(p["FaceIds"])),
        request_token=p.get("ClientRequestToken"),
    )
    unsuccessful = []
    for item in result.unsuccessful:
        entry: dict[str, Any] = {"FaceId": item.face_id}
        if item.person_id is not None:
            entry["UserId"] = item.person_id
        entry["Reasons"] = [str(r) for r in item.reasons]
        unsuccessful.append(entry)
    return {
        "DisassociatedFaces": [{"FaceId": face_id} for face_id in result.associated],
        "UnsuccessfulFaceDisassociations": unsuccessful,
        "UserStatus": _status(result.person),
    }


def _user_matches(result: Any) -> list[dict[str, Any]]:
    return [
        {"Similarity": float(match.similarity), "User": shapes.user(match.person)}
        for match in result.matches
    ]


@operation("SearchUsers", "read")
async def search_users(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    if ("UserId" in p) == ("FaceId" in p):
        raise invalid_parameter("SearchUsers takes exactly one of UserId or FaceId")
    options = {
        "threshold": p.get("UserMatchThreshold", thresholds.PERSON_SEARCH),
        "max_results": p.get("MaxUsers"),
    }
    persons = ctx.service.persons
    if "FaceId" in p:
        result = await persons.search_persons_by_face(p["CollectionId"], p["FaceId"], **options)
        searched = {"SearchedFace": {"FaceId": p["FaceId"]}}
    else:
        result = await persons.search_persons_by_person(p["CollectionId"], p["UserId"], **options)
        searched = {"SearchedUser": {"UserId": p["UserId"]}}
    return {
        "UserMatches": _user_matches(result),
        "FaceModelVersion": result.collection.model_version,
        **searched,
    }


@operation("SearchUsersByImage", "read")
async def search_users_by_image(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image = await ctx.images.load(p["Image"])
    result = await ctx.service.persons.search_persons_by_image(
        p["CollectionId"],
        image,
        threshold=p.get("UserMatchThreshold", thresholds.PERSON_SEARCH),
        max_results=p.get("MaxUsers"),
    )
    version = result.collection.model_version
    level = QualityFilter.parse(p["QualityFilter"]) if "QualityFilter" in p else None

    def filtered(face: DetectedFace) -> list[str]:
        return [str(r) for r in quality_reasons(face, level)] if level else []

    response: dict[str, Any] = {"UserMatches": [], "FaceModelVersion": version}
    frame = image_frame(image, version)
    unsearched = [(face, ["FACE_NOT_LARGEST", *filtered(face)]) for face in result.unsearched]
    searched = result.searched_face
    if isinstance(searched, DetectedFace):
        reasons = filtered(searched)
        if reasons:
            # "Filtered faces aren't searched": no valid face means no matches, no SearchedFace.
            unsearched.insert(0, (searched, reasons))
        else:
            response["UserMatches"] = _user_matches(result)
            response["SearchedFace"] = {"FaceDetail": frame.face_detail(searched)}
    response["UnsearchedFaces"] = [
        {"FaceDetails": frame.face_detail(face), "Reasons": reasons} for face, reasons in unsearched
    ]
    return response
