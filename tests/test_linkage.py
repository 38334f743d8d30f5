"""The clustering algorithm and a run's plan, on synthetic vectors (no storage): what it
groups, the constraints it never breaks, and what each mode leaves alone."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.service.clustering import plan
from serve_app.service.linkage import cluster_faces, partitioned_graph, similarity_graph
from serve_app.store.people_records import ClusterSnapshot

COSINE = 0.9


def people(rng: np.random.Generator, sizes: list[int], dim: int = 32, spread: float = 0.03):
    """Unit vectors of identities of `sizes` faces; identity labels."""
    centres = rng.standard_normal((len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    vectors = centres[truth] + rng.standard_normal((len(truth), dim)) * spread
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), truth


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)}
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_groups_identities_and_leaves_strangers_alone(rng: np.random.Generator) -> None:
    vectors, truth = people(rng, [5, 4, 3, 1, 1])
    result = cluster_faces(vectors, np.arange(len(vectors)), COSINE)
    assert same_partition(result.labels, truth)
    assert (result.anchors == -1).all()


def test_average_linkage_does_not_chain_two_people_through_one_face(
    rng: np.random.Generator,
) -> None:
    """A face halfway between two people is close to both, but the groups' average is not."""
    vectors, truth = people(rng, [6, 6], spread=0.02)
    a, b = vectors[truth == 0].mean(0), vectors[truth == 1].mean(0)
    bridge = (a + b) / np.linalg.norm(a + b)
    cosine = float(bridge @ (a / np.linalg.norm(a))) - 0.01
    stacked = np.vstack([vectors, bridge])
    labels = cluster_faces(stacked, np.arange(len(stacked)), cosine).labels
    assert labels[0] != labels[6]


def test_faces_of_one_image_never_share_a_cluster(rng: np.random.Generator) -> None:
    vectors, _ = people(rng, [4])
    labels = cluster_faces(vectors, np.array([0, 0, 1, 2]), COSINE).labels
    assert labels[0] != labels[1]
    assert len(set(labels.tolist())) == 2


def test_fixed_faces_anchor_their_person_and_rejections_hold(rng: np.random.Generator) -> None:
    vectors, truth = people(rng, [4, 4])
    anchors = np.full(8, -1)
    anchors[[0, 4]] = [0, 1]  # one confirmed face of each person
    result = cluster_faces(vectors, np.arange(8), COSINE, anchors=anchors)
    assert (result.anchors[result.labels] == truth).all()
    rejected = cluster_faces(vectors, np.arange(8), COSINE, anchors=anchors, rejections=[(1, 0)])
    assert rejected.anchors[rejected.labels[1]] != 0  # "not person 0"
    assert (rejected.anchors[rejected.labels[4:]] == 1).all()
    # Two persons' fixed faces never merge, however alike.
    twins = np.vstack([vectors[0], vectors[0]])
    split = cluster_faces(twins, np.arange(2), COSINE, anchors=np.array([0, 1]))
    assert split.labels[0] != split.labels[1]


def test_partitioned_graph_finds_nearly_every_edge(rng: np.random.Generator) -> None:
    vectors, _ = people(rng, [10] * 300, dim=64, spread=0.03)
    exact = similarity_graph(vectors, 0.85)
    fast = partitioned_graph(vectors, 0.85, cell_size=128)
    n = len(vectors)
    keys = set((np.minimum(exact[0], exact[1]) * n + np.maximum(exact[0], exact[1])).tolist())
    found = set((fast[0] * n + fast[1]).tolist())
    assert found <= keys
    assert len(found) / len(keys) > 0.99


def snapshot(vectors: np.ndarray, persons: list, confirmed: list, **extra) -> ClusterSnapshot:
    n = len(vectors)
    return ClusterSnapshot(
        face_ids=[f"f{i}" for i in range(n)],
        image_ids=extra.get("images", [f"i{i}" for i in range(n)]),
        person_ids=persons,
        confirmed=np.array(confirmed, dtype=bool),
        vectors=vectors,
        rejections=extra.get("rejections", []),
        generated_persons=[],
    )


def test_plan_full_regroups_unconfirmed_and_keeps_ids(rng: np.random.Generator) -> None:
    vectors, _ = people(rng, [3, 3, 1])
    # Faces 0-2 were grouped as "p-a" by an earlier run (unconfirmed); 3 is confirmed "ann"
    # and 4-5 are hers but unassigned; 6, a stranger, was wrongly put in "p-a".
    persons = ["p-a", "p-a", "p-a", "ann", None, None, "p-a"]
    decided = plan(snapshot(vectors, persons, [0, 0, 0, 1, 0, 0, 0]), "full", COSINE)
    groups = {person: sorted(ids) for person, ids in decided.groups}
    assert groups["p-a"] == ["f0", "f1", "f2"]  # the id is kept
    assert groups["ann"] == ["f4", "f5"]
    assert decided.released == ["f6"]  # a group of one founds nobody
    assert "f3" not in decided.expected  # confirmed: never moved


def test_plan_incremental_moves_only_faces_of_nobody(rng: np.random.Generator) -> None:
    vectors, _ = people(rng, [3, 2])
    persons = ["p-a", None, None, None, None]
    decided = plan(snapshot(vectors, persons, [0] * 5), "incremental", COSINE)
    groups = {person: sorted(ids) for person, ids in decided.groups}
    assert groups["p-a"] == ["f1", "f2"]
    assert groups[None] == ["f3", "f4"]  # a new person
    assert "f0" not in decided.expected and decided.released == []


def test_plan_never_returns_a_rejected_face(rng: np.random.Generator) -> None:
    vectors, _ = people(rng, [4])
    persons = ["bob", "bob", None, None]
    decided = plan(
        snapshot(vectors, persons, [1, 1, 0, 0], rejections=[("f2", "bob")]), "full", COSINE
    )
    placed = {f: p for p, ids in decided.groups for f in ids}
    assert placed.get("f2") != "bob"
    # Without the rejection both would have joined him.
    plain = plan(snapshot(vectors, persons, [1, 1, 0, 0]), "full", COSINE)
    assert {f: p for p, ids in plain.groups for f in ids} == {"f2": "bob", "f3": "bob"}
