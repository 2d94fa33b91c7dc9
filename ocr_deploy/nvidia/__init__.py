"""The one home for CUDA (cuda-python) and TensorRT helpers, shared by the runtime, the
engine builder and the GPU benchmarks. TensorFlow-free; imports nothing NVIDIA until used."""
