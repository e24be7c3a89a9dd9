"""Hugging Face directories opened without running anything they ship, and written under the model's own weight names.

Teachers, the tokenizers inside caches, seed layers and student directories are often someone else's
files. transformers runs Python shipped in a directory when its config names it (`auto_map`), and
asks first only when `trust_remote_code` is unset, so a "y" on stdin would run it. Every load here
passes trust_remote_code=False and local_files_only=True, after refusing, by name, a directory that
holds Python files or a config that asks for its own code.
"""

import json
from pathlib import Path
from typing import Any

from distilcache.cache_format.errors import DistilcacheError

# the files a tokenizer is made of: a teacher's identity hashes them, a student copies these and no others
TOKENIZER_FILES = frozenset({
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
})
# the files whose `auto_map` makes transformers import code from the directory
_CONFIG_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
_MAX_CONFIG_BYTES = 16 << 20


class ShippedCodeError(DistilcacheError):
    """A model or tokenizer directory carries code of its own, which distilcache never runs."""


def check_no_shipped_code(directory: Path) -> None:
    """Refuse a directory holding a .py file (at any depth, links not followed) or a config with auto_map."""
    directory = Path(directory)
    python = sorted(p for p in directory.rglob("*.py"))
    if python:
        raise ShippedCodeError(f"{python[0]}: {directory} ships Python code; distilcache never runs code from a model "
                               "or tokenizer directory (remove the .py files if the model does not need them)")
    for name in _CONFIG_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise ShippedCodeError(f"{path}: larger than {_MAX_CONFIG_BYTES} bytes; not a configuration file")
        try:
            config = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ShippedCodeError(f"{path}: not valid UTF-8 JSON ({exc})") from None
        if isinstance(config, dict) and "auto_map" in config:
            raise ShippedCodeError(f"{path}: its auto_map asks to run code shipped with the directory; "
                                   "distilcache loads only the model classes built into transformers")


def load_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    check_no_shipped_code(directory)
    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)


def load_config(directory: Path) -> Any:
    from transformers import AutoConfig

    check_no_shipped_code(directory)
    return AutoConfig.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)


def load_model(directory: Path, **kwargs: Any) -> Any:
    """AutoModel from the directory; kwargs go to from_pretrained (e.g. use_safetensors=True)."""
    from transformers import AutoModel

    check_no_shipped_code(directory)
    return AutoModel.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False, **kwargs)


def save_model(model: Any, directory: Path) -> None:
    """config.json and model.safetensors in directory, the weights under the names the model's state_dict gives
    them: save_pretrained in some transformers releases (5.3) writes a LayerNorm that a checkpoint filled under
    its legacy names (gamma, beta), which a check of the file's names against the model's then misses."""
    from safetensors.torch import save_file

    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(str(directory))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(Path(directory) / "model.safetensors"), metadata={"format": "pt"})
