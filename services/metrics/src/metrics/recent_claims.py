"""The stored claims a worker remembers, as fixed-size digests in flat arrays.

A claim never changes once stored, so remembering it spares the database a write (a copy published
close to its original is recognised in memory) and, on FerretDB 1.x, an insert command meeting a
duplicate key, which costs several times a clean one. What is remembered must stay small and must
not fragment the heap: the former `OrderedDict` of (tenant, key) tuples to `Position`s held five
small objects per claim, allocated among a batch's objects, and each one kept ~2-3 KB resident when
the batch was freed (50,000 claims took a single worker from ~190 to 313 MB at 1,000,000 events).
Here a claim is 24 bytes of three preallocated arrays: no object per claim at all.

A claim's `_id` is kept as its 128-bit BLAKE2b digest: two different facts would be mistaken for one
with probability ~n²/2¹²⁹ over n remembered ones (~10⁻²¹ for a billion), far below any hardware
fault rate, so a remembered digest is treated as the fact. Two tables of `capacity` entries each
take turns: when the newer one is full, the older one is emptied and becomes the newer, so between
`capacity` and twice that many of the most recently seen claims are remembered.
"""

from __future__ import annotations

import struct
from array import array
from hashlib import blake2b

from .aggregation import Position

_DIGEST = struct.Struct("<QQ")
_OFFSET_BITS = 47  # a Kafka offset is below 2**47 for ~4,400 years at a million records a second
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1


def digest(claim_id: str) -> tuple[int, int]:
    """A claim `_id` as the two 64-bit words of its 128-bit BLAKE2b digest."""
    high, low = _DIGEST.unpack(blake2b(claim_id.encode(), digest_size=16).digest())
    return high, low | 1  # (0, 0) marks an empty slot


class _Table:
    """Open addressing with linear probing, never more than half full: `keys` holds each slot's digest as
    two words (high, low), `values` its packed position."""

    def __init__(self, capacity: int):
        slots = 1
        while slots < 2 * capacity:
            slots *= 2
        self.mask = slots - 1
        self.keys = array("Q", bytes(16 * slots))
        self.values = array("q", bytes(8 * slots))
        self.count = 0

    def find(self, high: int, low: int) -> int:
        """The slot holding (high, low), or the empty slot where it would go."""
        mask, keys = self.mask, self.keys
        index = (high ^ low) & mask
        while True:
            stored = keys[2 * index + 1]
            if stored == low and keys[2 * index] == high or not stored:
                return index
            index = (index + 1) & mask


class RecentClaims:
    """Claim `_id` -> (partition, offset) of the stored claim, the most recent ones.

    `ELSEWHERE` stands for "stored at a position that is none of the deliveries asking": what the
    store knows of a claim taken earlier whose position it did not need to read.
    """

    ELSEWHERE = Position("", -1)

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._newer: _Table | None = None  # allocated on the first claim: an api process remembers none
        self._older: _Table | None = None
        self._partitions: list[str] = [""]  # index 0: ELSEWHERE
        self._partition_index: dict[str, int] = {"": 0}

    def __len__(self) -> int:
        return self._newer.count + self._older.count if self._newer and self._older else 0

    def get(self, key: tuple[int, int]) -> Position | None:
        """The position remembered for a claim (`key`: its `digest`)."""
        if self._newer is None or self._older is None:
            return None
        high, low = key
        for table in (self._newer, self._older):
            index = table.find(high, low)
            if table.keys[2 * index + 1]:  # found (an empty slot otherwise)
                packed = table.values[index]
                return Position(self._partitions[packed >> _OFFSET_BITS], (packed & _OFFSET_MASK) - 1)
        return None

    def put(self, key: tuple[int, int], position: Position) -> None:
        partition, offset = position
        number = self._partition_index.get(partition)
        if number is None:
            number = self._partition_index[partition] = len(self._partitions)
            self._partitions.append(partition)
        high, low = key
        if self._newer is None or self._older is None:
            self._newer, self._older = _Table(self.capacity), _Table(self.capacity)
        table = self._newer
        index = table.find(high, low)
        if not table.keys[2 * index + 1]:
            if table.count >= self.capacity:  # the newer table is full: forget the older one's claims
                self._newer, self._older = _Table(self.capacity), table
                table = self._newer
                index = table.find(high, low)
            table.keys[2 * index], table.keys[2 * index + 1] = high, low
            table.count += 1
        table.values[index] = (number << _OFFSET_BITS) | (offset + 1)  # ELSEWHERE's -1 packs as 0
