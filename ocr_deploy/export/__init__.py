"""Export stage: load a Keras OCRNet, convert it to ONNX with tf2onnx, verify parity.

Imports TensorFlow when used; the runtime never imports this package.
"""
