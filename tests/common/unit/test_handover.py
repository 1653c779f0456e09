"""A rebalance takes the partitions only between batches (`HandOver`), and a failed commit is not retried by
FastStream (`commit`); the rebalance against a real broker: tests/common/integration/test_worker.py."""

import asyncio

import pytest
from aiokafka.errors import CommitFailedError
from faststream.message import AckStatus

from advocacy_common.worker import HandOver, commit
from advocacy_testkit import until_turns

pytestmark = pytest.mark.unit



async def test_a_rebalance_waits_for_the_batch_in_hand_and_its_commit():
    handover = HandOver()
    steps: list[str] = []
    committed = asyncio.Event()

    async def batch() -> None:
        async with handover.in_hand():
            steps.append("handled")
            await committed.wait()
            steps.append("committed")

    in_hand = asyncio.create_task(batch())
    await until_turns(lambda: steps)
    revoke = asyncio.create_task(handover.on_partitions_revoked(set()))
    await until_turns(handover.revoking.is_set)
    for _ in range(50):
        await asyncio.sleep(0)
    assert not revoke.done()  # the partitions stay while the batch is in hand
    committed.set()
    await revoke
    steps.append("revoked")
    await in_hand
    assert steps == ["handled", "committed", "revoked"]
    assert not handover.revoking.is_set()


async def test_a_rebalance_between_batches_goes_ahead_at_once():
    handover = HandOver()
    await handover.on_partitions_revoked(set())
    await handover.on_partitions_assigned(set())
    assert not handover.revoking.is_set()


class Message:
    def __init__(self, error: Exception | None):
        self.error, self.committed, self.acks = error, None, 0

    async def ack(self) -> None:
        self.acks += 1
        if self.error is not None:
            raise self.error
        self.committed = AckStatus.ACKED


async def test_a_commit_the_group_refuses_is_logged_and_not_tried_again_by_faststream(caplog):
    refused = Message(CommitFailedError("the group has rebalanced"))
    await commit(refused)
    assert refused.acks == 1 and refused.committed == AckStatus.ACKED  # FastStream's own ack then does nothing
    assert "next owner" in caplog.text
    fine = Message(None)
    await commit(fine)
    assert fine.acks == 1 and fine.committed == AckStatus.ACKED


async def test_an_error_that_is_not_kafkas_goes_up():
    with pytest.raises(ValueError):
        await commit(Message(ValueError("a bug")))
