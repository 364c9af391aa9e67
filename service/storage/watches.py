"""Watch records in Redis, and the one compare-and-set that moves a watch forward.

A watch is a hash ``{v: version, d: msgpack(Watch), s: state, p: polls, e: poll errors,
m: last Monite status}``. Every change of ``d`` is a compare-and-set on ``v`` in one Lua script, so
two workers can never both move a watch forward: the loser re-reads and re-decides. The same
script writes the watch's next step (``service.storage.schedule``'s indexes) from its new state,
appends the transition, keeps the state counts and, when the watch finishes, gives everything it
owns the retention TTL: no write can leave an unfinished watch without a next step.

A poll that finds the task still processing only bumps ``p``/``e``/``m`` and re-schedules, for a
whole batch in one script (``Schedule.record_polls``): that is the hot path, and it needs no
compare-and-set because the round holds the watch's lease.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
from redis.asyncio import Redis

from service.clock import now_utc, to_ms, wall_ms
from service.domain.schedule import group_of
from service.domain.watch import (
    TERMINAL_STATES,
    Transition,
    Watch,
    WatchState,
    can_transition,
    delivery_step_at,
)
from service.storage.events import EventLog, EventRecord, LoggedAttempt
from service.storage.idempotency import IDEMPOTENCY_PENDING, IdempotencyInProgress
from service.storage.keys import Keys

_CAS_RETRIES: Final = 20

_encode = msgspec.msgpack.Encoder().encode
_watch_decoder = msgspec.msgpack.Decoder(Watch)
_transition_decoder = msgspec.msgpack.Decoder(Transition)

# Registration (KEYS: watch, registration, idempotency key or the registration again, client
# index, task set, due set, groups, transitions, stats, early set). ARGV[6]: '0' no
# Idempotency-Key, '1' one, '2' one this request holds (pending, ARGV[9], or naming the Monite task
# it made). Answers {1, id} when created, {0, id} with the watch of the same registration, {3, id}
# with the watch the Idempotency-Key named, {2, ''} while another request holds the key.
_CREATE = """
if ARGV[6] ~= '0' then
  local existing = redis.call('GET', KEYS[3])
  if existing == ARGV[9] or (existing and string.sub(existing, 1, 5) == 'task:') then
    if ARGV[6] == '1' then return {2, ''} end
  elseif existing then return {3, existing} end
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


class WatchPage(msgspec.Struct, frozen=True):
    """One page of a client's watches, newest first, and the cursor of the next page."""

    items: list[Watch]
    next_cursor: str | None


class CreateResult(msgspec.Struct, frozen=True):
    """The watch a registration ended with; ``created`` is False when an existing one was found,
    ``replayed`` True when its Idempotency-Key named it."""

    watch: Watch
    created: bool
    replayed: bool = False


class WatchRecords:
    """The watch records of one key prefix.

    Over 200 lines, for a reason: the registration and the compare-and-set are the two writes
    that keep the next-step invariant, and they are kept beside their Lua scripts."""

    def __init__(self, redis: Redis, keys: Keys, events: EventLog, retention_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.events = events
        self.retention_s = retention_s
        self._create = redis.register_script(_CREATE)
        self._cas = redis.register_script(_CAS)

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
        if created == _CREATED:
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
        return CreateResult(watch=existing, created=False, replayed=created == _REPLAYED)

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
            if new is not None and not can_transition(current.state, new.state):
                raise IllegalTransition(f"{current.state.value} -> {new.state.value} ({watch_id})")
            if new is None:
                if attempt is not None:
                    await self.events.log_attempt(watch_id, attempt)
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
        group = group_of(current.entity_id)
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


class IllegalTransition(RuntimeError):
    """A write would move a watch along an edge the watch rules do not have: a bug, refused."""


class InvalidCursor(ValueError):
    """A pagination cursor that this service did not hand out."""


# ``_CREATE``'s answers: created; another request holds the Idempotency-Key; the key named a watch.
_CREATED: Final = 1
_IN_PROGRESS: Final = 2
_REPLAYED: Final = 3
