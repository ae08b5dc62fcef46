"""Schemathesis hooks for fuzz/run (loaded through `hooks` in schemathesis.toml).

The run authenticates as an admin of its own (created by fuzz/run through the admin API, with a
random password), so that every admin operation is exercised. Schemathesis learns real ids from
responses (`GET /users/me`, `GET /admin/users`) and feeds them to the operations taking `{id}`:
pointed at the fuzzer's own account, `DELETE /admin/users/{id}`, `PATCH` (disable, drop scopes),
`PUT …/password` and `DELETE …/sessions` would end the very session every request carries, and
the rest of the run would only see 401 — a different run at every seed and timing. So, right
before each request, an `{id}` naming that account is swapped for an id that names nobody: the
operation is still exercised (404), and the run keeps its token. Every other account, the demo
users included, is fair game: nothing in the run depends on them after the start.
"""

import os
import uuid

import schemathesis

PROTECTED = {i for i in os.environ.get("FUZZ_PROTECTED_USER_IDS", "").split() if i}


@schemathesis.hook
def before_call(context, case, kwargs):
    if not case.operation.path.startswith("/admin/users/{id}"):
        return
    parameters = case.path_parameters or {}
    if str(parameters.get("id", "")).lower() in PROTECTED:
        parameters["id"] = str(uuid.uuid4())
