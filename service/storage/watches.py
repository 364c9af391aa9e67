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

Over 400 lines, for a reason: the two scripts that keep the next-step invariant also write what
the console reads (activity counts, search entries, troubled sets, open watches), so that the hot
path pays no extra round trip; they and the code that builds their arguments stay side by side.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

import msgspec
from redis.asyncio import Redis

from service.clock import now_utc, to_ms
from service.domain.activity import callback_host, lag_bucket, minute_of
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
# index, task set, due set, groups, transitions, stats, early set, the task's search entry, open
# watches). ARGV[6]: '0' no Idempotency-Key, '1' one, '2' one this request holds (pending,
# ARGV[9], or naming the Monite task it made); ARGV[10]: search entries' TTL s, ARGV[11]: created
# ms. Answers {1, id} when created, {0, id} with the watch of the same registration, {3, id}
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
redis.call('SADD', KEYS[11], ARGV[1])
redis.call('EXPIRE', KEYS[11], ARGV[10])
redis.call('ZADD', KEYS[12], ARGV[11], ARGV[1])
return {1, ARGV[1]}
"""

# The compare-and-set of a watch, and everything that must change with it, in one script.
# KEYS: 1 watch, 2 transitions, 3 due set, 4 early set, 5 attempts, 6 event, 7 stats,
#       8 delivery index, 9 this minute's activity, 10 receivers, 11 the receivers' activity,
#       12 the host's troubled set, 13 the client's troubled set, 14 the document number's search
#       entry; on a state change (only then) also 15 registration, 16 the task's watch set,
#       17 expiring set, 18 open watches.
# ARGV: 1 expected version, 2 record, 3 new version, 4 transition ('' = none), 5 watch id,
#       6 new state, 7 delivery score ('' = not delivering), 8 polls, 9 poll errors, 10 last Monite
#       status ('' = unchanged), 11 event record ('' = none), 12 attempt ('' = none), 13 now ms,
#       14 callback host, 15 attempt outcome, 16 attempt latency ms, 17 lag bucket ('' = none),
#       18 index TTL s, 19 '1' to file the watch under its document number; on a state change
#       20 old state, 21 retention s ('0' = keep: unfinished again), 22 expiring entry of the new
#       state, 23 expiring entry of the old state, 24 created ms.
# An attempt is appended (and counted) whether or not the change is made (it happened), but only
# while the watch exists, and with the watch's own expiry: a log never outlives its watch.
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
    local ok = ARGV[15] == 'delivered'
    redis.call('HINCRBY', KEYS[9], 'attempt:' .. ARGV[15], 1)
    redis.call('EXPIRE', KEYS[9], 7200)
    redis.call('ZADD', KEYS[10], ARGV[13], ARGV[14])
    redis.call('ZREMRANGEBYRANK', KEYS[10], 0, -1001)
    redis.call('HINCRBY', KEYS[11], ARGV[14] .. (ok and '\tok' or '\tfailed'), 1)
    redis.call('HINCRBY', KEYS[11], ARGV[14] .. '\tms', ARGV[16])
    redis.call('EXPIRE', KEYS[11], 7200)
    if not ok then
      for _, key in ipairs({KEYS[12], KEYS[13]}) do
        redis.call('ZADD', key, ARGV[13], id)
        redis.call('EXPIRE', key, ARGV[18])
      end
    end
  end
end
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
if ARGV[11] ~= '' then redis.call('SET', KEYS[6], ARGV[11]) end
if ARGV[19] == '1' then
  redis.call('SADD', KEYS[14], id)
  redis.call('EXPIRE', KEYS[14], ARGV[18])
end
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
if #KEYS == 14 then return 1 end
redis.call('HINCRBY', KEYS[7], 'current:' .. ARGV[20], -1)
redis.call('HINCRBY', KEYS[7], 'current:' .. ARGV[6], 1)
redis.call('HINCRBY', KEYS[7], 'entered:' .. ARGV[6], 1)
redis.call('HINCRBY', KEYS[9], 'entered:' .. ARGV[6], 1)
if ARGV[17] ~= '' then redis.call('HINCRBY', KEYS[9], 'lag:' .. ARGV[17], 1) end
redis.call('EXPIRE', KEYS[9], 7200)
local owned = {KEYS[1], KEYS[2], KEYS[5], KEYS[6]}
local registered = redis.call('GET', KEYS[15]) == id
if ARGV[21] == '0' then
  for _, key in ipairs(owned) do redis.call('PERSIST', key) end
  if registered then redis.call('PERSIST', KEYS[15]) end
  redis.call('ZREM', KEYS[17], ARGV[23])
  redis.call('ZADD', KEYS[18], ARGV[24], id)
  return 1
end
for _, key in ipairs(owned) do redis.call('EXPIRE', key, ARGV[21]) end
if registered then
  -- A cancelled registration is forgotten at once: the same task + callback may register anew.
  if ARGV[6] == 'cancelled' then redis.call('DEL', KEYS[15])
  else redis.call('EXPIRE', KEYS[15], ARGV[21]) end
end
redis.call('SREM', KEYS[16], id)
redis.call('ZREM', KEYS[18], id)
redis.call('ZADD', KEYS[17], tonumber(ARGV[13]) + tonumber(ARGV[21]) * 1000, ARGV[22])
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
        # Search entries and troubled sets name watches that live up to their deadline plus
        # their deliveries plus the retention: they are kept that long past their last write.
        self.index_ttl_s = retention_s + INDEX_SLACK_S
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
                k.lookup("task", watch.task_id),
                k.open_watches(),
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
                self.index_ttl_s,
                to_ms(watch.created_at),
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
        document_number: str | None = None,
        by: str | None = None,
    ) -> Watch | None:
        """Apply ``mutate`` to the current watch with compare-and-set, retrying on conflict.

        ``mutate`` gets a copy and returns the new watch, or None to leave it unchanged (then
        ``update`` returns None). A state change is recorded as a transition; the watch's next
        step follows its new state in the same script (``_CAS``).

        The hot paths save round trips: ``current`` is a copy the caller has just read (a stale
        one only costs a retry), ``event`` is stored together with the change (and only if it is
        made), and ``attempt`` is appended to the attempt log whether or not the change is made.
        ``document_number`` files the watch for the console's search with ``event``; ``by`` names
        the person who asked for a state change (recorded in the transition).
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
            change = _Change(reason, event, attempt, document_number, by)
            if await self._compare_and_set(current, new, change):
                return new
            current, attempt = None, None  # a failed compare-and-set has logged the attempt
        raise RuntimeError(f"watch {watch_id} kept changing under us; giving up this update")

    async def _compare_and_set(self, current: Watch, new: Watch, change: _Change) -> bool:
        """Write ``new`` (in place) if the stored watch is still at ``current``'s version."""
        watch_id = current.id
        new.version = current.version + 1
        new.updated_at = now_utc()
        now_ms = to_ms(new.updated_at)
        delivery_at = delivery_step_at(new)
        group = group_of(current.entity_id)
        host = callback_host(current.callback_url)
        event, attempt = change.event, change.attempt
        number = normalized_number(change.document_number or "")
        keys = [
            self.keys.watch(watch_id),
            self.keys.watch_transitions(watch_id),
            self.keys.due(group),
            self.keys.early(group),
            self.keys.attempts(watch_id),
            self.keys.event(new.event_id or "-"),
            self.keys.stats(),
            self.keys.deliveries(),
            self.keys.activity(minute_of(now_ms)),
            self.keys.receivers(),
            self.keys.receiver_activity(now_ms // RECEIVER_SLOT_MS),
            self.keys.troubled("host", host),
            self.keys.troubled("client", current.client),
            self.keys.lookup("number", number),
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
            now_ms,
            host,
            "" if attempt is None else attempt.outcome,
            0 if attempt is None else round(attempt.latency_ms),
            _lag_bucket(new, attempt),
            self.index_ttl_s,
            "1" if number and event is not None else "",
        ]
        if new.state != current.state:
            args[3] = _encode(
                Transition(
                    at=new.updated_at,
                    to=new.state,
                    source=current.state,
                    reason=change.reason,
                    by=change.by,
                )
            )
            keys += [
                self._registration(current),
                self.keys.task_watches(current.task_id),
                self.keys.expiring(),
                self.keys.open_watches(),
            ]
            retention = self.retention_s if new.state in TERMINAL_STATES else 0
            args += [
                current.state.value,
                retention,
                self._expiring_entry(current, new.state),
                self._expiring_entry(current, current.state),
                to_ms(current.created_at),
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
        matches: Callable[[Watch], bool] | None = None,
        created_before_ms: int | None = None,
    ) -> WatchPage:
        """A client's watches, newest first, optionally filtered; ``cursor`` from the last page.

        The index orders members ``<created ms>:<id>`` lexicographically, so a cursor is the last
        member seen and pages never skip or repeat a watch. At most ``scan_budget`` entries are
        read per call: a rare filter returns a short (even empty) page with a cursor instead of
        scanning everything. ``matches`` filters further; ``created_before_ms`` starts the first
        page there.
        """
        index = self.keys.client_watches(client)
        if cursor is not None:
            upper = "(" + cursor_member(cursor)
        elif created_before_ms is not None:
            upper = f"({max(0, created_before_ms):015d}"
        else:
            upper = "+"
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
                elif (
                    (state is None or watch.state == state)
                    and (task_id is None or watch.task_id == task_id)
                    and (matches is None or matches(watch))
                ):
                    items.append(watch)
                if len(items) >= limit:
                    break
            if len(members) < batch and (len(items) < limit or last == members[-1]):
                # The index is exhausted: the last member read was its oldest entry.
                return WatchPage(items=items, next_cursor=None)
            upper = "(" + (last or "")
        return WatchPage(items=items, next_cursor=None if last is None else page_cursor(last))


_FIELDS: Final = ["d", "p", "e", "m"]
# How long search entries and troubled sets outlive their last write beyond the retention: the
# longest deadline (7 days) and a day of deliveries.
INDEX_SLACK_S: Final = 8 * 86400
# The receivers' activity is counted in ten-minute slots.
RECEIVER_SLOT_MS: Final = 600_000


class _Change(NamedTuple):
    """What else an update writes with the watch (see ``WatchRecords.update``)."""

    reason: str | None
    event: EventRecord | None
    attempt: LoggedAttempt | None
    document_number: str | None
    by: str | None


def _lag_bucket(new: Watch, attempt: LoggedAttempt | None) -> str:
    """The lag histogram bucket an acknowledgement counts in: from OCR finished to the first
    series' acknowledgement (a redelivery's lag would measure the receiver's outage)."""
    if (
        attempt is None
        or attempt.outcome != "delivered"
        or new.state == WatchState.DELIVERING
        or new.delivery_series != 1
        or new.ocr_finished_at is None
    ):
        return ""
    lag_ms = (attempt.at - new.ocr_finished_at).total_seconds() * 1000 + attempt.latency_ms
    return str(lag_bucket(lag_ms))


def normalized_number(number: str) -> str:
    """A document number as the search files it: without case, spaces or punctuation."""
    return "".join(ch for ch in number.casefold() if ch.isalnum())


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


def page_cursor(member: str) -> str:
    """The cursor of the page after ``member`` (an index member, ``index_member``)."""
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def cursor_member(cursor: str) -> str:
    """The index member a cursor stands for; raises ``InvalidCursor`` for one not ours."""
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
