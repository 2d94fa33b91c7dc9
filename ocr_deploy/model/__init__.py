"""OCRNet in Keras 3: the OCR layers, the network builder, and a legacy blog-style variant."""
