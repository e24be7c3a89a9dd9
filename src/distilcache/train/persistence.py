"""The student directory: what `train` writes and `load_student` reads.

distilcache_student.json   config, pooling rule, teacher and cache provenance (written last)
model.safetensors          encoder weights (a transformer also has config.json: AutoModel loads it)
projection.safetensors     the linear map to the teacher's dim, when the encoder's width differs
attention.safetensors      the learned per-token scores, for a student trained with attention pooling
tokenizer files, idf.parquet
student.onnx               only after `distilcache export-onnx`: the forward pass for onnxruntime
"""

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from distilcache.cache_format.writer import write_json_atomic
from distilcache.train.models import BiLSTMEncoder, StudentConfig, StudentModel, TransformerEncoder

STUDENT_FILE = "distilcache_student.json"
FORMAT = "distilcache-student"
WEIGHTS_FILE = "model.safetensors"
PROJECTION_FILE = "projection.safetensors"
ATTENTION_FILE = "attention.safetensors"
HEAD_FILES = {"projection": PROJECTION_FILE, "attention": ATTENTION_FILE}  # the layers after the encoder
IDF_FILE = "idf.parquet"
ONNX_FILE = "student.onnx"  # only after `distilcache export-onnx`


def save_student(directory: Path, model: StudentModel, info: dict[str, Any], tokenizer_dir: Path, idf_file: Path | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if isinstance(model.encoder, TransformerEncoder):
        model.encoder.model.save_pretrained(str(directory))
    else:
        save_file({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}, str(directory / WEIGHTS_FILE))
    for head, file in HEAD_FILES.items():
        weights = {k.removeprefix(f"{head}."): v for k, v in state.items() if k.startswith(f"{head}.")}
        if weights:
            save_file(weights, str(directory / file))
    for path in tokenizer_dir.iterdir():
        shutil.copy2(path, directory / path.name)
    if idf_file is not None:
        shutil.copy2(idf_file, directory / IDF_FILE)
    record = {"format": FORMAT, "format_version": 1, "student": model.config.to_dict()} | info
    write_json_atomic(record, directory / STUDENT_FILE)


def load_student_model(directory: Path) -> tuple[dict[str, Any], StudentModel]:
    path = directory / STUDENT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a distilcache student directory")
    info = json.loads(path.read_text(encoding="utf-8"))
    if info.get("format") != FORMAT:
        raise ValueError(f"{path}: not a distilcache student (format={info.get('format')!r})")
    config = StudentConfig(**info["student"])
    if config.kind == "transformer":
        encoder = TransformerEncoder.load(directory)
    else:
        encoder = BiLSTMEncoder(config)
        encoder.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    model = StudentModel(config, encoder)
    for head, file in HEAD_FILES.items():
        if getattr(model, head) is not None:
            getattr(model, head).load_state_dict(load_file(str(directory / file)))
    return info, model.eval()
