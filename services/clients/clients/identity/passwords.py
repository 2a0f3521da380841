"""Password hashing (argon2id) and the password policy.

Hashing costs ~20 ms of CPU by design, so it runs in a thread: the event
loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 10
MAX_LENGTH = 128

# OWASP's argon2id minimum: 19 MiB, 2 iterations, 1 lane.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when no account matches, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password-just-for-timing")
_TRAILING_NOISE = re.compile(r"[\d\W_]+$")


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problem(password: str, *, email: str = "", name: str = "") -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    lowered = password.lower()
    stem = _TRAILING_NOISE.sub("", lowered)
    common = _common_passwords()
    if lowered in common or (len(stem) >= 4 and stem in common):
        return "is too common; choose something harder to guess"
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 4 and local_part in lowered:
        return "must not contain your email address"
    if name and lowered.replace(" ", "") == name.lower().replace(" ", ""):
        return "must not be your name"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        await asyncio.to_thread(_verify, _DUMMY_HASH, password)
        return False
    return await asyncio.to_thread(_verify, password_hash, password)
