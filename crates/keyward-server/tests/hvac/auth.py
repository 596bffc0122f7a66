"""Drives Keyward's token lookup and health endpoints through hvac, the
Python Vault client, as an application or a probe would. Run by
tests/vault_clients.rs with VAULT_ADDR and VAULT_TOKEN set, and
VAULT_REVOKED_TOKEN naming a revoked admin token; any failed check raises."""

import json
import os

import hvac

addr = os.environ["VAULT_ADDR"]
token = os.environ["VAULT_TOKEN"]
client = hvac.Client(url=addr, token=token)
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


check(client.is_authenticated() is True, "a valid token is authenticated")
me = client.auth.token.lookup_self()
check(token not in json.dumps(me), "the token is not echoed")
data = me["data"]
check(data["id"] != token and data["id"].startswith("tok_"), f"id {data['id']}")
check("keys:read" in data["policies"], f"policies {data['policies']}")
check(data["type"] == "service" and data["renewable"] is False, f"lookup {data}")
check(client.lookup_token()["data"]["accessor"] == data["accessor"], "lookup_token")

for bad in [os.environ["VAULT_REVOKED_TOKEN"], "s.notavaulttoken", "kwa_live_garbage"]:
    other = hvac.Client(url=addr, token=bad)
    check(other.is_authenticated() is False, f"an unusable token is not authenticated: {bad[:6]}")

health = client.sys.read_health_status(method="GET")
check(health["initialized"] is True and health["sealed"] is False, f"health {health}")
check(health["standby"] is False, "no standby")
head = client.sys.read_health_status()
check(head.status_code == 200, f"HEAD health {head.status_code}")
coded = client.sys.read_health_status(method="GET", active_code=299)
# hvac returns the answer itself only for a 200, else the response.
check(coded.status_code == 299 and coded.json()["sealed"] is False, "activecode")
check(client.sys.is_initialized() is True, "initialized")
check(client.sys.is_sealed() is False, "not sealed")

print(f"{checks} checks passed")
