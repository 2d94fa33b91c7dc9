"""Send images to the Python-backend model served by ``ocr-serve`` and get label maps back.

    python examples/triton_client.py IMAGE... [--url 127.0.0.1:8001] [--protocol grpc|http]
        [--model demo_ocrnet_fp32_python] [--check ARTIFACT] [-o OUTDIR]

Each image file is sent as it is (encoded bytes, ``IMAGE_BYTES``); the answer ``LABELS`` is
the class index per pixel at the image's own size. ``--check ARTIFACT`` also runs
``Segmenter.predict`` on the decoded image in this process and says whether the label maps
are identical. ``-o`` writes each map as an 8-bit PNG. Needs ``tritonclient[http,grpc]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ocr_deploy.serving.python_model import INPUT_ENCODED, OUTPUT_LABELS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="png/jpg files")
    parser.add_argument("--url", default=None,
                        help="server address (default 127.0.0.1:8001 for gRPC, :8000 for HTTP)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc",
                        help="protocol (default grpc)")
    parser.add_argument("--model", default="demo_ocrnet_fp32_python",
                        help="the Python-backend model (default demo_ocrnet_fp32_python)")
    parser.add_argument("--check", type=Path, default=None, metavar="ARTIFACT",
                        help="compare with Segmenter.predict on this artifact (default: no)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for NAME.labels.png (default: none written)")
    args = parser.parse_args(argv)
    if args.protocol == "grpc":
        import tritonclient.grpc as triton
    else:
        import tritonclient.http as triton
    url = args.url or ("127.0.0.1:8001" if args.protocol == "grpc" else "127.0.0.1:8000")
    segmenter = None
    if args.check:
        from ocr_deploy.runtime import Segmenter

        segmenter = Segmenter.open(args.check)
    different = 0
    with triton.InferenceServerClient(url) as client:
        for path in args.images:
            data = np.array([[path.read_bytes()]], dtype=object)
            request = triton.InferInput(INPUT_ENCODED, list(data.shape), "BYTES")
            request.set_data_from_numpy(data)
            labels = client.infer(args.model, [request]).as_numpy(OUTPUT_LABELS)[0]
            classes, counts = np.unique(labels, return_counts=True)
            share = ", ".join(f"{c}: {n / labels.size:.1%}" for c, n in zip(classes, counts,
                                                                          strict=True))
            line = f"{path.name}: {labels.shape[0]}x{labels.shape[1]} label map ({share})"
            if segmenter is not None:
                from ocr_deploy.images import read_image

                same = np.array_equal(labels, segmenter.predict(read_image(path)))
                different += not same
                line += "; identical to Segmenter.predict" if same else \
                    "; DIFFERENT from Segmenter.predict"
            print(line)
            if args.output:
                from PIL import Image

                args.output.mkdir(parents=True, exist_ok=True)
                Image.fromarray(labels.astype(np.uint8)).save(
                    args.output / f"{path.stem}.labels.png")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
