"""A distilcache student as a sentence-transformers module, so that `SentenceTransformer(dir)` runs any
student (a BiLSTM, IDF weights, attention pooling) exactly as `load_student(dir).encode` does.

The module's folder is a student directory; loading it goes through load_student (names, checksums and
shapes checked, no code run). sentence-transformers imports a module class outside its own package only
with `trust_remote_code=True`: that imports this installed class, and the exported folder holds no code.
"""

from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules import InputModule

from distilcache.cache_format.errors import ConfigError
from distilcache.student.directory import copy_student
from distilcache.student.encode import load_student


class DistilcacheStudent(InputModule):
    """Tokenises and weights texts as precompute did, and runs the student's forward pass."""

    save_in_root = False  # a transformer student's config.json would collide with the model's files

    def __init__(self, directory: str | Path):
        super().__init__()
        self.student = load_student(Path(directory), backend="torch")
        self.model = self.student.model  # a submodule: SentenceTransformer.to(device) moves it
        self.tokenizer = self.student.tokenizer

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        texts = [(prompt or "") + text for text in inputs]
        wrong = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if wrong is not None:
            raise ConfigError(f"a distilcache student reads text: inputs[{wrong}] is {type(inputs[wrong]).__name__}")
        batch = self.student.padded(texts)
        return {"token_ids": batch.token_ids, "lengths": batch.lengths, "weights": batch.weights}

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        vectors = self.model(features["token_ids"], features["lengths"], features["weights"])
        return features | {"sentence_embedding": vectors}

    def get_embedding_dimension(self) -> int:
        return self.student.dim

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        copy_student(self.student.directory, self.student.info, Path(output_path))

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> "DistilcacheStudent":
        directory = Path(model_name_or_path) / subfolder
        if not directory.is_dir():  # never fetched from a hub: local directories only
            raise FileNotFoundError(f"{directory}: not a local directory (a distilcache student is loaded from disk only)")
        return cls(directory)
