"""``ocr-package ARTIFACT --triton REPO | --deepstream DIR``: deployment configuration
from an artifact's metadata and sidecar.

--triton REPO     a Triton model repository: the inference model (onnxruntime_onnx or
                  tensorrt_plan), a Python-backend model (images in, label maps
                  at each image's size out), labels, version folders and a README.
                  Serve it here with `ocr-serve REPO` (the Python-backend model).
--deepstream DIR  a DeepStream nvinfer configuration for segmentation and a labels file
                  (for GPU machines with DeepStream; it cannot run here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ocr_deploy.cli_support import (
    EXIT_OK,
    add_force,
    add_renamed,
    add_reporting,
    parser_for,
    positive_int,
    print_json,
    run_command,
)
from ocr_deploy.errors import BadInputError
from ocr_deploy.packaging.artifact_info import read_artifact
from ocr_deploy.packaging.deepstream import write_deepstream
from ocr_deploy.packaging.triton_repo import TritonOptions, write_triton_repository


def build_parser() -> argparse.ArgumentParser:
    defaults = TritonOptions()
    parser = parser_for("ocr-package", __doc__)
    parser.add_argument("artifact", type=Path, metavar="ARTIFACT",
                        help="an exported or built .onnx, or a TensorRT .engine (with sidecar)")
    parser.add_argument("--triton", type=Path, metavar="REPO",
                        help="write a Triton model repository here, created or added to "
                             "(default: none)")
    parser.add_argument("--deepstream", type=Path, metavar="DIR",
                        help="write a DeepStream nvinfer configuration here (default: none)")
    parser.add_argument("--name", help="model name (default: the artifact's file name)")
    parser.add_argument("--model-version", type=positive_int, default=defaults.version,
                        metavar="N", help="Triton model version folder")
    add_renamed(parser, "--version", "--model-version", "model_version", type=positive_int)
    parser.add_argument("--max-batch", type=positive_int, default=None, metavar="N",
                        help="Triton max_batch_size (default: the engine profile's max, else 8); "
                        "nvinfer batch-size (default: the profile's opt, else 1)")
    parser.add_argument("--no-dynamic-batching", action="store_true",
                        help="leave Triton's dynamic batcher off (it is on by default)")
    parser.add_argument("--max-queue-delay-us", type=int, default=defaults.max_queue_delay_us,
                        metavar="US", help="dynamic batcher's wait for more requests, µs")
    parser.add_argument("--instances", type=positive_int, default=defaults.instances,
                        metavar="N", help="GPU instances of the inference model")
    parser.add_argument("--python-instances", type=positive_int,
                        default=defaults.python_instances, metavar="N",
                        help="CPU instances of the Python-backend model (NAME_python)")
    add_renamed(parser, "--e2e-instances", "--python-instances", "python_instances",
                type=positive_int, metavar="N")
    parser.add_argument("--other-gpu-engines", nargs="+", type=Path, default=[],
                        metavar="ENGINE",
                        help="TensorRT engines of the same model built on other GPUs: they "
                             "join the Triton model, which picks the file for its GPU by "
                             "compute capability (cc_model_filenames) (default: none)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="ONNX Runtime threads per end-to-end instance (0: ONNX Runtime's "
                             "choice)")
    add_force(parser, "existing models or files of the same name")
    add_reporting(parser, "what was written")
    return parser


def package(args: argparse.Namespace) -> int:
    if not args.triton and not args.deepstream:
        raise BadInputError(None, "--triton REPO and/or --deepstream DIR", "neither",
                            "say what to write")
    if args.other_gpu_engines and not args.triton:
        raise BadInputError(None, "--other-gpu-engines with --triton REPO", "no --triton",
                            "add --triton REPO (DeepStream configs take one engine)")
    if args.threads < 0 or args.max_queue_delay_us < 0:
        raise BadInputError(None, "--threads and --max-queue-delay-us >= 0",
                            f"{args.threads} and {args.max_queue_delay_us}", "fix the value")
    info = read_artifact(args.artifact)
    written: dict[str, list[str]] = {}
    if args.triton:
        options = TritonOptions(name=args.name, version=args.model_version,
                                max_batch=args.max_batch,
                                dynamic_batching=not args.no_dynamic_batching,
                                max_queue_delay_us=args.max_queue_delay_us,
                                instances=args.instances, python_instances=args.python_instances,
                                threads=args.threads, force=args.force,
                                gpu_engines=args.other_gpu_engines)
        written["triton"] = [str(p) for p in write_triton_repository(info, args.triton,
                                                                     options)]
    if args.deepstream:
        written["deepstream"] = [str(p) for p in write_deepstream(info, args.deepstream,
                                                                  args.force, args.max_batch)]
    if args.json:
        print_json({"artifact": str(args.artifact), "precision": info.precision, **written})
    elif not args.quiet:
        for kind, paths in written.items():
            print(f"ocr-package: {kind}: {', '.join(paths)}", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_command("ocr-package", package, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
