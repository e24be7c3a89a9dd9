"""A trained student as a product: the models, the directory that holds one (written whole, loaded with
every name, checksum and size checked), `load_student(dir).encode(texts)`, and its ONNX export.
Imports neither `train/` nor `precompute/`."""

from distilcache.lazy import lazy_attributes

_SOURCES = {
    "BACKENDS": "distilcache.student.backends", "Student": "distilcache.student.encode", "StudentConfig": "distilcache.student.model",
    "StudentError": "distilcache.student.directory", "StudentModel": "distilcache.student.model",
    "load_student": "distilcache.student.encode",
}
__all__ = sorted(_SOURCES)
__getattr__ = lazy_attributes(__name__, _SOURCES)
