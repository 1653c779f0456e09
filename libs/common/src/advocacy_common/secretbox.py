"""Secrets encrypted at rest: AES-256-GCM under a keyring of named keys, with rotation.

A stored secret (`Sealed`) carries the id of the key that sealed it and its own random 96-bit nonce, so
keys can rotate: a new key id becomes current, what older keys sealed stays readable while their key is
in the keyring, and `SecretBox.reseal` moves a secret under the current key (a no-op when it is there
already). The associated data (`context`) binds a ciphertext to what it belongs to, e.g. a tenant and a
connector id: copied to another record, it no longer opens.

Used by the storage adapters that keep credentials (connector signing secrets, network OAuth tokens);
the domain sees plain values in memory only.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12  # 96 bits, the size GCM is specified for
KEY_BYTES = 32  # AES-256
# Dev/test only: a known key, so that a local stack works without configuration. Never use it in production.
DEV_ONLY_KEY_ID = "dev-only"
DEV_ONLY_KEY = base64.b64encode(b"dev-only-key-never-in-production").decode()


class SecretUnreadable(Exception):
    """The key is not in the keyring, or the ciphertext, nonce or context does not match; nothing is revealed."""


class KeyringInvalid(ValueError):
    """The keyring settings are unusable (bad base64, wrong key size, current key missing)."""


@dataclass(frozen=True)
class Sealed:
    """A secret as stored: the sealing key's id, the nonce and the ciphertext (with GCM's tag)."""

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def to_document(self) -> dict[str, str]:
        return {"key_id": self.key_id, "nonce": _b64(self.nonce), "ciphertext": _b64(self.ciphertext)}

    @classmethod
    def from_document(cls, document: Mapping[str, str]) -> Sealed:
        try:
            return cls(str(document["key_id"]), base64.b64decode(document["nonce"], validate=True),
                       base64.b64decode(document["ciphertext"], validate=True))
        except (KeyError, TypeError, binascii.Error):
            raise SecretUnreadable("the stored secret is malformed") from None


@dataclass(frozen=True)
class Keyring:
    """Named 256-bit keys and the id of the one that seals new secrets."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise KeyringInvalid(f"the current key id {self.current!r} is not in the keyring")
        for key_id, key in self.keys.items():
            if len(key) != KEY_BYTES:
                raise KeyringInvalid(f"key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")

    @classmethod
    def from_encoded(cls, keys: Mapping[str, str], current: str) -> Keyring:
        """From settings: key id -> standard base64 of 32 random bytes (e.g. `openssl rand -base64 32`)."""
        try:
            decoded = {key_id: base64.b64decode(value, validate=True) for key_id, value in keys.items()}
        except (binascii.Error, ValueError):
            raise KeyringInvalid("a key of the keyring is not valid base64") from None
        return cls(decoded, current)

    @classmethod
    def dev_only(cls) -> Keyring:
        return cls.from_encoded({DEV_ONLY_KEY_ID: DEV_ONLY_KEY}, DEV_ONLY_KEY_ID)


def new_encoded_key() -> str:
    """A fresh key for a keyring, base64 (what `openssl rand -base64 32` prints)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class SecretBox:
    """Seals and opens secrets with a keyring; `context` is the associated data a ciphertext is bound to."""

    def __init__(self, keyring: Keyring):
        self.keyring = keyring

    def seal(self, plaintext: str, *context: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.keyring.current
        ciphertext = AESGCM(self.keyring.keys[key_id]).encrypt(nonce, plaintext.encode(), _aad(key_id, context))
        return Sealed(key_id, nonce, ciphertext)

    def open(self, sealed: Sealed, *context: str) -> str:
        key = self.keyring.keys.get(sealed.key_id)
        if key is None:
            raise SecretUnreadable(f"key {sealed.key_id!r} is not in the keyring")
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, _aad(sealed.key_id, context)).decode()
        except (InvalidTag, ValueError):
            raise SecretUnreadable(f"the secret sealed under key {sealed.key_id!r} does not open here") from None

    def is_current(self, sealed: Sealed) -> bool:
        return sealed.key_id == self.keyring.current

    def reseal(self, sealed: Sealed, *context: str) -> Sealed:
        """The same secret under the current key; `sealed` itself when it is under it already (idempotent)."""
        if self.is_current(sealed):
            return sealed
        return self.seal(self.open(sealed, *context), *context)


def _aad(key_id: str, context: tuple[str, ...]) -> bytes:
    # The key id is bound too, so a record cannot be made to claim another key; parts are unit-separated.
    return "\x1f".join((key_id, *context)).encode()


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
