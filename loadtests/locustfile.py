"""faceserve's load-test scenarios, one locust user class each.

    DetectUser   POST /v1/detect                        any upload
    IndexUser    POST /v1/collections/{c}/faces         any upload, faces acknowledged logged
    SearchUser   POST /v1/collections/{c}/search        a photo whose face is in {c}: must match
    CompareUser  POST /v1/compare                       same photo (must match) or two photos
    MixedUser    80 % search, 15 % index, 5 % collection and face management

`faceserve loadtest` runs them headless against a seeded collection (see loadtests/sla.yaml)
and passes the run through environment variables: FACESERVE_LOADTEST_MANIFEST (the
collection and the uploads), FACESERVE_LOADTEST_ACK_LOG (where acknowledged face ids go),
FACESERVE_LOADTEST_WAIT (`min,max` think time in seconds). Run by hand (`locust -f
loadtests/locustfile.py --host URL`), without a manifest, it builds the uploads and seeds a
collection itself when the test starts.

A request fails when its status is not 2xx or its answer is wrong for what was sent.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import uuid
from pathlib import Path

from locust import FastHttpUser, between, events, task

from serve_app.loadtest.traffic import ENV_MANIFEST, AckLog, RunManifest, multipart, wait_range

_state: dict[str, RunManifest] = {}
ack_log = AckLog.from_env()


def manifest() -> RunManifest:
    return _state["manifest"]


@events.test_start.add_listener
def _load_manifest(environment, **_kwargs) -> None:  # noqa: ANN001 - locust's signature
    if "manifest" in _state:
        return
    path = os.environ.get(ENV_MANIFEST)
    if path:
        _state["manifest"] = RunManifest.load(Path(path))
        return
    # By hand, without the runner: build the uploads and seed a collection on this host.
    import httpx

    from serve_app.loadtest.photos import build_payloads, shared_faces_dir
    from serve_app.loadtest.seed import seed_collection
    from serve_app.loadtest.sla import PayloadSpec

    directory = Path(tempfile.mkdtemp(prefix="faceserve-loadtest-payloads-"))
    events.quitting.add_listener(lambda **_: shutil.rmtree(directory, ignore_errors=True))
    payloads = build_payloads(PayloadSpec(), directory, shared_faces_dir())
    with httpx.Client(base_url=environment.host, timeout=120) as client:
        collection = f"loadtest-{uuid.uuid4().hex[:8]}"
        _state["manifest"] = seed_collection(client, collection, payloads, ack_log)


class FaceserveUser(FastHttpUser):
    abstract = True
    wait_time = between(*wait_range())
    network_timeout = 120.0
    connection_timeout = 30.0

    def on_start(self) -> None:
        self.rng = random.Random()
        self.own_faces: list[str] = []  # faces this user indexed (the only ones it deletes)

    # -- requests ---------------------------------------------------------------------

    def detect(self) -> None:
        m = manifest()
        payload = self.rng.choice(m.payloads.payloads)
        body, headers = multipart({}, {"image": (payload.file, m.blob(payload))})
        with self.client.post(
            "/v1/detect", data=body, headers=headers, name="detect", catch_response=True
        ) as r:
            if r.status_code == 200 and "faces" not in r.json():
                r.failure("no `faces` in the answer")

    def index(self) -> None:
        m = manifest()
        payload = self.rng.choice(m.payloads.payloads)
        body, headers = multipart(
            {"external_image_id": payload.source[:200]},
            {"image": (payload.file, m.blob(payload))},
        )
        with self.client.post(
            f"/v1/collections/{m.collection}/faces",
            data=body,
            headers=headers,
            name="index",
            catch_response=True,
        ) as r:
            if r.status_code == 200:
                ids = [face["face_id"] for face in r.json()["indexed"]]
                ack_log.indexed(m.collection, ids, payload.name)
                self.own_faces += ids

    def search(self) -> None:
        m = manifest()
        payload = m.by_name(self.rng.choice(m.search_queries))
        body, headers = multipart({}, {"image": (payload.file, m.blob(payload))})
        with self.client.post(
            f"/v1/collections/{m.collection}/search",
            data=body,
            headers=headers,
            name="search",
            catch_response=True,
        ) as r:
            if r.status_code == 200 and not r.json()["matches"]:
                r.failure(f"{payload.name}: its face is indexed, but no match came back")

    def compare(self) -> None:
        m = manifest()
        source = m.by_name(self.rng.choice(m.search_queries))
        same_photo = self.rng.random() < 0.5
        if same_photo:  # the same photo at another size: must match
            target = next(p for p in m.payloads.of(role="seed") if p.source == source.source)
        else:
            target = self.rng.choice(m.payloads.payloads)
        body, headers = multipart(
            {}, {"source": (source.file, m.blob(source)), "target": (target.file, m.blob(target))}
        )
        with self.client.post(
            "/v1/compare", data=body, headers=headers, name="compare", catch_response=True
        ) as r:
            if r.status_code == 200 and same_photo and not r.json()["matches"]:
                r.failure(f"{source.name} vs {target.name}: the same face did not match")

    def manage(self) -> None:
        """One collection or face management call, as an admin console would make."""
        m = manifest()
        action = self.rng.choices(
            ["list_faces", "describe", "list_collections", "delete_face", "scratch"],
            weights=[3, 2, 2, 2, 1],
        )[0]
        if action == "list_faces":
            self.client.get(f"/v1/collections/{m.collection}/faces?limit=50", name="list faces")
        elif action == "describe":
            self.client.get(f"/v1/collections/{m.collection}", name="describe collection")
        elif action == "list_collections":
            self.client.get("/v1/collections", name="list collections")
        elif action == "delete_face" and self.own_faces:
            face_id = self.own_faces.pop(self.rng.randrange(len(self.own_faces)))
            ack_log.deleting(m.collection, face_id)
            self.client.delete(
                f"/v1/collections/{m.collection}/faces/{face_id}", name="delete face"
            )
        else:
            name = f"loadtest-scratch-{uuid.uuid4().hex[:10]}"
            self.client.post("/v1/collections", json={"name": name}, name="create collection")
            self.client.delete(f"/v1/collections/{name}", name="delete collection")


class DetectUser(FaceserveUser):
    @task
    def detect_task(self) -> None:
        self.detect()


class IndexUser(FaceserveUser):
    @task
    def index_task(self) -> None:
        self.index()


class SearchUser(FaceserveUser):
    @task
    def search_task(self) -> None:
        self.search()


class CompareUser(FaceserveUser):
    @task
    def compare_task(self) -> None:
        self.compare()


class MixedUser(FaceserveUser):
    """The production mix: 80 % search, 15 % index, 5 % collection and face management."""

    @task(80)
    def search_task(self) -> None:
        self.search()

    @task(15)
    def index_task(self) -> None:
        self.index()

    @task(5)
    def manage_task(self) -> None:
        self.manage()
