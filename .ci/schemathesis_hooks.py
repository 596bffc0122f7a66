"""Hooks for the schemathesis pass of .ci/run.

The document states that an `expires_at` lies in the future, but JSON Schema
cannot say "after now", so a schema-valid date may be in the past and be
refused (400) as the server should. For requests generated as valid, move a
past `expires_at` a year ahead, and put the share counts of a seal split in
order; requests generated as invalid are left alone.
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
    if positive and isinstance(body, (dict, list)):
        body = _whole_numbers(body)
        case.body = body
    if positive and isinstance(body, dict):
        if isinstance(body.get("expires_at"), str):
            body["expires_at"] = _in_the_future(body["expires_at"])
        _shares_in_order(body)
        _unique_names(body.get("ratelimits"))
    query = case.query
    if positive and isinstance(query, dict):
        _usage_span(query)
    return case


def _whole_numbers(value):
    """JSON Schema counts 1.0 as an integer; the server reads integer fields
    from integer literals only. Write whole floats as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


def _unique_names(limits):
    """Rate limit names are unique per key or owner: a rule across items."""
    if not isinstance(limits, list):
        return
    seen = set()
    for i, limit in enumerate(limits):
        if isinstance(limit, dict) and isinstance(limit.get("name"), str):
            name = limit["name"]
            while name in seen:
                name = (name[:60] + f"-{i}")[-64:]
                i += 1
            limit["name"] = name
            seen.add(name)


def _usage_span(query):
    """A usage query spans at most 7 days, `since` not after `until`."""
    since, until = query.get("since"), query.get("until")
    if isinstance(since, int) and isinstance(until, int):
        if since > until:
            since, until = until, since
        query["since"], query["until"] = max(since, until - 7 * 24 * 3600), until
    elif isinstance(until, int) and since is None:
        pass
    elif isinstance(since, int) and until is None:
        import time

        now = int(time.time())
        query["since"] = min(max(since, now - 7 * 24 * 3600), now)


def _shares_in_order(body):
    """A split needs secret_threshold <= secret_shares, which JSON Schema
    cannot relate; swap the two in a request generated as valid."""
    shares, threshold = body.get("secret_shares"), body.get("secret_threshold")
    if isinstance(shares, int) and isinstance(threshold, int) and threshold > shares:
        body["secret_shares"], body["secret_threshold"] = threshold, shares
