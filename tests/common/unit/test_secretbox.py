"""Secrets sealed at rest: round trip, refusals (wrong key, context, tampering), rotation."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from advocacy_common.secretbox import (
    DEV_ONLY_KEY_ID, NONCE_BYTES, Keyring, KeyringInvalid, Sealed, SecretBox, SecretUnreadable, new_encoded_key,
)

pytestmark = [pytest.mark.unit]
OLD, NEW = new_encoded_key(), new_encoded_key()
CONTEXT = ("connector-secret", "tenant-a", "connector-1")


def box(current: str = "k1", **keys: str) -> SecretBox:
    return SecretBox(Keyring.from_encoded(keys or {"k1": OLD}, current))


def test_a_sealed_secret_opens_with_its_context_and_reveals_nothing():
    sealed = box().seal("whsec_abc", *CONTEXT)
    assert box().open(sealed, *CONTEXT) == "whsec_abc"
    assert sealed.key_id == "k1" and len(sealed.nonce) == NONCE_BYTES
    assert b"whsec_abc" not in sealed.ciphertext
    document = sealed.to_document()
    assert "whsec_abc" not in str(document) and Sealed.from_document(document) == sealed


def test_each_seal_has_its_own_nonce():
    first, second = box().seal("same", *CONTEXT), box().seal("same", *CONTEXT)
    assert first.nonce != second.nonce and first.ciphertext != second.ciphertext


def test_another_context_does_not_open_it():
    sealed = box().seal("whsec_abc", *CONTEXT)
    with pytest.raises(SecretUnreadable):
        box().open(sealed, "connector-secret", "tenant-a", "connector-2")  # copied to another connector
    with pytest.raises(SecretUnreadable):
        box().open(sealed, "connector-secret", "tenant-b", "connector-1")  # or to another tenant


def test_a_wrong_key_does_not_open_it():
    sealed = box().seal("whsec_abc", *CONTEXT)
    with pytest.raises(SecretUnreadable):
        box(k1=NEW).open(sealed, *CONTEXT)  # same id, another key
    with pytest.raises(SecretUnreadable, match="not in the keyring"):
        box("k2", k2=NEW).open(sealed, *CONTEXT)
    with pytest.raises(SecretUnreadable):
        box(k1=OLD, k2=OLD).open(replace(sealed, key_id="k2"), *CONTEXT)  # the key id is bound too


@pytest.mark.parametrize("field", ["nonce", "ciphertext"])
def test_a_tampered_secret_is_refused(field):
    sealed = box().seal("whsec_abc", *CONTEXT)
    value = bytearray(getattr(sealed, field))
    value[0] ^= 1
    with pytest.raises(SecretUnreadable):
        box().open(replace(sealed, **{field: bytes(value)}), *CONTEXT)


def test_a_malformed_stored_secret_is_refused():
    with pytest.raises(SecretUnreadable):
        Sealed.from_document({"key_id": "k1", "nonce": "not base64!", "ciphertext": ""})
    with pytest.raises(SecretUnreadable):
        Sealed.from_document({})


def test_rotation_keeps_old_secrets_readable_and_reseals_them_under_the_current_key():
    old = box().seal("whsec_abc", *CONTEXT)
    rotated = box("k2", k1=OLD, k2=NEW)
    assert rotated.open(old, *CONTEXT) == "whsec_abc"  # readable while k1 stays in the keyring
    assert rotated.seal("new", *CONTEXT).key_id == "k2"
    assert not rotated.is_current(old)
    resealed = rotated.reseal(old, *CONTEXT)
    assert resealed.key_id == "k2" and rotated.reseal(resealed, *CONTEXT) is resealed  # idempotent
    assert box("k2", k2=NEW).open(resealed, *CONTEXT) == "whsec_abc"  # k1 removed: still opens
    with pytest.raises(SecretUnreadable):
        box("k2", k2=NEW).open(old, *CONTEXT)  # what was not resealed is lost with its key


def test_an_unusable_keyring_is_refused_at_start():
    with pytest.raises(KeyringInvalid, match="current key id"):
        Keyring.from_encoded({"k1": OLD}, "k2")
    with pytest.raises(KeyringInvalid, match="AES-256"):
        Keyring.from_encoded({"k1": base64.b64encode(b"short").decode()}, "k1")
    with pytest.raises(KeyringInvalid, match="base64"):
        Keyring.from_encoded({"k1": "%%%"}, "k1")


def test_the_dev_only_keyring_says_what_it_is():
    assert Keyring.dev_only().current == DEV_ONLY_KEY_ID == "dev-only"
