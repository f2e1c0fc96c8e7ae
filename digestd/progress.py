"""Progress of a long command: a rich bar when stdout is a terminal, plain lines otherwise (logs,
cron mail and pipes get one line a step, never escape codes)."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator


class _Plain:
    def __init__(self, stream) -> None:
        self.stream = stream

    def say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def advance(self) -> None:
        pass


class _Bar:
    def __init__(self, bar, task) -> None:
        self.bar, self.task = bar, task

    def say(self, line: str) -> None:
        self.bar.console.print(line, markup=False, highlight=False)

    def advance(self) -> None:
        self.bar.advance(self.task)


@contextlib.contextmanager
def steps(total: int, label: str, stream=None) -> Iterator[_Plain | _Bar]:
    """Yields a reporter: ``say(line)`` prints how a step went, ``advance()`` moves the bar on."""
    stream = stream or sys.stdout
    if not (hasattr(stream, "isatty") and stream.isatty()):
        yield _Plain(stream)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=stream)) as bar:
        yield _Bar(bar, bar.add_task(label, total=total))
