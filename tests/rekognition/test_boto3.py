"""The Rekognition API driven with boto3 exactly as against AWS (real SigV4 signing): a whole
workflow over photos of several people, and every error a Rekognition user would catch."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from serve_app.config import RekognitionConfig
from serve_app.service import thresholds

from .conftest import make_client

pytestmark = pytest.mark.timeout(600)

# Enrolment photo(s) and a *different* query photo per person (under people/face_recognition).
PEOPLE = {
    "obama": (["obama/obama.jpg", "obama/obama1.jpg"], "obama/obama2.jpg"),
    "biden": (["biden/biden.jpg"], "biden/biden2.jpg"),
    "kit_harington": (["kit_harington/john1.jpeg"], "kit_harington/john2.jpeg"),
    "alex_lacamoire": (["alex_lacamoire/img1.jpg"], "alex_lacamoire/alex_lacamoire1.jpg"),
    "rose_leslie": (["rose_leslie/img1.jpg"], "rose_leslie/img2.jpg"),
}
COLLECTION = "people"
FACE_ATTRIBUTES_WE_CANNOT_COMPUTE = {
    "AgeRange",
    "Smile",
    "Eyeglasses",
    "Sunglasses",
    "Gender",
    "Beard",
    "Mustache",
    "EyesOpen",
    "MouthOpen",
    "Emotions",
    "FaceOccluded",
    "EyeDirection",
}


@pytest.fixture(scope="module")
def people(rekognition: Any, people_dir: Path) -> Iterator[dict[str, list[dict]]]:
    """A collection with one face per enrolment photo; person -> the IndexFaces responses."""
    rekognition.create_collection(CollectionId=COLLECTION)
    indexed: dict[str, list[dict]] = {}
    for person, (enrolment, _) in PEOPLE.items():
        for n, name in enumerate(enrolment):
            response = rekognition.index_faces(
                CollectionId=COLLECTION,
                Image={"Bytes": (people_dir / name).read_bytes()},
                ExternalImageId=f"{person}-{n}",
                MaxFaces=1,
                DetectionAttributes=["ALL"],
            )
            indexed.setdefault(person, []).append(response)
    yield indexed
    rekognition.delete_collection(CollectionId=COLLECTION)


def face_id(people: dict[str, list[dict]], person: str, n: int = 0) -> str:
    return people[person][n]["FaceRecords"][0]["Face"]["FaceId"]


def assert_ratio_box(box: dict[str, float]) -> None:
    assert set(box) == {"Width", "Height", "Left", "Top"}
    assert 0 < box["Width"] <= 1 and 0 < box["Height"] <= 1
    assert -0.5 < box["Left"] < 1 and -0.5 < box["Top"] < 1


def assert_face_detail(detail: dict[str, Any]) -> None:
    """What our dlib-r29 pack measures, in Rekognition's shapes, and nothing invented."""
    assert not FACE_ATTRIBUTES_WE_CANNOT_COMPUTE & set(detail), detail.keys()
    assert_ratio_box(detail["BoundingBox"])
    assert 0 <= detail["Confidence"] <= 100
    assert set(detail["Pose"]) == {"Roll", "Yaw", "Pitch"}
    assert set(detail["Quality"]) == {"Brightness", "Sharpness"}
    assert all(0 <= v <= 100 for v in detail["Quality"].values())
    # dlib's 5 points: eye corners and the base of the nose; no mouth points are made up.
    marks = {m["Type"]: (m["X"], m["Y"]) for m in detail["Landmarks"]}
    assert set(marks) == {"eyeLeft", "eyeRight", "nose"}
    box = detail["BoundingBox"]
    for x, y in marks.values():
        assert box["Left"] <= x <= box["Left"] + box["Width"]
        assert box["Top"] <= y <= box["Top"] + box["Height"]


# --- the workflow -----------------------------------------------------------------------------


def test_index_faces_returns_rekognition_fields(people: dict[str, list[dict]]) -> None:
    response = people["obama"][0]
    assert response["FaceModelVersion"] == "dlib-r29:1"
    assert response["UnindexedFaces"] == []
    [record] = response["FaceRecords"]
    face = record["Face"]
    assert face["ExternalImageId"] == "obama-0"
    assert {"FaceId", "ImageId", "Confidence", "BoundingBox"} <= set(face)
    assert face["BoundingBox"] == record["FaceDetail"]["BoundingBox"]
    assert_face_detail(record["FaceDetail"])
    # Rekognition's eyeLeft is the eye on the image's left: left of eyeRight in a frontal face.
    marks = {m["Type"]: m for m in record["FaceDetail"]["Landmarks"]}
    assert marks["eyeLeft"]["X"] < marks["nose"]["X"] < marks["eyeRight"]["X"]
    assert marks["nose"]["Y"] > max(marks["eyeLeft"]["Y"], marks["eyeRight"]["Y"])


def test_search_by_a_new_photo_finds_each_person(
    rekognition: Any, people: dict[str, list[dict]], people_dir: Path
) -> None:
    for person, (_, query) in PEOPLE.items():
        response = rekognition.search_faces_by_image(
            CollectionId=COLLECTION, Image={"Bytes": (people_dir / query).read_bytes()}
        )
        matches = response["FaceMatches"]
        assert matches, f"no match for {person}"
        best = matches[0]["Face"]["ExternalImageId"]
        assert best.startswith(person + "-"), (person, best)
        assert all(m["Similarity"] >= thresholds.SEARCH for m in matches)  # the default
        assert [m["Similarity"] for m in matches] == sorted(
            (m["Similarity"] for m in matches), reverse=True
        )
        assert_ratio_box(response["SearchedFaceBoundingBox"])
        assert 0 < response["SearchedFaceConfidence"] <= 100
        assert response["FaceModelVersion"] == "dlib-r29:1"
        assert_ratio_box(matches[0]["Face"]["BoundingBox"])


def test_search_faces_by_face_id(rekognition: Any, people: dict[str, list[dict]]) -> None:
    response = rekognition.search_faces(
        CollectionId=COLLECTION, FaceId=face_id(people, "obama", 0), MaxFaces=3
    )
    assert response["SearchedFaceId"] == face_id(people, "obama", 0)
    ids = [m["Face"]["FaceId"] for m in response["FaceMatches"]]
    assert ids[0] == face_id(people, "obama", 1)
    assert face_id(people, "obama", 0) not in ids  # never itself
    # 100 is the top of the scale (FMR 1e-6): only Obama's other photo is that close. 0 and
    # MaxFaces=4096 (the model's top) return everything else.
    strict = rekognition.search_faces(
        CollectionId=COLLECTION, FaceId=face_id(people, "obama", 0), FaceMatchThreshold=100
    )
    assert [m["Face"]["FaceId"] for m in strict["FaceMatches"]] == [face_id(people, "obama", 1)]
    loose = rekognition.search_faces(
        CollectionId=COLLECTION,
        FaceId=face_id(people, "obama", 0),
        FaceMatchThreshold=0,
        MaxFaces=4096,
    )
    assert len(loose["FaceMatches"]) == sum(len(v) for v in people.values()) - 1


def test_list_faces_pages_with_max_results_and_next_token(
    rekognition: Any, people: dict[str, list[dict]]
) -> None:
    expected = {face_id(people, p, n) for p, rs in people.items() for n in range(len(rs))}
    seen: list[str] = []
    token: dict[str, str] = {}
    pages = 0
    while True:
        page = rekognition.list_faces(CollectionId=COLLECTION, MaxResults=2, **token)
        assert len(page["Faces"]) <= 2 and page["FaceModelVersion"] == "dlib-r29:1"
        seen += [f["FaceId"] for f in page["Faces"]]
        pages += 1
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    assert sorted(seen) == sorted(expected) and pages == 3
    # Stored faces keep the box IndexFaces reported, as ratios of their own image's size.
    indexed = {
        r["FaceRecords"][0]["Face"]["FaceId"]: r["FaceRecords"][0]["Face"]["BoundingBox"]
        for rs in people.values()
        for r in rs
    }
    for face in rekognition.list_faces(CollectionId=COLLECTION)["Faces"]:
        assert face["BoundingBox"] == indexed[face["FaceId"]]
    # boto3's own paginator walks the same pages.
    paginator = rekognition.get_paginator("list_faces")
    walked = [
        f["FaceId"]
        for p in paginator.paginate(CollectionId=COLLECTION, MaxResults=2)
        for f in p["Faces"]
    ]
    assert walked == seen
    # FaceIds filters.
    wanted = [face_id(people, "biden"), face_id(people, "rose_leslie")]
    filtered = rekognition.list_faces(CollectionId=COLLECTION, FaceIds=wanted)
    assert sorted(f["FaceId"] for f in filtered["Faces"]) == sorted(wanted)


def test_describe_and_list_collections(rekognition: Any, people: dict[str, list[dict]]) -> None:
    described = rekognition.describe_collection(CollectionId=COLLECTION)
    assert described["FaceCount"] == 6 and described["UserCount"] == 0
    assert described["FaceModelVersion"] == "dlib-r29:1"
    assert described["CollectionARN"].endswith(":collection/people")
    assert isinstance(described["CreationTimestamp"], datetime)
    extra = ["pages-a", "pages-b", "pages-c"]
    for name in extra:
        created = rekognition.create_collection(CollectionId=name, Tags={"team": "faces"})
        assert created["StatusCode"] == 200 and created["FaceModelVersion"] == "dlib-r29:1"
    try:
        names: list[str] = []
        versions: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = rekognition.list_collections(MaxResults=2, **token)
            assert len(page["CollectionIds"]) <= 2
            names += page["CollectionIds"]
            versions += page["FaceModelVersions"]
            if "NextToken" not in page:
                break
            token = {"NextToken": page["NextToken"]}
        assert set(extra + [COLLECTION]) <= set(names) and names == sorted(names)
        assert set(versions) == {"dlib-r29:1"} and len(versions) == len(names)
    finally:
        for name in extra:
            assert rekognition.delete_collection(CollectionId=name)["StatusCode"] == 200
    assert not set(extra) & set(rekognition.list_collections()["CollectionIds"])


def test_compare_faces(rekognition: Any, people_dir: Path, t1_bytes: bytes) -> None:
    obama, obama2 = (
        (people_dir / "obama/obama.jpg").read_bytes(),
        (people_dir / "obama/obama2.jpg").read_bytes(),
    )
    same = rekognition.compare_faces(SourceImage={"Bytes": obama}, TargetImage={"Bytes": obama2})
    assert len(same["FaceMatches"]) == 1 and same["UnmatchedFaces"] == []
    assert same["FaceMatches"][0]["Similarity"] >= thresholds.COMPARE
    assert_face_detail(same["FaceMatches"][0]["Face"])
    assert_ratio_box(same["SourceImageFace"]["BoundingBox"])
    # Obama against a group photo of other people: six faces, none of them him.
    group = rekognition.compare_faces(SourceImage={"Bytes": obama}, TargetImage={"Bytes": t1_bytes})
    assert group["FaceMatches"] == [] and len(group["UnmatchedFaces"]) == 6
    # SimilarityThreshold=0 puts every face into FaceMatches, best first.
    everyone = rekognition.compare_faces(
        SourceImage={"Bytes": obama}, TargetImage={"Bytes": t1_bytes}, SimilarityThreshold=0
    )
    assert len(everyone["FaceMatches"]) == 6 and everyone["UnmatchedFaces"] == []


def test_detect_faces_omits_what_we_cannot_compute(rekognition: Any, t1_bytes: bytes) -> None:
    response = rekognition.detect_faces(Image={"Bytes": t1_bytes}, Attributes=["ALL"])
    assert len(response["FaceDetails"]) == 6
    for detail in response["FaceDetails"]:
        assert_face_detail(detail)


def test_index_faces_reports_unindexed_faces(rekognition: Any, t1_bytes: bytes) -> None:
    rekognition.create_collection(CollectionId="group")
    try:
        response = rekognition.index_faces(
            CollectionId="group", Image={"Bytes": t1_bytes}, MaxFaces=2, QualityFilter="NONE"
        )
        assert len(response["FaceRecords"]) == 2 and len(response["UnindexedFaces"]) == 4
        for item in response["UnindexedFaces"]:
            assert item["Reasons"] == ["EXCEEDS_MAX_FACES"]
            assert_face_detail(item["FaceDetail"])
        # Kept: the two largest, largest first.
        areas = [
            r["Face"]["BoundingBox"]["Width"] * r["Face"]["BoundingBox"]["Height"]
            for r in response["FaceRecords"]
        ]
        dropped = [
            u["FaceDetail"]["BoundingBox"]["Width"] * u["FaceDetail"]["BoundingBox"]["Height"]
            for u in response["UnindexedFaces"]
        ]
        assert areas == sorted(areas, reverse=True) and min(areas) >= max(dropped)
        # DeleteFaces: the two indexed go, an unknown id is reported, not an error.
        ids = [r["Face"]["FaceId"] for r in response["FaceRecords"]]
        unknown = "00000000-0000-4000-8000-000000000000"
        deleted = rekognition.delete_faces(CollectionId="group", FaceIds=ids + [unknown])
        assert sorted(deleted["DeletedFaces"]) == sorted(ids)
        assert deleted["UnsuccessfulFaceDeletions"] == [
            {"FaceId": unknown, "Reasons": ["FACE_NOT_FOUND"]}
        ]
        assert rekognition.describe_collection(CollectionId="group")["FaceCount"] == 0
    finally:
        rekognition.delete_collection(CollectionId="group")


def test_users(
    rekognition: Any, people: dict[str, list[dict]], people_dir: Path, t1_bytes: bytes
) -> None:
    for person in ("obama", "biden", "kit_harington"):
        assert rekognition.create_user(CollectionId=COLLECTION, UserId=person) is not None
    try:
        users = rekognition.list_users(CollectionId=COLLECTION)["Users"]
        assert {u["UserId"]: u["UserStatus"] for u in users} == {
            "biden": "CREATED",
            "kit_harington": "CREATED",
            "obama": "CREATED",
        }
        associated = rekognition.associate_faces(
            CollectionId=COLLECTION,
            UserId="obama",
            FaceIds=[face_id(people, "obama", 0), face_id(people, "obama", 1)],
        )
        assert sorted(f["FaceId"] for f in associated["AssociatedFaces"]) == sorted(
            [face_id(people, "obama", 0), face_id(people, "obama", 1)]
        )
        assert associated["UnsuccessfulFaceAssociations"] == []
        assert associated["UserStatus"] == "ACTIVE"
        # Biden's face does not resemble Obama's: refused, with the similarity it reached.
        refused = rekognition.associate_faces(
            CollectionId=COLLECTION, UserId="obama", FaceIds=[face_id(people, "biden")]
        )
        assert refused["AssociatedFaces"] == []
        [item] = refused["UnsuccessfulFaceAssociations"]
        assert item["Reasons"] == ["LOW_MATCH_CONFIDENCE"]
        assert item["Confidence"] < thresholds.ASSOCIATION
        for person in ("biden", "kit_harington"):
            rekognition.associate_faces(
                CollectionId=COLLECTION, UserId=person, FaceIds=[face_id(people, person)]
            )
        # A face of another user is refused, naming that user.
        taken = rekognition.associate_faces(
            CollectionId=COLLECTION, UserId="biden", FaceIds=[face_id(people, "obama", 0)]
        )
        [item] = taken["UnsuccessfulFaceAssociations"]
        assert item["Reasons"] == ["ASSOCIATED_TO_A_DIFFERENT_USER"] and item["UserId"] == "obama"
        # ListFaces shows whose a face is, and filters by user.
        mine = rekognition.list_faces(CollectionId=COLLECTION, UserId="obama")["Faces"]
        assert sorted(f["FaceId"] for f in mine) == sorted(
            [face_id(people, "obama", 0), face_id(people, "obama", 1)]
        )
        assert {f["UserId"] for f in mine} == {"obama"}

        # Search users by a new photo of each.
        for person in ("obama", "biden", "kit_harington"):
            query = (people_dir / PEOPLE[person][1]).read_bytes()
            found = rekognition.search_users_by_image(
                CollectionId=COLLECTION, Image={"Bytes": query}
            )
            assert found["UserMatches"][0]["User"] == {"UserId": person, "UserStatus": "ACTIVE"}
            assert found["UserMatches"][0]["Similarity"] >= thresholds.PERSON_SEARCH
            assert_face_detail(found["SearchedFace"]["FaceDetail"])
            assert found["FaceModelVersion"] == "dlib-r29:1"
        # A group photo: its largest face is searched, the others are UnsearchedFaces.
        group = rekognition.search_users_by_image(
            CollectionId=COLLECTION, Image={"Bytes": t1_bytes}
        )
        assert_face_detail(group["SearchedFace"]["FaceDetail"])
        assert len(group["UnsearchedFaces"]) == 5
        for item in group["UnsearchedFaces"]:
            assert item["Reasons"] == ["FACE_NOT_LARGEST"]
            assert_face_detail(item["FaceDetails"])
        assert rekognition.describe_collection(CollectionId=COLLECTION)["UserCount"] == 3
        by_face = rekognition.search_users(
            CollectionId=COLLECTION, FaceId=face_id(people, "obama", 1)
        )
        assert by_face["UserMatches"][0]["User"]["UserId"] == "obama"
        assert by_face["SearchedFace"] == {"FaceId": face_id(people, "obama", 1)}
        by_user = rekognition.search_users(CollectionId=COLLECTION, UserId="biden")
        assert by_user["SearchedUser"] == {"UserId": "biden"}
        assert all(m["User"]["UserId"] != "biden" for m in by_user["UserMatches"])

        # Paginate users.
        pages = list(
            rekognition.get_paginator("list_users").paginate(
                CollectionId=COLLECTION, PaginationConfig={"PageSize": 2}
            )
        )
        assert [len(p["Users"]) for p in pages] == [2, 1]
        assert [u["UserId"] for p in pages for u in p["Users"]] == [
            "biden",
            "kit_harington",
            "obama",
        ]

        # Disassociate: the face belongs to nobody again.
        gone = rekognition.disassociate_faces(
            CollectionId=COLLECTION, UserId="obama", FaceIds=[face_id(people, "obama", 1)]
        )
        assert gone["DisassociatedFaces"] == [{"FaceId": face_id(people, "obama", 1)}]
        mine = rekognition.list_faces(CollectionId=COLLECTION, UserId="obama")["Faces"]
        assert [f["FaceId"] for f in mine] == [face_id(people, "obama", 0)]
    finally:
        for person in ("obama", "biden", "kit_harington"):
            rekognition.delete_user(CollectionId=COLLECTION, UserId=person)
    assert rekognition.list_users(CollectionId=COLLECTION)["Users"] == []
    # Deleting a user keeps its faces.
    assert rekognition.describe_collection(CollectionId=COLLECTION)["FaceCount"] == 6


def test_client_request_tokens_make_retries_safe(
    rekognition: Any, people: dict[str, list[dict]]
) -> None:
    token = "retry-token-0001"
    rekognition.create_user(CollectionId=COLLECTION, UserId="retried", ClientRequestToken=token)
    try:
        # The same request again (a retry after a lost reply) succeeds; a new one conflicts.
        rekognition.create_user(CollectionId=COLLECTION, UserId="retried", ClientRequestToken=token)
        with pytest.raises(rekognition.exceptions.ConflictException):
            rekognition.create_user(CollectionId=COLLECTION, UserId="retried")
        # The token reused for something else is a mismatch.
        with pytest.raises(rekognition.exceptions.IdempotentParameterMismatchException):
            rekognition.create_user(
                CollectionId=COLLECTION, UserId="someone-else", ClientRequestToken=token
            )
    finally:
        rekognition.delete_user(CollectionId=COLLECTION, UserId="retried")


# --- errors -----------------------------------------------------------------------------------


def test_errors_raise_the_exceptions_rekognition_users_catch(
    rekognition: Any, people: dict[str, list[dict]], people_dir: Path
) -> None:
    errors = rekognition.exceptions
    photo = (people_dir / "obama/obama2.jpg").read_bytes()
    with pytest.raises(errors.ResourceNotFoundException):
        rekognition.describe_collection(CollectionId="no-such-collection")
    with pytest.raises(errors.ResourceNotFoundException):
        rekognition.index_faces(CollectionId="no-such-collection", Image={"Bytes": photo})
    with pytest.raises(errors.ResourceNotFoundException):
        rekognition.delete_collection(CollectionId="no-such-collection")
    with pytest.raises(errors.ResourceAlreadyExistsException):
        rekognition.create_collection(CollectionId=COLLECTION)
    with pytest.raises(errors.ResourceNotFoundException):
        rekognition.search_faces(
            CollectionId=COLLECTION, FaceId="00000000-0000-4000-8000-000000000000"
        )
    with pytest.raises(errors.ResourceNotFoundException):
        rekognition.delete_user(CollectionId=COLLECTION, UserId="nobody")
    with pytest.raises(errors.ResourceNotFoundException):
        rekognition.associate_faces(
            CollectionId=COLLECTION, UserId="nobody", FaceIds=[face_id(people, "obama")]
        )
    # Constraints from the model that botocore does not check on the client side.
    with pytest.raises(errors.InvalidParameterException, match="CollectionId"):
        rekognition.create_collection(CollectionId="has a space")
    with pytest.raises(errors.InvalidParameterException, match="MaxFaces"):
        rekognition.search_faces_by_image(
            CollectionId=COLLECTION, Image={"Bytes": photo}, MaxFaces=5000
        )
    with pytest.raises(errors.InvalidParameterException, match="FaceMatchThreshold"):
        rekognition.search_faces_by_image(
            CollectionId=COLLECTION, Image={"Bytes": photo}, FaceMatchThreshold=101
        )
    with pytest.raises(errors.InvalidParameterException, match="exactly one of UserId or FaceId"):
        rekognition.search_users(CollectionId=COLLECTION)
    with pytest.raises(errors.InvalidParameterException, match="exactly one of Bytes or S3Object"):
        rekognition.detect_faces(Image={})
    with pytest.raises(errors.InvalidPaginationTokenException):
        rekognition.list_faces(CollectionId=COLLECTION, NextToken="garbage")
    with pytest.raises(errors.InvalidPaginationTokenException):
        rekognition.list_collections(NextToken="garbage")
    # Images.
    with pytest.raises(errors.InvalidImageFormatException):
        rekognition.detect_faces(Image={"Bytes": b"this is not an image"})
    gif = _blank_image("GIF")
    with pytest.raises(errors.InvalidImageFormatException):
        rekognition.detect_faces(Image={"Bytes": gif})
    with pytest.raises(errors.ImageTooLargeException):
        rekognition.detect_faces(Image={"Bytes": photo + b"\0" * (5 * 1024 * 1024)})
    # No face to search with, as AWS: InvalidParameterException.
    with pytest.raises(errors.InvalidParameterException, match="no face"):
        rekognition.search_faces_by_image(
            CollectionId=COLLECTION, Image={"Bytes": _blank_image("PNG")}
        )


def _blank_image(fmt: str) -> bytes:
    """A grey 200x200 picture: a valid image without a face."""
    out = io.BytesIO()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(out, format=fmt)
    return out.getvalue()


def test_an_operation_we_do_not_implement(rekognition: Any, t1_bytes: bytes) -> None:
    with pytest.raises(ClientError) as caught:
        rekognition.detect_labels(Image={"Bytes": t1_bytes})
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"


# --- authentication ---------------------------------------------------------------------------


def test_a_wrong_secret_key_is_refused(endpoint: str) -> None:
    client = make_client(endpoint, secret="not-the-secret")
    with pytest.raises(ClientError) as caught:
        client.list_collections()
    error = caught.value.response
    assert error["Error"]["Code"] == "InvalidSignatureException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unknown_access_key_is_refused(endpoint: str) -> None:
    client = make_client(endpoint, key_id="AKIANOTCONFIGURED000")
    with pytest.raises(ClientError) as caught:
        client.list_collections()
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unsigned_request_is_refused(endpoint: str) -> None:
    import boto3
    from botocore import UNSIGNED

    client = boto3.session.Session().client(
        "rekognition",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as caught:
        client.list_collections()
    assert caught.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_auth_disabled_is_an_explicit_logged_opt_out(
    rekognition_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import warnings

    from serve_app.api import build_rest_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from starlette.testclient import TestClient

    with caplog.at_level("WARNING"):
        app = build_rest_app(rekognition_service, rekognition=RekognitionConfig(auth="disabled"))
    assert "DISABLED" in caplog.text
    with TestClient(app) as client:
        r = client.post(
            "/",
            content=b"{}",
            headers={
                "X-Amz-Target": "RekognitionService.ListCollections",
                "Content-Type": "application/x-amz-json-1.1",
            },
        )
    assert r.status_code == 200 and "CollectionIds" in r.json()
