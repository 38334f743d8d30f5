"""The REST API's wire shapes, declared once as pydantic models.

Request models validate bodies (JSON strictly, form fields as text), response models shape
the service's records, and the OpenAPI document is generated from both. Limits come from the
service layer's constants (`serve_app.service.params`), defaults from `thresholds`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from serve_app.service import params, thresholds
from serve_app.service.faces import CompareResult, IndexResult, SearchResult
from serve_app.service.persons import AssociationResult, PersonSearchResult
from serve_app.service.quality_filter import QualityFilter, Reason
from serve_app.store.records import CollectionRecord, FaceRecord, FaceRefusal, PersonRecord
from serve_app.vision.types import DetectedFace

# Quality levels are case-insensitive on the wire, like Rekognition's QualityFilter.
QualityLevel = Annotated[
    Literal[tuple(level.value for level in QualityFilter)],  # type: ignore[valid-type]
    BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value),
]
UnindexedReason = Literal[tuple(reason.value for reason in Reason)]  # type: ignore[valid-type]
RefusalReason = Literal[tuple(reason.value for reason in FaceRefusal)]  # type: ignore[valid-type]

RequestToken = Annotated[
    str,
    Field(
        pattern=r"^[a-zA-Z0-9_-]{1,64}$",
        description="Optional. A retry with the same token within 24 h gets the first reply "
        "instead of doing the work again.",
    ),
]
FaceIds = Annotated[
    list[str],
    Field(
        min_length=1,
        max_length=params.MAX_FACE_IDS,
        description=f"Face ids, as returned when the faces were indexed "
        f"(at most {params.MAX_FACE_IDS}).",
        examples=[["3fa85f64-5717-4562-b3fc-2c963f66afa6"]],
    ),
]
JsonObject = dict[str, Any]


def threshold(default: float, description: str = "Lowest similarity (0-100) to report.") -> Any:
    """A similarity threshold field; absent means the operation's default."""
    return Field(
        None,
        ge=0,
        le=100,
        allow_inf_nan=False,
        description=f"{description} Default {default:g}. A stranger's face passes threshold "
        "s with probability 10^-((s + 20) / 20): 40 is 1 in 1,000, 80 is 1 in 100,000.",
        examples=[default],
    )


def max_results(most: int, what: str = "matches") -> Any:
    return Field(
        None,
        ge=1,
        le=most,
        description=f"Most {what} to return (default {params.DEFAULT_SEARCH_RESULTS}).",
        examples=[5],
    )


# --- requests ---------------------------------------------------------------------------------


class RequestBody(BaseModel):
    """A request body: JSON, or a form (multipart when it carries images). `IMAGES` names
    the image fields: file parts in a multipart form, base64 strings in JSON."""

    model_config = ConfigDict(extra="ignore")
    IMAGES: ClassVar[tuple[str, ...]] = ()


class DetectRequest(RequestBody):
    IMAGES: ClassVar[tuple[str, ...]] = ("image",)


class CompareRequest(RequestBody):
    IMAGES: ClassVar[tuple[str, ...]] = ("source", "target")
    threshold: float | None = threshold(thresholds.COMPARE)


class CreateCollectionRequest(RequestBody):
    name: str = Field(description="Collection name: letters, digits, `_ . -`.", examples=["album"])
    model_pack: str | None = Field(None, description="Model pack; default: the service's.")
    metadata: JsonObject | None = None
    vector_backend: str | None = Field(
        None, description="`pgvector` (default), or `pinecone` where the service has a key."
    )
    vector_options: JsonObject | None = Field(
        None, description="Backend settings, e.g. Pinecone's `cloud` and `region`."
    )


class IndexFacesRequest(RequestBody):
    IMAGES: ClassVar[tuple[str, ...]] = ("image",)
    external_image_id: str | None = Field(
        None, min_length=1, max_length=params.MAX_EXTERNAL_ID, description="Your id for the image."
    )
    max_faces: int | None = Field(
        None,
        ge=1,
        le=params.MAX_INDEX_FACES,
        description="Index at most this many faces, largest first.",
    )
    quality_filter: QualityLevel | None = Field(
        None, description="Leave out faces below this quality (default NONE)."
    )
    metadata: JsonObject | None = Field(None, description="Stored with each face.")


class SearchByImageRequest(RequestBody):
    IMAGES: ClassVar[tuple[str, ...]] = ("image",)
    threshold: float | None = threshold(thresholds.SEARCH)
    max_results: int | None = max_results(params.MAX_SEARCH_RESULTS)


class SearchByFaceRequest(RequestBody):
    threshold: float | None = threshold(thresholds.SEARCH)
    max_results: int | None = max_results(params.MAX_SEARCH_RESULTS)


class CreatePersonRequest(RequestBody):
    person_id: str = Field(description="Your id for the person.", examples=["p-42"])
    metadata: JsonObject | None = None
    request_token: RequestToken | None = None


class AssociateFacesRequest(RequestBody):
    face_ids: FaceIds
    threshold: float | None = threshold(
        thresholds.ASSOCIATION,
        "Once the person has faces, a new face must reach this similarity (0-100) with at "
        "least one of them.",
    )
    request_token: RequestToken | None = None


class DisassociateFacesRequest(RequestBody):
    face_ids: FaceIds
    request_token: RequestToken | None = None


class MergePersonsRequest(RequestBody):
    other_person_id: str = Field(description="The person merged into this one, then deleted.")


class SearchPersonsByImageRequest(RequestBody):
    IMAGES: ClassVar[tuple[str, ...]] = ("image",)
    threshold: float | None = threshold(thresholds.PERSON_SEARCH)
    max_results: int | None = max_results(params.MAX_PERSON_RESULTS, "persons")


class SearchPersonsByFaceRequest(RequestBody):
    threshold: float | None = threshold(thresholds.PERSON_SEARCH)
    max_results: int | None = max_results(params.MAX_PERSON_RESULTS, "persons")


# --- responses --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable machine-readable code.",
        examples=["invalid_image", "not_found", "already_exists"],
    )
    message: str = Field(description="What went wrong, for people.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class ImageSize(BaseModel):
    width: int
    height: int


class BoundingBox(BaseModel):
    """Pixels of the original image; may extend past its edges."""

    left: float
    top: float
    width: float
    height: float


Landmarks = Annotated[
    list[Annotated[list[float], Field(min_length=2, max_length=2)]],
    Field(
        min_length=5,
        max_length=5,
        description="Five [x, y] points in pixels, in the order named by the model pack.",
    ),
]


class Pose(BaseModel):
    yaw: float
    pitch: float
    roll: float


class Quality(BaseModel):
    sharpness: float = Field(description="0-100")
    brightness: float = Field(description="0-100")
    face_size: float = Field(description="Shorter side of the box, pixels.")
    pose: Pose


class DetectedFaceOut(BaseModel):
    """A face found in an image (not stored)."""

    bounding_box: BoundingBox
    landmarks: Landmarks
    confidence: float = Field(description="Detector confidence, 0-100.")
    quality: Quality

    @classmethod
    def of(cls, face: DetectedFace) -> DetectedFaceOut:
        return cls.model_validate(face.to_dict())


class FaceOut(BaseModel):
    """An indexed face (never its embedding)."""

    face_id: str
    image_id: str | None
    external_image_id: str | None
    bounding_box: BoundingBox
    landmarks: Landmarks
    confidence: float
    quality: Quality
    metadata: JsonObject
    person_id: str | None
    created_at: datetime
    confirmed: bool = Field(
        False, description="Put in its person by a user: clustering never moves it."
    )

    @classmethod
    def of(cls, face: FaceRecord) -> FaceOut:
        return cls(
            face_id=face.face_id,
            image_id=face.image_id,
            external_image_id=face.external_image_id,
            bounding_box=face.bounding_box,
            landmarks=face.landmarks,
            confidence=round(float(face.confidence), 3),
            quality=face.quality,
            metadata=face.metadata,
            person_id=face.person_id,
            created_at=face.created_at,
            confirmed=face.confirmed,
        )


def _face(face: DetectedFace | FaceRecord) -> FaceOut | DetectedFaceOut:
    return DetectedFaceOut.of(face) if isinstance(face, DetectedFace) else FaceOut.of(face)


def _similarity(value: float) -> float:
    return round(float(value), 3)


Similarity = Annotated[float, Field(description="Calibrated similarity, 0-100.")]


class DetectResponse(BaseModel):
    model_version: str
    image: ImageSize
    faces: list[DetectedFaceOut] = Field(description="Largest first.")


class CollectionOut(BaseModel):
    name: str
    model_version: str = Field(examples=["dlib-r29:1"])
    embedding_dim: int
    vector_backend: str = Field(examples=["pgvector"])
    metadata: JsonObject
    created_at: datetime
    face_count: int | None
    person_count: int | None

    @classmethod
    def of(cls, c: CollectionRecord) -> CollectionOut:
        return cls(
            name=c.name,
            model_version=c.model_version,
            embedding_dim=c.embedding_dim,
            vector_backend=c.vector_backend,
            metadata=c.metadata,
            created_at=c.created_at,
            face_count=c.face_count,
            person_count=c.person_count,
        )


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class UnindexedFace(BaseModel):
    face: DetectedFaceOut
    reasons: list[UnindexedReason]


class IndexResponse(BaseModel):
    model_version: str
    image: ImageSize
    indexed: list[FaceOut]
    unindexed: list[UnindexedFace]

    @classmethod
    def of(cls, r: IndexResult) -> IndexResponse:
        return cls(
            model_version=r.collection.model_version,
            image=ImageSize(width=r.image_width, height=r.image_height),
            indexed=[FaceOut.of(face) for face in r.indexed],
            unindexed=[
                UnindexedFace(face=DetectedFaceOut.of(u.face), reasons=[str(x) for x in u.reasons])
                for u in r.unindexed
            ],
        )


class FacePage(BaseModel):
    faces: list[FaceOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class DeletedFaces(BaseModel):
    deleted: list[str]


class FaceMatchOut(BaseModel):
    similarity: Similarity
    face: FaceOut


class SearchResponse(BaseModel):
    model_version: str
    searched_face: FaceOut | DetectedFaceOut
    matches: list[FaceMatchOut] = Field(description="Best match first.")

    @classmethod
    def of(cls, r: SearchResult) -> SearchResponse:
        return cls(
            model_version=r.collection.model_version,
            searched_face=_face(r.searched_face),
            matches=[
                FaceMatchOut(similarity=_similarity(m.similarity), face=FaceOut.of(m.face))
                for m in r.matches
            ],
        )


class CompareMatchOut(BaseModel):
    similarity: Similarity
    face: DetectedFaceOut


class CompareResponse(BaseModel):
    model_version: str
    source_face: DetectedFaceOut
    matches: list[CompareMatchOut] = Field(description="Best match first.")
    unmatched: list[DetectedFaceOut]

    @classmethod
    def of(cls, r: CompareResult) -> CompareResponse:
        return cls(
            model_version=r.model_version,
            source_face=DetectedFaceOut.of(r.source_face),
            matches=[
                CompareMatchOut(
                    similarity=_similarity(m.similarity), face=DetectedFaceOut.of(m.face)
                )
                for m in r.matches
            ],
            unmatched=[DetectedFaceOut.of(face) for face in r.unmatched],
        )


class PersonOut(BaseModel):
    person_id: str = Field(description="Your id for the person.")
    metadata: JsonObject
    face_count: int = Field(description=f"Faces associated, at most {params.MAX_PERSON_FACES}.")
    created_at: datetime
    name: str | None = Field(
        None, description="Display name; persons found by clustering have none."
    )
    generated: bool = Field(False, description="Found by clustering (a generated `p-...` id).")

    @classmethod
    def of(cls, p: PersonRecord) -> PersonOut:
        return cls(
            person_id=p.person_id,
            metadata=p.metadata,
            face_count=p.face_count,
            created_at=p.created_at,
            name=p.name,
            generated=p.generated,
        )


class PersonPage(BaseModel):
    persons: list[PersonOut]
    next_cursor: str | None


class UnsuccessfulFace(BaseModel):
    face_id: str
    reasons: list[RefusalReason]
    similarity: float | None = Field(
        description="LOW_MATCH_CONFIDENCE: the best similarity to the person's faces."
    )
    person_id: str | None = Field(
        description="ASSOCIATED_TO_A_DIFFERENT_USER: the person the face belongs to."
    )


class AssociationResponse(BaseModel):
    associated: list[str] = Field(description="Face ids done (including those that already were).")
    unsuccessful: list[UnsuccessfulFace]
    person: PersonOut

    @classmethod
    def of(cls, r: AssociationResult) -> AssociationResponse:
        return cls(
            associated=r.associated,
            unsuccessful=[
                UnsuccessfulFace(
                    face_id=u.face_id,
                    reasons=u.reasons,
                    similarity=None if u.similarity is None else _similarity(u.similarity),
                    person_id=u.person_id,
                )
                for u in r.unsuccessful
            ],
            person=PersonOut.of(r.person),
        )


class PersonMatchOut(BaseModel):
    similarity: float = Field(description="Best similarity of the person's faces, 0-100.")
    person: PersonOut


class PersonSearchResponse(BaseModel):
    model_version: str
    searched_face: FaceOut | DetectedFaceOut | None
    matches: list[PersonMatchOut] = Field(description="Best match first.")
    unsearched: list[DetectedFaceOut] = Field(
        description="The image's other faces (only the largest is searched)."
    )

    @classmethod
    def of(cls, r: PersonSearchResult) -> PersonSearchResponse:
        return cls(
            model_version=r.collection.model_version,
            searched_face=None if r.searched_face is None else _face(r.searched_face),
            matches=[
                PersonMatchOut(similarity=_similarity(m.similarity), person=PersonOut.of(m.person))
                for m in r.matches
            ],
            unsearched=[DetectedFaceOut.of(face) for face in r.unsearched],
        )


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool]
