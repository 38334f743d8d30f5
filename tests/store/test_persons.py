"""Persons in the store: lifecycle, associating faces under row locks, merge, person search
on both paths, request tokens, and the schema upgrade that added them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from serve_app.errors import AlreadyExists, IdempotentParameterMismatch, InvalidParameter, NotFound
from serve_app.store import CollectionRecord, NewImage, Store
from serve_app.store.records import FaceRefusal
from serve_app.store.vectors import pgvector
from tests.store.conftest import DIM, new_face, unit_vectors
from tests.store.test_search import Statements

MIN_COS = 0.9
LIMIT = 100


def add(store: Store, collection: CollectionRecord, vectors: np.ndarray) -> list[str]:
    faces = [new_face(v) for v in vectors]
    records = store.add_faces(collection.name, NewImage(None, 64, 64), faces)
    return [r.face_id for r in records]


def near(vector: np.ndarray, rng: np.random.Generator, n: int, noise: float = 0.05) -> np.ndarray:
    """n unit vectors close to `vector` (cosine ~0.99)."""
    jitter = vector + noise * rng.standard_normal((n, len(vector))).astype(np.float32)
    return jitter / np.linalg.norm(jitter, axis=1, keepdims=True)


def associate(store: Store, collection: CollectionRecord, person: str, ids: list[str], **kw: Any):
    return store.associate_faces(collection.name, person, ids, MIN_COS, LIMIT, **kw)


def in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..n-1) at once; each result or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as err:  # noqa: BLE001 - collected for the assertions
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_create_get_list_and_delete(store: Store, collection: CollectionRecord) -> None:
    created = store.create_person(collection.name, "alice:1", {"team": "a"})
    assert (created.person_id, created.metadata, created.face_count) == (
        "alice:1",
        {"team": "a"},
        0,
    )
    assert store.get_person(collection.name, "alice:1") == created
    with pytest.raises(AlreadyExists, match="alice:1"):
        store.create_person(collection.name, "alice:1")
    for pid in ["bob", "carol.c", "dave-d", "erin_e"]:
        store.create_person(collection.name, pid)

    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_persons(collection.name, limit=2, cursor=cursor)
        seen += [p.person_id for p in page]
        pages += 1
        if cursor is None:
            break
    assert (
        pages == 3
        and seen == sorted(seen)
        and set(seen)
        == {
            "alice:1",
            "bob",
            "carol.c",
            "dave-d",
            "erin_e",
        }
    )
    assert store.get_collection(collection.name).person_count == 5
    store.delete_person(collection.name, "bob")
    with pytest.raises(NotFound, match="bob"):
        store.get_person(collection.name, "bob")
    with pytest.raises(NotFound, match="bob"):
        store.delete_person(collection.name, "bob")
    assert len(store.list_persons(collection.name)[0]) == 4


@pytest.mark.parametrize("bad", ["", "x" * 129, "a b", "a/b", "é", None, 7, "a\x00"])
def test_bad_person_ids_are_invalid(store: Store, collection: CollectionRecord, bad: Any) -> None:
    with pytest.raises(InvalidParameter, match="person_id"):
        store.create_person(collection.name, bad)
    with pytest.raises(InvalidParameter):
        store.get_person(collection.name, bad)


def test_bad_cursors_and_tokens(store: Store, collection: CollectionRecord) -> None:
    for cursor in ["", "nope", "x" * 300, "djE6MTI"]:  # the last is a face-list cursor
        with pytest.raises(InvalidParameter, match="cursor"):
            store.list_persons(collection.name, cursor=cursor)
    for token in ["", "a b", "x" * 65, 5]:
        with pytest.raises(InvalidParameter, match="request token"):
            store.create_person(collection.name, "p", request_token=token)


def test_deleting_a_person_keeps_its_faces_unless_asked(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    base = unit_vectors(rng, 2)
    kept, dropped = (
        add(store, collection, near(base[0], rng, 2)),
        add(store, collection, near(base[1], rng, 2)),
    )
    store.create_person(collection.name, "keep")
    store.create_person(collection.name, "drop")
    associate(store, collection, "keep", kept)
    associate(store, collection, "drop", dropped)
    assert [f.person_id for f in store.get_faces(collection.name, kept)] == ["keep", "keep"]

    assert store.delete_person(collection.name, "keep") == []
    assert [f.person_id for f in store.get_faces(collection.name, kept)] == [None, None]
    assert sorted(store.delete_person(collection.name, "drop", delete_faces=True)) == sorted(
        dropped
    )
    assert store.get_faces(collection.name, dropped) == []
    assert store.count_faces(collection.name) == 2


def test_associate_rules(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    alice_v, bob_v = unit_vectors(rng, 2)
    alice = add(store, collection, near(alice_v, rng, 3))
    bob = add(store, collection, near(bob_v, rng, 1))
    stranger = add(store, collection, -alice_v[None])  # cosine -1 with alice's faces
    store.create_person(collection.name, "alice")
    store.create_person(collection.name, "bob")
    assert associate(store, collection, "bob", bob).changed == bob

    # A person without faces takes any face; afterwards new ones must resemble hers.
    first = associate(store, collection, "alice", alice[:1])
    assert (first.changed, first.refused, first.person.face_count) == (alice[:1], [], 1)
    missing = str(uuid.uuid4())
    change = associate(store, collection, "alice", [*alice, *bob, *stranger, missing])
    assert change.changed == alice  # alice[0] again: already hers, counts as done
    assert change.person.face_count == 3
    refused = {r.face_id: r for r in change.refused}
    assert refused[bob[0]].reason == FaceRefusal.ASSOCIATED_TO_A_DIFFERENT_USER
    assert refused[bob[0]].person_id == "bob"
    assert refused[stranger[0]].reason == FaceRefusal.LOW_MATCH_CONFIDENCE
    assert refused[stranger[0]].cosine == pytest.approx(-1.0, abs=0.1)
    assert refused[missing].reason == FaceRefusal.FACE_NOT_FOUND
    assert [r.face_id for r in change.refused] == [bob[0], stranger[0], missing]
    assert store.get_person(collection.name, "alice").face_count == 3
    assert store.get_faces(collection.name, stranger)[0].person_id is None

    # min_cosine -1 lets anything in.
    low = store.associate_faces(collection.name, "alice", stranger, -1.0, LIMIT)
    assert low.changed == stranger
    with pytest.raises(NotFound, match="nobody"):
        associate(store, collection, "nobody", alice)


def test_a_person_holds_at_most_max_faces(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    vector = unit_vectors(rng, 1)[0]
    ids = add(store, collection, near(vector, rng, 5))
    store.create_person(collection.name, "p")
    store.associate_faces(collection.name, "p", ids[:3], MIN_COS, 4)
    with pytest.raises(InvalidParameter, match="limit of 4"):
        store.associate_faces(collection.name, "p", ids, MIN_COS, 4)
    assert store.get_person(collection.name, "p").face_count == 3  # nothing changed
    assert store.associate_faces(collection.name, "p", ids[:4], MIN_COS, 4).person.face_count == 4


def test_disassociate(store: Store, collection: CollectionRecord, rng: np.random.Generator) -> None:
    vector = unit_vectors(rng, 1)[0]
    ids = add(store, collection, near(vector, rng, 4))
    store.create_person(collection.name, "p")
    store.create_person(collection.name, "q")
    associate(store, collection, "p", ids[:2])
    associate(store, collection, "q", ids[2:3])
    missing = str(uuid.uuid4())
    change = store.disassociate_faces(collection.name, "p", [ids[0], ids[2], ids[3], missing])
    # ids[3] belongs to nobody: already not p's, so done.
    assert change.changed == [ids[0], ids[3]]
    assert [(r.face_id, r.reason, r.person_id) for r in change.refused] == [
        (ids[2], FaceRefusal.ASSOCIATED_TO_A_DIFFERENT_USER, "q"),
        (missing, FaceRefusal.FACE_NOT_FOUND, None),
    ]
    assert change.person.face_count == 1
    assert [f.person_id for f in store.get_faces(collection.name, ids)] == [None, "p", "q", None]


def test_merge_moves_the_faces_and_deletes_the_other(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    vector = unit_vectors(rng, 1)[0]
    ids = add(store, collection, near(vector, rng, 5))
    store.create_person(collection.name, "into", {"name": "Ann", "team": "a"})
    store.create_person(collection.name, "other", {"team": "b", "badge": 7})
    associate(store, collection, "into", ids[:2])
    associate(store, collection, "other", ids[2:])
    merged = store.merge_persons(collection.name, "into", "other", LIMIT)
    assert merged.face_count == 5
    assert merged.metadata == {"name": "Ann", "team": "a", "badge": 7}
    assert store.get_person(collection.name, "into") == merged
    with pytest.raises(NotFound):
        store.get_person(collection.name, "other")
    assert {f.person_id for f in store.get_faces(collection.name, ids)} == {"into"}

    store.create_person(collection.name, "third")
    associate(store, collection, "third", add(store, collection, near(vector, rng, 1)))
    with pytest.raises(InvalidParameter, match="at most 5"):
        store.merge_persons(collection.name, "into", "third", 5)
    with pytest.raises(InvalidParameter, match="itself"):
        store.merge_persons(collection.name, "into", "into", LIMIT)
    with pytest.raises(NotFound, match="ghost"):
        store.merge_persons(collection.name, "into", "ghost", LIMIT)
    assert store.get_person(collection.name, "third").face_count == 1


def test_search_persons_ranks_by_the_best_face(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    centres = unit_vectors(rng, 4)
    persons = ["p0", "p1", "p2", "p3"]
    for pid, centre in zip(persons, centres, strict=True):
        store.create_person(collection.name, pid)
        associate(store, collection, pid, add(store, collection, near(centre, rng, 3)))
    lone = add(store, collection, centres[:1])  # nearest of all, but nobody's: not searched

    hits = store.search_persons(collection.name, centres[0], 10, -1.0)
    assert hits[0][0].person_id == "p0" and hits[0][1] > 0.95
    assert hits[0][0].face_count == 3
    assert len(hits) == 4 and [c for _, c in hits] == sorted([c for _, c in hits], reverse=True)
    assert [p.person_id for p, _ in store.search_persons(collection.name, centres[0], 1, -1)] == [
        "p0"
    ]
    assert store.search_persons(collection.name, -centres[0], 10, 0.99) == []
    without = store.search_persons(collection.name, centres[0], 10, -1.0, exclude_person="p0")
    assert "p0" not in [p.person_id for p, _ in without] and len(without) == 3
    # Several query vectors: each person's best over all of them.
    both = store.search_persons(collection.name, centres[:2], 2, 0.9)
    assert {p.person_id for p, _ in both} == {"p0", "p1"}
    # The face itself excluded, its person is still found through its other faces.
    store.create_person(collection.name, "lone")
    associate(store, collection, "lone", lone)
    hits = store.search_persons(collection.name, centres[0], 1, -1, exclude_face=lone[0])
    assert hits[0][0].person_id == "p0"


def test_search_persons_through_hnsw_finds_the_right_person(
    store: Store, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgvector, "EXACT_SEARCH_BELOW", 200)
    collection = store.create_collection(f"persons-hnsw-{uuid.uuid4().hex[:6]}", "test", DIM)
    try:
        centres = unit_vectors(rng, 30)
        face_ids = add(store, collection, np.concatenate([near(c, rng, 10) for c in centres]))
        add(store, collection, unit_vectors(rng, 500))  # faces of nobody around them
        for n in range(30):
            store.create_person(collection.name, f"p{n}")
            associate(store, collection, f"p{n}", face_ids[10 * n : 10 * n + 10])
        with Statements(store) as statements:
            hits = store.search_persons(collection.name, centres[7], 5, 0.5)
        assert statements.used("iterative_scan")
        assert hits[0][0].person_id == "p7" and hits[0][1] > 0.95
        with Statements(store) as statements:
            monkeypatch.setattr(pgvector, "EXACT_SEARCH_BELOW", 5000)
            exact = store.search_persons(collection.name, centres[7], 5, 0.5)
        assert not statements.used("iterative_scan")
        assert [p.person_id for p, _ in exact] == [p.person_id for p, _ in hits]
    finally:
        store.delete_collection(collection.name)


def test_person_embeddings(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    vectors = near(unit_vectors(rng, 1)[0], rng, 3)
    ids = add(store, collection, vectors)
    store.create_person(collection.name, "p")
    assert store.person_embeddings(collection.name, "p").shape == (0, DIM)
    associate(store, collection, "p", ids)
    np.testing.assert_array_equal(store.person_embeddings(collection.name, "p"), vectors)
    with pytest.raises(NotFound):
        store.person_embeddings(collection.name, "q")


def test_request_tokens_replay_the_first_reply(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    first = store.create_person(collection.name, "p", {"a": 1}, request_token="t-1")
    assert store.create_person(collection.name, "p", {"a": 1}, request_token="t-1") == first
    with pytest.raises(AlreadyExists):  # without the token it is a second create
        store.create_person(collection.name, "p", {"a": 1})
    with pytest.raises(IdempotentParameterMismatch, match="idempotent parameter mismatch"):
        store.create_person(collection.name, "p", {"a": 2}, request_token="t-1")
    with pytest.raises(IdempotentParameterMismatch):
        store.delete_person(collection.name, "p", request_token="t-1")

    ids = add(store, collection, near(unit_vectors(rng, 1)[0], rng, 2))
    once = associate(store, collection, "p", ids[:1], request_token="assoc")
    store.disassociate_faces(collection.name, "p", ids[:1])
    again = associate(store, collection, "p", ids[:1], request_token="assoc")
    assert again == once  # the first reply, not done again
    assert store.get_person(collection.name, "p").face_count == 0
    with pytest.raises(IdempotentParameterMismatch):
        associate(store, collection, "p", ids, request_token="assoc")

    # A failed request leaves its token free.
    with pytest.raises(NotFound):
        store.delete_person(collection.name, "ghost", request_token="del")
    assert store.delete_person(collection.name, "p", request_token="del") == []
    assert store.delete_person(collection.name, "p", request_token="del") == []
    with pytest.raises(NotFound):
        store.delete_person(collection.name, "p", request_token="del-2")

    # After 24 hours a token is new again.
    with store.engine.begin() as conn:
        conn.execute(
            text(
                f'UPDATE "{collection.schema_name}".request_tokens '
                "SET created_at = now() - interval '25 hours'"
            )
        )
    # "t-1" created p {"a": 1} 25 hours ago; now it may ask for something else.
    assert store.create_person(collection.name, "p", {"a": 2}, request_token="t-1").metadata == {
        "a": 2
    }


def test_racing_retries_of_one_token_create_one_person(
    store: Store, collection: CollectionRecord
) -> None:
    results = in_threads(4, lambda _: store.create_person(collection.name, "r", request_token="x"))
    assert all(r == results[0] for r in results), results


def test_racing_associations_of_one_face_give_it_one_person(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    face = add(store, collection, unit_vectors(rng, 1))
    persons = [f"p{n}" for n in range(4)]
    for pid in persons:
        store.create_person(collection.name, pid)
    results = in_threads(4, lambda i: associate(store, collection, persons[i], face))
    winners = [pid for pid, r in zip(persons, results, strict=True) if r.changed == face]
    assert len(winners) == 1
    owner = store.get_faces(collection.name, face)[0].person_id
    assert owner == winners[0]
    for r in results:
        if r.changed != face:
            assert r.refused[0].reason == FaceRefusal.ASSOCIATED_TO_A_DIFFERENT_USER
            assert r.refused[0].person_id == owner


def test_racing_associations_respect_the_face_limit(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    ids = add(store, collection, near(unit_vectors(rng, 1)[0], rng, 6))
    store.create_person(collection.name, "p")
    results = in_threads(
        3,
        lambda i: store.associate_faces(collection.name, "p", ids[2 * i : 2 * i + 2], -1, 4),
    )
    assert sum(isinstance(r, InvalidParameter) for r in results) == 1
    assert store.get_person(collection.name, "p").face_count == 4
