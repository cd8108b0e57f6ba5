"""PII at rest: AES-GCM encryption of email and phone, and keyed hashes (HMAC-SHA256) for lookups.

Both keys are derived from one secret (``CRM_PROFILE_PII_KEY``) with HKDF, under different labels, so
the hash key never doubles as the encryption key. Every identifier (customer id, anonymous id, email,
phone, external id) is stored only as its keyed hash in the identifier table; email and phone are also
kept encrypted on the profile so they can be shown and exported.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NON_PHONE = re.compile(r"[^0-9+]")


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"crm-profile", info=label).derive(secret)


def normalize_identifier(kind: str, value: str) -> str:
    """The form an identifier is hashed in: emails case-folded, phones reduced to digits and '+'."""
    value = value.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        return _NON_PHONE.sub("", value)
    return value


class PiiVault:
    """Encrypts, decrypts and hashes personal data with keys derived from one secret."""

    def __init__(self, secret: str) -> None:
        raw = secret.encode()
        self._aead = AESGCM(_derive(raw, b"pii-encryption-v1"))
        self._hash_key = _derive(raw, b"identifier-hash-v1")

    def encrypt(self, value: str | None) -> str | None:
        if value is None:
            return None
        nonce = os.urandom(12)
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, value.encode(), None)).decode()

    def decrypt(self, token: str | None) -> str | None:
        if token is None:
            return None
        raw = base64.urlsafe_b64decode(token.encode())
        return self._aead.decrypt(raw[:12], raw[12:], None).decode()

    def lookup_hash(self, kind: str, value: str) -> str:
        """Keyed hash of one identifier, the only form identifiers are stored and looked up in."""
        message = f"{kind}\x1f{normalize_identifier(kind, value)}".encode()
        return hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()
