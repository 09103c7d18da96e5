"""The API against its OpenAPI document (schemathesis): for requests generated from the
document, valid and invalid, no answer is a server error and every answer — status,
content type, headers, body — is one the document describes.

Bounded and repeatable: a few examples per operation, derandomized, no example
database; one app and database for the whole run (state builds up, as in real use).
"""

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from capture.api import OPENAPI_FILE

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, ignored_auth]


# Loaded from the file the app serves (the served copy only adds `servers`), so the
# operations are known when pytest collects; each example calls the test's app.
schema = schemathesis.openapi.from_path(str(OPENAPI_FILE))
schema.config.update(base_url="http://127.0.0.1:5000")  # only the path reaches the app
schema.config.generation.update(modes=["positive", "negative"], max_examples=12,
                                deterministic=True, database="none")


@schema.parametrize()
@settings(max_examples=12, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_as_its_openapi_document_says(case, app, token, demo_page):
    # The checks' own probes (ignored_auth resends without the token) go through the
    # schema's transport: point it at this test's app too.
    case.operation.schema.app = app
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {token}"},
                           checks=CHECKS)
