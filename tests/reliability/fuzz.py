"""The hostile-input fuzz suite: generated cases, each run in a worker process and judged.

    python tests/reliability/fuzz.py                  # the fast subset, as CI runs it
    python tests/reliability/fuzz.py --full           # every case (a few minutes)
    python tests/reliability/fuzz.py --full --category data --verbose

Each category's module (`fuzz_serving.py`, `fuzz_files.py`, `fuzz_flags.py`) generates its cases
in a fixed order; a worker process runs them one by one and prints one JSON line per verdict:
- "clear error": refused the documented way (an error of the kind that surface raises, whose
  message says what was expected: the phrase the case names, or one line for the commands);
- "correct result": accepted, and the answer passed the case's check;
- "misbehaved": anything else: another kind of exception (a traceback for the user), a refusal
  without the expected words, a valid input refused, an invalid one accepted, a wrong answer,
  a signal, memory past `MEMORY_LIMIT_BYTES` or a case past its time limit.
The runner watches the worker: a worker killed by a signal, grown past the memory limit or
silent past the case's limit is stopped, that case is misbehaved, and a new worker goes on
from the next case. The last line is the summary:
    fuzz: tried N, clear errors E, correct results C, misbehaved M
and the exit status is 1 when M > 0.
"""

import argparse
import dataclasses
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
# A worker's resident memory (TensorFlow alone is ~0.6 GB) past this is a misbehaved case: no
# hostile input may take the process near the gigabytes the issue saw (8.85 GB for one request).
MEMORY_LIMIT_BYTES = 3 * 2**30
# A case's time limit is this many times its `seconds`: a loaded CI machine (two test processes
# on two cores) must not turn a slow case into a "hang", and a real hang never ends anyway.
TIME_LIMIT_SCALE = 3.0
CATEGORIES = ("serving", "tflite", "config", "flags", "data", "run_folder", "keras_file")
# Not run by default: cases whose verdicts are known, to test the runner itself.
SELF_TEST = "selftest"
CLEAR, CORRECT, MISBEHAVED = "clear error", "correct result", "misbehaved"


@dataclasses.dataclass
class Case:
    """One hostile (or valid) input and how to judge what it did.

    Attributes:
        name: str. Unique in its category; says what was tried.
        run: callable () -> value. Tries it; a refusal raises.
        expect: "error", "result" or "either" (a clear refusal and a right answer both pass).
        refusal: str. A regex the error's message must contain to count as clear.
        errors: tuple of exception types a clear refusal may be.
        check: callable (value) -> str or None: what is wrong with an accepted answer.
        seconds: float. The case's time limit.
    """

    name: str
    run: object
    expect: str = "error"
    refusal: str = ""
    errors: tuple = (ValueError,)
    check: object = None
    seconds: float = 60.0


def judge(case):
    """`(verdict, detail)` of running `case` in this process."""
    try:
        value = case.run()
    except BaseException as e:  # noqa: BLE001 - judging every way a case can fail is the point
        if isinstance(e, KeyboardInterrupt):
            raise
        message = _message(e)
        if case.expect == "result":
            return MISBEHAVED, f"refused a valid input: {type(e).__name__}: {message[:300]}"
        if not isinstance(e, case.errors):
            where = traceback.extract_tb(e.__traceback__)[-1]
            return MISBEHAVED, (
                f"{type(e).__name__} (not {'/'.join(t.__name__ for t in case.errors)}) at "
                f"{os.path.basename(where.filename)}:{where.lineno}: {message[:300]}"
            )
        if not re.search(case.refusal, message):
            return MISBEHAVED, f"unclear refusal (no /{case.refusal}/): {message[:300]}"
        return CLEAR, message.splitlines()[0][:200] if message else type(e).__name__
    if case.expect == "error":
        return MISBEHAVED, f"accepted: {_short(value)}"
    try:
        problem = case.check(value) if case.check else None
    except Exception as e:  # noqa: BLE001 - a check that cannot read the answer rejects it
        problem = f"the check failed on it: {type(e).__name__}: {_message(e)[:200]}"
    if problem:
        return MISBEHAVED, f"wrong answer: {problem}"
    return CORRECT, _short(value)


def _message(e):
    message = getattr(e, "message", None)  # tf.errors.OpError keeps the op's own text here
    return str(message if isinstance(message, str) else e)


def _short(value):
    text = value if isinstance(value, str) else repr(value)
    return " ".join(text.split())[:160]


def generate(category, full):
    """The category's cases, in their fixed order."""
    sys.path.insert(0, HERE)
    module = {
        "serving": "fuzz_serving",
        "tflite": "fuzz_serving",
        "config": "fuzz_files",
        "flags": "fuzz_flags",
        "data": "fuzz_files",
        "run_folder": "fuzz_files",
        "keras_file": "fuzz_files",
        SELF_TEST: "fuzz",
    }[category]
    cases = list(getattr(__import__(module), f"{category}_cases")(full))
    names = [c.name for c in cases]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise RuntimeError(f"fuzz: case names repeated in {category}: {duplicated}")
    return cases


def selftest_cases(full):
    """One case per verdict the runner must reach, each followed by one that must still run."""
    import signal

    import numpy as np

    def hang():
        time.sleep(3600)

    def grow():
        blocks = []
        while True:  # past MEMORY_LIMIT_BYTES within a second or two, touched so it is resident
            blocks.append(np.ones(2**27, np.uint8))

    def crash():
        os.kill(os.getpid(), signal.SIGSEGV)

    def refuse():
        raise ValueError("n must be at least 1; received 0")

    return [
        Case("clear", refuse, refusal="must be at least 1"),
        Case("unclear", refuse, refusal="something else"),
        Case("wrong kind", lambda: {}["missing"]),
        Case("accepted", lambda: 3),
        Case("correct", lambda: 3, "result", check=lambda v: None if v == 3 else "not 3"),
        Case("wrong", lambda: 4, "result", check=lambda v: None if v == 3 else "not 3"),
        Case("hang", hang, seconds=2),
        Case("after the hang", lambda: 1, "result"),
        Case("memory", grow),
        Case("after the memory", lambda: 1, "result"),
        Case("signal", crash),
        Case("after the signal", lambda: 1, "result"),
    ]


# ------------------------------------------------------------------------------------------------
# The worker: runs the cases of one or more categories ("a,b": in one process, sharing its
# imports and models) from `start` on, one JSON line each.


def work(group, full, start):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    cases = [(c, case) for c in group.split(",") for case in generate(c, full)]
    _say({"count": len(cases)})
    for index in range(start, len(cases)):
        category, case = cases[index]
        _say({"start": index, "category": category, "name": case.name, "seconds": case.seconds})
        verdict, detail = judge(case)
        _say({"index": index, "verdict": verdict, "detail": detail})


def _say(record):
    # The protocol runs on a descriptor of its own: what the code under test prints (warnings,
    # Keras' lines) goes to stdout and stderr, which the runner discards.
    os.write(PROTOCOL_FD, (json.dumps(record) + "\n").encode())


PROTOCOL_FD = 3


# ------------------------------------------------------------------------------------------------
# The runner: starts workers, watches their memory and time, collects the verdicts.


def run_category(category, full, report):
    """Runs every case of `category` (or of a group, "a,b", in one worker process); calls
    `report(category, name, verdict, detail)` for each."""
    start, count = 0, None
    while count is None or start < count:
        read_end, write_end = os.pipe()
        errors = tempfile.TemporaryFile()  # a pipe nobody reads could fill and block the worker
        worker = subprocess.Popen(
            [sys.executable, __file__, "--worker", category, "--start", str(start)]
            + (["--full"] if full else []),
            pass_fds=(write_end,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env={**os.environ, "KERAS_VAE_FUZZ_FD": str(write_end)},
        )
        os.close(write_end)
        try:
            start, count = _watch(worker, read_end, category, start, count, report, errors)
        finally:
            os.close(read_end)
            errors.close()
            if worker.poll() is None:
                worker.kill()
            worker.wait()


def _watch(worker, fd, category, start, count, report, errors):
    """Follows one worker; returns `(next start, count)` when it ends or is stopped."""
    buffer, current = b"", None
    started_at = time.monotonic()
    limit = 600.0  # until the first case starts: imports, the category's models
    while True:
        ready, _, _ = select.select([fd], [], [], 0.2)
        chunk = os.read(fd, 65536) if ready else b""
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            record = json.loads(line)
            if "count" in record:
                count = record["count"]
            elif "start" in record:
                current, started_at = record, time.monotonic()
                limit = record["seconds"] * TIME_LIMIT_SCALE
            else:
                report(current["category"], current["name"], record["verdict"], record["detail"])
                start, current = record["index"] + 1, None
                started_at, limit = time.monotonic(), 600.0
        if ready and not chunk:  # the worker closed the pipe: it ended
            code = worker.wait()
            if current is not None or code != 0:
                return _stopped(
                    worker, category, current, start, count, report, errors, f"exit {code}"
                )
            return (count or 0), count
        rss = _rss(worker.pid)
        if rss > MEMORY_LIMIT_BYTES:
            why = f"{rss / 2**30:.1f} GB resident"
            return _stopped(worker, category, current, start, count, report, errors, why)
        if time.monotonic() - started_at > limit:
            why = f"over {limit:g} s"
            return _stopped(worker, category, current, start, count, report, errors, why)


def _stopped(worker, category, current, start, count, report, errors, why):
    if worker.poll() is None:
        worker.kill()
    code = worker.wait()
    if current is None:  # died between cases: the harness's fault, not a case's
        errors.seek(0)
        tail = errors.read().decode(errors="replace")[-1500:]
        raise RuntimeError(f"fuzz: the {category} worker stopped ({why}, exit {code}): {tail}")
    if code < 0 and why.startswith("exit"):
        why = f"killed by signal {-code}"
    report(current["category"], current["name"], MISBEHAVED, f"the process: {why}")
    return current["start"] + 1, count


def _rss(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(categories, full, verbose=False, out=sys.stdout):
    """Runs the categories (each in its worker; "a,b" shares one); prints misbehaved cases (all
    cases with `verbose`) and the summary.

    Returns `{"tried", "clear", "correct", "misbehaved": [(category, name, detail)],
    "by_category": {category: {verdict: count}}}`.
    """
    totals = {"tried": 0, "clear": 0, "correct": 0, "misbehaved": [], "by_category": {}}

    def report(category, name, verdict, detail):
        totals["tried"] += 1
        counts = totals["by_category"].setdefault(category, {CLEAR: 0, CORRECT: 0, MISBEHAVED: 0})
        counts[verdict] += 1
        if verdict == CLEAR:
            totals["clear"] += 1
        elif verdict == CORRECT:
            totals["correct"] += 1
        else:
            totals["misbehaved"].append((category, name, detail))
        if verbose or verdict == MISBEHAVED:
            print(f"{category:>10} {verdict:>14}  {name}: {detail}", file=out, flush=True)

    for group in categories:  # a category, or a group "a,b" run in one worker
        began = time.monotonic()
        run_category(group, full, report)
        seconds = time.monotonic() - began
        for category in group.split(","):
            counts = totals["by_category"].get(category, {})
            print(
                f"fuzz {category}: {sum(counts.values())} cases in {seconds:.0f} s"
                + (f" (with {group})" if "," in group else "")
                + f" ({counts.get(CLEAR, 0)} clear errors, {counts.get(CORRECT, 0)} correct "
                f"results, {counts.get(MISBEHAVED, 0)} misbehaved)",
                file=out,
                flush=True,
            )
    print(summary_line(totals), file=out, flush=True)
    return totals


def summary_line(totals):
    return (
        f"fuzz: tried {totals['tried']}, clear errors {totals['clear']}, correct results "
        f"{totals['correct']}, misbehaved {len(totals['misbehaved'])}"
    )


def main(argv=None):
    global PROTOCOL_FD
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="every case, not the fast subset")
    p.add_argument("--category", action="append", choices=CATEGORIES, help="(repeatable)")
    p.add_argument("--verbose", action="store_true", help="print every case's verdict")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # a category, or several: "a,b"
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        PROTOCOL_FD = int(os.environ["KERAS_VAE_FUZZ_FD"])
        work(args.worker, args.full, args.start)
        return 0
    totals = run(args.category or CATEGORIES, args.full, args.verbose)
    return 1 if totals["misbehaved"] else 0


if __name__ == "__main__":
    sys.exit(main())
