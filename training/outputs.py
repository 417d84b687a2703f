"""What a finished run leaves for a person, written by the chief after training: the pictures,
metrics.json, the export and the closing summary (see `training.trainer` for the folder's
layout)."""

import json
import os

from keras_vae.training.files import atomic_write_text


def untrained_metrics(model, x, seed, backup_dir, initial_epoch):
    """The held-out ELBO terms before training (no IWAE), computed once per run: a resumed run
    reads the numbers the first start saved to `backup_dir`/untrained.json, and has none (None)
    when that file is gone: the model in memory is then the restored, trained one."""
    from keras_vae.training.evaluate import evaluate

    path = os.path.join(backup_dir, "untrained.json")
    if initial_epoch > 0:
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    metrics = evaluate(model, x, iwae_samples=0, seed=seed, progress=False)
    atomic_write_text(path, json.dumps(metrics) + "\n")
    return metrics


def write_chief_outputs(result, model, config, data, untrained, run_state):
    """Writes the pictures, metrics.json and (when on) the export into `result["run_dir"]`,
    adds them to `result["files"]`, sets `metrics`, `untrained` and `epochs_run` in `result`,
    and prints the summary when `config.verbose`.

    Args:
        result: dict. `train`'s result so far (`run_dir`, `files`, `seconds`); updated in place.
        model: keras_vae.VAE. The trained model.
        config: TrainConfig. The run's settings.
        data: the trainer's loaded data (`dataset`, `likelihood`, `x_eval`, `reference`).
        untrained: dict or None. The held-out metrics before training (None: not recorded).
        run_state: training.callbacks.RunState. The fit's record (history.csv).
    """
    from keras_vae import precision

    # Pictures, held-out numbers and exports come from the float32 model, whatever the policy
    # it trained in: what is served and what is reported are the same full-precision network.
    model = precision.as_float32(model)
    out_dir, files = result["run_dir"], result["files"]
    files["logs/"] = os.path.join(out_dir, "logs")
    files["samples/"] = os.path.join(out_dir, "samples")
    files.update(_write_pictures(model, config, data, out_dir, run_state.history_path))
    metrics, epochs_run = _write_metrics(
        model, config, data, untrained, run_state, out_dir, result.get("precision")
    )
    files["metrics.json"] = os.path.join(out_dir, "metrics.json")
    if config.export:
        files.update(_export(model, os.path.join(out_dir, "export"), data.dataset.x_train))
    result.update(metrics=metrics, untrained=untrained, epochs_run=epochs_run)
    if config.verbose:
        print(summary(result), flush=True)


def _write_pictures(model, config, data, out_dir, history_path):
    """samples.png, reconstructions.png, loss_curve.png and kl_per_dimension.png, and for a 2-D
    latent latent_scatter.png and latent_manifold.png; returns name -> path."""
    from keras_vae.training import callbacks as callbacks_lib
    from keras_vae.training import plots

    history = callbacks_lib.read_history(history_path)
    last = int(history[-1]["epoch"]) if history else None
    figures = {
        "samples.png": lambda: plots.samples_figure(
            model, config.seed, data.reference, final_epoch=last
        ),
        "reconstructions.png": lambda: plots.reconstructions_figure(
            model, data.x_eval, final_epoch=last
        ),
        "kl_per_dimension.png": lambda: plots.kl_per_dimension_figure(
            model, data.x_eval, final_epoch=last
        ),
    }
    if config.latent_dim == 2:
        labels, classes = data.dataset.y_test, data.dataset.info.get("classes")
        figures["latent_scatter.png"] = lambda: plots.latent_scatter_figure(
            model, data.x_eval, labels, classes, final_epoch=last
        )
        figures["latent_manifold.png"] = lambda: plots.latent_manifold_figure(
            model, final_epoch=last
        )
    # One figure alive at a time: each is drawn, saved and released before the next.
    files = {
        name: plots.save_figure(make(), os.path.join(out_dir, name))
        for name, make in figures.items()
    }
    loss_curve = callbacks_lib.write_loss_curve(
        history_path, os.path.join(out_dir, "loss_curve.png")
    )
    if loss_curve:
        files["loss_curve.png"] = loss_curve
    return files


def _write_metrics(model, config, data, untrained, run_state, out_dir, precision=None):
    """Evaluates the held-out set (IWAE as `evaluation_plan` sizes it to the training) and
    writes metrics.json; returns `(metrics, epochs in history.csv)`."""
    from keras_vae.training import callbacks as callbacks_lib
    from keras_vae.training.evaluate import evaluate, evaluation_plan

    x_train, x_eval = data.dataset.x_train, data.x_eval
    k, n = evaluation_plan(
        len(x_eval), config.epochs * len(x_train), config.iwae_samples, config.eval_examples
    )
    metrics = evaluate(
        model, x_eval, iwae_samples=k, iwae_examples=n, seed=config.seed,
        progress=bool(config.verbose),
    )  # fmt: skip
    history = callbacks_lib.read_history(run_state.history_path)
    report = {
        "held_out": metrics,
        "untrained": untrained,
        "epochs": len(history),
        "last_epoch": {k: float(v) for k, v in history[-1].items()} if history else None,
        "data": data.dataset.info,
        "likelihood": data.likelihood,
        "precision": precision,  # requested, the Keras policy trained in, and why
        "units": "nats per example; bits_per_dim = nats / (dims * ln 2)",
    }
    atomic_write_text(os.path.join(out_dir, "metrics.json"), json.dumps(report, indent=2) + "\n")
    return metrics, len(history)


def _export(model, out_dir, x_train):
    """The SavedModel and TFLite files under `out_dir`; a failure is a RuntimeError that says
    the rest of the run is in place."""
    try:
        from keras_vae.export import export_all
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


def _epochs_line(result):
    """What this process trained: nothing, all the run's epochs, or the rest of a resumed run
    (epochs numbered from 0, as in history.csv and the start line)."""
    total, before = result["epochs_run"], result.get("initial_epoch", 0)
    now, seconds = total - before, result["seconds"]
    if now <= 0:
        return (
            f"Nothing to train: the run already has {total} epochs; the pictures and metrics "
            "were remade from its model. Pass a larger --epochs to train more."
        )
    if before == 0:
        return f"Trained {total} epochs in {seconds:.1f} s."
    return (
        f"Resumed after epoch {before - 1}: trained epochs {before}-{total - 1} ({now} in this "
        f"process) in {seconds:.1f} s; {total} in all."
    )


def summary(result):
    """The closing lines: the held-out numbers and where every file went."""
    m, u = result["metrics"], result["untrained"]
    lines = [
        "",
        _epochs_line(result),
        f"Held-out negative ELBO {m['negative_elbo']:.3f} nats "
        f"(untrained {'not recorded' if u is None else format(u['negative_elbo'], '.3f')}; "
        f"reconstruction {m['reconstruction']:.3f}, "
        f"KL {m['kl']:.3f}).",
    ]
    if "iwae_log_likelihood" in m:
        lines.append(
            f"Held-out log-likelihood (IWAE, K={m['iwae_samples']}, {m['iwae_examples']} "
            f"examples, {m['iwae_seconds']:.1f} s) {m['iwae_log_likelihood']:.3f} nats = "
            f"{m['iwae_bits_per_dim']:.4f} bits/dim."
        )
        lines.append(
            f"Inference gap log P(X) - ELBO {m['inference_gap']:.3f} nats (estimates "
            "KL(Q(z|X) || P(z|X)))."
        )
    if "active_units" in m:
        lines.append(
            f"Active latent units {m['active_units']} of {m['latent_dim']} "
            "(Cov E[z|X] > 0.01; KL per dimension in kl_per_dimension.png)."
        )
    lines.append(f"Files in {result['run_dir']}:")
    width = max(len(k) for k in result["files"])
    for name, path in result["files"].items():
        lines.append(f"  {name:<{width}}  {path}")
    return "\n".join(lines)
