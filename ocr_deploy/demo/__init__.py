"""The built-in demo: a synthetic shapes dataset and a small trained OCRNet shipped in
``weights/`` (``demo_ocrnet.h5`` and its model card)."""
