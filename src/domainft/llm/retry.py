"""How domainft presses a teacher or a judge: backoff with jitter (or the server's Retry-After), an even rate
limit, and the rule for when a server that keeps refusing connections counts as gone. Datagen and the judge
share these, so one policy covers every LLM call."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ..errors import TeacherError
from .providers import Transient
from .replies import BadReply

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
# A server that refuses every connection for this long, with no reply of any kind in between, is gone: the run
# stops (what is done is kept). Anything shorter, and any reset or error reply, is a fault of one request.
UNREACHABLE_S = 60.0


def backoff(initial_s: float = BACKOFF_INITIAL_S, max_s: float = BACKOFF_MAX_S) -> Callable:
    """A tenacity `wait`: the server's Retry-After when it sent one, else exponential with jitter."""
    exponential = wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s)

    def wait(state) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return min(exc.retry_after, max_s)
        return exponential(state)

    return wait


def attempts(max_retries: int, wait: Callable, before_sleep: Callable) -> AsyncRetrying:
    """The tries of one call: again on a transient fault or a bad reply, `wait` apart, at most `max_retries` more
    times; then the last fault is raised."""
    return AsyncRetrying(stop=stop_after_attempt(max_retries + 1), wait=wait, reraise=True,
                         retry=retry_if_exception_type((Transient, BadReply)), before_sleep=before_sleep)


class RateLimiter:
    """At most `rate` call starts per second, spread evenly (no bursts)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            wait = self.next - now
            self.next = max(now, self.next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


class Reachability:
    """Raises TeacherError only when every connection has been refused for `unreachable_s`: a reset or an error
    reply shows the server is there, and a timeout says nothing either way."""

    def __init__(self, unreachable_s: float, what: str, where: str):
        self.unreachable_s, self.what, self.where = unreachable_s, what, where
        self.refused_since: float | None = None  # first refused connection since the server last answered

    def answered(self) -> None:
        self.refused_since = None

    def fault(self, kind: str, target: str) -> None:
        if kind == "timeout":
            return
        if kind != "refused":
            self.refused_since = None
            return
        now = time.monotonic()
        self.refused_since = self.refused_since or now
        if now - self.refused_since >= self.unreachable_s:
            raise TeacherError(f"lost the {self.what} at {target}: every connection refused for "
                               f"{self.unreachable_s:.0f} s; what was done is kept, rerun to continue", where=self.where)

    @contextmanager
    def watching(self, target: str, errors: Counter, bad_replies: Counter) -> Iterator[None]:
        """Around one call and the parsing of its reply: count a transient fault in `errors` and a reply that could
        not be used in `bad_replies` (as reply_<reason>), note whether the server answered, re-raise for a retry."""
        try:
            yield
        except Transient as exc:
            errors[exc.kind] += 1
            self.fault(exc.kind, target)
            raise
        except BadReply as exc:
            self.answered()
            bad_replies[f"reply_{exc.reason}"] += 1
            raise
        self.answered()
