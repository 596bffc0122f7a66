"""Hooks for the schemathesis pass of .ci/run.

The document states that an `expires_at` lies in the future, but JSON Schema
cannot say "after now", so a schema-valid date may be in the past and be
refused (400) as the server should. For requests generated as valid, move a
past `expires_at` a year ahead; requests generated as invalid are left alone.
"""

from datetime import datetime, timedelta, timezone

import schemathesis


def _in_the_future(value):
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return value
    if when.tzinfo is None:
        return value
    now = datetime.now(timezone.utc)
    if when > now + timedelta(minutes=1):
        return value
    return (now + timedelta(days=365)).isoformat().replace("+00:00", "Z")


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    body = case.body
    if positive and isinstance(body, dict) and isinstance(body.get("expires_at"), str):
        body["expires_at"] = _in_the_future(body["expires_at"])
    return case
