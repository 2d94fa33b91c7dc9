"""GPU facts through cuda-python (the runtime API), for sidecars and compatibility checks."""

from __future__ import annotations


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def gpu_info(device: int = 0) -> dict:
    """``{"gpu_name", "compute_capability"}`` of ``device``; RuntimeError without a GPU."""
    cudart = _cudart()
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or count <= device:
        raise RuntimeError(f"cudaGetDeviceCount: {err}, {count if not err else 0} device(s)")
    err, props = cudart.cudaGetDeviceProperties(device)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"cudaGetDeviceProperties: {err}")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) \
        else str(props.name)
    return {"gpu_name": name.rstrip("\x00"),
            "compute_capability": f"{props.major}.{props.minor}"}
