"""Persons found by clustering (REST) are Rekognition users: boto3's ListUsers lists them and
SearchUsers finds them, over a real HTTP server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from .conftest import SECRET


def test_clustered_persons_are_rekognition_users(
    rekognition, endpoint: str, people_dir: Path
) -> None:
    rekognition.create_collection(CollectionId="clustered")
    faces: dict[str, str] = {}
    for person, photo in [
        ("obama", "obama/obama.jpg"),
        ("obama", "obama/obama1.jpg"),
        ("obama", "obama/obama3.jpg"),
        ("biden", "biden/biden.jpg"),
        ("biden", "biden/biden2.jpg"),
    ]:
        reply = rekognition.index_faces(
            CollectionId="clustered",
            Image={"Bytes": (people_dir / photo).read_bytes()},
            MaxFaces=1,
        )
        faces[reply["FaceRecords"][0]["Face"]["FaceId"]] = person
    auth = {"Authorization": f"Bearer {SECRET}"}  # the same key over REST
    started = httpx.post(
        f"{endpoint}/v1/collections/clustered/clusters", json={"mode": "full"}, headers=auth
    )
    assert started.status_code == 202, started.text
    run = f"{endpoint}/v1/collections/clustered/clusters/{started.json()['run_id']}"
    for _ in range(600):
        state = httpx.get(run, headers=auth).json()["state"]
        if state != "running":
            break
        time.sleep(0.05)
    assert state == "succeeded"

    users = rekognition.list_users(CollectionId="clustered")["Users"]
    assert len(users) == 2
    assert all(u["UserId"].startswith("p-") and u["UserStatus"] == "ACTIVE" for u in users)
    obama_face = next(f for f, p in faces.items() if p == "obama")
    found = rekognition.search_users(CollectionId="clustered", FaceId=obama_face)
    best = found["UserMatches"][0]["User"]["UserId"]
    members = rekognition.list_faces(CollectionId="clustered", UserId=best)["Faces"]
    assert {faces[f["FaceId"]] for f in members} == {"obama"}
