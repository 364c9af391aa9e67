"""Watches, events and delivery attempts in Redis.

A watch is a hash ``{v: version, d: msgpack(Watch), s: state, p: polls, e: poll errors,
m: last Monite status}``. Every change of ``d`` is a compare-and-set on ``v`` in one Lua script, so
two workers can never both move a watch forward: the loser re-reads and re-decides. A poll that
finds the task still processing only bumps ``p``/``e``/``m`` and re-schedules, for a whole batch in
one script: that is the hot path, and it needs no compare-and-set because the round holds the
watch's lease.

Polling state lives in two sorted sets per group: ``due`` scored by the next poll time, ``early``
by the earliest time a poll is still worth it (a request with room is filled up from there). Poll
rounds claim watches with a lease (both scores move to now + lease), so a watch is never polled
twice at once and a crashed round's watches come back when the lease runs out.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final, Literal, cast

import msgspec
from redis.asyncio import Redis

from service.domain.schedule import due_ms_of, priority_score
from service.domain.watch import (
    TERMINAL_STATES,
    Transition,
    Watch,
    WatchState,
    delivery_step_at,
)
from service.keys import Keys

_CAS_RETRIES: Final = 20
# How long one reconcile run may sweep expired watches: at ~1,000 finishes/s sustained, the sweep
# must remove as many per second (bench/RESULTS.md measures what one run removes).
SWEEP_BUDGET_S: Final = 2.0
# The value of an Idempotency-Key held by a request that acts before it registers (it creates the
# Monite task first); it becomes the watch id once the watch is stored.
IDEMPOTENCY_PENDING: Final = "pending"

_encode = msgspec.msgpack.Encoder().encode
_watch_decoder = msgspec.msgpack.Decoder(Watch)
_transition_decoder = msgspec.msgpack.Decoder(Transition)

# Registration (KEYS: watch, registration, idempotency key or the registration again, client
# index, task set, due set, groups, transitions, stats, early set). ARGV[6]: '0' no
# Idempotency-Key, '1' one, '2' one this request holds (pending, ARGV[9]). Answers {1, id} when
# created, {0, id} with the earlier watch, {2, ''} while another request holds the key.
_CREATE = """
if ARGV[6] ~= '0' then
  local existing = redis.call('GET', KEYS[3])
  if existing == ARGV[9] then
    if ARGV[6] == '1' then return {2, ''} end
  elseif existing then return {0, existing} end
end
local dup = redis.call('GET', KEYS[2])
if dup then
  if ARGV[6] ~= '0' then redis.call('SET', KEYS[3], dup, 'EX', ARGV[7]) end
  return {0, dup}
end
redis.call('HSET', KEYS[1], 'v', '0', 'd', ARGV[2], 's', 'polling', 'p', 0, 'e', 0)
redis.call('RPUSH', KEYS[8], ARGV[8])
redis.call('SET', KEYS[2], ARGV[1])
if ARGV[6] ~= '0' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[7]) end
redis.call('ZADD', KEYS[4], 0, ARGV[3])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[10], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[7], ARGV[5])
redis.call('HINCRBY', KEYS[9], 'current:polling', 1)
redis.call('HINCRBY', KEYS[9], 'entered:polling', 1)
return {1, ARGV[1]}
"""

# Idempotency-Key of a request that acts before registering (KEYS[1]; ARGV[1]: the pending value,
# ARGV[2]: seconds to hold it): {1, ''} once held, else {0, what it holds}.
_CLAIM_IDEMPOTENCY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return {1, ''} end
return {0, redis.call('GET', KEYS[1]) or ''}
"""

# Hold an Idempotency-Key (KEYS[1]) that still names the expired watch ARGV[1]: 1 if taken.
_TAKE_OVER_IDEMPOTENCY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

# Let go of a held Idempotency-Key (KEYS[1]) only while it still holds the pending value.
_RELEASE_IDEMPOTENCY = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# The compare-and-set of a watch, and everything that must change with it, in one script.
# KEYS: 1 watch, 2 transitions, 3 due set, 4 early set, 5 attempts, 6 event, 7 stats,
#       8 delivery index; on a state change (only then) also 9 registration, 10 the task's watch
#       set, 11 expiring set.
# ARGV: 1 expected version, 2 record, 3 new version, 4 transition ('' = none), 5 watch id,
#       6 new state, 7 delivery score ('' = not delivering), 8 polls, 9 poll errors, 10 last Monite
#       status ('' = unchanged), 11 event record ('' = none), 12 attempt ('' = none); on a state
#       change 13 old state, 14 retention s ('0' = keep: unfinished again), 15 now ms,
#       16 expiring entry of the new state, 17 expiring entry of the old state.
# An attempt is appended whether or not the change is made (it happened), but only while the
# watch exists, and with the watch's own expiry: a log never outlives its watch.
# The next step is written from the new state alone: a watch that is not `polling` leaves the due
# sets, one that is `delivering` is (re)scored in the delivery index and any other leaves it. So
# no write can leave an unfinished watch without a next step, nor a finished one with one.
_CAS = """
local id = ARGV[5]
if ARGV[12] ~= '' then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl ~= -2 then
    redis.call('RPUSH', KEYS[5], ARGV[12])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[5], ttl) end
  end
end
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
if ARGV[11] ~= '' then redis.call('SET', KEYS[6], ARGV[11]) end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'd', ARGV[2], 's', ARGV[6])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'p', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'e', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'm', ARGV[10]) end
if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[4]) end
if ARGV[6] ~= 'polling' then
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
end
if ARGV[7] ~= '' then redis.call('ZADD', KEYS[8], ARGV[7], id)
else redis.call('ZREM', KEYS[8], id) end
if #KEYS == 8 then return 1 end
redis.call('HINCRBY', KEYS[7], 'current:' .. ARGV[13], -1)
redis.call('HINCRBY', KEYS[7], 'current:' .. ARGV[6], 1)
redis.call('HINCRBY', KEYS[7], 'entered:' .. ARGV[6], 1)
local owned = {KEYS[1], KEYS[2], KEYS[5], KEYS[6]}
local registered = redis.call('GET', KEYS[9]) == id
if ARGV[14] == '0' then
  for _, key in ipairs(owned) do redis.call('PERSIST', key) end
  if registered then redis.call('PERSIST', KEYS[9]) end
  redis.call('ZREM', KEYS[11], ARGV[17])
  return 1
end
for _, key in ipairs(owned) do redis.call('EXPIRE', key, ARGV[14]) end
if registered then
  -- A cancelled registration is forgotten at once: the same task + callback may register anew.
  if ARGV[6] == 'cancelled' then redis.call('DEL', KEYS[9])
  else redis.call('EXPIRE', KEYS[9], ARGV[14]) end
end
redis.call('SREM', KEYS[10], id)
redis.call('ZADD', KEYS[11], tonumber(ARGV[15]) + tonumber(ARGV[14]) * 1000, ARGV[16])
return 1
"""

# Sweeps up to ARGV[2] expiring entries due by ARGV[1] (KEYS: expiring set, stats): an entry
# is "watch key\nlisting index\nlisting member\nstate". Each entry is taken out by one sweep
# only (ZREM answers 1 once), so concurrent sweeps never count a watch twice. Answers {entries
# looked at, watches swept}.
_SWEEP = r"""
local entries = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
local swept = 0
for _, entry in ipairs(entries) do
  local watch, index, member, state = string.match(entry, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n?(.*)$')
  local ttl = redis.call('PTTL', watch)
  if ttl >= 0 then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + ttl, entry)
  elseif redis.call('ZREM', KEYS[1], entry) == 1 and ttl == -2 then
    redis.call('ZREM', index, member)
    if state ~= '' then redis.call('HINCRBY', KEYS[2], 'current:' .. state, -1) end
    swept = swept + 1
  end
end
return {#entries, swept}
"""

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

# Appends a delivery attempt (ARGV[1]) to the log (KEYS[2]) of a watch (KEYS[1]) that exists,
# with the watch's expiry: an attempt settled after a cancel must not outlive the watch.
_APPEND_ATTEMPT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_ms(at: datetime) -> int:
    """Milliseconds since the epoch."""
    return int(at.timestamp() * 1000)


class EventRecord(msgspec.Struct, frozen=True):
    """An event as stored: its exact body bytes, as signed and delivered."""

    id: str
    watch_id: str
    type: str
    body: bytes
    created_at: datetime


class LoggedAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery attempt of an event, as the attempt log keeps it."""

    event_id: str
    series: int
    attempt: int
    at: datetime
    status_code: int | None
    latency_ms: float
    outcome: str
    error: str | None = None
    response_excerpt: str | None = None
    next_attempt_at: datetime | None = None


_event_decoder = msgspec.msgpack.Decoder(EventRecord)
_attempt_decoder = msgspec.msgpack.Decoder(LoggedAttempt)


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


class WatchPage(msgspec.Struct, frozen=True):
    """One page of a client's watches, newest first, and the cursor of the next page."""

    items: list[Watch]
    next_cursor: str | None


class CreateResult(msgspec.Struct, frozen=True):
    """The watch a registration ended with; ``created`` is False when an existing one was found."""

    watch: Watch
    created: bool


class Store:
    """Watches, events and attempts of one key prefix."""

    def __init__(self, redis: Redis, keys: Keys, retention_s: int = 30 * 86400) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_s = retention_s
        self._create = redis.register_script(_CREATE)
        self._claim_idempotency = redis.register_script(_CLAIM_IDEMPOTENCY)
        self._release_idempotency = redis.register_script(_RELEASE_IDEMPOTENCY)
        self._take_over_idempotency = redis.register_script(_TAKE_OVER_IDEMPOTENCY)
        self._cas = redis.register_script(_CAS)
        self._sweep = redis.register_script(_SWEEP)
        self._drop_group = redis.register_script(_DROP_GROUP)
        self._append_attempt = redis.register_script(_APPEND_ATTEMPT)
        self._claim = redis.register_script(_CLAIM)
        self._record_polls = redis.register_script(_RECORD_POLLS)
        self._round_lock = redis.register_script(_ROUND_LOCK)
        self._push = redis.register_script(_PUSH)
        self._earliest = redis.register_script(_EARLIEST)

    # -- watches -----------------------------------------------------------------------------
    async def create_watch(
        self,
        watch: Watch,
        *,
        group: str,
        idempotency_key: str | None,
        first_poll_at_ms: int,
        idempotency_ttl_s: int = 86400,
        idempotency_claimed: bool = False,
    ) -> CreateResult:
        """Store a new watch and make it due, unless the same registration already exists.

        Raises ``IdempotencyInProgress`` while another request holds ``idempotency_key``
        (``idempotency_claimed``: this request holds it, see ``claim_idempotency``).
        """
        k = self.keys
        dedupe_key = self._registration(watch)
        transition = Transition(at=watch.created_at, to=watch.state, reason="registered")
        created, watch_id = await self._create(
            keys=[
                k.watch(watch.id),
                dedupe_key,
                idempotency_key or dedupe_key,
                k.client_watches(watch.client),
                k.task_watches(watch.task_id),
                k.due(group),
                k.groups(),
                k.watch_transitions(watch.id),
                k.stats(),
                k.early(group),
            ],
            args=[
                watch.id,
                _encode(watch),
                index_member(watch),
                first_poll_at_ms,
                group,
                "0" if not idempotency_key else "2" if idempotency_claimed else "1",
                idempotency_ttl_s,
                _encode(transition),
                IDEMPOTENCY_PENDING,
            ],
        )
        if created == _IN_PROGRESS:
            raise IdempotencyInProgress(idempotency_key)
        if created:
            return CreateResult(watch=watch, created=True)
        existing = await self.get(watch_id.decode())
        if existing is None:  # the earlier watch expired after its retention period
            await self.redis.delete(dedupe_key, *([idempotency_key] if idempotency_key else []))
            return await self.create_watch(
                watch,
                group=group,
                idempotency_key=idempotency_key,
                first_poll_at_ms=first_poll_at_ms,
                idempotency_ttl_s=idempotency_ttl_s,
                idempotency_claimed=idempotency_claimed,
            )
        return CreateResult(watch=existing, created=False)

    async def claim_idempotency(self, key: str, hold_s: int) -> str | None:
        """Hold an Idempotency-Key for ``hold_s`` while a request acts before registering.

        Returns None once this request holds it, or the id of the watch an earlier request made
        with it; raises ``IdempotencyInProgress`` while another request holds it.
        """
        held, value = await self._claim_idempotency(keys=[key], args=[IDEMPOTENCY_PENDING, hold_s])
        if held:
            return None
        if value == IDEMPOTENCY_PENDING.encode():
            raise IdempotencyInProgress(key)
        watch_id: str = value.decode()
        if await self.get(watch_id) is not None:
            return watch_id
        # The earlier watch expired after its retention: take the key over, unless a concurrent
        # request has just done so.
        args: list[str | int] = [watch_id, IDEMPOTENCY_PENDING, hold_s]
        if await self._take_over_idempotency(keys=[key], args=args):
            return None
        raise IdempotencyInProgress(key)

    async def release_idempotency(self, key: str) -> None:
        """Let go of a held Idempotency-Key whose request made nothing (so a retry may act)."""
        await self._release_idempotency(keys=[key], args=[IDEMPOTENCY_PENDING])

    async def get(self, watch_id: str) -> Watch | None:
        """The watch, or None when unknown."""
        fields = await self.redis.hmget(self.keys.watch(watch_id), _FIELDS)  # type: ignore[misc]
        return _watch_from(fields)

    async def get_many(self, watch_ids: Sequence[str]) -> list[Watch | None]:
        """Several watches in one round trip, in the order asked."""
        if not watch_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for wid in watch_ids:
                pipe.hmget(self.keys.watch(wid), _FIELDS)
            rows = await pipe.execute()
        return [_watch_from(fields) for fields in rows]

    async def update(
        self,
        watch_id: str,
        mutate: Callable[[Watch], Watch | None],
        *,
        reason: str | None = None,
        current: Watch | None = None,
        event: EventRecord | None = None,
        attempt: LoggedAttempt | None = None,
    ) -> Watch | None:
        """Apply ``mutate`` to the current watch with compare-and-set, retrying on conflict.

        ``mutate`` gets a copy and returns the new watch, or None to leave it unchanged (then
        ``update`` returns None). A state change is recorded as a transition; the watch's next
        step follows its new state in the same script (``_CAS``).

        The hot paths save round trips: ``current`` is a copy the caller has just read (a stale
        one only costs a retry), ``event`` is stored together with the change (and only if it is
        made), and ``attempt`` is appended to the attempt log whether or not the change is made.
        """
        for _ in range(_CAS_RETRIES):
            if current is None:
                current = await self.get(watch_id)
                if current is None:
                    return None
            new = mutate(msgspec.structs.replace(current))
            if new is None:
                if attempt is not None:
                    await self.log_attempt(watch_id, attempt)
                return None
            if await self._compare_and_set(current, new, reason, event, attempt):
                return new
            current, attempt = None, None  # a failed compare-and-set has logged the attempt
        raise RuntimeError(f"watch {watch_id} kept changing under us; giving up this update")

    async def _compare_and_set(
        self,
        current: Watch,
        new: Watch,
        reason: str | None,
        event: EventRecord | None,
        attempt: LoggedAttempt | None,
    ) -> bool:
        """Write ``new`` (in place) if the stored watch is still at ``current``'s version."""
        watch_id = current.id
        new.version = current.version + 1
        new.updated_at = now_utc()
        delivery_at = delivery_step_at(new)
        group = group_of(current)
        keys = [
            self.keys.watch(watch_id),
            self.keys.watch_transitions(watch_id),
            self.keys.due(group),
            self.keys.early(group),
            self.keys.attempts(watch_id),
            self.keys.event(new.event_id or "-"),
            self.keys.stats(),
            self.keys.deliveries(),
        ]
        args: list[str | bytes | int] = [
            str(current.version),
            _encode(new),
            str(new.version),
            b"",
            watch_id,
            new.state.value,
            "" if delivery_at is None else to_ms(delivery_at),
            _changed(current.polls, new.polls),
            _changed(current.poll_errors, new.poll_errors),
            _changed(current.last_monite_status, new.last_monite_status),
            b"" if event is None else _encode(event),
            b"" if attempt is None else _encode(attempt),
        ]
        if new.state != current.state:
            args[3] = _encode(
                Transition(at=new.updated_at, to=new.state, source=current.state, reason=reason)
            )
            keys += [
                self._registration(current),
                self.keys.task_watches(current.task_id),
                self.keys.expiring(),
            ]
            retention = self.retention_s if new.state in TERMINAL_STATES else 0
            args += [
                current.state.value,
                retention,
                wall_ms(),
                self._expiring_entry(current, new.state),
                self._expiring_entry(current, current.state),
            ]
        return bool(await self._cas(keys=keys, args=args))

    def _expiring_entry(self, watch: Watch, state: WatchState) -> str:
        # What the sweep needs once the watch has expired: its key, its listing entry, and the
        # state whose count it leaves.
        index = self.keys.client_watches(watch.client)
        return f"{self.keys.watch(watch.id)}\n{index}\n{index_member(watch)}\n{state.value}"

    async def sweep_expired(
        self, *, now_ms: int, batch: int = 200, budget_s: float = SWEEP_BUDGET_S
    ) -> int:
        """Forget what outlives the watches whose records have expired; returns how many.

        Their listing entries go (listing prunes what it meets, but a client that never lists
        would keep them forever) and so does their share of ``current:<state>``, so the watch
        gauge counts watches that exist. A watch redelivered meanwhile has no expiry and is left
        (its next finish adds it again); one whose expiry moved is looked at again then. Sweeps
        ``batch`` entries per round trip until none is left or ``budget_s`` has passed.
        """
        swept = 0
        started = time.monotonic()
        keys = [self.keys.expiring(), self.keys.stats()]
        while True:
            done, count = await self._sweep(keys=keys, args=[now_ms, batch])
            swept += int(count)
            if int(done) < batch or time.monotonic() - started > budget_s:
                return swept

    async def state_counts(self) -> dict[str, int]:
        """``current:<state>`` (watches in it now) and ``entered:<state>`` (ever entered) counts."""
        raw = await self.redis.hgetall(self.keys.stats())  # type: ignore[misc]
        return {k.decode(): int(v) for k, v in raw.items()}

    async def transitions(self, watch_id: str) -> list[Transition]:
        """Every recorded state change of a watch, oldest first."""
        raws = await self.redis.lrange(self.keys.watch_transitions(watch_id), 0, -1)  # type: ignore[misc]
        return [_transition_decoder.decode(r) for r in raws]

    def _registration(self, watch: Watch) -> str:
        # The key that makes registering the same client + task + callback again idempotent.
        return self.keys.watch_dedupe(watch.client, watch.task_id, watch.callback_url)

    async def list_watches(
        self,
        client: str,
        *,
        state: WatchState | None = None,
        task_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        scan_budget: int = 1000,
    ) -> WatchPage:
        """A client's watches, newest first, optionally filtered; ``cursor`` from the last page.

        The index orders members ``<created ms>:<id>`` lexicographically, so a cursor is the last
        member seen and pages never skip or repeat a watch. At most ``scan_budget`` entries are
        read per call: a rare filter returns a short (even empty) page with a cursor instead of
        scanning everything.
        """
        index = self.keys.client_watches(client)
        upper = "+" if cursor is None else "(" + _decode_cursor(cursor)
        items: list[Watch] = []
        scanned = 0
        last: str | None = None
        while len(items) < limit and scanned < scan_budget:
            batch = min(200, scan_budget - scanned)
            members = [
                m.decode() for m in await self.redis.zrevrangebylex(index, upper, "-", 0, batch)
            ]
            watches = await self.get_many([m.partition(":")[2] for m in members])
            for member, watch in zip(members, watches, strict=True):
                scanned += 1
                last = member
                if watch is None:
                    await self.redis.zrem(index, member)
                elif (state is None or watch.state == state) and (
                    task_id is None or watch.task_id == task_id
                ):
                    items.append(watch)
                if len(items) >= limit:
                    break
            if len(members) < batch and (len(items) < limit or last == members[-1]):
                # The index is exhausted: the last member read was its oldest entry.
                return WatchPage(items=items, next_cursor=None)
            upper = "(" + (last or "")
        return WatchPage(items=items, next_cursor=None if last is None else _encode_cursor(last))

    # -- polling -----------------------------------------------------------------------------
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

    async def deliveries_due(self, *, until_ms: int, limit: int) -> list[Watch]:
        """Up to ``limit`` delivering watches whose next step was due by ``until_ms``, oldest
        first (their job may be lost: the reconciler sends them on)."""
        ids = await self.redis.zrangebyscore(
            self.keys.deliveries(), "-inf", until_ms, start=0, num=limit
        )
        watches = await self.get_many([i.decode() for i in ids])
        return [w for w in watches if w is not None]

    async def oldest_delivery_ms(self) -> int | None:
        """When the delivery step that has waited longest was due; None when none waits."""
        first = await self.redis.zrange(self.keys.deliveries(), 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def record_reconcile(
        self, reconciled: dict[str, int], overdue_ms: dict[str, int]
    ) -> None:
        """Count the steps a reconcile run sent on, and set the overdue gauges it measured."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for step, count in reconciled.items():
                if count:
                    pipe.hincrby(self.keys.stats(), f"reconciled:{step}", count)
            pipe.hset(
                self.keys.stats(),
                mapping={f"overdue_ms:{step}": ms for step, ms in overdue_ms.items()},
            )
            await pipe.execute()

    async def drop_group_if_empty(self, group: str) -> None:
        """Forget a group with nothing due (a new watch adds it again)."""
        await self._drop_group(keys=[self.keys.groups(), self.keys.due(group)], args=[group])

    async def get_event(self, event_id: str) -> EventRecord | None:
        """An event, or None when unknown."""
        raw = await self.redis.get(self.keys.event(event_id))
        return None if raw is None else _event_decoder.decode(raw)

    async def log_attempt(self, watch_id: str, attempt: LoggedAttempt) -> None:
        """Append to a watch's delivery attempt log (nothing once the watch is gone)."""
        keys = [self.keys.watch(watch_id), self.keys.attempts(watch_id)]
        await self._append_attempt(keys=keys, args=[_encode(attempt)])

    async def attempts(self, watch_id: str) -> list[LoggedAttempt]:
        """The delivery attempt log of a watch, oldest first."""
        raws = await self.redis.lrange(self.keys.attempts(watch_id), 0, -1)  # type: ignore[misc]
        return [_attempt_decoder.decode(r) for r in raws]


_FIELDS: Final = ["d", "p", "e", "m"]


def _watch_from(fields: Sequence[bytes | None]) -> Watch | None:
    """A watch from its hash fields: the record, with the poll counters kept beside it."""
    data, polls, errors, status = fields
    if data is None:
        return None
    watch = _watch_decoder.decode(data)
    if polls is not None:
        watch.polls = int(polls)
    if errors is not None:
        watch.poll_errors = int(errors)
    if status is not None:
        watch.last_monite_status = status.decode()
    return watch


def _changed(old: object, new: object) -> str:
    """The new value as a hash field when an update changed it, else '' (leave it)."""
    return "" if new == old or new is None else str(new)


UNGROUPED: Final = "-"
"""The poll group of watches without an entity (partner-level tasks)."""


def group_of(watch: Watch) -> str:
    """The poll group of a watch: watches of one entity share batched list requests."""
    return watch.entity_id or UNGROUPED


def index_member(watch: Watch) -> str:
    """A watch's entry in its client's listing index: sorts by creation time, then id."""
    return f"{to_ms(watch.created_at):015d}:{watch.id}"


def _encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None
    created, sep, _ = member.partition(":")
    if not sep or not created.isdigit():
        raise InvalidCursor(cursor)
    return member


class IdempotencyInProgress(Exception):
    """Another request holds this Idempotency-Key and has not finished yet."""


class InvalidCursor(ValueError):
    """A pagination cursor that this service did not hand out."""


# ``_CREATE``'s answer while another request holds the Idempotency-Key.
_IN_PROGRESS: Final = 2


def wall_ms() -> int:
    """Wall-clock milliseconds (due times are shared across processes, so not monotonic)."""
    return int(time.time() * 1000)
