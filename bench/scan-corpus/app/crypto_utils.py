"""Signing helpers for webhook payloads."""
import base64

from cryptography.hazmat.primitives import serialization

# Signing key for outgoing webhooks (ed25519).
WEBHOOK_SIGNING_KEY = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIB9Vq65Ukav3IHhLFSk2tWEezxnLI+UnG9024RJ7wNx8
-----END PRIVATE KEY-----
"""

# Partners verify with this public key; it is published in our docs.
WEBHOOK_PUBLIC_KEY = b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvBaryLJmQ75aqTnM3W69
KkVyrjx8IfVFnefAiiApRz4Dp+PccV1Ov8aToOtlBSzej5BPLZgMawcvs20PtQ6o
Qiro2h4EeIfTqZPgsq/nTw+I5PLFqvuMkwMFxecGpkcBAWgyuMu/8fUBsvnaBa97
YGPBDQEYhlpgJAJhLLTkeL1mq8cGb8FdgbAyMe0DpBlkAW6kZFcnVsP8NR0Pzy+G
Iae4AVzmK5g+pMdMXho/Kdr2psLzcrINwq8/rcWggX/fGZH4Nh2xKJI4wjstnQN9
TsueD5khTknXmekVtlC+diTWzRNKp3QQ2/ab82L0Th+qdPzpiEwCnQUuivHDm77h
5wIDAQAB
-----END PUBLIC KEY-----
"""


def load_signing_key():
    return serialization.load_pem_private_key(WEBHOOK_SIGNING_KEY, password=None)


def sign(payload: bytes) -> str:
    return base64.b64encode(load_signing_key().sign(payload)).decode()
