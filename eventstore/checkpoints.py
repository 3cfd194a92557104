"""Checkpoints: the tree head as a C2SP tlog-checkpoint, signed as a C2SP signed note (Ed25519).

A checkpoint's body is three lines: the log's origin, the tree size in decimal and the root
hash in base64. Signed, it is followed by a blank line and ``— <key name> base64(key ID ‖
signature)``, where the key ID is the first four bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖
public key). Keys are written in the formats of Go's ``golang.org/x/mod/sumdb/note``, which
the C2SP tools read: ``PRIVATE+KEY+<name>+<key ID hex>+base64(0x01 ‖ seed)`` for the signer
and ``<name>+<key ID hex>+base64(0x01 ‖ public key)`` for the verifier.

Every checkpoint made is stored, signed or not, so that one an auditor saved can always be
proven against a later one. A store without a signing key still makes checkpoints: their note
is the bare body and ``signed`` is false.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from eventstore.merkle import HASH_SIZE, ProofError
from eventstore.records import Checkpoint

if TYPE_CHECKING:
    from eventstore.store import EventStore

log = logging.getLogger(__name__)

ED25519: Final = b"\x01"  # the signed-note signature type of plain Ed25519
_DASH: Final = "\u2014 "  # a signature line starts with an em dash and a space


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ValueError(
            f"a key name (the log's origin) must be non-empty, without spaces or '+': {name!r}"
        )
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    return sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def checkpoint_body(origin: str, tree_size: int, root_hash: bytes) -> str:
    return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"


@dataclass(frozen=True, slots=True)
class ParsedCheckpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    body: str
    signatures: list[tuple[str, bytes]]  # (key name, key ID ‖ signature)


def parse_checkpoint(note: str) -> ParsedCheckpoint:
    """Split a checkpoint note into its body and signature lines; ValueError names what is wrong."""
    text, separator, signed = note.partition("\n\n")
    # The text keeps its final newline; an unsigned note is the text alone.
    body = text + "\n" if separator else note if note.endswith("\n") else note + "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise ValueError("a checkpoint needs three lines: origin, tree size and root hash")
    origin, size_text, root_text = lines[:3]
    if not origin:
        raise ValueError("the checkpoint's origin line is empty")
    if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise ValueError(f"the checkpoint's tree size is not a decimal number: {size_text!r}")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise ValueError(f"the checkpoint's root hash is not base64: {root_text!r}") from None
    if len(root) != HASH_SIZE:
        raise ValueError(f"the checkpoint's root hash has {len(root)} bytes, not {HASH_SIZE}")
    signatures: list[tuple[str, bytes]] = []
    for line in signed.split("\n"):
        if not line:
            continue
        if not line.startswith(_DASH):
            raise ValueError(f"not a signature line: {line!r}")
        name, _, value = line[len(_DASH) :].rpartition(" ")
        try:
            signatures.append((name, base64.b64decode(value, validate=True)))
        except binascii.Error:
            raise ValueError(f"a signature that is not base64: {line!r}") from None
    return ParsedCheckpoint(origin, int(size_text), root, body, signatures)


class NoteSigner:
    """An Ed25519 signing key with its name (the log's origin)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(name, self.public_key)

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> NoteSigner:
        parts = text.strip().split("+", 4)  # base64 may hold '+' too
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise ValueError("not a note signing key (PRIVATE+KEY+<name>+<id>+<key>)")
        _, _, name, id_hex, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError("the signing key's key part is not base64") from None
        if len(raw) != 33 or raw[:1] != ED25519:
            raise ValueError("the signing key is not an Ed25519 key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id.hex() != id_hex.lower():
            raise ValueError("the signing key's ID does not match its name and key")
        return signer

    def to_text(self) -> str:
        seed = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        encoded = base64.b64encode(ED25519 + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{encoded}"

    def verifier_key(self) -> str:
        encoded = base64.b64encode(ED25519 + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def sign(self, text: str) -> str:
        """The signed note of ``text`` (which ends in a newline)."""
        signature = self._key.sign(text.encode())
        line = base64.b64encode(self.key_id + signature).decode()
        return f"{text}\n{_DASH}{self.name} {line}\n"


class NoteVerifier:
    """A note verifier key: checks a note's signature by the key of that name and ID."""

    def __init__(self, name: str, public_key: bytes) -> None:
        self.name = _check_name(name)
        self.public_key = public_key
        self.key_id = key_id(name, public_key)
        self._key = Ed25519PublicKey.from_public_bytes(public_key)

    @classmethod
    def from_text(cls, text: str) -> NoteVerifier:
        parts = text.strip().split("+", 2)  # base64 may hold '+' too
        if len(parts) != 3:
            raise ValueError("not a note verifier key (<name>+<id>+<key>)")
        name, id_hex, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError("the verifier key's key part is not base64") from None
        if len(raw) != 33 or raw[:1] != ED25519:
            raise ValueError("the verifier key is not an Ed25519 key")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != id_hex.lower():
            raise ValueError("the verifier key's ID does not match its name and key")
        return verifier

    def verify(self, note: str) -> ParsedCheckpoint:
        """The checkpoint, if a signature by this key verifies; ProofError otherwise."""
        parsed = parse_checkpoint(note)
        for name, value in parsed.signatures:
            if name != self.name or value[:4] != self.key_id:
                continue  # another key's signature (a witness's): not ours to check
            try:
                self._key.verify(value[4:], parsed.body.encode())
            except InvalidSignature:
                raise ProofError(f"the signature by {self.name} does not verify") from None
            return parsed
        raise ProofError(f"the note has no signature by {self.name} (key ID {self.key_id.hex()})")


def create_key_file(path: Path, name: str) -> NoteSigner:
    """Make a new signing key and write it to ``path`` (readable by its owner only)."""
    signer = NoteSigner.generate(name)
    # O_EXCL: never overwrite a key, which would orphan every checkpoint it signed.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(signer.to_text() + "\n")
    return signer


def load_key_file(path: Path) -> NoteSigner:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    try:
        return NoteSigner.from_text(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


class Checkpointer:
    """Makes, signs and keeps the store's checkpoints."""

    def __init__(
        self,
        store: EventStore,
        signer: NoteSigner | None,
        origin: str,
        interval: float = 60.0,
    ) -> None:
        self.store = store
        self.signer = signer
        self.origin = signer.name if signer is not None else _check_name(origin)
        self.interval = interval
        self._lock = asyncio.Lock()

    @property
    def signs(self) -> bool:
        return self.signer is not None

    async def make(self, tree_size: int) -> Checkpoint:
        """Make, sign (with a key) and store a checkpoint of the first ``tree_size`` events."""
        from eventstore.store import now_us
        from eventstore.tree import tree_root

        root = await tree_root(self.store, tree_size)
        body = checkpoint_body(self.origin, tree_size, root)
        note = self.signer.sign(body) if self.signer is not None else body
        checkpoint = Checkpoint(
            self.origin, tree_size, root, note, self.signer is not None, now_us()
        )
        await self.store.save_checkpoint(checkpoint)
        return checkpoint

    async def at(self, tree_size: int) -> Checkpoint:
        """The checkpoint of that size: one already made by this key (or unsigned), or a new one."""
        async with self._lock:
            for stored in await self.store.checkpoints_at(tree_size):
                if self._ours(stored):
                    return stored
            return await self.make(tree_size)

    async def latest(self) -> Checkpoint:
        """The checkpoint of the current head, made now if the log grew since the last one."""
        head = await self.store.head_position()
        return await self.at(head)

    def _ours(self, checkpoint: Checkpoint) -> bool:
        return checkpoint.origin == self.origin and checkpoint.signed == (self.signer is not None)

    async def run(self) -> None:
        """Check the head every ``interval`` seconds and make a checkpoint when it grew."""
        last = -1
        while True:
            try:
                head = await self.store.head_position()
                if head != last:
                    await self.at(head)
                    last = head
            except Exception as exc:  # the next round tries again
                log.warning("making a checkpoint failed: %s", exc)
            await asyncio.sleep(self.interval)
