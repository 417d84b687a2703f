"""The documented REST responses, regenerated from a real export.

`docs/requests/<signature>.request.json` are hand-written request bodies; this module answers
them the way TF Serving's REST `:predict` would, from a SavedModel written by
`keras-vae-export` (or by `keras-vae-train`, which exports to `RUN/export/vae/1`), and writes
`<signature>.response.json` beside them. With `--doc`, the same responses replace the old ones
inline in the Markdown that shows them.

The numbers depend on the trained weights, and slightly on the CPU (oneDNN kernels) and the
TensorFlow version; the keys, shapes and dtypes do not.

Example:
    keras-vae-train --run-dir /tmp/rest-run
    python -m keras_vae.export.rest_examples /tmp/rest-run --out docs/requests --doc docs/serving.md
"""

import argparse
import json
import os
import sys

SIGNATURES = ("serving_default", "encode", "decode", "sample", "log_likelihood")
DECIMALS = 4


def rest_predict(loaded, body):
    """What TF Serving answers to `POST /v1/models/NAME:predict` with `body` (columnar form).

    Inputs are converted to the signature's dtypes, as TF Serving does; a response with one
    output tensor holds it directly under "outputs", several are keyed by name (TF Serving's
    REST API reference, "Response format").
    """
    import tensorflow as tf

    fn = loaded.signatures[body.get("signature_name", "serving_default")]
    specs = fn.structured_input_signature[1]
    inputs = body["inputs"]
    if not isinstance(inputs, dict):
        (only,) = specs
        inputs = {only: inputs}
    if set(inputs) != set(specs):
        raise ValueError(f"request inputs {sorted(inputs)} != signature inputs {sorted(specs)}")
    outputs = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
    outputs = {k: v.numpy().tolist() for k, v in outputs.items()}
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values()))}
    return {"outputs": outputs}


def compact_json(value, indent=0):
    """Indented JSON with short lists on one line: an 8x8 image reads as 8 lines in the docs."""
    pad = "  " * indent
    if len(json.dumps(value)) <= 90 - len(pad):
        return pad + json.dumps(value)
    if isinstance(value, dict):
        items = [f'{pad}  "{k}": {compact_json(v, indent + 1).lstrip()}' for k, v in value.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        inner = [compact_json(v, indent + 1) for v in value]
        return pad + "[\n" + ",\n".join(inner) + "\n" + pad + "]"
    return pad + json.dumps(value)


def version_dir(path):
    """The SavedModel version folder named by `path`: the folder itself, or the highest
    numbered version under `path/export/vae/` (a training run) or `path/vae/` (an export)."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    for model_dir in (os.path.join(path, "export", "vae"), os.path.join(path, "vae")):
        if os.path.isdir(model_dir):
            versions = [int(v) for v in os.listdir(model_dir) if v.isdigit()]
            if versions:
                return os.path.join(model_dir, str(max(versions)))
    raise FileNotFoundError(
        f"No SavedModel in {path!r}; expected a version folder (with saved_model.pb), a training "
        "run folder (with export/vae/<version>/) or an export folder (with vae/<version>/). "
        "Run keras-vae-train or keras-vae-export first."
    )


def write_rest_examples(saved_model_dir, out_dir, decimals=DECIMALS):
    """Writes `<signature>.response.json` for each `<signature>.request.json` in `out_dir`.

    Returns:
        dict: signature -> `(old response text or None, new response text)`.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(os.fspath(saved_model_dir))
    changes = {}
    for signature in SIGNATURES:
        with open(os.path.join(out_dir, f"{signature}.request.json"), encoding="utf-8") as f:
            request = json.load(f)
        response = rest_predict(loaded, request)
        rounded = json.loads(json.dumps(response), parse_float=lambda s: round(float(s), decimals))
        path = os.path.join(out_dir, f"{signature}.response.json")
        old = None
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        new = compact_json(rounded) + "\n"
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
        changes[signature] = (old, new)
    return changes


def update_doc(doc_path, changes):
    """Replaces each old response shown in `doc_path` by the new one; returns the signatures
    whose old response the document did not show."""
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    for old, new in changes.values():
        if old is not None and old.strip() in text:
            text = text.replace(old.strip(), new.strip())
    missing = [name for name, (_, new) in changes.items() if new.strip() not in text]
    with open(doc_path, "w", encoding="utf-8") as f:
        f.write(text)
    return missing


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_vae.export.rest_examples",
        description="Answer docs/requests/*.request.json from a real export and write the "
        "*.response.json beside them (and, with --doc, inline in the Markdown).",
        epilog=__doc__[__doc__.index("Example:") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="RUN_OR_VERSION_DIR", help="a training run, an export or a version folder"
    )
    parser.add_argument(
        "--out", default=os.path.join("docs", "requests"), help="folder of the request files"
    )
    parser.add_argument("--doc", help="a Markdown file showing the responses, updated in place")
    args = parser.parse_args(argv)
    try:
        path = version_dir(args.model)
        if not os.path.isfile(os.path.join(args.out, "encode.request.json")):
            raise FileNotFoundError(
                f"--out {args.out!r} has no encode.request.json; expected the folder of the "
                "request bodies (docs/requests)."
            )
        if args.doc and not os.path.isfile(args.doc):
            raise FileNotFoundError(f"--doc {args.doc!r} is not a file; expected a Markdown file.")
    except FileNotFoundError as e:
        print(f"rest_examples: error: {e}", file=sys.stderr)
        return 2
    from keras_vae.training import console

    console.start_tensorflow()
    changes = write_rest_examples(path, args.out)
    print(f"Responses from {path} written to {args.out}")
    if args.doc:
        missing = update_doc(args.doc, changes)
        print(f"Updated {args.doc}")
        for signature in missing:
            print(f"  {signature}: the old response was not found; update it by hand")
    return 0


if __name__ == "__main__":
    sys.exit(main())
