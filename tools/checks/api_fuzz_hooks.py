"""Schemathesis hooks of `make api-fuzz` (tools/checks/api_fuzz.py loads them through
SCHEMATHESIS_HOOKS).

A channel's namespace must be one the node knows (`user`, `room` and its `--namespaces`);
docs/openapi.json cannot list a deployment's namespaces, so the fuzzer narrows the
`Channel` pattern to API_FUZZ_NAMESPACES (default `user,room`) before it generates data:
otherwise a schema-valid `team:x` would count as valid data the node refused.
"""

import os
import re

import schemathesis

NAMESPACES = [n for n in os.environ.get("API_FUZZ_NAMESPACES", "user,room").split(",") if n]


@schemathesis.hook
def before_load_schema(context, raw_schema):
    channel = raw_schema["components"]["schemas"]["Channel"]
    # The length bound goes into the pattern, per namespace (the document's own bounds
    # count the whole name).
    names = "|".join(
        f"{re.escape(n)}:[A-Za-z0-9_.:@=-]{{1,{256 - len(n) - 1}}}" for n in NAMESPACES
    )
    channel["pattern"] = f"^(?:{names})$"
