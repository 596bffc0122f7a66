"""Signs requests to Keyward's gateway with http-message-signatures, an
independent RFC 9421 implementation, and checks what the gateway answers:
the signed request reaches the upstream; the same request again, and any
change to its method, path, query, a covered header or its body, does not.

Environment: GATEWAY (base URL), KEY, KEY_ID, SECRET (an HMAC key's signing
secret), ED_KEY, ED_KEY_ID, ED_SEED (hex of an Ed25519 key's private seed).
"""

import copy
import os
import sys
import uuid

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

GATEWAY = os.environ["GATEWAY"]
COVERED = ("@method", "@target-uri", "content-type")
session = requests.Session()
checks = 0


def signed(method, target, body, key, key_id, algorithm, private):
    request = requests.Request(
        method,
        GATEWAY + target,
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    ).prepare()
    signer = HTTPMessageSigner(
        signature_algorithm=algorithm,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: private}),
    )
    signer.sign(
        request,
        key_id=key_id,
        nonce=uuid.uuid4().hex,
        covered_component_ids=COVERED,
        body=body,
    )
    return request


def expect(request, status, code=None, what=""):
    global checks
    response = session.send(request)
    if response.status_code != status:
        sys.exit(f"{what}: expected {status}, got {response.status_code} {response.text}")
    if code is not None and response.json()["error"]["code"] != code:
        sys.exit(f"{what}: expected {code}, got {response.text}")
    checks += 1
    print(f"ok  {what}: {status}{' ' + code if code else ''}")
    return response


for name, key, key_id, algorithm, private in [
    ("hmac-sha256", os.environ["KEY"], os.environ["KEY_ID"], algorithms.HMAC_SHA256,
     os.environ["SECRET"].encode()),
    ("ed25519", os.environ["ED_KEY"], os.environ["ED_KEY_ID"], algorithms.ED25519,
     Ed25519PrivateKey.from_private_bytes(bytes.fromhex(os.environ["ED_SEED"]))),
]:
    body = b'{"symbol":"BTCUSDT","side":"BUY","qty":"1"}'
    request = signed("POST", "/v1/orders?venue=spot", body, key, key_id, algorithm, private)
    print(f"--- {name}: Signature-Input: {request.headers['Signature-Input']}")
    answer = expect(request, 200, what=f"{name} signed order")
    assert answer.json()["status"] == "FILLED"
    expect(request, 401, "REPLAYED", f"{name} the same request again")

    def tampered(change, target="/v1/orders?venue=spot"):
        fresh = signed("POST", target, body, key, key_id, algorithm, private)
        altered = copy.deepcopy(fresh)
        change(altered)
        return altered

    # /v1/any takes every method, so only the signature can tell.
    expect(tampered(lambda r: setattr(r, "method", "PATCH"), "/v1/any"),
           401, "SIGNATURE_INVALID", f"{name} method changed")
    def other_path(r):
        r.url = r.url.replace("/v1/orders", "/v1/any")
    expect(tampered(other_path), 401, "SIGNATURE_INVALID", f"{name} path changed")
    expect(tampered(lambda r: setattr(r, "url", r.url.replace("venue=spot", "venue=margin"))),
           401, "SIGNATURE_INVALID", f"{name} query changed")
    def header(r):
        r.headers["Content-Type"] = "text/plain"
    expect(tampered(header), 401, "SIGNATURE_INVALID", f"{name} covered header changed")
    def body_changed(r):
        r.body = b'{"symbol":"BTCUSDT","side":"BUY","qty":"9"}'
    expect(tampered(body_changed), 401, "SIGNATURE_INVALID", f"{name} body changed")

print(f"{checks} checks passed")
