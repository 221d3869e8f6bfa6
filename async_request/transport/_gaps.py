"""A skipped offset in a work partition: fetch it again before delivering what follows.

tansu (memory storage) can make a record visible before an earlier one of the same partition
while two produce requests to that partition are in flight: a fetch at the partition's head
then answers offset N+1 for a fetch from N, and librdkafka moves on past N. Seen in
`bench/pipeline.py` with the asyncio pool (a worker that keeps up reads at the head): one
record in about twenty 1000-request bursts; a consumer assigned at N a quarter of a second
later found it there. Skipped, that record reached a worker only when the sweep published it
again (`ASYNC_REQUEST_REPUBLISH_AFTER_SEC`, 30 s): nothing lost, but the burst's last answer
30 s late.

Our work topics hold no transaction markers and are never compacted, so a jump in offsets is
such a race, not a hole: the fetcher holds the partition's records from the jump on back and
seeks to the missing offset, and fetches it on the next poll. A hole that stays (someone
else's transactional producer, a compacted topic) is accepted after `wait` seconds with a
warning, so a partition never stalls for longer than that.

`GapGuard` is the pure decision; the fetcher (`_fetcher.py`) drops the held records (not
tracked, so not delivered and not committed) and seeks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._offsets import PartitionKey


@dataclass
class GapGuard:
    """Decides per fetched work record whether it may be delivered after a skipped offset."""

    wait: float  # seconds a gap may stay before it is accepted; 0 accepts every gap at once
    #: partition -> (the missing offset, when it was first missed)
    _held: dict[PartitionKey, tuple[int, float]] = field(default_factory=dict)

    def admit(self, key: PartitionKey, expected: int | None, offset: int, now: float) -> bool:
        """True when the record at `offset` may be delivered; False when the partition must
        be fetched again from `expected` first (the offset after the last delivered one,
        None before the first)."""
        if expected is None or offset <= expected:
            self._held.pop(key, None)
            return True
        held = self._held.get(key)
        if held is None or held[0] != expected:  # a new gap (an older one was filled)
            held = self._held[key] = (expected, now)
        if now - held[1] >= self.wait:
            del self._held[key]
            return True
        return False

    def forget(self, keys: set[PartitionKey]) -> None:
        """The partitions were revoked or lost: nothing held for them."""
        for key in keys:
            self._held.pop(key, None)
