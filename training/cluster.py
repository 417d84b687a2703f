"""A multi-worker run's cluster: it checks that the workers agree, bounds its waits, and stops.

`keras-vae-train --strategy multi-worker` runs as two processes on each machine. The one the
shell (or scheduler) started is the supervisor: it forks the trainer before TensorFlow joins
the cluster and does nothing else but watch it. This is needed because TensorFlow holds
Python's lock (the GIL) while it waits for its peers, and installs its own SIGTERM handler: in
the trainer no Python code runs, no signal handler and no thread, until every peer has come
(measured: a worker started alone printed nothing for 21 minutes and ignored SIGTERM and
Ctrl-C). The supervisor, which never touches TensorFlow's runtime, can always act:

- while the trainer waits for its peers (joining the cluster, then the handshake) the clock of
  `--cluster-timeout` runs; when it runs out, the supervisor checks which addresses of TF_CONFIG
  answer, prints one line naming the missing tasks, stops the trainer and exits with 3;
- SIGTERM or SIGINT stop the trainer (SIGKILL: the current step is abandoned; every file of the
  run folder is written atomically, so the last finished epoch's backup is intact) and exit 143
  or 130 with one line; the other workers lose their peer and exit 4 (`lost_peer`);
- otherwise the supervisor exits with the trainer's status.

The trainer checks the cluster before the first step (`handshake`): every worker publishes a
fingerprint of the settings that must agree, of its data and of its backup in the cluster's
key-value store, and each compares all of them; on a difference every worker refuses with the
same line, naming the field and two workers' values (exit 2, as any bad setting).

Exit statuses of a multi-worker run: 0 done, 1 training failed (diverged, disk), 2 a bad
setting or the workers disagree, 3 the cluster did not form within --cluster-timeout, 4 a peer
was lost during the run (rerun the same commands to resume), 130 SIGINT, 143 SIGTERM.

Example:
>>> supervise(300.0)  # in the trainer, returns; in the supervisor, exits with the run's status
>>> with waiting():
...     strategy = tf.distribute.MultiWorkerMirroredStrategy()
"""

import contextlib
import hashlib
import json
import os
import re
import select
import signal
import socket
import sys
import time

from keras_vae.training.config import ConfigError

PROG = "keras-vae-train"
EXIT_NO_CLUSTER = 3
EXIT_PEER_LOST = 4
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
# TrainConfig fields each worker may set its own way: where its data is (the data's content is
# compared instead), and what only the chief does at the end (export, evaluation) or only this
# process sees (its progress, its patience). --run-dir is not a config field and may differ too.
PER_WORKER = ("data", "export", "iwae_samples", "eval_examples", "verbose", "cluster_timeout")
RESUME_HINT = "rerun the same commands on every machine to resume from the last finished epoch"
# The trainer's reports to the supervisor, one byte each on a pipe.
_WAIT, _DONE = b"w", b"d"
_report_fd = None  # set in the trainer by `supervise`


class ClusterMismatch(ConfigError):
    """The workers were started with different settings, data or backups."""


def supervise(timeout):
    """Forks the trainer; returns None in it, and in the supervisor the run's exit status once
    the trainer has ended (the caller returns it: a Python caller of `cli.main` goes on).

    Call it once, after the flags are checked and before TensorFlow joins the cluster.

    Args:
        timeout: float. Seconds the trainer may wait for its peers in each `waiting` phase.
    """
    global _report_fd
    read_fd, write_fd = os.pipe()
    supervisor = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _die_with(supervisor)
        # The supervisor answers Ctrl-C for the whole run, once; the terminal sends it to both.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _report_fd = write_fd
        return
    os.close(write_fd)
    handlers = {signum: signal.getsignal(signum) for signum in EXIT_SIGNAL}
    try:
        return _watch(pid, read_fd, timeout)
    finally:
        os.close(read_fd)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        sys.stdout.flush()
        sys.stderr.flush()


def is_trainer():
    """Whether this process is the trainer `supervise` forked (which must never return to its
    caller's code: that is the supervisor's)."""
    return _report_fd is not None


def _die_with(parent):
    """The trainer is killed when its supervisor dies (Linux), whatever kills it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the prctl
        os._exit(EXIT_PEER_LOST)


def _watch(pid, read_fd, timeout):
    """The supervisor's loop: the trainer's status, or a signal's or the timeout's."""
    received = []

    def on_signal(signum, frame):
        received.append(signum)

    for signum in EXIT_SIGNAL:
        signal.signal(signum, on_signal)
    deadline = None
    while True:
        if received:
            return _stop(pid, received[0])
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _status(status)
        if deadline is not None and time.monotonic() > deadline:
            _say(f"error: {no_cluster_message(timeout)}")
            _kill(pid)
            return EXIT_NO_CLUSTER
        ready, _, _ = select.select([read_fd], [], [], 0.2)
        if ready:
            report = os.read(read_fd, 64)
            for byte in report:
                if bytes([byte]) == _WAIT:
                    deadline = time.monotonic() + timeout
                elif bytes([byte]) == _DONE:
                    deadline = None
            if not report:  # the trainer closed the pipe: it is exiting
                _, status = os.waitpid(pid, 0)
                return _status(status)


def _stop(pid, signum):
    name = signal.Signals(signum).name
    _say(f"stopped by {name}; the last finished epoch's backup is kept: {RESUME_HINT}.")
    _kill(pid)
    return EXIT_SIGNAL[signum]


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _status(status):
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        _say(
            f"error: the trainer died of {signal.Signals(signum).name}; a peer may have been "
            f"lost or the machine ran out of memory; {RESUME_HINT}."
        )
        return 128 + signum
    return os.WEXITSTATUS(status)


def _say(message):
    sys.stderr.write(f"\n{PROG}: {message}\n")
    sys.stderr.flush()


def _report(byte):
    if _report_fd is not None:
        try:
            os.write(_report_fd, byte)
        except OSError:
            pass


@contextlib.contextmanager
def waiting():
    """A phase in which the trainer waits for its peers: the supervisor's clock runs."""
    _report(_WAIT)
    try:
        yield
    finally:
        _report(_DONE)


def _tasks(tf_config):
    """`[(task_type, index, address)]` of the cluster's chief and workers, in order."""
    cluster = tf_config["cluster"]
    return [
        (job, index, address)
        for job in ("chief", "worker")
        for index, address in enumerate(cluster.get(job) or [])
    ]


def _answers(address, seconds=1.0):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            return True
    except OSError:
        return False


def no_cluster_message(timeout, tf_config=None):
    """The timeout's line: which peers of TF_CONFIG do not answer at their address."""
    if tf_config is None:
        tf_config = json.loads(os.environ["TF_CONFIG"])
    me = (tf_config["task"]["type"], int(tf_config["task"]["index"]))
    peers = [(job, i, a) for job, i, a in _tasks(tf_config) if (job, i) != me]
    missing = [f"{job} {i} ({a})" for job, i, a in peers if not _answers(a)]
    waited = f"the cluster did not form within --cluster-timeout {timeout:g} s"
    if missing:
        return (
            f"{waited}: {', '.join(missing)} did not answer; start "
            f"{'it' if len(missing) == 1 else 'them'} with the same command and its TF_CONFIG "
            "task, check the address and firewall, or raise --cluster-timeout."
        )
    listed = ", ".join(f"{job} {i} ({a})" for job, i, a in peers)
    return (
        f"{waited}: {listed} answer at their addresses but did not reach the handshake; check "
        "that every worker runs keras-vae-train --strategy multi-worker with the same TF_CONFIG "
        "cluster, or raise --cluster-timeout if a worker is slow to load its data."
    )


def lost_peer(error):
    """The one-line message for a peer lost during the run (`tf.errors.UnavailableError` and the
    like from a collective), or None when `error` is something else."""
    import tensorflow as tf

    kinds = (
        tf.errors.UnavailableError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
        tf.errors.DeadlineExceededError,
        tf.errors.InternalError,
        tf.errors.FailedPreconditionError,
    )
    if not isinstance(error, kinds):
        return None
    # TensorFlow's message is a page (a graph's stack, gRPC's details): the peer and the gist.
    text = str(error)
    peer = re.search(r"remote target /job:(\w+)/replica:\d+/task:(\d+)", text)
    gist = re.search(
        r"failed to connect to all addresses|Connection refused|Connection reset by peer|"
        r"Socket closed|heartbeat|tasks? (?:has|have) crashed|Deadline Exceeded|cancelled",
        text,
        re.I,
    )
    what = f"{peer.group(1)} {peer.group(2)}" if peer else "a worker"
    why = f": {gist.group(0)}" if gist else ""
    return f"the cluster lost {what} during the run ({type(error).__name__}{why}); {RESUME_HINT}."


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B") if a.flags.c_contiguous else a.tobytes())
    return h.hexdigest()[:16]


def _backup_fingerprint(backup_dir):
    """`(resume epoch, identity)` of this worker's backup: its epoch, and a hash of its weights
    and noise state. An `.npz` is hashed by its arrays (a zip's entries carry the time they were
    written); an HDF5 file by its bytes (the workers' files are byte-identical, measured)."""
    import numpy as np

    state_path = os.path.join(backup_dir, "state.json")
    if not os.path.exists(state_path):
        return 0, "none"
    # training.run_folder checked state.json and its weights file when the folder was opened.
    with open(state_path, encoding="utf-8") as f:
        state = json.load(f)
    h = hashlib.sha256(json.dumps(state.get("seed_state", [])).encode())
    weights = os.path.join(backup_dir, state["weights"])
    if weights.endswith(".npz"):
        with np.load(weights, allow_pickle=False) as arrays:
            for name in sorted(arrays.files):
                h.update(name.encode() + _digest(np.ascontiguousarray(arrays[name])).encode())
    else:
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return state["epoch"], f"sha256 {h.hexdigest()[:16]}"


def fingerprint(config, dataset, likelihood, backup_dir, tf_config):
    """What must be equal on every worker, field -> JSON value: every config field but
    `PER_WORKER`, the likelihood chosen, the data's shapes and hash, the resume epoch, the
    backup's identity and the cluster."""
    values = {k: v for k, v in config.to_dict().items() if k not in PER_WORKER}
    values["likelihood"] = likelihood
    values["training data"] = (
        f"{len(dataset.x_train)} x {tuple(dataset.x_train.shape[1:])} "
        f"sha256 {_digest(dataset.x_train)}"
    )
    values["held-out data"] = (
        f"{len(dataset.x_test)} x {tuple(dataset.x_test.shape[1:])} "
        f"sha256 {_digest(dataset.x_test)}"
    )
    values["resume epoch"], values["backup"] = _backup_fingerprint(backup_dir)
    values["TF_CONFIG cluster"] = tf_config["cluster"]
    return values


def first_difference(fingerprints):
    """`(field, (task, value), (task, value))` of the first field on which two workers differ,
    or None; `fingerprints` maps a task's name to its `fingerprint`. Every worker computes the
    same answer from the same fingerprints, so they all say the same thing."""
    tasks = list(fingerprints)
    first = fingerprints[tasks[0]]
    fields = list(first) + [k for t in tasks for k in fingerprints[t] if k not in first]
    for field in fields:
        for task in tasks[1:]:
            a, b = first.get(field), fingerprints[task].get(field)
            if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
                return field, (tasks[0], a), (task, b)
    return None


def mismatch_message(difference):
    field, (task_a, a), (task_b, b) = difference
    flag = f" (--{field.replace('_', '-')})" if " " not in field else ""
    return (
        f"the workers disagree on {field}{flag}: {task_a} has {a!r}, {task_b} has {b!r}; start "
        "every worker with the same settings, data and run state (only --run-dir, the --data "
        f"path, {', '.join('--' + f.replace('_', '-') for f in PER_WORKER[1:])} may differ). "
        "Nothing was trained."
    )


def handshake(strategy, config, dataset, likelihood, backup_dir):
    """Checks, before the first step, that every worker of a multi-worker run agrees; raises
    `ClusterMismatch` (on every worker, the same line) when they do not. Other strategies have
    nothing to check.

    The fingerprints go through the coordination service's key-value store (TensorFlow's
    `context`, as `MultiWorkerMirroredStrategy` itself uses it): each worker writes its own,
    reads everyone's, then says it has read them and waits for the others to say so too, so no
    worker exits (and takes the service down with it, on the chief) before all have compared.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return
    tf_config = json.loads(os.environ["TF_CONFIG"])
    tasks = [f"{job} {i}" for job, i, _ in _tasks(tf_config)]
    if len(tasks) < 2:
        return
    from tensorflow.python.eager import context

    me = f"{resolver.task_type} {int(resolver.task_id)}"
    ours = fingerprint(config, dataset, likelihood, backup_dir, tf_config)
    store = context.context()
    with waiting():
        store.set_config_key_value(f"keras_vae/handshake/{me}", json.dumps(ours))
        theirs = {
            t: json.loads(store.get_config_key_value(f"keras_vae/handshake/{t}")) for t in tasks
        }
        store.set_config_key_value(f"keras_vae/handshake_read/{me}", "1")
        try:
            for t in tasks:
                store.get_config_key_value(f"keras_vae/handshake_read/{t}")
        except Exception:  # noqa: BLE001 - TF's errors for a service that went away
            # The chief hosts the store and leaves once every worker has read everything (it
            # saw their read marks): when the settings differ it may be gone before this
            # worker's last read returns. This worker has every fingerprint by then.
            if first_difference(theirs) is None:
                raise
    difference = first_difference(theirs)
    if difference is not None:
        raise ClusterMismatch(mismatch_message(difference))
