"""Many LLM calls at once, as datagen's teacher and the judge make them: a pool of workers over a queue, and the
progress line that follows them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


async def run_pool(items: Iterable[T], workers: int, handle: Callable[[T], Awaitable[None]]) -> None:
    """`handle` every item, `workers` at once. An exception in one worker ends the others (what they finished
    stays done) and is raised."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await handle(queue.get_nowait())

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def progress_line(label: str, fields: str, total: int, fields_of: Callable[[int, float], dict[str, Any]], *,
                  show: bool = True, console=None) -> Iterator[Callable[[], None]]:
    """A rich progress line for `total` items: `label`, the bar, done/total, `fields` (a format of the task's
    fields, e.g. "{task.fields[errors]} errors") and the time left. Yields `tick`: one item more, and the fields
    anew from `fields_of(done, seconds)`. With `show` false nothing is drawn and `tick` does nothing."""
    if not show:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    started = time.monotonic()
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(fields), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=total, **fields_of(0, 1e-6))

        def tick() -> None:
            done = bar.tasks[0].completed + 1
            bar.update(task, advance=1, **fields_of(done, max(time.monotonic() - started, 1e-6)))

        yield tick
