"""Album jobs end to end in one process: real sources, the real pack, PostgreSQL as queue
and record. Every image indexed exactly once, re-runs skip, bad input fails per image."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import boto3
import pytest
from sqlalchemy import func, select

from serve_app.config import Settings
from serve_app.errors import InvalidParameter, NotFound
from serve_app.service.album_sources import (
    ArchiveSource,
    external_image_id_for,
    folder_source,
    parse_source,
)
from serve_app.service.analysis import detect_faces
from serve_app.service.job_transport import SqsTransport
from serve_app.service.jobs import job_options
from serve_app.store.collection_schema import tables_for
from serve_app.store.jobs import JobStore, NewJobImage
from serve_app.store.records import NewImage

pytestmark = pytest.mark.timeout(300)


def write_album(root: Path, photos: dict[str, bytes]) -> None:
    for key, data in photos.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def expected_faces(pack, photos: dict[str, bytes]) -> dict[str, int]:  # noqa: ANN001
    """Faces the pipeline finds in each photo, by external image id (what IndexFaces would
    index with the default quality filter)."""
    from serve_app.service.quality_filter import QualityFilter, select_faces

    counts = {}
    for key, data in photos.items():
        found = detect_faces(pack, data)
        keep, _ = select_faces(found.faces, None, QualityFilter.parse(None))
        counts[external_image_id_for(key)] = len(keep)
    return counts


def faces_by_image(job_store: JobStore, collection: str) -> dict[str, tuple[int, int]]:
    """(image rows, face rows) per external image id, straight from the collection's tables."""
    record = job_store.store.get_collection(collection)
    t = tables_for(record.schema_name)
    with job_store.engine.begin() as conn:
        images = dict(
            conn.execute(
                select(t.images.c.external_image_id, func.count()).group_by(
                    t.images.c.external_image_id
                )
            ).all()
        )
        faces = dict(
            conn.execute(
                select(t.faces.c.external_image_id, func.count()).group_by(
                    t.faces.c.external_image_id
                )
            ).all()
        )
    return {k: (images[k], faces.get(k, 0)) for k in images}


def submit(job_store: JobStore, collection: str, source: str, **options) -> str:  # noqa: ANN003
    kind = parse_source(source)[0] if not source.startswith("archive:") else "archive"
    return job_store.create_job(collection, source, kind, job_options(**options)).job_id


def test_folder_album_indexed_once_rerun_skips_bad_files_fail_per_image(
    job_store,
    collection,
    local_jobs,
    album_photos,
    pack,
    tmp_path,  # noqa: ANN001
) -> None:
    album = tmp_path / "album"
    write_album(album, album_photos)
    (album / "notes.txt").write_text("not a photo")  # ignored: not an image by name
    (album / "broken.jpg").write_text("this is text, not a JPEG")
    (album / "truncated.jpg").write_bytes(album_photos["group/t1.jpg"][:4000])
    expected = expected_faces(pack, album_photos)

    with local_jobs() as jobs:
        job = jobs.wait(submit(job_store, collection, f"file://{album}"))
        assert job.state == "succeeded", job
        assert job.images.total == 7 and job.images.done == 5 and job.images.failed == 2
        assert job.ignored_files == 1 and job.listed
        assert job.faces_indexed == sum(expected.values()) > 8
        failures, _ = job_store.failures(job.job_id)
        assert {(f.key, f.reason) for f in failures} == {
            ("broken.jpg", "invalid_image"),
            ("truncated.jpg", "invalid_image"),
        }
        assert all(f.message for f in failures)
        rows = faces_by_image(job_store, collection)
        assert rows == {k: (1, n) for k, n in expected.items()}
        # The key is the external image id (sanitised); the original is in the metadata.
        listed, _ = job_store.store.list_faces(collection, 100)
        assert {f.metadata["source_key"] for f in listed} == {
            k for k in album_photos if expected[external_image_id_for(k)]
        }

        # A re-run skips everything it indexed; the broken files fail again.
        again = jobs.wait(submit(job_store, collection, f"file://{album}"))
        assert (again.images.skipped, again.images.done, again.images.failed) == (5, 0, 2)
        assert again.faces_indexed == 0
        by_name = jobs.wait(
            submit(job_store, collection, f"file://{album}", skip_existing="external_image_id")
        )
        assert by_name.images.skipped == 5
        assert faces_by_image(job_store, collection) == rows


def test_archives_zip_and_tar_refuse_path_tricks_and_bombs(
    job_store,
    collection,
    local_jobs,
    album_photos,
    tmp_path,  # noqa: ANN001
) -> None:
    archive = tmp_path / "album.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/hanks.jpg", album_photos["portraits/hanks.jpg"])
        z.writestr("../escape.jpg", album_photos["portraits/astronaut.jpg"])
        z.writestr("/etc/absolute.jpg", album_photos["portraits/astronaut.jpg"])
        z.writestr("bomb.jpg", b"\0" * (4 * 1024 * 1024))  # 4 MB of zeros: a few KB zipped
        z.writestr("readme.md", "ignored")
    tar_path = tmp_path / "album.tar"
    with tarfile.open(tar_path, "w") as t:
        data = album_photos["portraits/astronaut.jpg"]
        info = tarfile.TarInfo("b/astronaut.jpg")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b/link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)

    with local_jobs() as jobs:
        zipped = job_store.create_job(
            collection, "archive:album.zip", "archive",
            {**job_options(), "archive_path": str(archive)},
        )  # fmt: skip
        tarred = job_store.create_job(
            collection, "archive:album.tar", "archive",
            {**job_options(), "archive_path": str(tar_path)},
        )  # fmt: skip
        z, t = jobs.wait(zipped.job_id), jobs.wait(tarred.job_id)
    assert (z.state, z.images.done, z.images.failed, z.ignored_files) == ("succeeded", 1, 3, 1)
    reasons = {f.key: f.reason for f in job_store.failures(z.job_id)[0]}
    assert reasons == {
        "../escape.jpg": "unsafe_path",
        "/etc/absolute.jpg": "unsafe_path",
        "bomb.jpg": "suspicious_archive",
    }
    assert (t.state, t.images.done, t.images.failed) == ("succeeded", 1, 1)
    assert [f.reason for f in job_store.failures(t.job_id)[0]] == ["unsafe_path"]
    assert faces_by_image(job_store, collection)["a:hanks.jpg"] == (1, 1)


def test_not_an_archive_and_compressed_tar_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "x.zip"
    text.write_text("hello")
    with pytest.raises(InvalidParameter, match="not a .zip"):
        ArchiveSource(text)
    gz = tmp_path / "x.tar.gz"
    with tarfile.open(gz, "w:gz") as t:
        t.addfile(tarfile.TarInfo("empty.jpg"), io.BytesIO(b""))
    with pytest.raises(InvalidParameter, match="compressed tars"):
        ArchiveSource(gz)


def test_folders_stay_inside_allowed_roots(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"secret")
    os.symlink(secret, root / "a" / "link.jpg")
    with pytest.raises(InvalidParameter, match="'..'"):
        folder_source(f"file://{root}/../photos", [root])
    with pytest.raises(InvalidParameter, match="not inside an allowed root"):
        folder_source(f"file://{tmp_path}", [root])
    with pytest.raises(InvalidParameter, match="not enabled"):
        folder_source(f"file://{root}", [])
    with pytest.raises(NotFound):
        folder_source(f"file://{root}/missing", [root])
    source = folder_source(f"file://{root}/a", [root])
    assert [p.keys for p in source.pages()] == [["link.jpg", "x.jpg"]]
    assert source.read("x.jpg", 100) == b"x"
    for key in ("link.jpg", "../../secret.jpg", "/etc/passwd"):
        with pytest.raises(Exception, match="outside|not a path") as err:
            source.read(key, 100)
        assert err.value.reason == "unsafe_path"


def test_external_image_ids_follow_rekognitions_pattern() -> None:
    assert external_image_id_for("2024/Summer trip/IMG 001.jpg") == "2024:Summer_trip:IMG_001.jpg"
    assert len(external_image_id_for("x/" * 300 + "a.jpg")) == 255


def test_pause_resume_cancel_and_leases(job_store, collection) -> None:  # noqa: ANN001
    job = job_store.create_job(collection, "file:///nowhere", "folder", job_options())
    job_store.start_listing(job.job_id)
    job_store.add_images(job.job_id, [NewJobImage(f"{i}.jpg", f"{i}.jpg") for i in range(6)])
    job_store.finish_listing(job.job_id, 0)

    job_store.set_state(job.job_id, "paused", allowed_from=("running",))
    assert job_store.claim("w1", 4, 60, 3) == []
    with pytest.raises(InvalidParameter, match="paused: it cannot become paused"):
        job_store.set_state(job.job_id, "paused", allowed_from=("running",))
    job_store.set_state(job.job_id, "running", allowed_from=("paused",))

    first = job_store.claim("w1", 4, 60, 3)
    second = job_store.claim("w2", 4, 60, 3)
    assert [c.key for c in first] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert [c.key for c in second] == ["4.jpg", "5.jpg"]  # never the same image twice
    # w1 dies: its images come back, and one tried before is taken alone.
    assert job_store.release_worker("w1") == 4
    retry = job_store.claim("w3", 4, 0.001, 2)
    assert [c.key for c in retry] == ["0.jpg"] and retry[0].attempts == 2
    import time

    time.sleep(0.05)  # its lease (0.001 s) runs out: tried twice, so it fails as a timeout
    job_store.claim("w4", 1, 60, 2)
    failures, _ = job_store.failures(job.job_id)
    assert [(f.key, f.reason) for f in failures] == [("0.jpg", "timeout")]

    cancelled = job_store.set_state(job.job_id, "cancelled", allowed_from=("running",))
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    assert job_store.claim("w5", 4, 60, 3) == []
    assert job_store.get_job(job.job_id).images.pending == 5


def test_a_second_delivery_or_a_second_job_indexes_nothing_twice(
    job_store,
    collection,
    pack,
    album_photos,  # noqa: ANN001
) -> None:
    from serve_app.service.album_indexing import AlbumIndexer

    jobs = [job_store.create_job(collection, "file:///x", "folder", job_options()) for _ in "ab"]
    for job in jobs:
        job_store.start_listing(job.job_id)
        job_store.add_images(job.job_id, [NewJobImage("hanks.jpg", "hanks.jpg")])
    claims = [job_store.claim("w", 1, 60, 3)[0] for _ in jobs]
    image = NewImage("hanks.jpg", 10, 10, None, "f" * 64)
    assert job_store.commit_image(claims[0], image, [], "hash") == "done"
    assert job_store.commit_image(claims[0], image, [], "hash") == "duplicate"
    assert job_store.commit_image(claims[1], image, [], "hash") == "skipped"
    assert faces_by_image(job_store, collection) == {"hanks.jpg": (1, 0)}
    assert AlbumIndexer(pack, job_store, Settings()).jobs is job_store


def test_s3_album_and_missing_bucket(
    job_store,
    collection,
    local_jobs,
    job_settings,
    album_photos,
    aws_endpoint,
    pack,  # noqa: ANN001
) -> None:
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="family-photos")
    for key, data in album_photos.items():
        s3.put_object(Bucket="family-photos", Key=f"2024/{key}", Body=data)
    s3.put_object(Bucket="family-photos", Key="2023/other.jpg", Body=b"not in the prefix")
    settings = Settings.from_env(
        **{**job_settings.model_dump(), "job_s3_endpoint_url": aws_endpoint}
    )
    with local_jobs(settings) as jobs:
        job = jobs.wait(submit(job_store, collection, "s3://family-photos/2024/"))
        missing = jobs.wait(submit(job_store, collection, "s3://no-such-bucket/x"))
    assert (job.state, job.images.total, job.images.done) == ("succeeded", 5, 5)
    assert job.faces_indexed == sum(expected_faces(pack, album_photos).values())
    assert "2024:group:t1.jpg" in faces_by_image(job_store, collection)
    assert missing.state == "failed" and "no-such-bucket" in missing.error


def test_sqs_transport_duplicates_and_dead_letters(
    job_store,
    collection,
    local_jobs,
    job_settings,
    album_photos,
    aws_endpoint,
    tmp_path,  # noqa: ANN001
) -> None:
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"album-{collection}")["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"album-{collection}-dlq")["QueueUrl"]
    settings = Settings.from_env(
        **{
            **job_settings.model_dump(),
            "job_queue": "sqs",
            "job_sqs_queue_url": queue,
            "job_sqs_dlq_url": dlq,
            "job_sqs_endpoint_url": aws_endpoint,
            "job_max_attempts": 2,
        }
    )
    transport = SqsTransport(job_store, settings)
    transport.configure_dead_letters()
    policy = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])
    redrive = json.loads(policy["Attributes"]["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 2 and redrive["deadLetterTargetArn"].endswith("-dlq")

    album = tmp_path / "album"
    write_album(album, album_photos)
    with local_jobs(settings, transport) as jobs:
        job = jobs.wait(submit(job_store, collection, f"file://{album}"))
        assert (job.state, job.images.done) == ("succeeded", 5)
        indexed = faces_by_image(job_store, collection)
        # SQS delivers at least once: the same messages again index nothing twice.
        rows = _rows(job_store, job.job_id)
        sqs.send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(r), "MessageBody": f'{{"row": {r}}}'} for r in rows[:5]],
        )
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            attrs = sqs.get_queue_attributes(
                QueueUrl=queue,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            if attrs == {
                "ApproximateNumberOfMessages": "0",
                "ApproximateNumberOfMessagesNotVisible": "0",
            }:
                break
            time.sleep(0.2)
        assert faces_by_image(job_store, collection) == indexed
    # An image whose message reached the dead-letter queue fails (reason timeout).
    stuck = job_store.create_job(collection, f"file://{album}", "folder", job_options())
    job_store.start_listing(stuck.job_id)
    job_store.add_images(stuck.job_id, [NewJobImage("stuck.jpg", "stuck.jpg")])
    row = _rows(job_store, stuck.job_id)[0]
    sqs.send_message(QueueUrl=dlq, MessageBody=f'{{"row": {row}}}')
    assert transport.collect_dead_letters() == 1
    assert [f.reason for f in job_store.failures(stuck.job_id)[0]] == ["timeout"]


def _rows(job_store: JobStore, job_id: str) -> list[int]:
    from serve_app.store.control import job_images

    with job_store.engine.begin() as conn:
        return list(
            conn.execute(
                select(job_images.c.id)
                .where(job_images.c.job_id == job_id)
                .order_by(job_images.c.id)
            ).scalars()
        )
