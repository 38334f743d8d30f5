"""Persons in the service layer, in process: the real dlib-r29 pack on photos of real people,
a real embedded PostgreSQL. Rekognition's rules for users, as a client would notice them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve_app.errors import AlreadyExists, IdempotentParameterMismatch, InvalidParameter, NotFound
from serve_app.service import thresholds
from serve_app.service.persons import MAX_FACE_IDS, PersonService
from serve_app.service.ports import LocalPipeline, LocalStorage
from serve_app.service.services import Services
from serve_app.store import EmbeddedPostgres, NewFace, NewImage, Store
from serve_app.vision.packs.dlib_r29 import DlibR29Pack

# Photos under people/face_recognition: several of obama, enrolment and probe of the others.
PHOTOS = {
    "obama_a": "obama/obama.jpg",
    "obama_b": "obama/obama1.jpg",
    "obama_c": "obama/obama3.jpg",
    "biden_a": "biden/biden.jpg",
    "kit_a": "kit_harington/john1.jpeg",
    "rose_a": "rose_leslie/img1.jpg",
}
PROBES = {"obama": "obama/obama2.jpg", "biden": "biden/biden2.jpg"}


@pytest.fixture(scope="module")
def store(postgres: EmbeddedPostgres) -> Iterator[Store]:
    # A database of its own on the shared server: these tests see only their collections.
    opened = Store.open(postgres.fresh_database("persons_tests"))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def service(store: Store, pack: DlibR29Pack) -> Services:
    return Services.build(LocalStorage(store), {pack.name: LocalPipeline(pack)}, pack.name)


@pytest.fixture(scope="module")
def people_dir(faces_dir: Path) -> Path:
    return faces_dir / "people" / "face_recognition"


@pytest.fixture(scope="module")
def indexed(service: Services, store: Store, people_dir: Path) -> str:
    """A collection with one face per photo in PHOTOS (external image id = its key)."""

    async def run() -> None:
        await service.faces.create_collection("photos")
        for key, path in PHOTOS.items():
            result = await service.faces.index_faces(
                "photos", (people_dir / path).read_bytes(), external_image_id=key, max_faces=1
            )
            assert len(result.indexed) == 1, key

    asyncio.run(run())
    return "photos"


@pytest.fixture
def faces(service: Services, store: Store, indexed: str) -> tuple[str, dict[str, str]]:
    """A fresh collection holding copies of the indexed faces: (its name, key -> face id).

    Copied through the store (no detection again), so each test owns its faces.
    """
    name = f"persons-{uuid.uuid4().hex[:8]}"
    asyncio.run(service.faces.create_collection(name))
    ids: dict[str, str] = {}
    for face in store.list_faces(indexed)[0]:
        copy = NewFace(
            face.bounding_box,
            face.landmarks,
            face.confidence,
            face.quality,
            store.get_embedding(indexed, face.face_id),
        )
        image = NewImage(face.external_image_id, 100, 100)
        ids[str(face.external_image_id)] = store.add_faces(name, image, [copy])[0].face_id
    return name, ids


def persons(service: Services) -> PersonService:
    return service.persons


def test_create_get_list_delete(service: Services, faces: tuple[str, dict[str, str]]) -> None:
    collection, ids = faces
    p = persons(service)

    async def run() -> None:
        created = await p.create_person(collection, "obama", {"role": "president"})
        assert (created.person_id, created.face_count) == ("obama", 0)
        assert await p.get_person(collection, "obama") == created
        with pytest.raises(AlreadyExists):
            await p.create_person(collection, "obama")
        with pytest.raises(InvalidParameter, match="person_id"):
            await p.create_person(collection, "no spaces")
        with pytest.raises(InvalidParameter, match="metadata"):
            await p.create_person(collection, "m", metadata=["not", "an", "object"])  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            await p.create_person("nowhere", "obama")
        for pid in ("a", "b", "c"):
            await p.create_person(collection, pid)
        page, cursor = await p.list_persons(collection, limit=3)
        assert [x.person_id for x in page] == ["a", "b", "c"] and cursor
        rest, end = await p.list_persons(collection, limit=3, cursor=cursor)
        assert [x.person_id for x in rest] == ["obama"] and end is None
        with pytest.raises(InvalidParameter, match="limit"):
            await p.list_persons(collection, limit=0)

        # Deleting a person keeps its faces, unless asked.
        await p.associate_faces(collection, "obama", [ids["obama_a"], ids["obama_b"]])
        await p.delete_person(collection, "obama")
        kept = await service.context.storage.get_faces(collection, [ids["obama_a"], ids["obama_b"]])
        assert [f.person_id for f in kept] == [None, None]
        with pytest.raises(NotFound):
            await p.get_person(collection, "obama")
        await p.associate_faces(collection, "a", [ids["obama_a"]])
        await p.delete_person(collection, "a", delete_faces=True)
        assert await service.context.storage.get_faces(collection, [ids["obama_a"]]) == []
        assert (await service.faces.describe_collection(collection)).face_count == len(ids) - 1

    asyncio.run(run())


def test_associate_follows_rekognitions_rules(
    service: Services, faces: tuple[str, dict[str, str]]
) -> None:
    collection, ids = faces
    p = persons(service)

    async def run() -> None:
        await p.create_person(collection, "obama")
        await p.create_person(collection, "biden")
        # A person without faces accepts any face; two photos of obama.
        first = await p.associate_faces(collection, "obama", [ids["obama_a"], ids["obama_b"]])
        assert first.associated == [ids["obama_a"], ids["obama_b"]] and not first.unsuccessful
        assert first.person.face_count == 2
        # A third photo of obama resembles his faces; biden's does not.
        missing = str(uuid.uuid4())
        result = await p.associate_faces(
            collection, "obama", [ids["obama_c"], ids["biden_a"], ids["obama_a"], missing]
        )
        assert result.associated == [ids["obama_c"], ids["obama_a"]]  # obama_a: idempotent
        assert result.person.face_count == 3
        refused = {u.face_id: u for u in result.unsuccessful}
        assert refused[ids["biden_a"]].reasons == ["LOW_MATCH_CONFIDENCE"]
        assert refused[ids["biden_a"]].similarity is not None
        assert refused[ids["biden_a"]].similarity < thresholds.ASSOCIATION
        assert refused[missing].reasons == ["FACE_NOT_FOUND"]
        # Biden's face goes to biden; an obama face cannot follow it.
        assert (await p.associate_faces(collection, "biden", [ids["biden_a"]])).associated
        other = await p.associate_faces(collection, "biden", [ids["obama_b"]])
        assert other.associated == []
        assert other.unsuccessful[0].reasons == ["ASSOCIATED_TO_A_DIFFERENT_USER"]
        assert other.unsuccessful[0].person_id == "obama"
        # Threshold 0: anything resembles enough.
        rose = await p.associate_faces(collection, "biden", [ids["rose_a"]], threshold=0)
        assert rose.associated == [ids["rose_a"]]
        faces_now = await service.context.storage.get_faces(collection, list(ids.values()))
        owners = {f.external_image_id: f.person_id for f in faces_now}
        assert owners == {
            "obama_a": "obama",
            "obama_b": "obama",
            "obama_c": "obama",
            "biden_a": "biden",
            "rose_a": "biden",
            "kit_a": None,
        }

        # Limits and bad input.
        with pytest.raises(InvalidParameter, match="face_ids"):
            await p.associate_faces(collection, "obama", [missing] * (MAX_FACE_IDS + 1))
        with pytest.raises(InvalidParameter, match="face_ids"):
            await p.associate_faces(collection, "obama", [])
        with pytest.raises(InvalidParameter, match="threshold"):
            await p.associate_faces(collection, "obama", [ids["kit_a"]], threshold=101)
        with pytest.raises(InvalidParameter, match="face id"):
            await p.associate_faces(collection, "obama", ["not-a-uuid"])
        with pytest.raises(NotFound, match="nobody"):
            await p.associate_faces(collection, "nobody", [ids["kit_a"]])

        # Disassociate.
        gone = await p.disassociate_faces(
            collection, "biden", [ids["rose_a"], ids["obama_a"], missing]
        )
        assert gone.associated == [ids["rose_a"]]
        assert [(u.face_id, u.reasons, u.person_id) for u in gone.unsuccessful] == [
            (ids["obama_a"], ["ASSOCIATED_TO_A_DIFFERENT_USER"], "obama"),
            (missing, ["FACE_NOT_FOUND"], None),
        ]
        assert gone.person.face_count == 1

    asyncio.run(run())


def test_search_persons_by_image_finds_the_right_person(
    service: Services,
    faces: tuple[str, dict[str, str]],
    people_dir: Path,
    astronaut_bytes: bytes,
    t1_bytes: bytes,
) -> None:
    collection, ids = faces
    p = persons(service)

    async def run() -> None:
        members = {
            "obama": ["obama_a", "obama_b"],
            "biden": ["biden_a"],
            "kit": ["kit_a"],
            "rose": ["rose_a"],
        }
        for pid, keys in members.items():
            await p.create_person(collection, pid)
            await p.associate_faces(collection, pid, [ids[k] for k in keys])
        for pid, probe in PROBES.items():
            result = await p.search_persons_by_image(collection, (people_dir / probe).read_bytes())
            assert result.matches, pid
            assert result.matches[0].person.person_id == pid
            assert result.matches[0].similarity >= thresholds.PERSON_SEARCH
            assert all(m.similarity >= thresholds.PERSON_SEARCH for m in result.matches)
            assert result.unsearched == []
            assert result.searched_face is not None
        assert result.matches[0].person.face_count == 1
        # A stranger resembles nobody enough; at threshold 0 everyone shows, below the default.
        stranger = await p.search_persons_by_image(collection, astronaut_bytes)
        assert stranger.matches == []
        everyone = await p.search_persons_by_image(
            collection, astronaut_bytes, threshold=0, max_results=3
        )
        similarities = [m.similarity for m in everyone.matches]
        assert len(similarities) == 3 and similarities == sorted(similarities, reverse=True)
        assert max(similarities) < thresholds.PERSON_SEARCH
        # A group photo: the largest face is searched, the others are reported unsearched.
        group = await p.search_persons_by_image(collection, t1_bytes)
        assert len(group.unsearched) == 5
        with pytest.raises(InvalidParameter, match="max_results"):
            await p.search_persons_by_image(collection, astronaut_bytes, max_results=501)

    asyncio.run(run())


def test_search_by_face_and_by_person_then_merge(
    service: Services, faces: tuple[str, dict[str, str]]
) -> None:
    collection, ids = faces
    p = persons(service)

    async def run() -> None:
        # Obama enrolled twice by mistake, plus biden.
        for pid, keys in {
            "obama": ["obama_a"],
            "barack": ["obama_b"],
            "biden": ["biden_a"],
        }.items():
            await p.create_person(collection, pid, {"source": pid})
            await p.associate_faces(collection, pid, [ids[k] for k in keys])

        # A new, unassociated photo of obama finds both of his persons, not biden.
        by_face = await p.search_persons_by_face(collection, ids["obama_c"])
        assert by_face.searched_face.face_id == ids["obama_c"]
        assert {m.person.person_id for m in by_face.matches} == {"obama", "barack"}
        # An associated face is compared with its person's *other* faces: none for "obama".
        own = await p.search_persons_by_face(collection, ids["obama_a"])
        assert [m.person.person_id for m in own.matches] == ["barack"]
        with pytest.raises(NotFound):
            await p.search_persons_by_face(collection, str(uuid.uuid4()))

        by_person = await p.search_persons_by_person(collection, "obama")
        assert by_person.searched_face is None
        assert [m.person.person_id for m in by_person.matches] == ["barack"]
        assert by_person.matches[0].similarity >= thresholds.PERSON_SEARCH
        with pytest.raises(NotFound):
            await p.search_persons_by_person(collection, "ghost")

        merged = await p.merge_persons(collection, "obama", "barack")
        assert merged.person_id == "obama" and merged.face_count == 2
        assert merged.metadata == {"source": "obama"}
        with pytest.raises(NotFound):
            await p.get_person(collection, "barack")
        assert (await p.search_persons_by_person(collection, "obama")).matches == []
        found = await p.search_persons_by_face(collection, ids["obama_c"])
        assert [m.person.person_id for m in found.matches] == ["obama"]
        assert found.matches[0].person.face_count == 2

    asyncio.run(run())


def test_request_tokens_make_retries_safe(
    service: Services, faces: tuple[str, dict[str, str]]
) -> None:
    collection, ids = faces
    p = persons(service)

    async def run() -> None:
        created = await p.create_person(collection, "obama", request_token="create-1")
        assert await p.create_person(collection, "obama", request_token="create-1") == created
        with pytest.raises(IdempotentParameterMismatch) as err:
            await p.create_person(collection, "biden", request_token="create-1")
        assert err.value.code == "idempotent_parameter_mismatch"
        assert isinstance(err.value, InvalidParameter)

        face = [ids["obama_a"]]
        first = await p.associate_faces(collection, "obama", face, request_token="assoc-1")
        again = await p.associate_faces(collection, "obama", face, request_token="assoc-1")
        assert again == first
        with pytest.raises(IdempotentParameterMismatch):
            await p.associate_faces(
                collection, "obama", face, threshold=90, request_token="assoc-1"
            )
        undo = await p.disassociate_faces(collection, "obama", face, request_token="undo-1")
        assert await p.disassociate_faces(collection, "obama", face, request_token="undo-1") == undo
        await p.delete_person(collection, "obama", request_token="delete-1")
        await p.delete_person(collection, "obama", request_token="delete-1")  # replayed: no 404
        with pytest.raises(NotFound):
            await p.delete_person(collection, "obama")

    asyncio.run(run())


def test_the_ray_graph_exposes_every_person_storage_method() -> None:
    # The Search deployment refuses any storage method not listed (a 400 in production).
    from serve_app.deployments.search import STORAGE_METHODS
    from serve_app.store.persons import PersonStorage

    public = {name for name in vars(PersonStorage) if not name.startswith("_")}
    assert public and public <= STORAGE_METHODS
