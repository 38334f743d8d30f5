"""Grouping faces into persons: average-linkage agglomerative clustering over a sparse
similarity graph, under the constraints users and photos impose.

Plain numpy and the standard library (no Ray, no storage), so the same function serves the
REST run, a background job and the benchmark (`bench/clustering.py`).

- **The graph.** Only pairs at or above `floor` (a cosine a little below the merge
  threshold) are kept, at most `neighbours` per face, found by exact blocked matrix
  products (memory O(n * neighbours), never the O(n^2) matrix); above `EXACT_UP_TO` faces,
  within the cells of a coarse k-means partition instead (time ~O(n * cell size)).
- **Average linkage.** Two clusters merge, most similar first, while the mean cosine over
  all their face pairs reaches `min_cosine`; a pair missing from the graph counts as `floor`
  (it is below it). Averaging over every pair is what keeps one similar-looking face from
  chaining two people together (single linkage's and DBSCAN's failure).
- **Constraints (cannot-link).** Two faces of one image never share a cluster; faces fixed
  to different persons never share one; a face rejected from a person never joins that
  person's cluster. Constraints only grow as clusters merge, so a refused pair is dropped
  for good.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Chosen on LFW View 1 (bench/clustering.py; BENCHMARKS.md "Clustering").
DEFAULT_NEIGHBOURS = 48
FLOOR_MARGIN = 0.06  # the graph keeps cosines down to min_cosine - FLOOR_MARGIN
_BLOCK = 2048
# Up to this many faces the similarity graph is exact; above, partitioned (nearly exact).
EXACT_UP_TO = 20_000
_MAX_BLOCK_CELLS = 2**25  # 128 MB of float32 similarities a block


@dataclass(frozen=True)
class Clustering:
    """`labels[i]`: the cluster of face i (0..m-1); `anchors[c]`: the person cluster c is
    fixed to (an index into the caller's persons), or -1 for a new group."""

    labels: np.ndarray
    anchors: np.ndarray

    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.anchors))


def similarity_graph(
    vectors: np.ndarray,
    floor: float,
    neighbours: int = DEFAULT_NEIGHBOURS,
    rows: np.ndarray | None = None,
    max_block_cells: int = _MAX_BLOCK_CELLS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (i, j, cosine) with cosine >= floor, among the faces `rows` (default: all) and
    from them to all other faces, each unordered pair once; at most `neighbours` a face i
    per side (its nearest). Unit vectors; exact, by blocks of at most `max_block_cells`."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    others = np.setdiff1d(np.arange(n), rows, assume_unique=True)
    mine, theirs = vectors[rows], vectors[others]
    block = int(max(16, min(_BLOCK, max_block_cells // max(n, 1))))
    sources, targets, cosines = [], [], []
    for start in range(0, len(rows), block):
        stop = min(start + block, len(rows))
        # Among `rows`: the upper triangle only (each pair once).
        sims = mine[start:stop] @ mine[start:].T
        sims[np.tril_indices(stop - start, 0, sims.shape[1])] = -2.0
        for r, c, cos in (
            _edges(sims, floor, neighbours, rows[start + np.arange(stop - start)], rows[start:]),
            _edges(
                mine[start:stop] @ theirs.T,
                floor,
                neighbours,
                rows[start + np.arange(stop - start)],
                others,
            ),
        ):
            sources.append(r)
            targets.append(c)
            cosines.append(cos)
    if not sources:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    return np.concatenate(sources), np.concatenate(targets), np.concatenate(cosines)


def partitioned_graph(
    vectors: np.ndarray,
    floor: float,
    neighbours: int = DEFAULT_NEIGHBOURS,
    rows: np.ndarray | None = None,
    cell_size: int = 512,
    probes: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`similarity_graph` for large collections, nearly exact and far cheaper: faces are
    put in the cells of their `probes` nearest centres (a few k-means rounds over a sample)
    and compared exactly within each cell only. Pairs above `floor` are faces of one person,
    close together, so they share a cell unless a border falls between them, which the
    other probes mend."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    free = np.zeros(n, dtype=bool)
    free[np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)] = True
    rng = np.random.default_rng(seed)
    cells = max(1, n // cell_size)
    sample = vectors[rng.choice(n, size=min(n, cells * 64), replace=False)]
    centres = sample[rng.choice(len(sample), size=cells, replace=False)]
    for _ in range(5):  # k-means on the sample, cosine
        nearest = np.argmax(sample @ centres.T, axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, nearest, sample)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centres = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centres)
    owners: list[np.ndarray] = []
    for start in range(0, n, _BLOCK * 8):
        scores = vectors[start : start + _BLOCK * 8] @ centres.T
        top = np.argpartition(-scores, min(probes, cells) - 1, axis=1)[:, :probes]
        owners.append(top)
    assignment = np.concatenate(owners)  # (n, probes)
    face_of = np.repeat(np.arange(n), assignment.shape[1])
    order = np.argsort(assignment.ravel(), kind="stable")
    by_cell = np.split(face_of[order], np.cumsum(np.bincount(assignment.ravel(), minlength=cells)))
    sources, targets, cosines = [], [], []
    for members in by_cell:
        if len(members) < 2 or not free[members].any():
            continue
        mine = vectors[members]
        # Rows in blocks, so that an oversized cell cannot blow up memory.
        rows_per_block = int(max(16, _MAX_BLOCK_CELLS // len(members)))
        for start in range(0, len(members), rows_per_block):
            stop = min(start + rows_per_block, len(members))
            sims = mine[start:stop] @ mine.T
            # Each pair once (the upper triangle), and only pairs that touch a free face.
            own = np.arange(start, stop)[:, None]
            sims[np.arange(len(members))[None, :] <= own] = -2.0
            sims[np.ix_(~free[members[start:stop]], ~free[members])] = -2.0
            r, c, cos = _edges(sims, floor, neighbours, members[start:stop], members)
            sources.append(r)
            targets.append(c)
            cosines.append(cos)
    if not sources:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    src, dst, cos = np.concatenate(sources), np.concatenate(targets), np.concatenate(cosines)
    low, high = np.minimum(src, dst), np.maximum(src, dst)
    _, first = np.unique(low * n + high, return_index=True)  # a pair found in two cells
    return low[first], high[first], cos[first]


def _edges(
    sims: np.ndarray, floor: float, neighbours: int, row_ids: np.ndarray, col_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cells of `sims` at or above `floor`, at most `neighbours` (the largest) a row."""
    if sims.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    r, c = np.nonzero(sims >= floor)
    s = sims[r, c]
    counts = np.bincount(r, minlength=len(sims))
    if counts.max(initial=0) > neighbours:
        order = np.lexsort((-s, r))
        r, c, s = r[order], c[order], s[order]
        rank = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < neighbours
        r, c, s = r[keep], c[keep], s[keep]
    return row_ids[r], col_ids[c], s


def cluster_faces(
    vectors: np.ndarray,
    images: np.ndarray,
    min_cosine: float,
    *,
    anchors: np.ndarray | None = None,
    rejections: Iterable[tuple[int, int]] = (),
    neighbours: int = DEFAULT_NEIGHBOURS,
    floor_margin: float = FLOOR_MARGIN,
) -> Clustering:
    """Cluster unit `vectors` (n, d). `images[i]`: the image face i was found in (faces of
    one image never share a cluster). `anchors[i]`: the person face i is fixed to (>= 0) or
    -1 if free; fixed faces of one person start as one cluster and never leave it.
    `rejections`: (face index, person index) pairs, "this face is not that person"."""
    n = len(vectors)
    images = np.asarray(images)
    anchors = np.full(n, -1, dtype=np.int64) if anchors is None else np.asarray(anchors)
    floor = min_cosine - floor_margin

    # Initial clusters: one per fixed person, one per free face.
    label = np.empty(n, dtype=np.int64)
    persons = np.unique(anchors[anchors >= 0])
    person_cluster = {int(p): c for c, p in enumerate(persons)}
    fixed = anchors >= 0
    label[fixed] = [person_cluster[int(p)] for p in anchors[fixed]]
    free = np.flatnonzero(~fixed)
    label[free] = len(persons) + np.arange(len(free))
    m = len(persons) + len(free)
    anchor_of = [int(p) for p in persons] + [-1] * len(free)
    size = np.bincount(label, minlength=m).tolist()
    members: list[list[int]] = [[] for _ in range(m)]
    for i, c in enumerate(label.tolist()):
        members[c].append(i)
    seen_images: list[set] = [set(images[idx].tolist()) for idx in members]
    banned: list[set[int]] = [set() for _ in range(m)]
    for face, person in rejections:
        banned[label[face]].add(int(person))

    # Edges that can matter touch a free face (two fixed clusters never merge).
    graph = similarity_graph if n <= EXACT_UP_TO else partitioned_graph
    src, dst, cos = graph(vectors, floor, neighbours, rows=free)
    adjacency: list[dict[int, list[float]]] = [{} for _ in range(m)]
    for a, b, s in zip(label[src].tolist(), label[dst].tolist(), cos.tolist(), strict=True):
        if a == b:
            continue
        entry = adjacency[a].get(b)
        if entry is None:
            entry = [0.0, 0.0]
            adjacency[a][b] = entry
            adjacency[b][a] = entry
        entry[0] += s
        entry[1] += 1.0

    def average(a: int, b: int) -> float:
        total, count = adjacency[a][b]
        pairs = size[a] * size[b]
        return (total + (pairs - count) * floor) / pairs

    version = [0] * m
    heap: list[tuple[float, int, int, int, int]] = []
    # Only pairs at or above the threshold are queued: a pair's average changes only when
    # one side merges, and then it is looked at again.
    for a in range(m):
        for b in adjacency[a]:
            if a < b and (value := average(a, b)) >= min_cosine:
                heap.append((-value, a, b, 0, 0))
    heapq.heapify(heap)

    parent = list(range(m))
    while heap:
        negative, a, b, va, vb = heapq.heappop(heap)
        if -negative < min_cosine:
            break
        if version[a] != va or version[b] != vb or parent[a] != a or parent[b] != b:
            continue
        if _cannot_link(a, b, anchor_of, banned, seen_images):
            del adjacency[a][b]
            del adjacency[b][a]
            continue
        if size[a] < size[b]:
            a, b = b, a
        # Fold b into a.
        parent[b] = a
        size[a] += size[b]
        seen_images[a] |= seen_images[b]
        banned[a] |= banned[b]
        if anchor_of[a] < 0:
            anchor_of[a] = anchor_of[b]
        del adjacency[a][b]
        for other, entry in adjacency[b].items():
            if other == a:
                continue
            del adjacency[other][b]
            mine = adjacency[a].get(other)
            if mine is None:
                adjacency[a][other] = entry
                adjacency[other][a] = entry
            else:
                mine[0] += entry[0]
                mine[1] += entry[1]
        adjacency[b] = {}
        version[a] += 1
        for other in adjacency[a]:
            value = average(a, other)
            if value >= min_cosine:
                lo, hi = (a, other) if a < other else (other, a)
                heapq.heappush(heap, (-value, lo, hi, version[lo], version[hi]))

    roots = np.array([_root(parent, c) for c in range(m)], dtype=np.int64)
    final, compact = np.unique(roots[label], return_inverse=True)
    return Clustering(compact.astype(np.int64), np.array([anchor_of[r] for r in final]))


def _root(parent: list[int], c: int) -> int:
    while parent[c] != c:
        parent[c] = parent[parent[c]]
        c = parent[c]
    return c


def _cannot_link(
    a: int, b: int, anchor_of: list[int], banned: list[set[int]], seen_images: list[set]
) -> bool:
    pa, pb = anchor_of[a], anchor_of[b]
    if pa >= 0 and pb >= 0 and pa != pb:
        return True
    if (pa >= 0 and pa in banned[b]) or (pb >= 0 and pb in banned[a]):
        return True
    small, large = sorted((seen_images[a], seen_images[b]), key=len)
    return any(image in large for image in small)
