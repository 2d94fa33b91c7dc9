"""A corpus of real Keras segmentation models for ``ocr-export`` (issue #9).

Each entry builds a model in code with random weights, from public libraries
(``keras.applications``, Keras-Hub, keras-unet-collection) under OCR heads written in the
styles blog posts and repositories use, and saves it the way a user would. The tests
(``tests/test_export_corpus.py``) and ``benchmarks/export_corpus.py`` export every entry
through the real ``ocr-export`` entry point.
"""

from corpus.models import CORPUS, CorpusModel

__all__ = ["CORPUS", "CorpusModel"]
