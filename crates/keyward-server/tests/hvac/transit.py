"""Drives Keyward's transit engine through hvac, as an application would
talk to Vault's. Run by tests/vault_clients.rs with VAULT_ADDR and
VAULT_TOKEN set; any failed check raises."""

import base64
import os

import hvac
from hvac import exceptions

client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
transit = client.secrets.transit
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


def b64(data):
    return base64.b64encode(data).decode()


transit.create_key(name="orders")
key = transit.read_key(name="orders")
check(key["data"]["type"] == "aes256-gcm96" and key["data"]["latest_version"] == 1, f"key {key}")

sealed = transit.encrypt_data(name="orders", plaintext=b64(b"buy 1 BTC"))
v1 = sealed["data"]["ciphertext"]
check(v1.startswith("kw:v1:"), v1)
opened = transit.decrypt_data(name="orders", ciphertext=v1)
check(base64.b64decode(opened["data"]["plaintext"]) == b"buy 1 BTC", "decrypt")

transit.rotate_key(name="orders")
rewrapped = transit.rewrap_data(name="orders", ciphertext=v1)
check(rewrapped["data"]["ciphertext"].startswith("kw:v2:"), "rewrap")
transit.update_key_configuration(name="orders", min_decryption_version=2)
try:
    transit.decrypt_data(name="orders", ciphertext=v1)
    check(False, "min_decryption_version ignored")
except exceptions.InvalidRequest:
    check(True, "old ciphertext refused")
opened = transit.decrypt_data(name="orders", ciphertext=rewrapped["data"]["ciphertext"])
check(base64.b64decode(opened["data"]["plaintext"]) == b"buy 1 BTC", "rewrapped opens")

batch = transit.encrypt_data(
    name="orders", plaintext="", batch_input=[{"plaintext": b64(b"a")}, {"plaintext": b64(b"b")}]
)
results = batch["data"]["batch_results"]
check(len(results) == 2 and all("ciphertext" in r for r in results), f"batch {batch}")

data_key = transit.generate_data_key(name="orders", key_type="plaintext")
check(len(base64.b64decode(data_key["data"]["plaintext"])) == 32, "data key")

# hvac checks key types against Vault's list, which has no secp256k1: this
# one is created through hvac's plain HTTP adapter, then used through hvac.
client.adapter.post("/v1/transit/keys/eth", json={"type": "ecdsa-secp256k1"})
signed = transit.sign_data(name="eth", hash_input=b64(b"transfer"))
verified = transit.verify_signed_data(
    name="eth", hash_input=b64(b"transfer"), signature=signed["data"]["signature"]
)
check(verified["data"]["valid"] is True, "secp256k1 verify")
verified = transit.verify_signed_data(
    name="eth", hash_input=b64(b"transfer 100"), signature=signed["data"]["signature"]
)
check(verified["data"]["valid"] is False, "secp256k1 refuses other input")

transit.create_key(name="p256", key_type="ecdsa-p256")
signed = transit.sign_data(name="p256", hash_input=b64(b"order"), marshaling_algorithm="jws")
verified = transit.verify_signed_data(
    name="p256", hash_input=b64(b"order"), signature=signed["data"]["signature"],
    marshaling_algorithm="jws",
)
check(verified["data"]["valid"] is True, "p256 verify")

transit.create_key(name="ed", key_type="ed25519")
signed = transit.sign_data(name="ed", hash_input=b64(b"order"))
verified = transit.verify_signed_data(
    name="ed", hash_input=b64(b"order"), signature=signed["data"]["signature"]
)
check(verified["data"]["valid"] is True, "ed25519 verify")
public = transit.read_key(name="ed")["data"]["keys"]["1"]["public_key"]
check(len(base64.b64decode(public)) == 32, "ed25519 public key")

mac = transit.generate_hmac(name="orders", hash_input=b64(b"webhook body"))
check(mac["data"]["hmac"].startswith("kw:v2:"), "hmac")
verified = transit.verify_signed_data(
    name="orders", hash_input=b64(b"webhook body"), hmac=mac["data"]["hmac"]
)
check(verified["data"]["valid"] is True, "hmac verify")

random = transit.generate_random_bytes(n_bytes=16, output_format="hex")
check(len(random["data"]["random_bytes"]) == 32, "random")

listed = transit.list_keys()
check(sorted(listed["data"]["keys"]) == ["ed", "eth", "orders", "p256"], f"list {listed}")
try:
    transit.delete_key(name="ed")
    check(False, "deleted without deletion_allowed")
except exceptions.InvalidRequest:
    check(True, "deletion refused")
except exceptions.VaultError:
    check(True, "deletion refused")
transit.update_key_configuration(name="ed", deletion_allowed=True)
transit.delete_key(name="ed")
check(sorted(transit.list_keys()["data"]["keys"]) == ["eth", "orders", "p256"], "deleted")

print(f"hvac transit: {checks} checks passed")
