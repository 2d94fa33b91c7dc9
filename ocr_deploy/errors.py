"""Errors that a user can act on, and the exit codes the command-line tools use.

Every error names the file, what was expected, what was found, and what to do, and
renders as one line. The CLIs print it and exit with its ``exit_code``; nothing
else escapes as a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

# Exit codes shared by every ocr-* command (documented in README.md).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug or an unexpected failure; rerun with --debug for the traceback
EXIT_BAD_INPUT = 2  # bad arguments, missing/corrupt/unsupported input, an existing output
EXIT_PARITY = 3  # the converted model does not match the reference within tolerance
EXIT_CONVERSION = 4  # the converter failed on a model that loaded fine
EXIT_SERVER = 5  # ocr-serve: the Triton server failed to start or stopped on its own
EXIT_ENVIRONMENT = 6  # writing failed for the machine's reason: no space, permission, read-only
EXIT_MEMORY = 7  # a step ran out of memory (host or GPU): a smaller budget or input may fit


class OcrDeployError(Exception):
    """An error with a one-line, actionable message."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, path: object | None, expected: str, found: str, action: str = ""):
        self.path = None if path is None else str(path)
        self.expected = expected
        self.found = found
        self.action = action
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = f"{self.path}: " if self.path else ""
        text = f"{where}expected {self.expected}, found {self.found}"
        if self.action:
            text += f"; {self.action}"
        return " ".join(text.split())  # guarantee a single line


class BadInputError(OcrDeployError):
    """The input file, directory or argument is not what the tool needs."""


class UnsafeModelError(OcrDeployError):
    """Loading the model would run code stored in it, and the user did not opt in."""


class OutputExistsError(OcrDeployError):
    """The output exists and ``--force`` was not given (or another run created it meanwhile)."""


class PairMismatchError(BadInputError):
    """An artifact and its JSON companion (sidecar, parity report) do not belong together."""


class MetadataError(BadInputError):
    """An artifact's ``ocr_deploy.*`` metadata breaks the schema or does not fit its graph."""


class ConversionError(OcrDeployError):
    """The converter (tf2onnx, the graph clean-up or onnx.checker) failed."""

    exit_code = EXIT_CONVERSION


class GraphError(ConversionError):
    """A graph pass cannot rewrite the model it was given."""


class ParityError(OcrDeployError):
    """The converted model does not match its reference within tolerance."""

    exit_code = EXIT_PARITY


class BudgetError(OcrDeployError):
    """A reduced-precision build misses its accuracy budget."""

    exit_code = EXIT_PARITY


class OptionError(BadInputError):
    """An ``ocr_options`` value of the C ABI that the runtime does not accept
    (``OCR_E_INVALID_ARGUMENT``)."""


class WriteError(OcrDeployError):
    """An output could not be written for a reason of the machine: no space left, no
    permission, a read-only filesystem. Nothing was replaced (outputs are atomic)."""

    exit_code = EXIT_ENVIRONMENT


class MemoryExhaustedError(OcrDeployError):
    """A step could not allocate the memory it needed (NumPy, ONNX Runtime, TensorRT or
    CUDA said so): the machine's limit, not a bug. Nothing was written."""

    exit_code = EXIT_MEMORY


class ServerError(OcrDeployError):
    """Triton failed to start, or exited while it should be serving."""

    exit_code = EXIT_SERVER


class RequestError(ValueError):
    """A Triton request the Python-backend model cannot answer; its message goes back to the
    client (no exit code: the server stays up)."""


class CudaError(OcrDeployError):
    """A CUDA runtime call returned an error code (the GPU, its driver or its memory)."""

    exit_code = EXIT_INTERNAL


class CudaMemoryError(CudaError):
    """A CUDA call could not allocate GPU memory (``cudaErrorMemoryAllocation``)."""

    exit_code = EXIT_MEMORY
