"""Free slots, computed (no database, no clock of its own).

The rules, in one place:

- A business's weekly hours are wall-clock windows ("09:00"–"17:00") in its IANA time
  zone. Each window of each local day becomes an absolute interval through
  ``zoneinfo``, so a day on which the clocks change has the right UTC times (a wall
  time in the hour that does not exist moves forward by the gap, as PEP 495 has it;
  the close "24:00" is the next midnight).
- Slots are laid on a grid from the start of each window with a step of duration +
  buffer (so back-to-back bookings of one offering fit exactly); a slot must end
  (without its buffer) by the window's close.
- An appointment occupies ``[starts_at, ends_at + buffer)``. A slot is free when its
  own ``[start, end + buffer)`` overlaps no confirmed appointment's, and its
  ``[start, end)`` overlaps no blocked time.
- Only slots starting after ``now`` are offered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_WINDOWS_PER_DAY = 12
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

Interval = tuple[datetime, datetime]


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; ValueError when there is none."""
    if not name or len(name) > 64 or name != name.strip() or ".." in name or name.startswith("/"):
        raise ValueError("must be an IANA time zone such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone such as Europe/Paris") from exc


def parse_clock(value: str, *, closing: bool = False) -> time | None:
    """ "HH:MM" as a time; "24:00" (closing only) is None, meaning the next midnight."""
    if closing and value == "24:00":
        return None
    found = _CLOCK.match(value)
    if found is None:
        raise ValueError('must be a time "HH:MM" (24-hour)')
    return time(int(found.group(1)), int(found.group(2)))


def _minutes(value: time | None) -> int:
    return 24 * 60 if value is None else value.hour * 60 + value.minute


def weekly_hours_problems(hours: dict[str, object]) -> list[tuple[str, str]]:
    """(field, message) for every problem in a weekly hours mapping."""
    problems: list[tuple[str, str]] = []
    for key in hours:
        if key not in DAYS:
            problems.append((f"weekly_hours.{key}", f"unknown day; use {', '.join(DAYS)}"))
    for day in DAYS:
        windows = hours.get(day, [])
        where = f"weekly_hours.{day}"
        if not isinstance(windows, list):
            problems.append((where, 'must be a list of ["HH:MM", "HH:MM"] pairs'))
            continue
        if len(windows) > MAX_WINDOWS_PER_DAY:
            problems.append((where, f"at most {MAX_WINDOWS_PER_DAY} windows a day"))
            continue
        spans: list[tuple[int, int, int]] = []
        for index, window in enumerate(windows):
            here = f"{where}.{index}"
            if (
                not isinstance(window, list | tuple)
                or len(window) != 2
                or not all(isinstance(v, str) for v in window)
            ):
                problems.append((here, 'must be a pair ["HH:MM", "HH:MM"]'))
                continue
            try:
                opens = _minutes(parse_clock(window[0]))
                closes = _minutes(parse_clock(window[1], closing=True))
            except ValueError as exc:
                problems.append((here, str(exc)))
                continue
            if closes <= opens:
                problems.append((here, "must end after it starts"))
                continue
            spans.append((opens, closes, index))
        spans.sort()
        for (_, end_a, _), (start_b, _, index_b) in pairwise(spans):
            if start_b < end_a:
                problems.append((f"{where}.{index_b}", "overlaps another window of the day"))
    return problems


def normalized_hours(hours: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
    """Every day present, windows sorted."""
    return {day: sorted([list(w) for w in hours.get(day, [])]) for day in DAYS}


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def _instant(day: date, clock: time | None, tz: ZoneInfo) -> datetime:
    """The absolute instant of a wall-clock time on a local day (None: next midnight).

    As PEP 495 has it (fold 0): a wall time in a spring-forward gap, which does not
    exist, moves forward by the gap (02:30 is 03:30); a repeated one is its first."""
    if clock is None:
        return local_midnight(day + timedelta(days=1), tz)
    return datetime.combine(day, clock, tzinfo=tz)


def opening_windows(
    hours: dict[str, list[list[str]]], tz: ZoneInfo, start: datetime, end: datetime
) -> list[Interval]:
    """The opening windows (absolute, UTC) that touch ``[start, end)``."""
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    utc = ZoneInfo("UTC")
    windows: list[Interval] = []
    day = first
    while day <= last:
        for opens, closes in hours.get(DAYS[day.weekday()], []):
            a = _instant(day, parse_clock(opens), tz).astimezone(utc)
            b = _instant(day, parse_clock(closes, closing=True), tz).astimezone(utc)
            if a < b and b > start and a < end:
                windows.append((a, b))
        day += timedelta(days=1)
    return sorted(windows)


def overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@dataclass(frozen=True)
class Busy:
    """A confirmed appointment as the slot computation sees it."""

    starts_at: datetime
    ends_at: datetime
    buffer_minutes: int = 0

    @property
    def occupied(self) -> Interval:
        return (self.starts_at, self.ends_at + timedelta(minutes=self.buffer_minutes))


def occupied(starts_at: datetime, duration_minutes: int, buffer_minutes: int) -> Interval:
    return (starts_at, starts_at + timedelta(minutes=duration_minutes + buffer_minutes))


def is_free(
    starts_at: datetime,
    *,
    duration_minutes: int,
    buffer_minutes: int,
    busy: Iterable[Busy],
    blocked: Iterable[Interval],
) -> bool:
    own = (starts_at, starts_at + timedelta(minutes=duration_minutes))
    taken = occupied(starts_at, duration_minutes, buffer_minutes)
    if any(overlaps(own, b) for b in blocked):
        return False
    return not any(overlaps(taken, b.occupied) for b in busy)


def free_slots(
    *,
    hours: dict[str, list[list[str]]],
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    duration_minutes: int,
    buffer_minutes: int,
    busy: Sequence[Busy],
    blocked: Sequence[Interval],
    now: datetime,
) -> list[Interval]:
    """Free slots starting in ``[start, end)`` and after ``now``: (starts_at, ends_at) in
    UTC, in order."""
    length = timedelta(minutes=duration_minutes)
    step = timedelta(minutes=duration_minutes + buffer_minutes)
    found: list[Interval] = []
    for opens, closes in opening_windows(hours, tz, start, end):
        slot = opens
        while slot + length <= closes:
            if (
                start <= slot < end
                and slot > now
                and is_free(
                    slot,
                    duration_minutes=duration_minutes,
                    buffer_minutes=buffer_minutes,
                    busy=busy,
                    blocked=blocked,
                )
            ):
                found.append((slot, slot + length))
            slot += step
    return sorted(set(found))


def local_label(when: datetime, tz: ZoneInfo) -> str:
    """ "Mon 29 Mar 2027, 09:00" in ``tz`` (English, 24-hour, no locale data needed)."""
    local = when.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"
