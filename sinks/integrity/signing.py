"""Signed checkpoints: the heads of every chain at one moment, signed with Ed25519.

Like CloudTrail's digest files, each checkpoint names the one before it (by the SHA-256 of its
signed body), so a deleted checkpoint is missing from a chain of its own, and like a
Certificate Transparency signed tree head, one checkpoint commits to everything chained
before it: anchoring the newest one outside the system anchors the whole trail.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict

from sinks.integrity.canonical import canonical_json

log = logging.getLogger(__name__)

DEFAULT_KEY_FILE = Path("integrity") / "signing-key.pem"


class SigningKeyError(RuntimeError):
    """The signing key cannot be read or made."""


class SignedHead(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    offset: int
    head: str


class Checkpoint(BaseModel):
    """A signed statement of every chain's head; `body()` is what the signature covers."""

    model_config = ConfigDict(frozen=True)

    number: int
    created_at: datetime
    key_id: str
    # SHA-256 of the previous checkpoint's body ("" for the first).
    previous: str
    heads: dict[str, SignedHead]
    signature: str = ""

    def body(self) -> bytes:
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))

    def body_hash(self) -> str:
        return hashlib.sha256(self.body()).hexdigest()


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    def sign(self, checkpoint: Checkpoint) -> Checkpoint:
        signature = self._key.sign(checkpoint.body()).hex()
        return checkpoint.model_copy(update={"signature": signature})

    def public_pem(self) -> str:
        return public_pem(self.public_key)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key


def signature_valid(public_key: Ed25519PublicKey, checkpoint: Checkpoint) -> bool:
    try:
        public_key.verify(bytes.fromhex(checkpoint.signature), checkpoint.body())
    except (InvalidSignature, ValueError):
        return False
    return True


def check_export(public_key_pem: str, checkpoints: list[Checkpoint]) -> list[str]:
    """What is wrong with exported checkpoints: a bad signature, a gap, a broken link."""
    key = load_public_key(public_key_pem)
    problems = [
        f"checkpoint {c.number}: signature does not verify"
        for c in checkpoints
        if not signature_valid(key, c)
    ]
    for before, after in itertools.pairwise(checkpoints):
        if after.number != before.number + 1 or after.previous != before.body_hash():
            problems.append(f"checkpoint {after.number} does not follow checkpoint {before.number}")
    return problems


def load_signer(configured: Path | None, data_dir: Path) -> Signer:
    """The configured key (PKCS#8 PEM, unencrypted), which must exist; unset, the data dir's
    own key, made on first use."""
    if configured is not None:
        if not configured.exists():
            raise SigningKeyError(
                f"the integrity signing key {configured} (PRIVTRAIL_INTEGRITY_KEY_PATH) "
                "does not exist"
            )
        return Signer(_read_key(configured))
    path = data_dir / DEFAULT_KEY_FILE
    if not path.exists():
        _write_new_key(path)
        log.warning(
            "generated an Ed25519 signing key for integrity checkpoints at %s; set "
            "PRIVTRAIL_INTEGRITY_KEY_PATH to a key kept outside the data directory in production",
            path,
        )
    return Signer(_read_key(path))


def _read_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise SigningKeyError(f"cannot read the integrity signing key {path}: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"the integrity signing key {path} is not an Ed25519 key")
    return key


def _write_new_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created readable by its owner only, never world-readable even for an instant.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
