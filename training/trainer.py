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
    metrics.json         held-out negative ELBO, reconstruction, KL, IWAE log-likelihood
                         (nats, bits/dim), and the untrained model's negative ELBO
    backup/              training state for resumption after a crash
    export/              SavedModel and TFLite files (when export is on)
"""

import json
import os
import time

from training import distribute
from training.config import ConfigError, TrainConfig, check_resumable, read_config
from training.files import atomic_write_text


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good model.keras is left in place."""


def _check_not_past(state_path, run_dir, epochs):
    """Refuses --epochs below what the run has trained: only the last epoch's weights are kept,
    so the run cannot give an earlier epoch's model, and must not pass the later one off as it."""
    try:
        with open(state_path, encoding="utf-8") as f:
            done = int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unreadable state is restore()'s to report
    if done > epochs:
        raise ConfigError(
            f"The run in {run_dir!r} has already trained {done} epochs; --epochs {epochs} asks "
            f"for fewer, and earlier epochs' weights are not kept. Pass --epochs {done} or more "
            "to continue it, or choose a new --run-dir."
        )


def _prepare_run_dir(run_dir, config):
    backup_dir = os.path.join(run_dir, "backup")
    config_path = os.path.join(run_dir, "config.json")
    try:
        os.makedirs(run_dir, exist_ok=True)
        state_path = os.path.join(backup_dir, "state.json")
        if os.path.exists(state_path) and os.path.exists(config_path):
            check_resumable(read_config(config_path), config)
            _check_not_past(state_path, run_dir, config.epochs)
        atomic_write_text(config_path, json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as e:
        raise OSError(
            f"Cannot write to the run folder {run_dir!r} ({e.strerror or e}); choose a writable "
            "--run-dir with free space."
        ) from e
    return backup_dir


def _untrained_metrics(model, x, seed, backup_dir, initial_epoch):
    from training.evaluate import evaluate

    path = os.path.join(backup_dir, "untrained.json")
    if initial_epoch > 0 and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    metrics = evaluate(model, x, iwae_samples=0, seed=seed, progress=False)
    atomic_write_text(path, json.dumps(metrics) + "\n")
    return metrics


def _check_fit(config, dataset, likelihood, replicas):
    """Settings that can only be checked against the loaded data; raises ConfigError."""
    if config.arch == "conv" and dataset.info["kind"] != "image":
        raise ConfigError(
            f"--arch conv needs images; {config.data!r} holds vectors of shape "
            f"{dataset.info['shape']}. Use --arch mlp."
        )
    if likelihood == "bernoulli":
        lo = min(float(dataset.x_train.min()), float(dataset.x_test.min()))
        hi = max(float(dataset.x_train.max()), float(dataset.x_test.max()))
        if lo < 0 or hi > 1:
            raise ConfigError(
                f"--likelihood bernoulli needs values in [0, 1]; {config.data!r} spans "
                f"[{lo:.3g}, {hi:.3g}]. Use --likelihood gaussian."
            )
    if config.binarize and likelihood != "bernoulli":
        raise ConfigError("--binarize needs the Bernoulli likelihood; drop it for gaussian data.")
    if config.batch_size % replicas:
        raise ConfigError(
            f"--batch-size {config.batch_size} must be a multiple of the {replicas} replicas, so "
            "each replica gets an equal share."
        )
    if replicas > 1 and len(dataset.x_train) < config.batch_size:
        raise ConfigError(
            f"{len(dataset.x_train)} training examples cannot fill one batch of "
            f"{config.batch_size} across {replicas} replicas; lower --batch-size."
        )


def _steps_per_execution(steps, most=32):
    """Steps per tf.function call: the largest divisor of the epoch's steps up to `most`.

    Many steps per call make small models 1.2x to 2.6x faster on a CPU (README, "Benchmarks").
    A divisor keeps every call inside one epoch: the data is an endless stream of epoch-seeded
    permutations, and a call that ran past the epoch's end would shift every later epoch's
    batches (a resumed run would no longer match an uninterrupted one).
    """
    return max(d for d in range(1, min(most, steps) + 1) if steps % d == 0)


def train(config, run_dir):
    """Trains a VAE as `config` says and writes everything to `run_dir`.

    Rerunning with the same config and run_dir resumes from the last finished epoch.

    Args:
        config: `TrainConfig` or dict of its fields (missing ones take their defaults).
        run_dir: str. The run folder (created if needed).

    Returns:
        dict with `run_dir`, `files` (name -> path of everything written), `metrics` (held-out),
        `untrained` (held-out metrics before training), `epochs_run` and `is_chief`.

    Raises:
        ConfigError: a bad setting (before any work), or a config conflicting with the run to
            resume. DataError: unusable data. TrainingDiverged: the loss became NaN/inf.
        OSError: the run folder is not writable.

    Example:
    >>> result = train({"data": "digits", "epochs": 5, "export": False}, "runs/digits")
    >>> result["metrics"]["negative_elbo"]
    """
    config = TrainConfig.from_dict(config)
    run_dir = os.path.abspath(run_dir)
    # The strategy comes first: it may split the CPU into logical devices or join a cluster,
    # both of which must happen before TensorFlow touches a device.
    strategy = distribute.make_strategy(config.strategy, config.devices)
    is_chief, task = distribute.worker_role(strategy)
    # Every worker computes the same thing; only the chief writes into RUN_DIR itself, so
    # workers sharing a file system never write the same file.
    out_dir = run_dir if is_chief else os.path.join(run_dir, "workers", task)
    backup_dir = _prepare_run_dir(out_dir, config)

    import keras
    import numpy as np

    import keras_vae
    from training import callbacks as callbacks_lib
    from training import plots
    from training.data import binarize_once, load_dataset, make_dataset, steps_per_epoch

    dataset = load_dataset(
        config.data, test_split=config.test_split, seed=config.seed, limit=config.limit
    )
    info = dataset.info
    likelihood = config.likelihood or info["likelihood"]
    replicas = strategy.num_replicas_in_sync
    _check_fit(config, dataset, likelihood, replicas)
    x_train = dataset.x_train
    x_eval = binarize_once(dataset.x_test, config.seed) if config.binarize else dataset.x_test
    # With several replicas every step must split evenly, or the replicas' mean losses would not
    # add up to the global batch's: the last partial batch is dropped (a new one each epoch).
    drop = replicas > 1
    val_ds = None
    if not drop or len(x_eval) >= config.batch_size:
        val_ds = make_dataset(x_eval, config.batch_size, drop_remainder=drop)

    with strategy.scope():
        # The same initial weights on every run (the data order and the noise have their own
        # seeds, so this is all the global seed decides).
        keras.utils.set_random_seed(config.seed)
        model = keras_vae.build_vae(
            tuple(info["shape"]),
            latent_dim=config.latent_dim,
            arch=config.arch,
            likelihood=likelihood,
            sigma=config.sigma_value(),
            beta=config.beta,
            seed=config.seed,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            # Several steps per call fail inside Keras' distributed multi-step loop (TF 2.21):
            # one device only.
            steps_per_execution=(
                _steps_per_execution(steps_per_epoch(len(x_train), config.batch_size, drop))
                if replicas == 1
                else 1
            ),
        )
        initial_epoch = callbacks_lib.restore(model, backup_dir)
    train_ds = make_dataset(
        x_train, config.batch_size, shuffle=True, seed=config.seed, binarize=config.binarize,
        drop_remainder=drop, first_epoch=initial_epoch,
    )  # fmt: skip

    untrained = None
    if is_chief:
        untrained = _untrained_metrics(model, x_eval, config.seed, backup_dir, initial_epoch)
    files = {"config.json": os.path.join(out_dir, "config.json")}
    run_state = callbacks_lib.RunState(out_dir, backup_dir, initial_epoch)
    guard = callbacks_lib.FiniteGuard()
    cbs = [guard, run_state]
    reference = x_train if info["kind"] != "image" else None
    if is_chief:
        cbs.append(
            callbacks_lib.EpochSamples(os.path.join(out_dir, "samples"), config.seed, reference)
        )
        cbs.append(
            keras.callbacks.TensorBoard(
                os.path.join(out_dir, "logs"), write_graph=False, profile_batch=0
            )
        )
    if config.verbose:
        print(
            f"keras-vae-train: {info['name']} ({info['num_train']} train / {info['num_test']} "
            f"held-out, shape {tuple(info['shape'])}), {config.arch} latent_dim "
            f"{config.latent_dim}, {likelihood}, {replicas} replica(s); run folder {out_dir}"
            + (f"; resuming after epoch {initial_epoch - 1}" if initial_epoch else ""),
            flush=True,
        )
    start = time.time()
    if initial_epoch < config.epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch(len(x_train), config.batch_size, drop),
            callbacks=cbs,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=config.verbose,
        )
    seconds = time.time() - start
    if guard.diverged_at is not None:
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

    model_path = os.path.join(out_dir, "model.keras")
    callbacks_lib.save_model(model, model_path)
    files.update({"model.keras": model_path, "history.csv": run_state.history_path})
    files["backup/"] = backup_dir
    result = {
        "run_dir": out_dir,
        "files": files,
        "is_chief": is_chief,
        "replicas": replicas,
        "seconds": seconds,
    }
    if not is_chief:
        return result

    files["logs/"] = os.path.join(out_dir, "logs")
    files["samples/"] = os.path.join(out_dir, "samples")
    pictures = {
        "samples.png": plots.samples_image(model, config.seed, reference),
        "reconstructions.png": plots.reconstructions_image(model, x_eval),
    }
    if config.latent_dim == 2:
        pictures["latent_scatter.png"] = plots.latent_scatter_image(model, x_eval, dataset.y_test)
        pictures["latent_manifold.png"] = plots.latent_manifold_image(model)
    for name, image in pictures.items():
        files[name] = plots.save_png(image, os.path.join(out_dir, name))

    from training.evaluate import evaluate, evaluation_plan

    k, n = evaluation_plan(
        len(x_eval), config.epochs * len(x_train), config.iwae_samples, config.eval_examples
    )
    metrics = evaluate(
        model,
        x_eval,
        iwae_samples=k,
        iwae_examples=n,
        seed=config.seed,
        progress=bool(config.verbose),
    )
    history = callbacks_lib.read_history(run_state.history_path)
    report = {
        "held_out": metrics,
        "untrained": untrained,
        "epochs": len(history),
        "last_epoch": {k: float(v) for k, v in history[-1].items()} if history else None,
        "data": info,
        "likelihood": likelihood,
        "units": "nats per example; bits_per_dim = nats / (dims * ln 2)",
    }
    metrics_path = os.path.join(out_dir, "metrics.json")
    atomic_write_text(metrics_path, json.dumps(report, indent=2) + "\n")
    files["metrics.json"] = metrics_path

    if config.export:
        files.update(_export(model, os.path.join(out_dir, "export"), x_train))
    result.update(metrics=metrics, untrained=untrained, epochs_run=len(history))
    if config.verbose:
        print(summary(result, np.prod(info["shape"])), flush=True)
    return result


def _export(model, out_dir, x_train):
    try:
        from export import export_all
    except ImportError as e:
        raise RuntimeError(
            f"Export is on but the export package cannot be imported ({e}); pass --no-export."
        ) from e
    try:
        # overwrite: rerunning a finished run's command re-exports the same model.
        paths = export_all(
            model, out_dir, name="vae", version=1, representative_data=x_train[:256],
            overwrite=True,
        )  # fmt: skip
    except Exception as e:
        raise RuntimeError(
            f"Export to {out_dir!r} failed ({type(e).__name__}: {e}); the model, pictures and "
            "metrics are in place. Fix the cause and run keras-vae-export, or pass --no-export."
        ) from e
    return {f"export/{kind}": path for kind, path in paths.items()}


def summary(result, dims=None):
    """The closing lines: the held-out numbers and where every file went."""
    m, u = result["metrics"], result["untrained"]
    lines = [
        "",
        f"Trained {result['epochs_run']} epochs in {result['seconds']:.1f} s.",
        f"Held-out negative ELBO {m['negative_elbo']:.3f} nats "
        f"(untrained {u['negative_elbo']:.3f}; reconstruction {m['reconstruction']:.3f}, "
        f"KL {m['kl']:.3f}).",
    ]
    if "iwae_log_likelihood" in m:
        lines.append(
            f"Held-out log-likelihood (IWAE, K={m['iwae_samples']}, {m['iwae_examples']} "
            f"examples, {m['iwae_seconds']:.1f} s) {m['iwae_log_likelihood']:.3f} nats = "
            f"{m['iwae_bits_per_dim']:.4f} bits/dim."
        )
    lines.append(f"Files in {result['run_dir']}:")
    width = max(len(k) for k in result["files"])
    for name, path in result["files"].items():
        lines.append(f"  {name:<{width}}  {path}")
    return "\n".join(lines)
