"""Default similarity thresholds (0-100, the packs' calibrated scale), one per operation."""

from __future__ import annotations

# Search in a collection (REST search, Rekognition SearchFaces/SearchFacesByImage).
SEARCH = 80.0
# Compare two images (1:1).
COMPARE = 80.0
# Persons search.
PERSONS_SEARCH = 80.0
# A face joining a person that already has faces (Rekognition's UserMatchThreshold default).
ASSOCIATION = 75.0
