"""The verifiable log over GraphQL (auditor role): checkpoints, inclusion and consistency proofs,
a statement's proof, their argument ranges, and what other requests get."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import pytest

from eventstore.checkpoints import Checkpointer, NoteSigner, NoteVerifier
from eventstore.merkle import root_from_inclusion_proof, verify_consistency
from eventstore.tree import row_leaf, tree_root
from tests.graphql_api.query_support import (
    AUDITOR,
    EDITOR,
    READ_MODEL_BACKENDS,
    Result,
    World,
    open_world,
    schema,
)

CHECKPOINT = """query($size: Int) { logCheckpoint(treeSize: $size) {
    origin treeSize rootHash body signed signedNote } }"""
INCLUSION = """query($position: Int!, $size: Int!) { inclusionProof(position: $position,
    treeSize: $size) { position leafIndex treeSize leafHash hashes } }"""
CONSISTENCY = """query($from: Int!, $to: Int!) { consistencyProof(fromSize: $from, toSize: $to) {
    fromSize toSize hashes } }"""
STATEMENT_PROOF = """query($id: ID!, $at: Int) { statement(id: $id, atPosition: $at) {
    title version
    proof { checkpoint { treeSize rootHash signedNote }
            events { event { position type } record proof { leafIndex treeSize leafHash hashes } } }
} }"""


@pytest.fixture(params=READ_MODEL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Log:
    world: World
    first: str
    signer: NoteSigner


@pytest.fixture
async def log(database: tuple[str, str]) -> AsyncIterator[Log]:
    async with open_world(database) as w:
        first = await w.publish("First", topics=("Syria",))  # 1 slug, 2 published, 3 tagged
        second = await w.publish("Second")  # 4, 5
        await w.link(second, first)  # 6
        await w.revise(first, title="First, revised")  # 7
        await w.view(first, 2)  # 8, 9
        await w.project()
        yield Log(w, first, NoteSigner.generate("test.example/statements"))


async def signed_query(log: Log, document: str, variables: dict[str, Any]) -> Result:
    """A query in a context whose checkpointer signs, as the app's does with a key file."""
    w = log.world
    context = w.context(AUDITOR)
    context.checkpointer = Checkpointer(w.store, log.signer, "ignored")
    result = await schema().execute(document, variable_values=variables, context_value=context)
    errors = [dict(e.formatted) for e in result.errors or ()]
    return Result(result.data, errors, 0)


def unhex(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


async def test_an_unsigned_checkpoint_says_so(log: Log) -> None:
    w = log.world
    data = (await w.query(CHECKPOINT, {}, AUDITOR)).ok()["logCheckpoint"]
    root = await tree_root(w.store, 9)
    assert data == {
        "origin": "localhost/statements",
        "treeSize": 9,
        "rootHash": root.hex(),
        "body": f"localhost/statements\n9\n{base64.b64encode(root).decode()}\n",
        "signed": False,
        "signedNote": None,
    }


async def test_signed_checkpoints_verify_with_the_public_key(log: Log) -> None:
    verifier = NoteVerifier.from_text(log.signer.verifier_key())
    latest = (await signed_query(log, CHECKPOINT, {})).ok()["logCheckpoint"]
    parsed = verifier.verify(latest["signedNote"])
    assert (parsed.origin, parsed.tree_size, parsed.root_hash.hex()) == (
        "test.example/statements",
        9,
        latest["rootHash"],
    )
    older = (await signed_query(log, CHECKPOINT, {"size": 4})).ok()["logCheckpoint"]
    assert verifier.verify(older["signedNote"]).tree_size == 4
    assert older["rootHash"] == (await tree_root(log.world.store, 4)).hex()
    # Kept: asking again gives the same signed note.
    again = (await signed_query(log, CHECKPOINT, {"size": 4})).ok()["logCheckpoint"]
    assert again == older


async def test_inclusion_proofs_lead_to_the_checkpoint_root(log: Log) -> None:
    w = log.world
    rows = [row async for row in w.store.read_rows()]
    for size in (1, 5, 9):
        root = bytes.fromhex(
            (await w.query(CHECKPOINT, {"size": size}, AUDITOR)).ok()["logCheckpoint"]["rootHash"]
        )
        for position in range(1, size + 1):
            proof = (await w.query(INCLUSION, {"position": position, "size": size}, AUDITOR)).ok()[
                "inclusionProof"
            ]
            assert proof["position"] == position
            assert proof["leafIndex"] == position - 1
            assert proof["leafHash"] == row_leaf(rows[position - 1]).hex()
            assert proof["leafHash"] == proof["leafHash"].lower()
            leaf = bytes.fromhex(proof["leafHash"])
            got = root_from_inclusion_proof(position - 1, size, leaf, unhex(proof["hashes"]))
            assert got == root


async def test_consistency_proofs_link_every_pair_of_checkpoints(log: Log) -> None:
    w = log.world
    roots = [await tree_root(w.store, n) for n in range(10)]
    for new in range(1, 10):
        for old in range(1, new + 1):
            data = (await w.query(CONSISTENCY, {"from": old, "to": new}, AUDITOR)).ok()
            proof = data["consistencyProof"]
            assert (proof["fromSize"], proof["toSize"]) == (old, new)
            verify_consistency(old, new, roots[old], roots[new], unhex(proof["hashes"]))


async def test_a_statements_proof_covers_the_events_it_was_folded_from(log: Log) -> None:
    verifier = NoteVerifier.from_text(log.signer.verifier_key())
    for at, title, positions in ((None, "First, revised", [2, 3, 7]), (5, "First", [2, 3])):
        result = await signed_query(log, STATEMENT_PROOF, {"id": log.first, "at": at})
        statement = result.ok()["statement"]
        assert statement["title"] == title
        proof = statement["proof"]
        checkpoint = verifier.verify(proof["checkpoint"]["signedNote"])
        assert [e["event"]["position"] for e in proof["events"]] == positions
        for item in proof["events"]:
            fields = [text.encode() for text in item["record"]]
            record = b"".join(len(f).to_bytes(8, "big") + f for f in fields)
            leaf = sha256(b"\x00" + record).digest()
            assert leaf.hex() == item["proof"]["leafHash"]
            assert item["proof"]["treeSize"] == checkpoint.tree_size
            root = root_from_inclusion_proof(
                item["proof"]["leafIndex"],
                checkpoint.tree_size,
                leaf,
                unhex(item["proof"]["hashes"]),
            )
            assert root == checkpoint.root_hash


@pytest.mark.parametrize(
    ("document", "variables", "message"),
    [
        (CHECKPOINT, {"size": 10}, "treeSize: must be between 0 and 9 (the log's size), got 10"),
        (CHECKPOINT, {"size": -1}, "treeSize: must be between 0 and 9 (the log's size), got -1"),
        (
            INCLUSION,
            {"position": 1, "size": 0},
            "treeSize: must be between 1 and 9 (the log's size), got 0",
        ),
        (
            INCLUSION,
            {"position": 1, "size": 10},
            "treeSize: must be between 1 and 9 (the log's size), got 10",
        ),
        (
            INCLUSION,
            {"position": 6, "size": 5},
            "position: must be between 1 and 5 (the treeSize), got 6",
        ),
        (
            INCLUSION,
            {"position": 0, "size": 5},
            "position: must be between 1 and 5 (the treeSize), got 0",
        ),
        (
            CONSISTENCY,
            {"from": 1, "to": 10},
            "toSize: must be between 1 and 9 (the log's size), got 10",
        ),
        (
            CONSISTENCY,
            {"from": 6, "to": 5},
            "fromSize: must be between 1 and 5 (the toSize), got 6",
        ),
        (
            CONSISTENCY,
            {"from": 0, "to": 5},
            "fromSize: must be between 1 and 5 (the toSize), got 0",
        ),
    ],
)
async def test_bad_sizes_and_positions_name_the_valid_range(
    log: Log, document: str, variables: dict[str, Any], message: str
) -> None:
    result = await log.world.query(document, variables, AUDITOR)
    assert result.codes == ["BAD_USER_INPUT"]
    assert result.errors[0]["message"] == message


@pytest.mark.parametrize(("principal", "code"), [(None, "UNAUTHENTICATED"), (EDITOR, "FORBIDDEN")])
async def test_only_auditors_get_proofs(log: Log, principal: Any, code: str) -> None:
    w = log.world
    for document, variables in (
        (CHECKPOINT, {}),
        (INCLUSION, {"position": 1, "size": 1}),
        (CONSISTENCY, {"from": 1, "to": 2}),
    ):
        assert (await w.query(document, variables, principal)).codes == [code]
    result = await w.query(STATEMENT_PROOF, {"id": log.first, "at": None}, principal)
    assert code in result.codes


async def test_an_empty_log_has_an_empty_checkpoint_and_no_proofs(
    database: tuple[str, str],
) -> None:
    async with open_world(database) as w:
        data = (await w.query(CHECKPOINT, {}, AUDITOR)).ok()["logCheckpoint"]
        assert (data["treeSize"], data["rootHash"]) == (
            0,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        result = await w.query(INCLUSION, {"position": 1, "size": 1}, AUDITOR)
        assert result.codes == ["BAD_USER_INPUT"]
        assert "empty" in result.errors[0]["message"]
