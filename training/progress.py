"""Progress of long work for a person: a bar on a terminal, a few plain lines in a log file.

Keras' bar redraws itself with carriage returns and escape codes, which a log file keeps as
noise; when the stream is not a terminal the same progress is printed as one line per tenth.
"""

import sys
import time


class Progress:
    """Reports `done` out of `total` units of work under a `label`.

    Args:
        total: int. Units of the whole job (e.g. held-out examples).
        label: str. What is being done, e.g. "IWAE evaluation (K=1000)".
        unit: str. Name of one unit, for the plain lines.
        stream: file or None. Where to write (default sys.stdout); None output with
            `enabled=False`.
        enabled: bool. False reports nothing.

    Example:
    >>> progress = Progress(2000, "IWAE evaluation", unit="examples")
    >>> progress.update(500)
    >>> progress.close()
    """

    def __init__(self, total, label, unit="examples", stream=None, enabled=True):
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stdout
        self.enabled = enabled and self.total > 0
        self.start = time.monotonic()
        self.done = 0
        self._next_tenth = 1
        self._bar = None
        if not self.enabled:
            return
        isatty = getattr(self.stream, "isatty", None)
        if self.stream is sys.stdout and isatty is not None and isatty():
            import keras

            print(f"{label}:", file=self.stream, flush=True)
            self._bar = keras.utils.Progbar(self.total, unit_name=unit.rstrip("s"))
        else:
            print(f"{label}: {self.total} {unit}", file=self.stream, flush=True)

    def update(self, done):
        """Records that `done` units (cumulative) are finished."""
        self.done = min(int(done), self.total)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self.done)
            return
        tenth = self.done * 10 // self.total
        if tenth < self._next_tenth:
            return
        self._next_tenth = tenth + 1
        elapsed = time.monotonic() - self.start
        left = elapsed * (self.total - self.done) / max(self.done, 1)
        print(
            f"{self.label}: {self.done}/{self.total} {self.unit} ({100 * self.done // self.total}%), "
            f"{elapsed:.1f} s" + (f", about {left:.0f} s left" if self.done < self.total else ""),
            file=self.stream,
            flush=True,
        )

    def close(self):
        """Marks the job finished; returns the seconds it took."""
        if self.enabled and self.done < self.total:
            self.update(self.total)
        return time.monotonic() - self.start
