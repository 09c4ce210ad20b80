"""Live progress of a collect run (rich): checkpoints done / total with ETA, the passes of the
current checkpoint, tokens/s; with --precision, the ablations still active and the tokens saved.
Quiet when there is no console; static when it is not a terminal."""
from __future__ import annotations

import time

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class SweepProgress:
    def __init__(self, console, n_checkpoints: int):
        self.console = console
        self.progress = None
        if console is not None:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=console, disable=not console.is_terminal)
            self.checkpoints = self.progress.add_task("checkpoints", total=n_checkpoints, rate="")
            self.passes = None
        self._tokens = 0
        self._t0 = time.perf_counter()

    def __enter__(self) -> "SweepProgress":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def start_checkpoint(self, revision: str, n_passes: int) -> None:
        self._tokens, self._t0, self._note = 0, time.perf_counter(), ""
        if self.progress is not None:
            if self.passes is not None:
                self.progress.remove_task(self.passes)
            self.passes = self.progress.add_task(f"  {revision} passes", total=n_passes, rate="")

    def advance(self, n_tokens: int) -> None:
        self._tokens += n_tokens
        if self.progress is not None:
            rate = self._tokens / max(time.perf_counter() - self._t0, 1e-9)
            self.progress.update(self.passes, advance=1, rate=f"{rate:,.0f} tok/s{self._note}")

    def adaptive(self, active: int, total: int, tokens_saved: int, passes_left: int) -> None:
        """After a batch of an adaptive sweep: the ablations still running, the ablated-pass
        tokens not evaluated so far, and the passes left (the bar's total shrinks)."""
        self._note = f", {active}/{total} ablations active, {tokens_saved:,} tokens saved"
        if self.progress is not None and self.passes is not None:
            done = self.progress.tasks[self.passes].completed
            self.progress.update(self.passes, total=done + passes_left)

    def finish_checkpoint(self, message: str, timed: bool = True) -> None:
        if self.progress is None:
            return
        seconds = f" ({time.perf_counter() - self._t0:.1f}s)" if timed else ""
        self.progress.console.print(message + seconds, highlight=False)
        self.progress.update(self.checkpoints, advance=1)
