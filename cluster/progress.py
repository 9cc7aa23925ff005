"""Progress of a running job, shown with rich on stderr: phase, shards done / total,
items per second and ETA."""

from __future__ import annotations

import datetime
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


def format_rate(speed: float, unit: str) -> str:
    """'2,315 patterns/s'; below 10 per second with significant digits ('0.21 maps/s'), per minute below 1/min."""
    if speed >= 10:
        return f"{speed:,.0f} {unit}/s"
    if speed * 60 >= 1:
        return f"{speed:.2g} {unit}/s"
    return f"{speed * 60:.2g} {unit}/min"


class RateColumn(ProgressColumn):
    """Work items per second (e.g. patterns/s), from rich's speed estimate."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "items")
        return Text("—" if speed is None else format_rate(speed, unit), style="progress.data.speed")


class JobProgress:
    """One bar per phase. ``advance`` is called once per finished shard.

    When stderr is not a terminal (a log file, ``ray job submit``), a plain status line is
    printed every ``log_every`` seconds instead of redrawing a bar.
    """

    def __init__(self, console: Console | None = None, enabled: bool = True, log_every: float = 30.0):
        self.console = console or Console(stderr=True)
        self._plain = enabled and not self.console.is_terminal
        self._log_every = log_every
        self._last_log = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TextColumn("{task.fields[shards_done]}/{task.fields[shards_total]} shards"),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(compact=True),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not enabled or self._plain,
            speed_estimate_period=120,
        )
        self._task = None

    def __enter__(self) -> "JobProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def start_phase(self, description: str, unit: str, total_items: int, total_shards: int, done_items: int, done_shards: int) -> None:
        self._task = self._progress.add_task(
            description, total=max(total_items, 1), completed=done_items, unit=unit,
            shards_done=done_shards, shards_total=total_shards, status="",
        )
        if total_items == 0:
            self._progress.update(self._task, completed=1)

    def advance(self, items: int) -> None:
        task = self._progress.tasks[self._task]
        self._progress.update(self._task, advance=items, shards_done=task.fields["shards_done"] + 1)
        if self._plain and (time.monotonic() - self._last_log >= self._log_every or task.finished):
            self._last_log = time.monotonic()
            self.console.print(self.status_line(task), markup=False, highlight=False, soft_wrap=True)

    def item_done(self, status: str = "") -> None:
        """One work item of a running shard is done (e.g. an epoch); ``status`` says how it went."""
        self._progress.update(self._task, advance=1, status=status)

    @staticmethod
    def status_line(task) -> str:
        """'phase: 42% 120/640 shards, 2,315 patterns/s, ETA 0:31:05' for logs."""
        speed = task.finished_speed or task.speed
        rate = format_rate(speed, task.fields["unit"]) if speed else "rate —"
        eta = "—" if task.time_remaining is None else str(datetime.timedelta(seconds=round(task.time_remaining)))
        return (f"{task.description}: {task.percentage:.0f}% {task.fields['shards_done']}/{task.fields['shards_total']}"
                f" shards, {rate}, ETA {eta}")

    def log(self, message: str) -> None:
        self.console.print(message)

    def warn(self, message: str) -> None:
        """One warning line in yellow; the text is printed as is (paths may hold '[')."""
        self.console.print(Text(message, style="yellow"))
