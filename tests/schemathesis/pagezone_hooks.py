"""Schemathesis hooks for tests/tests/openapi.rs.

Before every generated request the guest is put back to its boot state
(POST /api/reset frees every handle, pool, API cache and task and ends
every sleeping allocation). No request can then find memory exhausted by
the ones before it, so none sleeps for its wait_ms, and the run's length
is bounded by the number of examples, not by what they happened to
allocate. The base URL and token come from the environment the test sets.
"""

import os
import urllib.request

import schemathesis

BASE = os.environ["PAGEZONE_BASE_URL"]
TOKEN = os.environ["PAGEZONE_TOKEN"]


def reset():
    req = urllib.request.Request(
        BASE + "/api/reset",
        method="POST",
        headers={"Authorization": "Bearer " + TOKEN},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


@schemathesis.hook
def before_call(context, case):
    reset()


@schemathesis.check
def not_a_server_error_but_507(response, case):
    """Schemathesis's not_a_server_error, but for 507: in this API 507 is
    an answer (ENOMEM, EQUOTA: API.md), not a server fault. The test runs
    this one instead of the built-in check."""
    if response.status_code >= 500 and response.status_code != 507:
        raise AssertionError(f"Server error {response.status_code}: {response.text[:200]}")


@schemathesis.hook
def before_generate_case(context, strategy):
    """schemathesis 3.39 labels some cases of an operation whose body is
    optional "negative" although nothing in them is: no body, no
    mutated parameter. POST /api/compact without a body is valid (every
    zone), so such a case is no test of rejection; drop it."""
    op = context.operation
    if op is None or (op.method.upper(), op.path) != ("POST", "/api/compact"):
        return strategy
    from schemathesis.types import NotSet

    return strategy.filter(
        lambda case: not (
            case.data_generation_method is not None
            and case.data_generation_method.is_negative
            and isinstance(case.body, NotSet)
            and not case.query
        )
    )
