"""Drives Keyward's KV v2 engine through hvac, the Python Vault client,
exactly as an application would talk to Vault. Run by tests/vault_clients.rs
with VAULT_ADDR and VAULT_TOKEN set; any failed check raises."""

import os

import hvac
from hvac import exceptions

client = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


status = client.sys.read_seal_status()
check(status["sealed"] is False and status["initialized"] is True, f"seal status {status}")

kv = client.secrets.kv.v2
written = kv.create_or_update_secret(
    path="exchanges/binance", secret={"api_key": "bn-key", "api_secret": "bn-secret"}
)
check(written["data"]["version"] == 1, f"first write {written}")
read = kv.read_secret_version(path="exchanges/binance", raise_on_deleted_version=True)
check(read["data"]["data"] == {"api_key": "bn-key", "api_secret": "bn-secret"}, f"read {read}")
check(read["data"]["metadata"]["version"] == 1, "read metadata")

# Check-and-set.
written = kv.create_or_update_secret(
    path="exchanges/binance", secret={"api_key": "bn-key-2", "api_secret": "s2"}, cas=1
)
check(written["data"]["version"] == 2, "cas write")
try:
    kv.create_or_update_secret(path="exchanges/binance", secret={"x": "y"}, cas=1)
    check(False, "a stale cas was accepted")
except exceptions.InvalidRequest:
    check(True, "stale cas refused")

# Patch merges into the latest version.
kv.patch(path="exchanges/binance", secret={"note": "rotated"})
read = kv.read_secret_version(path="exchanges/binance", raise_on_deleted_version=True)
check(read["data"]["data"]["note"] == "rotated", "patched")
check(read["data"]["data"]["api_key"] == "bn-key-2", "patch kept the rest")
old = kv.read_secret_version(path="exchanges/binance", version=1, raise_on_deleted_version=True)
check(old["data"]["data"]["api_key"] == "bn-key", "older version readable")

# Soft delete, undelete, destroy.
kv.delete_latest_version_of_secret(path="exchanges/binance")
try:
    kv.read_secret_version(path="exchanges/binance", raise_on_deleted_version=True)
    check(False, "a deleted version was readable")
except exceptions.InvalidPath:
    check(True, "deleted version refused")
kv.undelete_secret_versions(path="exchanges/binance", versions=[3])
read = kv.read_secret_version(path="exchanges/binance", raise_on_deleted_version=True)
check(read["data"]["metadata"]["version"] == 3, "undeleted")
kv.delete_secret_versions(path="exchanges/binance", versions=[2])
kv.destroy_secret_versions(path="exchanges/binance", versions=[1])
meta = kv.read_secret_metadata(path="exchanges/binance")
check(meta["data"]["current_version"] == 3, f"metadata {meta}")
check(meta["data"]["versions"]["1"]["destroyed"] is True, "destroyed")
check(meta["data"]["versions"]["2"]["deletion_time"] != "", "deleted")

# Metadata and listing.
kv.update_metadata(path="exchanges/binance", max_versions=5, custom_metadata={"team": "treasury"})
meta = kv.read_secret_metadata(path="exchanges/binance")
check(meta["data"]["max_versions"] == 5, "max_versions")
check(meta["data"]["custom_metadata"] == {"team": "treasury"}, "custom_metadata")
kv.create_or_update_secret(path="exchanges/okx", secret={"k": "v"})
kv.create_or_update_secret(path="db/main", secret={"password": "p"})
listed = kv.list_secrets(path="")
check(listed["data"]["keys"] == ["db/", "exchanges/"], f"list {listed}")
listed = kv.list_secrets(path="exchanges")
check(listed["data"]["keys"] == ["binance", "okx"], f"list {listed}")
kv.delete_metadata_and_all_versions(path="exchanges/okx")
try:
    kv.read_secret_version(path="exchanges/okx", raise_on_deleted_version=True)
    check(False, "a secret deleted with its metadata was readable")
except exceptions.InvalidPath:
    check(True, "deleted with metadata")

# Mount configuration and a second mount bound to the test environment.
kv.configure(max_versions=20, cas_required=False)
config = kv.read_configuration()
check(config["data"]["max_versions"] == 20, f"config {config}")
client.sys.enable_secrets_engine(
    backend_type="kv", path="secret-test", options={"version": "2", "environment": "test"}
)
mounts = client.sys.list_mounted_secrets_engines()
check("secret-test/" in mounts["data"], f"mounts {mounts}")
kv.create_or_update_secret(path="ci", secret={"k": "t"}, mount_point="secret-test")
read = kv.read_secret_version(path="ci", mount_point="secret-test", raise_on_deleted_version=True)
check(read["data"]["data"] == {"k": "t"}, "second mount")

print(f"hvac: {checks} checks passed")
