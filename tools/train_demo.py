"""Train the demo OCRNet on the synthetic shapes and ship it with its model card (a
maintainer's tool, not part of the package).

    python tools/train_demo.py

writes ``ocr_deploy/demo/weights/demo_ocrnet.h5`` (Keras 3, no optimizer state) and
``demo_ocrnet.card.json``. Rerunning with the same options reproduces the weights: the data
is generated from fixed seeds, ``--seed`` fixes initialisation and shuffling, and TensorFlow
runs with op determinism.

Loss: ``1.0 * CE(logits, labels) + 0.4 * CE(aux_logits, labels[:, 1::4, 1::4])``. The aux
head is at 1/4 resolution; its target takes the label at pixel ``4i+1`` of each 4x4 cell,
the pixel nearest to the cell centre (``4i+1.5``) under the half-pixel convention that
the 4x bilinear upsampling of the main head uses.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ocr_deploy.demo import DEMO_MODEL, synthetic
from ocr_deploy.metrics import mean_iou
from ocr_deploy.model_card import ModelCard
from ocr_deploy.progress import Progress

DEFAULT_OUT = DEMO_MODEL
AUX_WEIGHT = 0.4


def aux_targets(labels: np.ndarray) -> np.ndarray:
    """Labels ``[N,H,W]`` sampled to the aux head's 1/4 grid: ``labels[:, 1::4, 1::4]``."""
    return labels[:, 1::4, 1::4]


def predict_labels(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Arg-max class map ``[N,H,W]`` of the model's full-resolution logits for uint8 images."""
    _, logits = model.predict(synthetic.normalize(images), batch_size=batch_size, verbose=0)
    return np.argmax(logits, axis=-1).astype(np.uint8)


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train_demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--train-samples", type=int, default=1500,
                        help="fresh training images per epoch")
    parser.add_argument("--val-samples", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate "
                        "(cosine decay to 1%% of it over the run)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of weight initialisation and shuffling (the data splits "
                        "have their own fixed seeds)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output .h5; the model card is written beside it")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    if args.out.suffix != ".h5":
        parser.error("--out must end in .h5")
    return args


def _save_h5_atomic(model, path: Path) -> None:
    """Save ``model`` to ``path`` via a temporary ``.h5`` beside it (Keras needs the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".h5", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp_name, include_optimizer=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp's files are private (0600)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate and save the demo model; return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv)
    progress = Progress(4, quiet=args.quiet)

    # level 3 also hides tf.data's harmless "NodeDef mentions attribute" errors
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ocr_deploy.tf_env import import_keras3, import_tensorflow

    tf = import_tensorflow()
    keras = import_keras3()
    from ocr_deploy.model.ocrnet import OCRNetConfig, build_ocrnet

    config = OCRNetConfig()
    size = (config.input_height, config.input_width)
    with progress.stage(f"generate {args.val_samples} validation images"):
        val_images, val_labels = synthetic.validation_split(args.val_samples, *size)

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    model = build_ocrnet(config)
    steps = args.epochs * -(-args.train_samples // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, steps, alpha=0.01)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(schedule), loss=[ce, ce],
                  loss_weights=[AUX_WEIGHT, 1.0])

    def epoch_data(epoch: int):
        return synthetic.train_split(args.train_samples, *size, start=epoch * args.train_samples)

    start = time.perf_counter()
    with progress.stage(f"train {args.epochs} epochs of {args.train_samples} fresh images"), \
            ThreadPoolExecutor(1) as prefetch:  # next epoch's images are made during this one's
        pending = prefetch.submit(epoch_data, 0)
        for epoch in range(args.epochs):
            epoch_start = time.perf_counter()
            images, labels = pending.result()
            if epoch + 1 < args.epochs:
                pending = prefetch.submit(epoch_data, epoch + 1)
            history = model.fit(synthetic.normalize(images), [aux_targets(labels), labels],
                                batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
            miou, _ = mean_iou(predict_labels(model, val_images), val_labels, config.num_classes)
            progress.note(f"epoch {epoch + 1}/{args.epochs}: loss "
                          f"{history.history['loss'][-1]:.4f}, val mIoU {miou:.4f} "
                          f"({time.perf_counter() - epoch_start:.0f} s)")
    train_seconds = time.perf_counter() - start

    with progress.stage("evaluate on the validation split"):
        miou, per_class = mean_iou(predict_labels(model, val_images), val_labels,
                                   config.num_classes)
        progress.note(f"val mIoU {miou:.4f}; per class: " + ", ".join(
            f"{name} {iou:.4f}" for name, iou in zip(synthetic.CLASS_NAMES, per_class,
                                                     strict=True)))

    with progress.stage(f"save {args.out}"):
        _save_h5_atomic(model, args.out)
        notes = {
            "val_miou": round(miou, 4),
            "val_per_class_iou": {name: round(float(iou), 4) for name, iou
                                  in zip(synthetic.CLASS_NAMES, per_class, strict=True)},
            "val_samples": args.val_samples,
            "train_samples_per_epoch": args.train_samples,
            "train_images_total": args.epochs * args.train_samples,
            "dataset": "ocr_deploy.demo.synthetic (train/validation splits)",
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "seed": args.seed,
            "loss": f"CE(logits) + {AUX_WEIGHT} * CE(aux_logits, labels[:, 1::4, 1::4])",
            "train_seconds": round(train_seconds, 1),
            "train_command": shlex.join(["python", "tools/train_demo.py", *argv]),
            "config": config.to_dict(),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        }
        card = ModelCard(class_names=list(synthetic.CLASS_NAMES),
                         palette=[list(c) for c in synthetic.PALETTE],
                         mean=list(synthetic.MEAN), std=list(synthetic.STD), notes=notes)
        card.save(ModelCard.path_for(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
