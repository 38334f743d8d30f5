"""Property-based fuzzing of REST v1 from its own OpenAPI document (schemathesis).

Every operation gets generated requests, valid and invalid ones; each response must be no
5xx, have a status the document declares for the operation, and a body that validates
against the schema the document gives for that status. The real service runs behind it:
the dlib-r29 pack and an embedded PostgreSQL. A bounded number of examples per operation
keeps it to a minute or two on two cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serve_app.api import build_rest_app
from serve_app.config import Settings
from serve_app.service.access import AccessControl, configured_keys
from serve_app.service.jobs import JobService
from serve_app.service.ports import JOB_QUEUE_METHODS, LocalPipeline, LocalStorage
from serve_app.service.services import Services
from serve_app.store import EmbeddedPostgres, Store
from serve_app.store.jobs import JobStore
from serve_app.store.security import SecurityStore
from serve_app.vision.packs.dlib_r29 import DlibR29Pack

EXAMPLES_PER_OPERATION = 12
# Auth on, as deployed: the fuzzer sends the admin key (and must still find no 5xx).
ADMIN_KEY = "fuzz-admin-" + "f" * 40
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def fuzzed_schema(
    postgres: EmbeddedPostgres, pack: DlibR29Pack, settings: Settings, tmp_path_factory: Any
) -> Iterator[Any]:
    store = Store.open(postgres.url)
    # Album jobs too (recorded, not run: no coordinator here).
    uploads = tmp_path_factory.mktemp("uploads")
    jobs = JobService(LocalStorage(JobStore(store), JOB_QUEUE_METHODS), uploads, [uploads])
    services = Services.build(
        LocalStorage(store),
        {pack.name: LocalPipeline(pack, settings.image_limits)},
        pack.name,
        jobs=jobs,
    )
    security = SecurityStore.open(postgres.url)
    access = AccessControl(
        security, configured=configured_keys(ADMIN_KEY, {}), rate_limits={"admin": 0}
    )
    app = build_rest_app(services, access=access)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    security.close()
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_response_is_declared_and_never_a_server_error(
    fuzzed_schema: Any, mode: GenerationMode
) -> None:
    # Our own loop over the operations rather than `schemathesis.pytest.from_fixture`, whose
    # pytest plugin does not work with the pytest this project pins.
    operations = [result.ok() for result in fuzzed_schema.get_all_operations()]
    assert len(operations) >= 20
    fuzzed = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            # A schema-valid image field is any string or file, rarely a decodable photo: its
            # 400 invalid_image is right, so "valid data must be accepted" cannot apply.
            case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Unsatisfiable:
            # No invalid request exists for an operation without parameters (GET /healthz).
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        fuzzed.append(operation.label)
    # Positive: every operation. Negative: those with a body or a bounded query parameter
    # (a path parameter takes any string, so it has no invalid value).
    assert len(fuzzed) >= (len(operations) if mode is GenerationMode.POSITIVE else 15), fuzzed
