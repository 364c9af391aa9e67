"""The next-step indexes in Redis: poll-due sets per group, and the delivery index.

Every unfinished watch waits in exactly one of them (``service.domain.schedule``): a ``polling``
watch in its group's ``due`` set, scored by its next poll (or the end of the lease of the round
polling it), with an ``early`` set beside it scored by the earliest time a poll is still worth it
(a request with room is filled up from there); a ``delivering`` watch in ``deliveries``, scored by
its next attempt or the end of the attempt in flight. The compare-and-set of a watch
(``service.storage.watches``) moves it between them; this module claims, leases and reads them.

Poll rounds claim watches with a lease (both scores move to now + lease), so a watch is never
polled twice at once and a crashed round's watches come back when the lease runs out. One round
polls a group at a time (a lock that lapses by itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import msgspec
from redis.asyncio import Redis

from service.clock import wall_ms
from service.domain.schedule import due_ms_of, priority_score
from service.storage.keys import Keys

# Claims watches for one poll round (KEYS: due, early): those due now, then, to fill a request
# that is being made anyway, those whose early time has come. Claimed ones move to now + lease.
# ARGV[4] = '1' tops up a request already decided on: early ones are taken even if none is due.
_CLAIM = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
if #ids == 0 and ARGV[4] ~= '1' then return ids end
if #ids < limit then
  local taken = {}
  for _, id in ipairs(ids) do taken[id] = true end
  local extra = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE', 'LIMIT', 0, 2 * limit)
  for _, id in ipairs(extra) do
    if #ids >= limit then break end
    if not taken[id] then
      ids[#ids + 1] = id
      taken[id] = true
    end
  end
end
local lease = now + tonumber(ARGV[3])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], lease, id)
  redis.call('ZADD', KEYS[2], lease, id)
end
return ids
"""

# A push. KEYS: replay marker, the task's watch ids, then per group: due, early, round lock;
# ARGV[1]: replay window (s), ARGV[2]: now as a priority score. Nothing if seen before; else the
# task's watches polling in each group become due first, and per group come back how many did and
# whether a round is polling it now.
_PUSH = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return false end
local ids = redis.call('SMEMBERS', KEYS[2])
local out = {}
for i = 3, #KEYS, 3 do
  local moved = 0
  for _, id in ipairs(ids) do
    if redis.call('ZSCORE', KEYS[i], id) then
      redis.call('ZADD', KEYS[i], 'LT', ARGV[2], id)
      redis.call('ZADD', KEYS[i + 1], 'LT', ARGV[2], id)
      moved = moved + 1
    end
  end
  out[#out + 1] = moved
  out[#out + 1] = redis.call('EXISTS', KEYS[i + 2])
end
return out
"""

# The round lock of a group (KEYS[1]) is extended (ARGV[2] = lease ms) or released (ARGV[2] = '')
# only by the round holding it (ARGV[1] = its token).
_ROUND_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# The earliest due time of a group (KEYS: due set, round lock), or nothing when none is due, or
# when ARGV[1] = '1' and a round holds the group: checked at once, since a round locks before it
# leases watches (a lease seen without the lock is a dead round's).
_EARLIEST = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return false end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return false end
return first[2]
"""

# Records polls that found their task still processing (or failed to reach Monite), for a
# batch: KEYS due, early; ARGV[1] the watch key prefix, ARGV[2] now (ms), then per watch 5 values:
# id, kind ('poll': Monite answered; 'error': it did not; 'wait': rate-limited, not a poll),
# Monite's status, next due ms, early ms. A watch no longer polling (cancelled meanwhile) is left
# alone. One whose score is no longer the round's lease (in the future) was made due meanwhile by
# a push: it keeps that score, or the push's news would wait for the next poll.
_RECORD_POLLS = """
local now = tonumber(ARGV[2])
for i = 3, #ARGV, 5 do
  local id = ARGV[i]
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 's') == 'polling' then
    if ARGV[i + 1] == 'poll' then
      redis.call('HINCRBY', key, 'p', 1)
      redis.call('HSET', key, 'e', 0, 'm', ARGV[i + 2])
    elseif ARGV[i + 1] == 'error' then
      redis.call('HINCRBY', key, 'e', 1)
    end
    local score = redis.call('ZSCORE', KEYS[1], id)
    if not score or tonumber(score) > now then
      redis.call('ZADD', KEYS[1], ARGV[i + 3], id)
      redis.call('ZADD', KEYS[2], ARGV[i + 4], id)
    end
  end
end
return 1
"""

# Forgets a poll group (KEYS: groups, the group's due set; ARGV[1]: the group) only while nothing
# is due in it: checked and done at once, or a registration joining in between would be dropped.
_DROP_GROUP = """
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], ARGV[1]) end
return 1
"""


class PollRecord(msgspec.Struct, frozen=True):
    """A poll that leaves its watch polling: what it found, and when to poll next."""

    watch_id: str
    kind: Literal["poll", "error", "wait"]
    status: str | None
    due_ms: int
    early_ms: int


class GroupHead(msgspec.Struct, frozen=True):
    """What the reconciler needs to know of a poll group."""

    group: str
    due_ms: int | None
    polled: bool


class Schedule:
    """The poll-due sets, round locks and delivery index of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._claim = redis.register_script(_CLAIM)
        self._record_polls = redis.register_script(_RECORD_POLLS)
        self._round_lock = redis.register_script(_ROUND_LOCK)
        self._push = redis.register_script(_PUSH)
        self._earliest = redis.register_script(_EARLIEST)
        self._drop_group = redis.register_script(_DROP_GROUP)

    async def claim_due(
        self, group: str, *, now_ms: int, limit: int, lease_ms: int, top_up: bool = False
    ) -> list[str]:
        """Lease up to ``limit`` watches of a group: the due ones, topped up with early ones.

        Returns nothing when none is due, as early watches only fill a request made anyway;
        unless ``top_up``, when the caller fills a request it has already decided to make.
        """
        ids = await self._claim(
            keys=[self.keys.due(group), self.keys.early(group)],
            args=[now_ms, limit, lease_ms, "1" if top_up else "0"],
        )
        return [i.decode() for i in ids]

    async def lock_round(self, group: str, token: str, lease_ms: int) -> bool:
        """Become the one round polling ``group``, for ``lease_ms`` unless extended."""
        key = self.keys.round_lock(group)
        return bool(await self.redis.set(key, token, nx=True, px=lease_ms))

    async def extend_round(self, group: str, token: str, lease_ms: int) -> bool:
        """Extend the round lock ``token`` holds; False if it lapsed (another round may poll)."""
        key = self.keys.round_lock(group)
        return bool(await self._round_lock(keys=[key], args=[token, lease_ms]))

    async def unlock_round(self, group: str, token: str) -> None:
        """Release the round lock ``token`` holds (a lapsed one is left to its new holder)."""
        await self._round_lock(keys=[self.keys.round_lock(group)], args=[token, ""])

    async def record_polls(self, group: str, polls: Sequence[PollRecord]) -> None:
        """Count polls that did not finish their watch and schedule the next ones, in one go."""
        if not polls:
            return
        args: list[str | int] = [self.keys.watch(""), wall_ms()]
        for poll in polls:
            args += [poll.watch_id, poll.kind, poll.status or "", poll.due_ms, poll.early_ms]
        await self._record_polls(keys=[self.keys.due(group), self.keys.early(group)], args=args)

    async def reschedule(self, group: str, due: dict[str, tuple[int, int]]) -> None:
        """Set (next due, early) times of watches still polling (a cancelled one stays out)."""
        if due:
            await self.redis.zadd(self.keys.due(group), {k: v[0] for k, v in due.items()}, xx=True)
            await self.redis.zadd(
                self.keys.early(group), {k: v[1] for k, v in due.items()}, xx=True
            )

    async def drop_due(self, group: str, watch_ids: Sequence[str]) -> None:
        """Take watches out of a group's polling sets (they no longer poll)."""
        if watch_ids:
            await self.redis.zrem(self.keys.due(group), *watch_ids)
            await self.redis.zrem(self.keys.early(group), *watch_ids)

    async def push_finished(
        self, event_id: str, task_id: str, groups: Sequence[str], replay_window_s: int
    ) -> dict[str, tuple[int, bool]] | None:
        """Make a finished task's polling watches due first, in one round trip (push fast path).

        None when the push ``event_id`` was seen within ``replay_window_s``; otherwise, for each of
        ``groups`` (where its watches may be), how many watches became due and whether a round is
        polling that group now.
        """
        keys = [self.keys.push_seen(event_id), self.keys.task_watches(task_id)]
        for group in groups:
            keys += [self.keys.due(group), self.keys.early(group), self.keys.round_lock(group)]
        out = await self._push(keys=keys, args=[replay_window_s, priority_score(wall_ms())])
        if out is None:
            return None
        return {group: (int(out[2 * i]), bool(out[2 * i + 1])) for i, group in enumerate(groups)}

    async def earliest_due_ms(self, group: str, *, unless_polled: bool = False) -> int | None:
        """When the next watch of a group is due, or None when none is.

        With ``unless_polled`` also None while a round is polling the group: that round schedules
        its successor, and the due times it sees include its own leases (a minute ahead).
        """
        score = await self._earliest(
            keys=[self.keys.due(group), self.keys.round_lock(group)],
            args=["1" if unless_polled else "0"],
        )
        return None if score is None else due_ms_of(float(score))

    async def due_count(self, group: str) -> int:
        """How many watches a group has waiting (polling, leased or not)."""
        return cast(int, await self.redis.zcard(self.keys.due(group)))

    async def groups(self) -> list[str]:
        """Every poll group that may have due watches."""
        members = await self.redis.smembers(self.keys.groups())  # type: ignore[misc]
        return sorted(m.decode() for m in members)

    async def next_groups(self, count: int) -> list[str]:
        """About ``count`` poll groups, going on where the last call (from any process) stopped.

        The reconciler walks the groups a page per run, so its work per run stays bounded however
        many entities there are; every group is visited within a few runs.
        """
        cursor_key = self.keys.groups_cursor()
        cursor = int(await self.redis.get(cursor_key) or 0)
        cursor, members = await self.redis.sscan(self.keys.groups(), cursor, count=count)
        await self.redis.set(cursor_key, cursor)
        return sorted({m.decode() for m in members})

    async def group_heads(self, groups: Sequence[str]) -> list[GroupHead]:
        """For each group: when its first watch is due (None: none waits) and whether a round
        holds it now; one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for group in groups:
                pipe.zrange(self.keys.due(group), 0, 0, withscores=True)
                pipe.exists(self.keys.round_lock(group))
            answers = await pipe.execute()
        return [
            GroupHead(
                group=group,
                due_ms=due_ms_of(first[0][1]) if first else None,
                polled=bool(locked),
            )
            for group, first, locked in zip(groups, answers[::2], answers[1::2], strict=True)
        ]

    async def deliveries_due(self, *, until_ms: int, limit: int) -> list[str]:
        """The ids of up to ``limit`` delivering watches whose next step was due by
        ``until_ms``, oldest first (their job may be lost: the reconciler sends them on)."""
        ids = await self.redis.zrangebyscore(
            self.keys.deliveries(), "-inf", until_ms, start=0, num=limit
        )
        return [i.decode() for i in ids]

    async def oldest_delivery_ms(self) -> int | None:
        """When the delivery step that has waited longest was due; None when none waits."""
        first = await self.redis.zrange(self.keys.deliveries(), 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def drop_group_if_empty(self, group: str) -> None:
        """Forget a group with nothing due (a new watch adds it again)."""
        await self._drop_group(keys=[self.keys.groups(), self.keys.due(group)], args=[group])
