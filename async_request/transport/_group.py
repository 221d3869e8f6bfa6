"""Consumer group membership: a session timeout the broker accepts, rebalances that never end.

Session timeout. tansu parks every JoinGroup for session/2, in 1 s steps and 1 s at least
(`join_group_pause` in its group coordinator), so the default is 1500 ms; Apache Kafka
refuses sessions below its `group.min.session.timeout.ms` (6000 by default) with
INVALID_SESSION_TIMEOUT, which librdkafka hands to the application as a `poll()` error and
retries forever. On that error the group member (`_membership.py`)
rejoins with `longer_session()`: the brokers' own minimum when DescribeConfigs tells it, else
the next step of `SESSION_LADDER`. A session the user configured is never changed.

Rebalances that never end. tansu keeps naming a group leader that left (LeaveGroup) while the
group was rebalancing; only the leader can complete the rebalance, so no member ever gets
partitions again and no client sees an error (group study, tansu `Inner<Forming>::leave`; the
rebalance state is otherwise healthy). `BrokerGroups` tells the brokers apart. The member avoids
being that leader: it leaves only
when it is not rebalancing (`RebalanceWatch.rebalancing`); a worker process that
exits while its group rebalances skips the LeaveGroup and lets its session expire (eviction
clears the leader); and it reports a member that stays in a rebalance far longer than any
normal one (`overdue()`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Sessions to try, in order, when the broker refuses ours and does not say its minimum.
SESSION_LADDER = (6000, 10000, 30000, 45000)


@dataclass(frozen=True)
class BrokerGroups:
    """What the brokers said about their consumer groups before the first join (`detect_broker`).

    Apache Kafka (and brokers built like it) answer DescribeConfigs with their
    `group.min.session.timeout.ms`; tansu answers with no entries, and a managed Kafka may
    refuse the request (ACLs). Only a broker that reports its group settings is taken for one
    whose groups are safe to leave: tansu's wedge after a LeaveGroup (module docstring) is the
    reason the defaults are what they are, and an unknown broker keeps them.
    """

    session_minimum_ms: int | None  # None: the broker did not say

    @property
    def reports_group_config(self) -> bool:
        """True for Apache Kafka: it enforces a session minimum and said which."""
        return self.session_minimum_ms is not None

    @property
    def holds_fetches(self) -> bool:
        """True for Apache Kafka: it holds an empty fetch up to `fetch.wait.max.ms` and
        answers it as soon as a record arrives (tansu answers after about half the wait)."""
        return self.reports_group_config

    def first_session(self, default_ms: int) -> int:
        """The session to join with: ours, or the broker's minimum when that is longer (the
        broker would refuse ours with INVALID_SESSION_TIMEOUT and we would join again)."""
        if self.session_minimum_ms is not None and self.session_minimum_ms > default_ms:
            return self.session_minimum_ms
        return default_ms

    def leaves_on_shutdown(self, forced: bool) -> bool:
        """Whether a stopping worker sends its LeaveGroup: when configured to, or when the
        broker is one whose groups survive it (its partitions then move at once instead of
        after a session)."""
        return forced or self.reports_group_config


def longer_session(current_ms: int, broker_minimum_ms: int | None) -> int | None:
    """The session timeout to rejoin with after INVALID_SESSION_TIMEOUT (None: give up)."""
    if broker_minimum_ms is not None and broker_minimum_ms > current_ms:
        return broker_minimum_ms
    return next((step for step in SESSION_LADDER if step > current_ms), None)


def stall_limit(session_ms: int) -> float:
    """Seconds of rebalancing after which a member is reported stuck (normal: <= 5 s on
    tansu with a 2-6 s session)."""
    return max(10.0, 3 * session_ms / 1000)


@dataclass
class RebalanceWatch:
    """Whether the work consumer is between leaving its assignment and getting a new one."""

    stall_after: float
    since: float | None = None  # start of the current (re)join; None while steady
    reported: float | None = None

    @property
    def rebalancing(self) -> bool:
        """True from subscribe/revoke until the next assignment."""
        return self.since is not None

    def joining(self, now: float) -> None:
        """The member (re)joins: subscribed, or its partitions were revoked or lost."""
        if self.since is None:
            self.since = now

    def settled(self) -> None:
        """The member got its assignment, or left the group."""
        self.since = None
        self.reported = None

    def overdue(self, now: float) -> float | None:
        """Seconds spent rebalancing, when past `stall_after` (again every `stall_after`)."""
        if self.since is None or now - self.since < self.stall_after:
            return None
        if self.reported is not None and now - self.reported < self.stall_after:
            return None
        self.reported = now
        return now - self.since
