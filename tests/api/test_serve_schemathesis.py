"""Property-based testing of the REST API against its own OpenAPI spec (schemathesis, in-process ASGI):
whatever a client sends, the service answers without a server error."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (dev extra)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from inspekt.api import ServeSettings, create_app  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(trained):
    app = create_app(
        ServeSettings(
            models=(f"clf={trained.bundle}",),
            max_upload_mb=1,
            max_pixels=1_000_000,
            drift_checks=("properties", "pixels"),
        )
    )
    spec = app.openapi()
    # Aim most generated requests at the served model; one wrong name keeps the 404 path covered.
    for _path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "name":
                    parameter["schema"] = {"type": "string", "enum": ["clf", "clf2"]}
    # Keep generated drift checks small: the engine's cost grows with permutations (the service caps them at 5000).
    drift_body = spec["paths"]["/v1/models/{name}/drift"]["post"]["requestBody"]["content"]["multipart/form-data"]
    drift_body["schema"]["properties"]["permutations"]["maximum"] = 99
    app.openapi_schema = spec  # FastAPI serves this cached copy at /openapi.json
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _with_real_images(case, images: list[bytes]):
    """Random form fields around real images, so the generated options reach the model (random bytes are
    refused at decoding, before any option is used)."""
    if isinstance(case.body, dict) and "files" in case.body:
        case.body["files"] = images
    return case


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema, synth_classes, mode):
    # One hypothesis run per operation (schemathesis' pytest plugin does not support pytest 9's fixtures).
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/models/{name}/predict", "/v1/models/{name}/drift", "/metrics"}
    images = [p.read_bytes() for p in sorted((synth_classes / "ok").iterdir())[:3]]
    statuses: list[int] = []
    answered: list[str] = []  # POST operations that ran the model on generated options
    for operation in operations:
        generated = operation.as_strategy(generation_mode=mode)
        real = st.tuples(generated, st.booleans()).map(
            lambda pair: _with_real_images(pair[0], images) if pair[1] else pair[0]
        )

        @given(case=real)
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call_and_validate(checks=[not_a_server_error])
            statuses.append(response.status_code)
            if response.status_code == 200 and case.method == "POST":
                answered.append(case.operation.path)

        try:
            run()
        except Unsatisfiable:  # negative mode: an operation without inputs cannot be given invalid ones
            assert mode == GenerationMode.NEGATIVE and not operation.path.startswith("/v1/models/")
    assert statuses and max(statuses) < 500
    if mode == GenerationMode.POSITIVE:
        assert "/v1/models/{name}/predict" in answered and 404 in statuses  # the model ran; unknown names refused
