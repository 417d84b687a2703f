"""Mixed precision: the Keras dtype policy to train with, chosen from what the processor reports.

bfloat16 keeps float32's exponent range, so a VAE trains in it without loss scaling; where the
hardware multiplies bf16 natively (CPUs with AVX512_BF16 or AMX, GPUs of compute capability 8.0
and later) the networks' matmuls and convolutions run about 2-4x faster. Elsewhere bf16 is
emulated and slower, so `auto` picks it only where it is native, and float32 when in doubt.
float16 needs loss scaling (Keras wraps the optimizer in a `LossScaleOptimizer`, which
`VAE.train_step` honours). Whatever the policy, the model computes the posterior, the KL,
log P(X|z) and the log-likelihood estimates in float32; the weights are float32 variables.

Example:
>>> policy, reason = resolve_policy("auto", cpu_flags(), gpu_devices())
>>> keras.mixed_precision.set_global_policy(policy)
"""

import contextlib

import keras

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# /proc/cpuinfo flags of CPUs that multiply bfloat16 natively (Intel Cooper Lake / Sapphire
# Rapids, AMD Zen 4): oneDNN then runs bf16 matmuls and convolutions on them.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# NVIDIA GPUs from Ampere on (compute capability 8.0) have bf16 tensor cores.
BF16_GPU_CAPABILITY = (8, 0)


def resolve_policy(precision, cpu_flags=(), gpus=()):
    """The Keras dtype policy for `precision`, and why: `(policy_name, reason)`.

    A pure function of what it is given, so that the choice is testable without the hardware.

    Args:
        precision: str. One of `PRECISIONS`; "auto" picks "mixed_bfloat16" where bf16 is native
            (every GPU with compute capability >= 8.0 when GPUs are used, else a CPU flag in
            `BF16_CPU_FLAGS`) and "float32" otherwise.
        cpu_flags: iterable of str. The CPU's feature flags (`cpu_flags()`).
        gpus: iterable of `(major, minor)` compute capabilities, or None for a GPU whose
            capability is unknown (`gpu_devices()`).

    Example:
    >>> resolve_policy("auto", {"avx2", "avx512_bf16"}, [])
    ('mixed_bfloat16', 'auto: the CPU has avx512_bf16')
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; expected one of {list(PRECISIONS)}.")
    if precision != "auto":
        return POLICIES[precision], f"{precision} as asked"
    gpus = list(gpus)
    if gpus:
        if all(cc is not None and tuple(cc) >= BF16_GPU_CAPABILITY for cc in gpus):
            return "mixed_bfloat16", "auto: every GPU has bf16 (compute capability 8.0 or later)"
        return "float32", "auto: a GPU without native bf16 (compute capability below 8.0)"
    native = sorted(set(BF16_CPU_FLAGS) & set(cpu_flags))
    if native:
        return "mixed_bfloat16", f"auto: the CPU has {', '.join(native)}"
    return "float32", "auto: no native bf16 on this CPU"


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags from `/proc/cpuinfo` (Linux); an empty set where unreadable, which
    makes `auto` choose float32."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def gpu_devices():
    """The compute capability `(major, minor)` of each visible GPU (None where unknown)."""
    import tensorflow as tf

    capabilities = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        capabilities.append(details.get("compute_capability"))
    return capabilities


@contextlib.contextmanager
def policy_scope(policy):
    """Builds layers under the dtype policy `policy` inside the block, then restores the global
    policy (layers keep the policy they were built with)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def as_float32(model):
    """`model` rebuilt with every layer in float32 and the same weights (a model trained under a
    mixed policy keeps float32 variables): for exports and held-out numbers at full precision.
    A model already in float32 is returned as it is."""
    config = model.get_config()
    if "float32" == _policy_name(model.dtype_policy) and not _mixed(config):
        return model
    clone = model.__class__.from_config(_float32_config(config))
    clone.set_weights(model.get_weights())
    return clone


def _policy_name(policy):
    return getattr(policy, "name", policy)


def _is_policy(value):
    return isinstance(value, dict) and value.get("class_name") in (
        "DTypePolicy",
        "FloatDTypePolicy",
    )


def _mixed(config):
    if _is_policy(config):
        return config.get("config", {}).get("name", "float32") != "float32"
    if isinstance(config, dict):
        return any(_mixed(v) for v in config.values())
    if isinstance(config, list):
        return any(_mixed(v) for v in config)
    return False


def _float32_config(config):
    if _is_policy(config):
        return "float32"
    if isinstance(config, dict):
        return {k: _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config
