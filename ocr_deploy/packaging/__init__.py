"""Deployment packages from a built artifact: a Triton model repository
(``triton_repo``) and a DeepStream ``nvinfer`` configuration (``deepstream``), both
derived from the artifact's metadata and sidecar (``artifact_info``)."""
