"""The training progress bar: rich, fed with the engine's output lines (steps done of total, the last loss), shared
by a local launch and a Slurm job's log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .base import Engine, Progress


class StepCounter:
    """Which step updates are training's: the engine may name the total first ("Total optimization steps"), else
    the first bar is the training bar; a bar with another total is an evaluation (eval loss mid-run, the final
    evaluation) and leaves the count where training had it."""

    def __init__(self) -> None:
        self.total: int | None = None

    def feed(self, progress: Progress) -> tuple[int, int | None] | None:
        """(completed, total) to show, or None when this update is not training's."""
        if progress.step is None:
            if progress.total is not None and self.total is None:
                self.total = progress.total
                return 0, self.total
            return None
        if self.total is None:
            self.total = progress.total
        return (progress.step, progress.total) if progress.total == self.total else None


class ProgressBar:
    """A rich bar fed with the engine's output lines: steps done of total, the last loss."""

    def __init__(self, bar, task, engine: Engine):
        self._bar, self._task, self._engine = bar, task, engine
        self._steps = StepCounter()

    def line(self, line: str) -> None:
        progress = self._engine.parse_progress(line)
        if progress is None:
            return
        if progress.loss is not None:
            self._bar.update(self._task, loss=f"loss {progress.loss:.4f}")
        if (shown := self._steps.feed(progress)) is not None:
            done, total = shown
            steps = f"{done}/{total} steps" if total is not None else f"{done} steps"
            self._bar.update(self._task, completed=done, total=total, steps=steps)

    def describe(self, text: str) -> None:
        self._bar.update(self._task, description=text)


@contextmanager
def progress_bar(engine: Engine, label: str) -> Iterator[ProgressBar]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[steps]}"),
        TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
    ) as bar:
        yield ProgressBar(bar, bar.add_task(f"{engine.name} {label}", total=None, loss="", steps=""),
                          engine)
