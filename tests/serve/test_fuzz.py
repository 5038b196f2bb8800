"""Schema-driven fuzzing: schemathesis generates requests from the app's own /openapi.json; none may
answer 5xx. Run in process against the real app, model and SQLite store."""

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402  (schemathesis brings hypothesis)

from tests.serve.conftest import make_client  # noqa: E402

pytestmark = pytest.mark.slow
EXAMPLES = 1000  # per operation; operations without inputs need only one, the rest take 2,000+ in all


def test_no_generated_request_gets_a_5xx(text_run, tmp_path):
    with make_client(text_run, tmp_path, max_wait_ms=1) as client:
        schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
        sent = []

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(session=client)
            sent.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])

        for result in schema.get_all_operations():
            operation = result.ok()
            given(case=operation.as_strategy())(check)()
    assert len(sent) >= 2000, len(sent)
    assert not [s for s in sent if s >= 500]
