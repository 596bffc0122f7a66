"""Hooks for the schemathesis pass of .ci/run (.ci/schemathesis.sh).

Some rules of the API relate a value to another or to the clock, which JSON
Schema cannot state; the document says them in words. A request generated
as valid can break one and be refused (400), as the server should, and the
fuzzer would report it as a valid request refused. So each request
generated as valid is brought within those rules first:

- `expires_at` lies in the future;
- a seal split has secret_threshold <= secret_shares;
- rate limit names are unique within a key or an owner;
- a usage query spans at most 7 days, `since` not after `until`;
- a key names only roles its API defines, which the fuzzer cannot know: a
  key body generated as valid names none;
- an Ed25519 signing key is a point of the curve, which a random string
  seldom is: a key body generated as valid registers a known public key,
  and an HMAC one none;
- an integer field is written as an integer literal (JSON Schema counts
  `1.0` as an integer; the server reads integer fields from integers only);
- a number lies within a 64-bit float's range (JSON Schema sets no bound,
  the server's JSON reader does).

Requests generated as invalid are left alone.
"""

import time
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
        if case.operation.path in ("/v1/keys", "/v1/keys/{id}"):
            body.pop("roles", None)
            _signing_key(body.get("signing"))
    query = case.query
    if positive and isinstance(query, dict):
        _usage_span(query)
    return case


# RFC 8032's first test public key.
_ED25519_PUBLIC = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="


def _signing_key(signing):
    """An Ed25519 signing key needs a public key that is a curve point; an
    HMAC one takes none (the server makes its secret)."""
    if not isinstance(signing, dict):
        return
    if signing.get("algorithm") == "ed25519":
        signing["public_key"] = _ED25519_PUBLIC
    else:
        signing.pop("public_key", None)


def _whole_numbers(value):
    """JSON Schema counts 1.0 as an integer; the server reads integer fields
    from integer literals only: write whole floats as integers. And JSON
    numbers beyond a 64-bit float's range are refused anywhere: keep free
    values within it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
        return 10**300 if value > 0 else -(10**300)
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


def _integer(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _usage_span(query):
    """A usage query spans at most 7 days (`until` defaults to now), `since`
    not after `until`: a rule across two parameters and the clock."""
    week = 7 * 24 * 3600
    since, until = _integer(query.get("since")), _integer(query.get("until"))
    if since is None:
        return
    if until is None:
        # `until` is the server's clock when the request arrives: keep a
        # minute's margin.
        now = int(time.time())
        query["since"] = min(max(since, now - week + 60), now)
        return
    if since > until:
        since, until = until, since
    query["since"], query["until"] = max(since, until - week), until


def _shares_in_order(body):
    """A split needs secret_threshold <= secret_shares: a rule across two
    fields. Swap them in a request generated as valid."""
    shares, threshold = body.get("secret_shares"), body.get("secret_threshold")
    if isinstance(shares, int) and isinstance(threshold, int) and threshold > shares:
        body["secret_shares"], body["secret_threshold"] = threshold, shares
