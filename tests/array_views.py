"""Views of a device array through one interchange protocol only, so that each path of
``ocr_deploy.backends.tensors.tensor_ref`` can be driven with any array library (PyTorch,
CuPy, the simulated arrays of ``cuda_sim``)."""

from __future__ import annotations


class DLPackOnly:
    """An array seen only through ``__dlpack__`` (and its ``shape``)."""

    def __init__(self, array):
        self.array, self.shape = array, tuple(array.shape)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)


class CudaArrayInterfaceOnly:
    """An array seen only through ``__cuda_array_interface__`` (and its ``shape``).

    ``stream``: a callable giving the v3 ``"stream"`` entry to report (for a producer such
    as PyTorch, whose v2 interface has none); default the array's own entry."""

    def __init__(self, array, stream=None):
        self.array, self.shape, self._stream = array, tuple(array.shape), stream

    @property
    def __cuda_array_interface__(self) -> dict:
        interface = dict(self.array.__cuda_array_interface__)
        if self._stream is not None:
            interface.update(version=3, stream=self._stream())
        return interface
