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


def _as_sent(value):
    """A path or query value as the server sees it: text, which reads as
    a number when it is one."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        return int(text)
    except ValueError:
        return text


def _query_on_the_wire(values):
    """The query as the server receives it, name -> list of texts:
    encoded as the request will be (a None or an empty array is left
    out, an array repeats the name), then parsed back."""
    from urllib.parse import parse_qs

    from requests.models import RequestEncodingMixin

    prepared = {
        name: str(value).lower() if isinstance(value, bool) else value
        for name, value in (values or {}).items()
    }
    return parse_qs(RequestEncodingMixin._encode_params(prepared), keep_blank_values=True)


def _valid_as_sent(op, case):
    """Whether a body-less case is valid once its values are sent as text.

    schemathesis 3.39 labels cases "negative" whose mutation does not
    survive serialization: an integer 0 negated into the string "0", the
    array [0], or an offset sent beside a limit negated into None (left
    out of the query), is the same ?offset=0 on the wire. Such a case is
    no test of rejection.
    """
    import jsonschema
    from schemathesis.types import NotSet

    if not isinstance(case.body, NotSet):
        return False
    path = {name: [value] for name, value in (case.path_parameters or {}).items()}
    for location, values in (("path_parameters", path), ("query", _query_on_the_wire(case.query))):
        params = {p.name: p.definition.get("schema", {}) for p in getattr(op, location, [])}
        if set(values) - set(params):
            return False
        for p in getattr(op, location, []):
            if p.definition.get("required") and p.name not in values:
                return False
        for name, sent in values.items():
            if len(sent) != 1 or isinstance(sent[0], (list, dict)):
                return False
            try:
                jsonschema.validate(_as_sent(sent[0]), params[name])
            except jsonschema.ValidationError:
                return False
    return True


@schemathesis.hook
def before_generate_case(context, strategy):
    """Drops "negative" cases that are valid as sent: body-less ones whose
    parameters, sent as text, are all valid (see _valid_as_sent) -- for
    POST /api/compact, whose body is optional, a case with no body and
    no query at all is one."""
    op = context.operation
    if op is None:
        return strategy

    def keep(case):
        method = case.data_generation_method
        if method is None or not method.is_negative:
            return True
        return not _valid_as_sent(op, case)

    return strategy.filter(keep)
