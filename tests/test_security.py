"""Security over REST v1, in process: API keys and roles, collection scopes, revocation and
expiry, rate limits shared by two Ingress replicas, the audit log, erasure of a person,
photos sealed at rest, and SQL injection attempts in every path parameter.

Two apps ("replicas") over one embedded PostgreSQL, each with its own AccessControl (its own
key cache and connection pool), as two Ingress replicas would be.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import create_engine, text

from serve_app.api import build_rest_app
from serve_app.api.rest.auth import requirement_of
from serve_app.config import Settings
from serve_app.errors import InvalidParameter
from serve_app.service.access import AccessControl, bootstrap_admin_key, configured_keys
from serve_app.service.jobs import JobService
from serve_app.service.ports import JOB_QUEUE_METHODS, LocalPipeline, LocalStorage
from serve_app.service.services import Services
from serve_app.store import EmbeddedPostgres, Store
from serve_app.store.jobs import JobStore
from serve_app.store.photo_cipher import MAGIC, PhotoCipher
from serve_app.store.security import SecurityStore
from serve_app.vision.packs.dlib_r29 import DlibR29Pack
from tests.conftest import insightface_image

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # Starlette asks for httpx2
    from starlette.testclient import TestClient

ADMIN = "test-admin-secret-" + "x" * 20
PHOTO_KEY = bytes(range(32))
UNLIMITED = {"admin": 0, "write": 0, "read": 0, "anonymous": 0}


@pytest.fixture(scope="module")
def database_url(postgres: EmbeddedPostgres) -> str:
    return postgres.fresh_database("security_tests")


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[Store]:
    opened = Store.open(database_url)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def services(
    store: Store, pack: DlibR29Pack, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Services:
    pipeline = LocalPipeline(pack, settings.image_limits)
    uploads = tmp_path_factory.mktemp("uploads")  # album jobs recorded (not run: no workers)
    jobs = JobService(LocalStorage(JobStore(store), JOB_QUEUE_METHODS), uploads, [uploads])
    return Services.build(
        LocalStorage(store),
        {pack.name: pipeline},
        pack.name,
        store_images=True,
        photo_key=PHOTO_KEY,
        jobs=jobs,
    )


def replica(
    services: Services, database_url: str, rate_limits: dict[str, float] | None = None
) -> TestClient:
    """One Ingress replica's app: its own AccessControl over the shared database."""
    access = AccessControl(
        SecurityStore.open(database_url, migrated=True),
        configured=configured_keys(ADMIN, {}),
        rate_limits=UNLIMITED if rate_limits is None else rate_limits,
        burst_s=1.0,
    )
    return TestClient(build_rest_app(services, access=access))


@pytest.fixture(scope="module")
def app_client(services: Services, database_url: str, store: Store) -> Iterator[TestClient]:
    with replica(services, database_url) as client:
        yield client


def as_key(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


ADMIN_H = as_key(ADMIN)


def new_key(client: TestClient, role: str, **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/keys", json={"role": role, **fields}, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    return r.json()


def collection(client: TestClient, prefix: str = "s") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    r = client.post("/v1/collections", json={"name": name}, headers=ADMIN_H)
    assert r.status_code == 201, r.text
    return name


def index(client: TestClient, name: str, image: bytes, **fields: Any) -> dict[str, Any]:
    r = client.post(
        f"/v1/collections/{name}/faces",
        files={"image": ("i.jpg", image)},
        data=fields,
        headers=ADMIN_H,
    )
    assert r.status_code == 200, r.text
    return r.json()


# -- every route declares its role ----------------------------------------------------------------


def test_every_v1_route_declares_exactly_one_role(app_client: TestClient) -> None:
    routes = [r for r in app_client.app.routes if isinstance(r, APIRoute)]
    v1 = [r for r in routes if r.path.startswith("/v1/")]
    assert len(v1) >= 20
    missing = [f"{sorted(r.methods)} {r.path}" for r in v1 if len(requirement_of(r)) != 1]
    assert missing == [], "routes without exactly one allow(...): " + ", ".join(missing)


def test_probes_docs_and_metrics_are_open_and_v1_needs_a_key(app_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert app_client.get(path).status_code == 200, path
    r = app_client.get("/v1/collections")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"
    assert r.headers["www-authenticate"].startswith("Bearer")
    bad = app_client.get("/v1/collections", headers=as_key("not-a-key"))
    assert bad.status_code == 401
    assert app_client.get("/v1/collections", headers={"X-API-Key": ADMIN}).status_code == 200


# -- each role against each route -----------------------------------------------------------------


def _cases(client: TestClient, image: bytes) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(least role, method, url, request kwargs) for every /v1 route, each on fresh
    resources so that an allowed call succeeds."""
    name = collection(client, "roles")
    f0, f1, f2 = (index(client, name, image)["indexed"][0]["face_id"] for _ in range(3))
    persons = {p: f"{p}-{uuid.uuid4().hex[:6]}" for p in "ABCDEP"}
    for person in persons.values():
        r = client.post(
            f"/v1/collections/{name}/persons", json={"person_id": person}, headers=ADMIN_H
        )
        assert r.status_code == 201, r.text
    a, b, c, d, e, p = persons.values()
    base = f"/v1/collections/{name}/persons"
    r = client.post(f"{base}/{a}/faces", json={"face_ids": [f1], "threshold": 0}, headers=ADMIN_H)
    assert r.status_code == 200, r.text
    img = {"files": {"image": ("i.jpg", image)}}
    pair = {"files": {"source": ("s.jpg", image), "target": ("t.jpg", image)}}
    doomed = collection(client, "doomed")
    revoked = new_key(client, "read")["key_id"]
    folder = client.app.state.services.jobs.folder_roots[0].as_uri()

    def job(then: str | None = None) -> str:
        r = client.post(f"/v1/collections/{name}/jobs", json={"source": folder}, headers=ADMIN_H)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        if then:
            assert client.post(f"/v1/jobs/{job_id}/{then}", headers=ADMIN_H).status_code == 200
        return job_id

    jobs = [job(), job(), job("pause"), job(), job("cancel")]
    # People: a person to split and one to reject a face from, a clustering run to read.
    f3, f4 = (index(client, name, image)["indexed"][0]["face_id"] for _ in range(2))
    for person, face in ((p, f3), (e, f4)):
        r = client.post(
            f"{base}/{person}/faces", json={"face_ids": [face], "threshold": 0}, headers=ADMIN_H
        )
        assert r.status_code == 200, r.text
    grouped = collection(client, "grouped")  # clustering runs apart: they would move faces
    run = client.post(f"/v1/collections/{grouped}/clusters", json={}, headers=ADMIN_H)
    assert run.status_code == 202, run.text
    stranger = insightface_image("Tom_Hanks_54745.png").read_bytes()  # matches nobody here
    enroll = {
        "files": {"image": ("i.png", stranger)},
        "data": {"person_id": f"enrolled-{uuid.uuid4().hex[:6]}", "threshold": "100"},
    }
    return [
        ("read", "GET", f"/v1/collections/{grouped}/clusters", {}),
        ("read", "GET", f"/v1/collections/{grouped}/clusters/{run.json()['run_id']}", {}),
        ("read", "GET", f"{base}/{p}/faces", {}),
        ("read", "POST", f"/v1/collections/{name}/identify", img),
        ("read", "POST", "/v1/recognize", img),
        ("read", "GET", f"/v1/collections/{name}/history", {}),
        ("read", "GET", f"{base}/{p}/history", {}),
        ("read", "GET", f"/v1/collections/{name}/stats", {}),
        ("read", "GET", "/v1/stats", {}),
        ("read", "GET", f"/v1/collections/{name}/people-settings", {}),
        ("write", "POST", f"/v1/collections/{grouped}/clusters", {"json": {}}),
        ("write", "PATCH", f"{base}/{p}", {"json": {"name": "Pat"}}),
        ("write", "POST", f"{base}/{p}/split", {"json": {"face_ids": [f3]}}),
        ("write", "POST", f"{base}/{e}/faces/{f4}/reject", {"json": {}}),
        ("write", "POST", f"/v1/collections/{name}/enroll", enroll),
        ("admin", "PATCH", f"/v1/collections/{name}/people-settings", {"json": {}}),
        ("write", "POST", f"/v1/collections/{name}/jobs", {"json": {"source": folder}}),
        ("read", "GET", "/v1/jobs", {}),
        ("read", "GET", f"/v1/jobs/{jobs[0]}", {}),
        ("read", "GET", f"/v1/jobs/{jobs[0]}/failures", {}),
        ("read", "GET", f"/v1/jobs/{jobs[4]}/events", {}),  # cancelled: one event, the end
        ("write", "POST", f"/v1/jobs/{jobs[1]}/pause", {}),
        ("write", "POST", f"/v1/jobs/{jobs[2]}/resume", {}),
        ("write", "POST", f"/v1/jobs/{jobs[3]}/cancel", {}),
        ("read", "GET", "/v1/collections", {}),
        ("read", "GET", f"/v1/collections/{name}", {}),
        ("read", "GET", f"/v1/collections/{name}/faces", {}),
        ("read", "GET", base, {}),
        ("read", "GET", f"{base}/{a}", {}),
        ("read", "POST", "/v1/detect", img),
        ("read", "POST", "/v1/compare", pair),
        ("read", "POST", f"/v1/collections/{name}/search", img),
        ("read", "POST", f"/v1/collections/{name}/faces/{f0}/search", {"json": {}}),
        ("read", "POST", f"{base}/search", img),
        ("read", "POST", f"/v1/collections/{name}/faces/{f0}/persons/search", {"json": {}}),
        ("write", "POST", f"/v1/collections/{name}/faces", img),
        ("write", "DELETE", f"/v1/collections/{name}/faces/{f0}", {}),
        ("write", "POST", base, {"json": {"person_id": f"new-{uuid.uuid4().hex[:6]}"}}),
        ("write", "POST", f"{base}/{b}/faces", {"json": {"face_ids": [f2], "threshold": 0}}),
        ("write", "DELETE", f"{base}/{a}/faces", {"json": {"face_ids": [f1]}}),
        ("write", "POST", f"{base}/{c}/merge", {"json": {"other_person_id": d}}),
        ("write", "DELETE", f"{base}/{e}", {}),
        ("write", "POST", f"{base}/{p}/erase", {}),
        ("admin", "POST", "/v1/collections", {"json": {"name": f"made-{uuid.uuid4().hex[:6]}"}}),
        ("admin", "DELETE", f"/v1/collections/{doomed}", {}),
        ("admin", "GET", "/v1/keys", {}),
        ("admin", "POST", "/v1/keys", {"json": {"role": "read"}}),
        ("admin", "DELETE", f"/v1/keys/{revoked}", {}),
        ("admin", "GET", "/v1/audit", {}),
    ]


RANKS = {"read": 0, "write": 1, "admin": 2}


@pytest.mark.parametrize("role", ["read", "write", "admin"])
def test_each_role_may_do_what_it_should_and_is_refused_the_rest(
    app_client: TestClient, astronaut_bytes: bytes, role: str
) -> None:
    secret = new_key(app_client, role)["secret"]
    outcomes = []
    for least, method, url, kwargs in _cases(app_client, astronaut_bytes):
        r = app_client.request(method, url, headers=as_key(secret), **kwargs)
        allowed = RANKS[role] >= RANKS[least]
        ok = 200 <= r.status_code < 300 if allowed else r.status_code == 403
        outcomes.append((method, url.split("/")[2:4], least, r.status_code, ok))
        if not allowed:
            assert r.json()["error"]["code"] == "forbidden"
    assert all(o[-1] for o in outcomes), [o for o in outcomes if not o[-1]]


# -- scopes, revocation, expiry ------------------------------------------------------------------


def test_a_scoped_key_neither_sees_nor_touches_other_collections(app_client: TestClient) -> None:
    mine, other = collection(app_client, "mine"), collection(app_client, "other")
    key = new_key(app_client, "write", collections=[mine])
    assert key["collections"] == [mine]
    h = as_key(key["secret"])
    listed = app_client.get("/v1/collections", headers=h).json()["collections"]
    assert [c["name"] for c in listed] == [mine]
    assert app_client.get(f"/v1/collections/{mine}", headers=h).status_code == 200
    for method, url in [
        ("GET", f"/v1/collections/{other}"),
        ("GET", f"/v1/collections/{other}/faces"),
        ("POST", f"/v1/collections/{other}/persons"),
        ("DELETE", f"/v1/collections/{other}/faces/{uuid.uuid4()}"),
    ]:
        r = app_client.request(method, url, headers=h, json={"person_id": "x"})
        assert r.status_code == 404, (method, url, r.text)
    # Nor its album jobs: not listed, and not there by id.
    folder = app_client.app.state.services.jobs.folder_roots[0].as_uri()
    theirs = app_client.post(
        f"/v1/collections/{other}/jobs", json={"source": folder}, headers=ADMIN_H
    ).json()["job_id"]
    assert app_client.get(f"/v1/jobs/{theirs}", headers=h).status_code == 404
    assert app_client.post(f"/v1/jobs/{theirs}/cancel", headers=h).status_code == 404
    listed_jobs = app_client.get("/v1/jobs", headers=h).json()["jobs"]
    assert theirs not in [j["job_id"] for j in listed_jobs]
    assert {j["collection"] for j in listed_jobs} <= {mine}
    # Operations across collections are not for scoped keys.
    assert app_client.post("/v1/collections", json={"name": "n"}, headers=h).status_code == 403


def _refused_within(client: TestClient, headers: dict[str, str], seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds + 1:
        if client.get("/v1/collections", headers=headers).status_code == 401:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("the key was still accepted")


def test_a_revoked_key_is_refused_by_every_replica_within_a_second(
    app_client: TestClient, services: Services, database_url: str
) -> None:
    key = new_key(app_client, "read")
    h = as_key(key["secret"])
    with replica(services, database_url) as other:
        assert other.get("/v1/collections", headers=h).status_code == 200  # cached there now
        assert app_client.delete(f"/v1/keys/{key['key_id']}", headers=ADMIN_H).status_code == 204
        assert app_client.get("/v1/collections", headers=h).status_code == 401  # at once here
        assert _refused_within(other, h, 1.0) <= 1.0
    listed = {k["key_id"]: k for k in app_client.get("/v1/keys", headers=ADMIN_H).json()["keys"]}
    assert listed[key["key_id"]]["revoked_at"] is not None
    assert "secret" not in json.dumps(listed)


def test_an_expired_key_is_refused_within_a_second(
    app_client: TestClient, database_url: str
) -> None:
    key = new_key(app_client, "read", expires_in_days=1)
    h = as_key(key["secret"])
    assert app_client.get("/v1/collections", headers=h).status_code == 200
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE faceserve.api_keys SET expires_at = now() WHERE key_id = :k"),
            {"k": key["key_id"]},
        )
    engine.dispose()
    assert _refused_within(app_client, h, 1.0) <= 1.0
    assert "expired" in app_client.get("/v1/collections", headers=h).json()["error"]["message"]


# -- rate limits ----------------------------------------------------------------------------------


def test_rate_limits_are_shared_by_two_replicas_and_recover(
    app_client: TestClient, services: Services, database_url: str
) -> None:
    secret = new_key(app_client, "read")["secret"]
    h = as_key(secret)
    limits = {"read": 2.0, "anonymous": 2.0}  # 2/s, a bucket of 2
    with replica(services, database_url, limits) as a, replica(services, database_url, limits) as b:
        statuses = [c.get("/v1/collections", headers=h).status_code for c in (a, b, a, b)]
        assert statuses[:2] == [200, 200] and 429 in statuses[2:], statuses
        refused = b.get("/v1/collections", headers=h)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        time.sleep(1.1)
        assert a.get("/v1/collections", headers=h).status_code == 200
        # Without a key: the client address's bucket, before the 401.
        anonymous = [b.get("/v1/collections").status_code for _ in range(4)]
        assert anonymous[:2] == [401, 401] and 429 in anonymous[2:], anonymous


# -- audit ----------------------------------------------------------------------------------------


def test_the_audit_log_records_a_workflow_and_never_a_secret(
    app_client: TestClient, astronaut_bytes: bytes, database_url: str
) -> None:
    key = new_key(app_client, "write")
    h = as_key(key["secret"])
    name = collection(app_client, "audited")
    indexed = app_client.post(
        f"/v1/collections/{name}/faces", files={"image": ("a.png", astronaut_bytes)}, headers=h
    )
    face_id = indexed.json()["indexed"][0]["face_id"]
    app_client.post(
        f"/v1/collections/{name}/search", files={"image": ("a.png", astronaut_bytes)}, headers=h
    )
    app_client.delete(f"/v1/collections/{name}", headers=h)  # write may not: 403, recorded
    app_client.delete(f"/v1/collections/{name}/faces/{face_id}", headers=h)
    page = app_client.get(f"/v1/audit?collection={name}", headers=ADMIN_H)
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    got = [(e["operation"], e["status"], e["key_id"]) for e in entries]
    assert got == [
        ("create_collection", 201, "admin"),
        ("index_faces", 200, key["key_id"]),
        ("search_by_image", 200, key["key_id"]),
        ("delete_collection", 403, key["key_id"]),
        ("delete_face", 200, key["key_id"]),
    ], got
    assert entries[1]["face_ids"] == [face_id] and entries[4]["face_ids"] == [face_id]
    assert all(e["client"] for e in entries)
    by_key = app_client.get(f"/v1/audit?key_id={key['key_id']}&limit=2", headers=ADMIN_H).json()
    assert len(by_key["entries"]) == 2 and by_key["next_cursor"]
    nxt = app_client.get(
        f"/v1/audit?key_id={key['key_id']}&cursor={by_key['next_cursor']}", headers=ADMIN_H
    ).json()
    assert nxt["entries"][0]["id"] > by_key["entries"][-1]["id"]
    keys_made = app_client.get("/v1/audit?operation=create_key", headers=ADMIN_H).json()
    made = [e["detail"].get("made_key") for e in keys_made["entries"]]
    assert key["key_id"] in made, "key creation is audited, naming the key"
    engine = create_engine(database_url)
    with engine.connect() as conn:
        dump = " ".join(str(r) for r in conn.execute(text("SELECT * FROM faceserve.audit_log")))
    engine.dispose()
    assert key["secret"] not in dump and ADMIN not in dump
    assert len(dump) / max(1, len(entries)) < 20_000  # no image bytes, no embeddings


# -- erasure --------------------------------------------------------------------------------------


def _traces(database_url: str, needles: list[str]) -> list[str]:
    """Every table of every schema whose rows mention one of `needles` (as text)."""
    engine = create_engine(database_url)
    found = []
    with engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
                "('pg_catalog', 'information_schema')"
            )
        ).all()
        for schema, table in tables:
            hits = conn.execute(
                text(
                    f'SELECT count(*) FROM "{schema}"."{table}" t WHERE '
                    "EXISTS (SELECT 1 FROM unnest(CAST(:n AS text[])) x "
                    "WHERE strpos(t::text, x) > 0)"
                ),
                {"n": needles},
            ).scalar_one()
            if hits:
                found.append(f"{schema}.{table}")
    engine.dispose()
    return found


def test_erasure_leaves_no_row_vector_or_photo_of_the_person(
    app_client: TestClient, t1_bytes: bytes, database_url: str, store: Store
) -> None:
    name = collection(app_client, "erase")
    faces = index(app_client, name, t1_bytes, external_image_id="group")["indexed"]
    assert len(faces) == 6
    person = "person-to-forget"
    ids = [f["face_id"] for f in faces[:2]]
    base = f"/v1/collections/{name}/persons"
    assert app_client.post(base, json={"person_id": person}, headers=ADMIN_H).status_code == 201
    r = app_client.post(
        f"{base}/{person}/faces", json={"face_ids": ids, "threshold": 0}, headers=ADMIN_H
    )
    assert r.status_code == 200 and len(r.json()["associated"]) == 2, r.text
    app_client.get(f"{base}/{person}", headers=ADMIN_H)
    assert _traces(database_url, [person, *ids]), "the person is there before"

    r = app_client.post(f"{base}/{person}/erase", headers=ADMIN_H)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["erased"]["persons"] == 1
    assert receipt["erased"]["faces"] == receipt["erased"]["vectors"] == 2
    assert receipt["erased"]["photos"] == 1  # the group photo: it shows the person
    assert receipt["erased"]["audit_entries_redacted"] >= 1
    assert receipt["already_erased"] is False
    assert _traces(database_url, [person, *ids]) == []
    # The four other faces stay, searchable; the photo is gone.
    assert app_client.get(f"/v1/collections/{name}", headers=ADMIN_H).json()["face_count"] == 4
    with store.engine.connect() as conn:
        schema = conn.execute(
            text("SELECT schema_name FROM faceserve.collections WHERE name = :n"), {"n": name}
        ).scalar_one()
        assert conn.execute(text(f'SELECT data FROM "{schema}".images')).scalars().all() == [None]
    again = app_client.post(f"{base}/{person}/erase", headers=ADMIN_H).json()
    assert again["already_erased"] is True and not any(again["erased"].values())
    log = app_client.get(f"/v1/audit?collection={name}&operation=erase_person", headers=ADMIN_H)
    entry = log.json()["entries"][0]
    assert entry["person_ids"] == [] and entry["face_ids"] == []
    assert entry["detail"]["faces"] == 2


def test_stored_photos_are_sealed_with_aes_gcm(
    app_client: TestClient, astronaut_bytes: bytes, store: Store
) -> None:
    name = collection(app_client, "sealed")
    index(app_client, name, astronaut_bytes)
    with store.engine.connect() as conn:
        schema = conn.execute(
            text("SELECT schema_name FROM faceserve.collections WHERE name = :n"), {"n": name}
        ).scalar_one()
        (data,) = conn.execute(text(f'SELECT data FROM "{schema}".images')).scalars().all()
    sealed = bytes(data)
    assert sealed.startswith(MAGIC) and astronaut_bytes[:64] not in sealed
    assert PhotoCipher(PHOTO_KEY).open(sealed) == astronaut_bytes


def test_storing_photos_without_a_key_is_a_clear_error_at_start(tmp_path: Any) -> None:
    with pytest.raises(InvalidParameter, match="FACESERVE_IMAGE_KEY"):
        _ = Settings(store_images=True).photo_key
    key_file = tmp_path / "photo.key"
    key_file.write_text("c2hvcnQ=")  # "short"
    with pytest.raises(InvalidParameter, match="32 bytes"):
        _ = Settings(store_images=True, image_key_file=key_file).photo_key
    import base64

    key_file.write_text(base64.b64encode(PHOTO_KEY).decode())
    assert Settings(store_images=True, image_key_file=key_file).photo_key == PHOTO_KEY


# -- hardening ------------------------------------------------------------------------------------

INJECTIONS = [
    "x'; DROP TABLE faceserve.collections; --",
    "' OR '1'='1",
    '"; DROP SCHEMA faceserve CASCADE; --',
    "1; SELECT pg_sleep(3)",
    "..%2F..%2Fetc%2Fpasswd",
    "c_00000000000000000000000000000000",
]


def test_sql_injection_in_every_path_parameter_is_refused_and_changes_nothing(
    app_client: TestClient, astronaut_bytes: bytes, database_url: str
) -> None:
    from urllib.parse import quote

    name = collection(app_client, "inj")
    face = index(app_client, name, astronaut_bytes)["indexed"][0]["face_id"]
    person = "inj-person"
    app_client.post(f"/v1/collections/{name}/persons", json={"person_id": person}, headers=ADMIN_H)

    def state() -> Any:
        collections = app_client.get("/v1/collections", headers=ADMIN_H).json()
        keys = app_client.get("/v1/keys", headers=ADMIN_H).json()
        return collections, len(keys["keys"])

    before = state()
    templates = [r.path for r in app_client.app.routes if isinstance(r, APIRoute)]
    templates = [t for t in templates if t.startswith("/v1/") and "{" in t]
    values = {
        "name": name,
        "face_id": face,
        "person_id": person,
        "key_id": "fsk_0",
        "run_id": str(uuid.uuid4()),
        "job_id": str(uuid.uuid4()),
    }
    tried = 0
    for template in templates:
        params = [p.strip("{}") for p in template.split("/") if p.startswith("{")]
        for param in params:
            for attack in INJECTIONS:
                url = template
                for p in params:
                    url = url.replace(
                        "{" + p + "}", quote(attack if p == param else values[p], safe="")
                    )
                for method in ("GET", "POST", "DELETE"):
                    r = app_client.request(method, url, headers=ADMIN_H, json={})
                    tried += 1
                    # Erasing a person who is not there is a no-op (idempotent): 200, zeros.
                    erased = url.endswith("/erase") and r.status_code == 200
                    assert erased or r.status_code in (400, 404, 405), (method, url, r.text)
                    if erased:
                        assert r.json()["erased"]["faces"] == 0
    assert tried > 100
    assert state() == before


# -- secure by default ----------------------------------------------------------------------------


def test_beyond_loopback_without_a_key_the_service_refuses_to_start(
    postgres: EmbeddedPostgres,
) -> None:
    security = SecurityStore.open(postgres.fresh_database("security_empty"))
    try:
        with pytest.raises(InvalidParameter, match="refusing to serve on 0.0.0.0"):
            AccessControl.from_settings(Settings(host="0.0.0.0"), security)
        # Explicitly disabled: starts (with a warning), and lets everyone in.
        assert not AccessControl.from_settings(
            Settings(host="0.0.0.0", auth="disabled"), security
        ).enabled
        assert AccessControl.from_settings(
            Settings(host="0.0.0.0", admin_key=ADMIN), security
        ).enabled
        # On loopback: one admin key is made, once.
        made = bootstrap_admin_key(Settings(), security)
        assert made is not None and len(made[1]) >= 61
        assert bootstrap_admin_key(Settings(), security) is None
        assert AccessControl.from_settings(Settings(host="0.0.0.0"), security).enabled
    finally:
        security.close()


def test_the_keys_cli_creates_lists_and_revokes_against_the_database(
    postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from serve_app.cli import main

    monkeypatch.setenv("FACESERVE_DATABASE_URL", postgres.fresh_database("security_cli"))
    assert (
        main(["keys", "create", "--role", "write", "--collection", "album", "--expires", "7"]) == 0
    )
    made = json.loads(capsys.readouterr().out)
    assert made["role"] == "write" and made["collections"] == ["album"]
    assert made["expires_at"] and len(made["secret"]) >= 61
    assert main(["keys", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["key_id"] for k in listed] == [made["key_id"]]
    assert made["secret"] not in json.dumps(listed)
    assert main(["keys", "revoke", made["key_id"]]) == 0
    assert json.loads(capsys.readouterr().out)["revoked_at"]
    assert main(["keys", "revoke", "fsk_0000000000000000"]) == 2  # unknown: a clear error
    security = SecurityStore.open(os.environ["FACESERVE_DATABASE_URL"], migrated=True)
    entries, _ = security.audit_page(limit=10)
    security.close()
    assert [e["operation"] for e in entries] == ["cli:create_key", "cli:revoke_key"]
    assert made["secret"] not in json.dumps(entries)
    assert main(["keys", "create", "--role", "read", "--collection", "bad name!"]) == 2


def test_auth_disabled_opens_both_surfaces(services: Services) -> None:
    from serve_app.config import RekognitionConfig

    app = build_rest_app(
        services, rekognition=RekognitionConfig(), access=AccessControl(None, enabled=False)
    )
    with TestClient(app) as client:
        assert client.get("/v1/collections").status_code == 200
        r = client.post(
            "/",
            content=b"{}",
            headers={
                "X-Amz-Target": "RekognitionService.ListCollections",
                "Content-Type": "application/x-amz-json-1.1",
            },
        )
        assert r.status_code == 200 and "CollectionIds" in r.json()
