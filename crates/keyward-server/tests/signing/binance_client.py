"""Drives Keyward's gateway with python-binance, unmodified, pointed at it
instead of Binance: a signed test order and an account read reach the
upstream; the same request sent again is refused.

Environment: GATEWAY (base URL), KEY and SECRET (an HMAC key and its
signing secret), ED_KEY and ED_SEED (an Ed25519 key and its private seed).
"""

import os
import sys

from binance.client import Client
from binance.exceptions import BinanceAPIException
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

GATEWAY = os.environ["GATEWAY"]
checks = 0


def check(condition, what):
    global checks
    if not condition:
        sys.exit(f"failed: {what}")
    checks += 1
    print(f"ok  {what}")


def replay(client, what):
    """Sends the client's last request again, byte for byte."""
    again = client.session.send(client.response.request)
    body = again.json()
    check(again.status_code == 401 and body["error"]["code"] == "REPLAYED",
          f"{what} replayed: {again.status_code} {body['error']['code']}")


ed_pem = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(os.environ["ED_SEED"])).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()

for name, client in [
    ("hmac", Client(os.environ["KEY"], os.environ["SECRET"], ping=False)),
    ("ed25519", Client(os.environ["ED_KEY"], private_key=ed_pem, ping=False)),
]:
    client.API_URL = GATEWAY + "/api"
    order = client.create_test_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity=1, price="100"
    )
    sent = client.response.request
    print(f"--- {name}: {sent.method} {sent.path_url} body={sent.body}")
    check(order["status"] == "FILLED", f"{name} test order reached the upstream")
    replay(client, f"{name} test order")
    account = client.get_account()
    print(f"--- {name}: {client.response.request.method} {client.response.request.path_url}")
    check("balances" in account, f"{name} account read reached the upstream")
    replay(client, f"{name} account read")

# A client whose secret is not the key's is refused before the upstream.
wrong = Client(os.environ["KEY"], "0" * 64, ping=False)
wrong.API_URL = GATEWAY + "/api"
try:
    wrong.get_account()
    check(False, "a wrong secret is refused")
except BinanceAPIException as e:
    check(e.status_code == 401 and "SIGNATURE_INVALID" in e.response.text,
          f"a wrong secret is refused: {e.status_code}")

print(f"{checks} checks passed")
