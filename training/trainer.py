"""`train(config, run_dir)`: data and flags in; a trained VAE, its pictures and numbers out.

RUN_DIR receives:
    config.json          the run's settings (repeat it with `keras-vae-train --config`)
    model.keras          the trained model (written atomically, only with finite weights)
    history.csv          one row per finished epoch (epoch 0..N-1), kept consistent on resume
    logs/                TensorBoard logs
    samples/epoch_XXX.png  prior samples after each epoch (XXX = the 0-based epoch)
    samples.png          final prior samples
    reconstructions.png  held-out inputs above, their reconstructions below
    latent_scatter.png   posterior means coloured by label (latent_dim 2 only)
    latent_manifold.png  decoded grid over z (latent_dim 2 only)
    loss_curve.png       training and held-out -ELBO, reconstruction and KL per epoch
    kl_per_dimension.png held-out mean KL of each latent dimension
    metrics.json         held-out negative ELBO, reconstruction, KL, IWAE log-likelihood
                         (nats, bits/dim), and the untrained model's negative ELBO
    backup/              training state for resumption after a crash
    export/              SavedModel and TFLite files (when export is on)

`train` is a sequence of phases, one function each: the run folder (`training.run_folder`), the
data (`_load_data`), the model (`_build_model`), the callbacks, the fit, the divergence check,
then the chief's outputs (`training.outputs`: pictures, metrics.json, export, summary).
"""

import os
import time
import typing

from keras_vae.training import cluster, console, distribute, model_size, outputs, run_folder
from keras_vae.training.config import ConfigError, TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good model.keras is left in place."""


class _Data(typing.NamedTuple):
    """The loaded data as the fit, the pictures and the evaluation use them."""

    dataset: typing.Any  # training.data.Dataset (imported lazily, with NumPy)
    likelihood: str
    x_eval: typing.Any  # the held-out examples, binarized once under --binarize
    reference: typing.Any  # training vectors the sample scatters are drawn over; None for images
    steps: int  # batches per epoch
    x_codes: typing.Any  # training examples the latent frame is fitted to after each epoch


def train(config, run_dir, callbacks=None):
    """Trains a VAE as `config` says and writes everything to `run_dir`.

    Rerunning with the same config and run_dir resumes from the last finished epoch.

    Args:
        config: `TrainConfig` or dict of its fields (missing ones take their defaults).
        run_dir: str. The run folder (created if needed).
        callbacks: list of `keras.callbacks.Callback` or None. Extra callbacks for `fit`,
            called after the run's own: when their `on_epoch_end` runs, the epoch is fully
            recorded (history.csv, backup/, model.keras).

    Returns:
        dict with `run_dir`, `files` (name -> path of everything written), `metrics` (held-out),
        `untrained` (held-out metrics before training), `epochs_run` (the run's epochs in
        all), `initial_epoch` (those it had before this process), `precision` (the policy
        trained in) and `is_chief`.

    Raises:
        ConfigError: a bad setting (before any work), or a config conflicting with the run to
            resume. DataError: unusable data. TrainingDiverged: the loss became NaN/inf.
        OSError: the run folder is not writable.

    Example:
    >>> result = train({"data": "digits", "epochs": 5, "export": False}, "runs/digits")
    >>> result["metrics"]["negative_elbo"]
    """
    config = TrainConfig.from_dict(config)
    # The strategy comes first: it may split the CPU into logical devices or join a cluster,
    # both of which must happen before TensorFlow touches a device.
    strategy = distribute.make_strategy(config.strategy, config.devices)
    replicas = strategy.num_replicas_in_sync
    # The data before the run folder: unusable data stops the run before anything is written.
    data = _load_data(config, replicas)
    folder = run_folder.open_run_folder(run_dir, strategy, config)
    # The folder's lock is held until the run ends, whichever way it ends.
    with folder.lock:
        # Before anything under the strategy: building the model already runs collectives.
        cluster.handshake(strategy, config, data.dataset, data.likelihood, folder.backup_dir)
        model, initial_epoch, policy = _build_model(config, data, strategy, folder.backup_dir)
        untrained = None
        if folder.is_chief:
            untrained = outputs.untrained_metrics(
                model, data.x_eval, config.seed, folder.backup_dir, initial_epoch
            )
        run_state, guard, fit_callbacks = _make_callbacks(config, folder, data, initial_epoch)
        if config.verbose:
            print(
                _start_line(config, data, replicas, folder.out_dir, initial_epoch, policy),
                flush=True,
            )
        seconds = _fit(model, config, data, initial_epoch, fit_callbacks + list(callbacks or []))
        _check_finite(guard, run_state, config)
        result = {
            "run_dir": folder.out_dir,
            "files": _save_model(model, folder, run_state),
            "is_chief": folder.is_chief,
            "replicas": replicas,
            "seconds": seconds,
            # Epochs the run had before this process: the summary tells a resumed run (or a
            # finished one rerun) from a fresh one.
            "initial_epoch": initial_epoch,
            "precision": {"requested": config.precision, "policy": policy[0], "reason": policy[1]},
        }
        if folder.is_chief:
            outputs.write_chief_outputs(result, model, config, data, untrained, run_state)
        return result


def _check_fit(config, dataset, likelihood, replicas):
    """Settings that can only be checked against the loaded data; raises ConfigError."""
    if config.arch == "conv" and dataset.info["kind"] != "image":
        raise ConfigError(
            f"--arch conv needs images; {config.data!r} holds vectors of shape "
            f"{dataset.info['shape']}. Use --arch mlp."
        )
    if likelihood in ("bernoulli", "continuous_bernoulli"):
        lo = min(float(dataset.x_train.min()), float(dataset.x_test.min()))
        hi = max(float(dataset.x_train.max()), float(dataset.x_test.max()))
        if lo < 0 or hi > 1:
            raise ConfigError(
                f"--likelihood {likelihood} needs values in [0, 1]; {config.data!r} spans "
                f"[{lo:.3g}, {hi:.3g}]. Use --likelihood gaussian."
            )
    if config.binarize and likelihood != "bernoulli":
        raise ConfigError("--binarize needs the Bernoulli likelihood; drop it for gaussian data.")
    # Before anything is built: a few characters (--latent-dim 10000000) can ask for 60 GB.
    model_size.check_training(config, dataset.info["shape"])
    if config.batch_size % replicas:
        raise ConfigError(
            f"--batch-size {config.batch_size} must be a multiple of the {replicas} replicas, so "
            "each replica gets an equal share."
        )


def _load_data(config, replicas):
    """Loads the data and checks it against `config` (`_check_fit`): DataError or ConfigError
    before any training. Under --binarize the held-out set is binarized once, with the seed."""
    from keras_vae.training.data import binarize_once, load_dataset, steps_per_epoch

    dataset = load_dataset(
        config.data, test_split=config.test_split, seed=config.seed, limit=config.limit
    )
    likelihood = config.likelihood or dataset.info["likelihood"]
    _check_fit(config, dataset, likelihood, replicas)
    x_eval = binarize_once(dataset.x_test, config.seed) if config.binarize else dataset.x_test
    reference = dataset.x_train if dataset.info["kind"] != "image" else None
    # The examples whose codes the latent frame matches to the prior after each epoch: a fixed
    # subset, binarized as training sees them.
    x_codes = dataset.x_train[:2048]
    if config.binarize:
        x_codes = binarize_once(x_codes, config.seed)
    steps = steps_per_epoch(len(dataset.x_train), config.batch_size)
    return _Data(dataset, likelihood, x_eval, reference, steps, x_codes)


def _steps_per_execution(steps, most=32):
    """Steps per tf.function call: the largest divisor of the epoch's steps up to `most`.

    Many steps per call make small models 1.2x to 2.6x faster on a CPU (docs/benchmarks.md).
    A divisor keeps every call inside one epoch: the data is an endless stream of epoch-seeded
    permutations, and a call that ran past the epoch's end would shift every later epoch's
    batches (a resumed run would no longer match an uninterrupted one).
    """
    return max(d for d in range(1, min(most, steps) + 1) if steps % d == 0)


def _build_model(config, data, strategy, backup_dir):
    """The VAE built, compiled and restored from `backup_dir` under the strategy, with the same
    initial weights on every run; returns `(model, initial_epoch)`, the epochs already trained
    (0 for a new run)."""
    import keras

    import keras_vae
    from keras_vae import precision
    from keras_vae.training import callbacks as callbacks_lib

    policy = precision.resolve_policy(
        config.precision, precision.cpu_flags(), precision.gpu_devices()
    )
    with strategy.scope(), precision.policy_scope(policy[0]):
        # The data order and the noise have their own seeds, so this is all the global seed
        # decides.
        keras.utils.set_random_seed(config.seed)
        model = keras_vae.build_vae(
            tuple(data.dataset.info["shape"]),
            latent_dim=config.latent_dim,
            arch=config.arch,
            likelihood=data.likelihood,
            sigma=config.sigma_value(),
            beta=config.beta,
            seed=config.seed,
            free_bits=config.free_bits,
            objective=config.objective,
            k=config.k,
            **config.network_kwargs(),
        )
        # Several steps per call fail inside Keras' distributed multi-step loop (TF 2.21): one
        # device only.
        single = strategy.num_replicas_in_sync == 1
        model.compile(
            optimizer=keras.optimizers.Adam(_learning_rate(config, data.steps)),
            steps_per_execution=_steps_per_execution(data.steps) if single else 1,
        )
        initial_epoch = callbacks_lib.restore(model, backup_dir)
    return model, initial_epoch, policy


def _learning_rate(config, steps_per_epoch):
    """Adam's step size: the flag's number, or a cosine decay over the run's steps (read from the
    optimizer's step count, so a resumed run continues the curve)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    import keras

    from keras_vae.training.config import COSINE_FINAL_FRACTION

    return keras.optimizers.schedules.CosineDecay(
        config.learning_rate, config.epochs * steps_per_epoch, alpha=COSINE_FINAL_FRACTION
    )


def _make_callbacks(config, folder, data, initial_epoch):
    """The run's own callbacks, in order: the divergence guard, the latent frame's step onto the
    prior, the epoch's record (history, backup, model.keras), and on the chief the epoch's
    samples and TensorBoard. Returns `(run_state, guard, callbacks)`."""
    import keras

    import keras_vae
    from keras_vae.training import callbacks as callbacks_lib

    run_state = callbacks_lib.RunState(folder.out_dir, folder.backup_dir, initial_epoch)
    guard = callbacks_lib.FiniteGuard()
    # Before the epoch's record, so the backup holds the frame the next epoch starts from.
    standardize = keras_vae.StandardizeLatents(data.x_codes)
    fit_callbacks = [guard, standardize, run_state]
    if config.warmup_epochs:
        # Set from the epoch number at each epoch's start: a resumed run continues the ramp.
        fit_callbacks.insert(0, keras_vae.KLWarmup(config.warmup_epochs))
    if folder.is_chief:
        samples_dir = os.path.join(folder.out_dir, "samples")
        fit_callbacks.append(callbacks_lib.EpochSamples(samples_dir, config.seed, data.reference))
        fit_callbacks.append(
            keras.callbacks.TensorBoard(
                os.path.join(folder.out_dir, "logs"), write_graph=False, profile_batch=0
            )
        )
    return run_state, guard, fit_callbacks


def _start_line(config, data, replicas, out_dir, initial_epoch, policy):
    """What the run says before it starts: the data, the model, the precision, the replicas, the
    folder."""
    info = data.dataset.info
    return (
        f"keras-vae-train: {info['name']} ({info['num_train']} train / {info['num_test']} "
        f"held-out, shape {tuple(info['shape'])}), {config.arch} latent_dim "
        f"{config.latent_dim}, {data.likelihood}, {policy[0]}"
        + (f" ({policy[1]})" if config.precision == "auto" else "")
        + f", {replicas} replica(s); run folder {out_dir}"
        + (f"; resuming after epoch {initial_epoch - 1}" if initial_epoch else "")
    )


def _fit(model, config, data, initial_epoch, fit_callbacks):
    """Trains epochs `initial_epoch`..`config.epochs - 1` (none when the run is finished) on the
    epoch-seeded stream that starts at `initial_epoch`; returns the seconds it took."""
    from keras_vae.training.data import make_dataset

    # Every batch full, the last one of a pass padded with weight-0 examples: a step is the same
    # on one device and split over N replicas or workers, whatever the data size.
    val_ds = make_dataset(data.x_eval, config.batch_size, padded=True)
    train_ds = make_dataset(
        data.dataset.x_train, config.batch_size, shuffle=True, seed=config.seed,
        binarize=config.binarize, first_epoch=initial_epoch, last_epoch=config.epochs,
        padded=True,
    )  # fmt: skip
    start = time.time()
    if initial_epoch < config.epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=data.steps,
            callbacks=fit_callbacks,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=console.fit_verbosity(config.verbose),  # no bar in a log file
        )
    return time.time() - start


def _check_finite(guard, run_state, config):
    """Raises TrainingDiverged, saying where and what was kept, when the loss became NaN or inf
    (`guard` stopped the fit); model.keras and the backup then hold the last good epoch."""
    if guard.diverged_at is None:
        return
    epoch, batch = guard.diverged_at
    last = run_state.last_good_epoch
    kept = (
        f"model.keras and the backup hold epoch {last}"
        if last is not None
        else "no model was saved"
    )
    raise TrainingDiverged(
        f"The loss became NaN or inf at epoch {epoch}, batch {batch}; training stopped and "
        f"{kept}. Lower --learning-rate (now {config.learning_rate:g}) or check the data."
    )


def _save_model(model, folder, run_state):
    """Writes model.keras (atomically, finite weights only); returns the files every worker has
    written, name -> path."""
    from keras_vae.training import callbacks as callbacks_lib

    model_path = os.path.join(folder.out_dir, "model.keras")
    callbacks_lib.save_model(model, model_path)
    return {
        "config.json": os.path.join(folder.out_dir, "config.json"),
        "model.keras": model_path,
        "history.csv": run_state.history_path,
        "backup/": folder.backup_dir,
    }
