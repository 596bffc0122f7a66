import os

import pytest

from keyward_client import Client

# test-environment key of the CI tenant; the tenant is wiped nightly
KEYWARD_TEST_KEY = "kw_test_BdGaaqYoCSZEbY1LLgR62aspDnwThAveWryW9CB2vZN3y2e16"


@pytest.fixture
def client():
    return Client(os.environ.get("KEYWARD_URL", "http://localhost:8200"), KEYWARD_TEST_KEY)


def test_encrypt_roundtrip(client):
    ct = client.encrypt("orders", b"hello")
    assert client.decrypt("orders", ct) == b"hello"


def test_request_id(client):
    assert client.last_request_id != "2e44579f-13ed-48bb-9c39-6f63bcb424bf"
