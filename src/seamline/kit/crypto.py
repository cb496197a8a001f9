"""Secrets at rest (webhook signing secrets), encrypted with a key derived from the secret key."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet


class SecretBox:
    """Authenticated symmetric encryption (Fernet) for secrets Seamline must read back."""

    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"seamline-secret-box:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal_bytes(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def open_bytes(self, token: bytes) -> bytes:
        return self._fernet.decrypt(token)

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()
