"""ocr-deploy: Keras OCRNet to verified ONNX, TensorRT and ONNX Runtime deployments.

Importing the package is cheap and never imports TensorFlow; the export stage
(``ocr_deploy.export``) and the model code (``ocr_deploy.model``) do, when used.
"""

__version__ = "0.1.0"
