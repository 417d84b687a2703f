"""tf.distribute for training: one device, mirrored replicas, or several worker machines.

The strategy must exist before TensorFlow touches a device: `make_strategy` is the first thing
`train` does. Losses need no care here: `keras_vae.VAE.train_step` divides by
`num_replicas_in_sync` and slices one global-batch noise draw per replica, so N replicas take
exactly the step one device would.

Example:
>>> strategy = make_strategy("mirrored", "/cpu:0,/cpu:1")  # two logical CPUs
>>> strategy.num_replicas_in_sync
2
"""

import json
import os
import re

import tensorflow as tf

from keras_vae.training import cluster
from keras_vae.training.config import ConfigError


def parse_devices(devices):
    """`"/gpu:0, /gpu:1"` -> `["/gpu:0", "/gpu:1"]`; None stays None."""
    if devices is None:
        return None
    return [d.strip() for d in str(devices).split(",") if d.strip()]


def split_cpu(num_devices):
    """Splits the physical CPU into `num_devices` logical CPUs (for mirrored tests and demos).

    Must run before TensorFlow initializes its devices; afterwards it only checks that enough
    logical CPUs exist.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
        )
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have < num_devices:
            raise ConfigError(
                f"{num_devices} logical CPUs were asked for but TensorFlow already started with "
                f"{have}; pass --devices when the process starts."
            ) from None


def _cpu_index(device):
    match = re.fullmatch(r"(?:/job:\w+/replica:\d+/task:\d+)?/?(?:device:)?cpu:(\d+)", device, re.I)
    return None if match is None else int(match.group(1))


def _check_address(job, address):
    """A cluster member is "host:port" with a port from 1 to 65535; TensorFlow's own parser
    fails on anything else with a traceback, deep in the cluster's start-up."""
    host, _, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
    if not (host and port.isdigit() and port.isascii() and 1 <= int(port) <= 65535):
        raise ConfigError(
            f"TF_CONFIG cluster.{job} has {address!r}; expected host:port with a port from 1 "
            'to 65535, e.g. "host1:2222".'
        )


def read_tf_config():
    """Parses and checks the TF_CONFIG environment variable for multi-worker training."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError(
            "--strategy multi-worker needs TF_CONFIG, e.g. "
            '\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\' on each machine.'
        )
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        task = tf_config["task"]
        task_type, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise ConfigError(
            f"TF_CONFIG is not valid JSON with cluster.worker and task.type/index ({e!r}); "
            f"received {raw[:120]!r}."
        ) from None
    if not isinstance(workers, list) or not workers:
        raise ConfigError(
            f"TF_CONFIG cluster.worker must list host:port strings; received {raw!r}."
        )
    for job, addresses in tf_config["cluster"].items():
        for address in addresses if isinstance(addresses, list) else [addresses]:
            _check_address(job, address)
    members = tf_config["cluster"].get(task_type, [])
    if not 0 <= index < len(members):
        raise ConfigError(
            f"TF_CONFIG task {task_type}:{index} is not in cluster.{task_type} ({members})."
        )
    return tf_config


def _device_key(device):
    """A device's name as TensorFlow matches it: case, "device:" and the job prefix aside."""
    return device.lower().split("/")[-1].replace("device:", "")


def _check_distinct(devices):
    """MirroredStrategy fails with a traceback on a device named twice (`/cpu:0,/cpu:0`); a
    replica per device is what the flag means, so a repeat is a mistake in it."""
    seen = {}
    for device in devices:
        key = _device_key(device)
        if key in seen:
            raise ConfigError(
                f"--devices names {seen[key]!r} and {device!r}, the same device; list each "
                "device once, e.g. /cpu:0,/cpu:1 for two logical CPUs."
            )
        seen[key] = device


def make_strategy(name="default", devices=None):
    """Creates the `tf.distribute.Strategy` named `name`.

    Args:
        name: str. "default" (one device: the first GPU if any, else the CPU), "mirrored"
            (all local GPUs, or `devices`) or "multi-worker" (MultiWorkerMirroredStrategy over
            the cluster in TF_CONFIG; each worker runs the same command).
        devices: str or None. Comma-separated devices for "mirrored". CPU devices beyond the
            first (`/cpu:1`, ...) are made by splitting the CPU into logical devices.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = parse_devices(devices)
        if devices:
            _check_distinct(devices)
            cpu_indices = [i for i in map(_cpu_index, devices) if i is not None]
            if cpu_indices and max(cpu_indices) > 0:
                split_cpu(max(cpu_indices) + 1)
            known = {d.name.lower() for d in tf.config.list_logical_devices()}
            for device in devices:
                short = _device_key(device)
                if not any(k.endswith(f"device:{short}") for k in known):
                    raise ConfigError(
                        f"Device {device!r} does not exist here; available: "
                        f"{', '.join(sorted(known))}."
                    )
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi-worker":
        read_tf_config()
        # Joining waits for every peer, holding the GIL: the supervisor times it
        # (training.cluster).
        with cluster.waiting():
            return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(
        f"Unknown strategy {name!r}; expected one of default, mirrored, multi-worker."
    )


def worker_role(strategy):
    """`(is_chief, task_id)`: the chief writes the run's pictures, metrics and export.

    Without TF_CONFIG there is one worker and it is the chief. In a multi-worker cluster the
    chief is the "chief" task if there is one, else worker 0.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True, None
    task_type, index = resolver.task_type, int(resolver.task_id)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    is_chief = task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)
    return is_chief, f"{task_type}_{index}"
