"""Default similarity thresholds, one per kind of operation: the one place they are declared.

Similarity is the false-match scale of `serve_app.vision.calibration`: at threshold `s` one
comparison with a stranger's face passes with probability FMR = 10^-((s + 20) / 20), for
every pack (20 <-> 1e-2, 40 <-> 1e-3, 60 <-> 1e-4, 80 <-> 1e-5). A search compares the query
with every face of a collection, so its chance of returning a stranger grows to about
N x FMR for N faces. Figures quoted: dlib-r29 on LFW View 1 (README "Similarity" and
BENCHMARKS.md; TMR = genuine pairs of DevTrain accepted).
"""

from __future__ import annotations

# Search a collection by image or by face (REST search, Rekognition SearchFacesByImage /
# SearchFaces' FaceMatchThreshold). FMR 1e-5: a stranger finds someone in a 1,000-face
# collection under 1 % of the time (measured 0.6 %); dlib-r29 then finds two thirds of the
# enrolled people (rank-1 67 %). Lower is for small collections (N x FMR), never the default.
SEARCH = 80.0

# Search persons (REST persons search, Rekognition SearchUsers / SearchUsersByImage'
# UserMatchThreshold): a person is as similar as its best face, so searching persons is
# searching their faces: the same risk, the same default.
PERSON_SEARCH = SEARCH

# Compare the faces of two images (REST compare, CLI compare, Rekognition CompareFaces'
# SimilarityThreshold): a 1:1 question "same person?". FMR 1e-3, the point verification is
# usually reported at (TAR @ FAR 1e-3); dlib-r29 accepts 94.5 % of genuine pairs there. The
# old default (80 on the scale anchored at 1:1 accuracy) is 22 here: FMR 8e-3.
COMPARE = 40.0

# Add a face to a person that already has faces (REST associate, Rekognition AssociateFaces'
# UserMatchThreshold): the client asserts who it is and the check only catches a plain
# mistake, so nearly every genuine face must pass: FMR 1e-2, TMR 99.2 % (the old default 75
# sat at about the same place, 20 on this scale).
ASSOCIATION = 20.0

# Group faces into persons (REST clusters): two groups merge while the average similarity
# over all their face pairs reaches it (average linkage). Chosen on LFW View 1 (every image:
# 1,165 identities with >= 2 images and 1,930 singletons), the highest F with BCubed
# precision >= 0.98: precision 0.981, recall 0.921, F 0.950 (BENCHMARKS.md "Clustering").
CLUSTERING = 66.0

# Identify every face of an image (REST identify): each face searches the persons, so the
# risk and the default are those of a person search.
IDENTIFY = PERSON_SEARCH

# Enrol a face (REST enroll): refused when it reaches this with another person's face, a
# person search's risk (a face that merely resembles someone is not refused).
ENROLL_CONFLICT = PERSON_SEARCH
