"""The CLI of the verifiable log: ``keys create``, ``checkpoint`` and ``prove consistency``.

``prove consistency --from FILE`` checks the current log against a checkpoint saved earlier,
one check after the other, and stops at the first that fails, naming it: the file, the
signature (with ``--pubkey``), the origin, the size (a log shorter than the checkpoint was
truncated) and the consistency proof (a log rewritten since, even with its chain and tree
recomputed, has another root at the checkpoint's size).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from eventstore import EventStore
from eventstore.checkpoints import (
    NoteVerifier,
    ParsedCheckpoint,
    create_key_file,
    parse_checkpoint,
)
from eventstore.merkle import ProofError, verify_consistency
from eventstore.tree import consistency_proof, tree_root
from graphql_api.bootstrap import open_checkpointer
from graphql_api.settings import Settings


def add_parsers(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    settings: Settings,
    add_db: Callable[[argparse.ArgumentParser, Settings], None],
) -> None:
    keys = sub.add_parser("keys", help="the Ed25519 key that signs the log's checkpoints")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create", help="make a signing key and print its public key (C2SP note verifier)"
    )
    create.add_argument(
        "--key",
        default=settings.signing_key_path,
        metavar="FILE",
        help="where to write it (default: $STATEMENTS_SIGNING_KEY); never overwritten",
    )
    create.add_argument(
        "--origin",
        default=settings.log_origin,
        metavar="NAME",
        help="the log's name, the key's name (default: $STATEMENTS_LOG_ORIGIN, else "
        "localhost/statements)",
    )

    checkpoint = sub.add_parser(
        "checkpoint", help="write the signed note of the latest checkpoint (made now if needed)"
    )
    add_db(checkpoint, settings)
    checkpoint.add_argument("--out", type=Path, default=None, metavar="FILE")

    prove = sub.add_parser("prove", help="prove the log against a checkpoint saved earlier")
    prove_sub = prove.add_subparsers(dest="prove_command", required=True)
    consistency = prove_sub.add_parser(
        "consistency", help="check that the current log extends a saved checkpoint"
    )
    add_db(consistency, settings)
    consistency.add_argument("--from", dest="from_file", type=Path, required=True, metavar="FILE")
    consistency.add_argument(
        "--pubkey",
        default=None,
        metavar="KEY",
        help="the log's note verifier key (NAME+ID+KEY), or a file holding it: checks the "
        "checkpoint's signature first",
    )


def keys(args: argparse.Namespace, settings: Settings) -> int:
    if args.key is None:
        print(
            "statements keys create: no key file: pass --key FILE or set STATEMENTS_SIGNING_KEY",
            file=sys.stderr,
        )
        return 2
    path = Path(args.key)
    try:
        signer = create_key_file(path, args.origin)
    except FileExistsError:
        print(f"statements keys create: {path} exists; a key is never overwritten", file=sys.stderr)
        return 1
    print(signer.verifier_key())
    print(
        f"signing key written to {path}; the line above is its public key (note verifier)",
        file=sys.stderr,
    )
    return 0


async def checkpoint(args: argparse.Namespace, settings: Settings, store: EventStore) -> int:
    checkpointer = open_checkpointer(settings, store)
    made = await checkpointer.latest()
    if args.out is None:
        sys.stdout.write(made.note)
    else:
        args.out.write_text(made.note)
    if not made.signed:
        print(
            "the checkpoint is unsigned: the server has no signing key (STATEMENTS_SIGNING_KEY)",
            file=sys.stderr,
        )
    print(f"checkpoint of {made.tree_size:,} events, root {made.root_hash.hex()}", file=sys.stderr)
    return 0


class CheckFailed(Exception):
    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


def _verifier(text: str) -> NoteVerifier:
    path = Path(text)
    if "+" not in text or path.is_file():
        text = path.read_text()
    return NoteVerifier.from_text(text)


async def _prove(args: argparse.Namespace, settings: Settings, store: EventStore) -> list[str]:
    """The checks that passed, in order; CheckFailed names the first that did not."""
    passed: list[str] = []
    try:
        note = args.from_file.read_text()
        saved: ParsedCheckpoint = parse_checkpoint(note)
    except (OSError, ValueError) as exc:
        raise CheckFailed("checkpoint file", f"{args.from_file}: {exc}") from exc
    passed.append(f"checkpoint file: {saved.origin}, {saved.tree_size:,} events")
    if args.pubkey is not None:
        try:
            verifier = _verifier(args.pubkey)
        except (OSError, ValueError) as exc:
            raise CheckFailed("public key", str(exc)) from exc
        try:
            verifier.verify(note)
        except ProofError as exc:
            raise CheckFailed("signature", str(exc)) from exc
        passed.append(f"signature: by {verifier.name} ({verifier.key_id.hex()})")
    else:
        passed.append("signature: not checked (no --pubkey)")
    origin = open_checkpointer(settings, store).origin
    if saved.origin != origin:
        raise CheckFailed(
            "origin", f"the checkpoint is of log {saved.origin!r}, this log is {origin!r}"
        )
    passed.append(f"origin: {origin}")
    head = await store.head_position()
    if head < saved.tree_size:
        raise CheckFailed(
            "size",
            f"the log has {head:,} events, fewer than the {saved.tree_size:,} of the "
            "checkpoint: it was truncated",
        )
    passed.append(f"size: {head:,} events >= {saved.tree_size:,}")
    root = await tree_root(store, head)
    proof = await consistency_proof(store, saved.tree_size, head)
    try:
        verify_consistency(saved.tree_size, head, saved.root_hash, root, proof)
    except ProofError as exc:
        raise CheckFailed(
            "consistency",
            f"{exc}: the first {saved.tree_size:,} events are not those the checkpoint "
            "committed to (the log was rewritten)",
        ) from exc
    passed.append(
        f"consistency: the log of {head:,} events (root {root.hex()}) extends the checkpoint"
    )
    return passed


async def prove(args: argparse.Namespace, settings: Settings, store: EventStore) -> int:
    try:
        passed = await _prove(args, settings, store)
    except CheckFailed as exc:
        print(f"statements prove consistency: FAILED {exc}", file=sys.stderr)
        return 1
    for line in passed:
        print(f"ok  {line}")
    return 0
