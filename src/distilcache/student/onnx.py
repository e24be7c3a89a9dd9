"""Export a trained student to ONNX: encoder, weighted pooling and projection as one graph.

Inputs token_ids (batch, tokens) int64, lengths (batch,) int64, weights (batch, tokens) float32;
output vectors (batch, dim) float32. Tokenisation and LTD-BERT weighting stay in Python, the same
code `encode` runs, so `load_student(dir, backend="onnx")` only swaps the forward pass.
"""

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distilcache.cache_format.writer import write_atomic
from distilcache.student.directory import HEAD_FILES, ONNX_FILE, load_student_model, weights_digest
from distilcache.student.encode import ONNX_WEIGHTS_KEY, Student, load_student
from distilcache.student.model import BiLSTMEncoder, StudentModel

log = logging.getLogger(__name__)

INPUT_NAMES = ["token_ids", "lengths", "weights"]
OPSET = 17


class _PaddedBiLSTM(nn.Module):
    """A trained bidirectional LSTM without packed sequences, which ONNX lacks: the backward
    direction reads each row reversed within its own length, exactly what packing computes, so
    padding never reaches a real position. Outputs at padded positions are finite but meaningless
    (their pooling weight is 0)."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        self.forward_layers, self.backward_layers = nn.ModuleList(), nn.ModuleList()
        for layer in range(lstm.num_layers):
            for suffix, layers in ((f"l{layer}", self.forward_layers), (f"l{layer}_reverse", self.backward_layers)):
                single = nn.LSTM(getattr(lstm, f"weight_ih_l{layer}").shape[1], lstm.hidden_size, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(single, f"{name}_l0").data.copy_(getattr(lstm, f"{name}_{suffix}").data)
                layers.append(single)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(inputs.shape[1], device=inputs.device)[None, :]
        reverse = (lengths[:, None] - 1 - positions).clamp(min=0)  # position t <-> length-1-t within each row
        for forward_lstm, backward_lstm in zip(self.forward_layers, self.backward_layers):
            index = reverse[:, :, None].expand(-1, -1, inputs.shape[2])
            forward_states, _ = forward_lstm(inputs)
            backward_reversed, _ = backward_lstm(torch.gather(inputs, 1, index))
            index = reverse[:, :, None].expand(-1, -1, backward_reversed.shape[2])
            inputs = torch.cat([forward_states, torch.gather(backward_reversed, 1, index)], dim=-1)
        return inputs


class _ExportableBiLSTM(nn.Module):
    def __init__(self, encoder: BiLSTMEncoder):
        super().__init__()
        self.embedding = encoder.embedding
        self.lstm = _PaddedBiLSTM(encoder.lstm)
        self.concat_embeddings = encoder.concat_embeddings
        self.output_dim = encoder.output_dim

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(token_ids)
        states = self.lstm(embedded, lengths)
        return torch.cat([embedded, states], dim=-1) if self.concat_embeddings else states


def exportable(model: StudentModel) -> StudentModel:
    """The same student with a BiLSTM encoder ONNX can express (a transformer exports as it is)."""
    if isinstance(model.encoder, BiLSTMEncoder):
        trained = model
        model = StudentModel(model.config, _ExportableBiLSTM(model.encoder))
        for head in HEAD_FILES:  # the trained layers, not the fresh ones the constructor made
            setattr(model, head, getattr(trained, head))
    return model.eval()


def export_onnx(student_dir: Path, output: Path | None = None) -> Path:
    """Write the student in student_dir as ONNX (default: student_dir/student.onnx), with the digest of the
    weights it was made from in its metadata: the onnx backend refuses it once they change."""
    output = output or student_dir / ONNX_FILE
    info, model = load_student_model(student_dir)
    model = exportable(model)
    # a ragged example batch; sizes unlike any model dimension, so tracing keeps them symbolic
    lengths = torch.tensor([7, 4, 1])
    mask = torch.arange(7)[None, :] < lengths[:, None]
    example = (torch.where(mask, 5, model.config.pad_id), lengths, (mask / lengths[:, None]).float())
    dynamic = {"token_ids": {0: "batch", 1: "tokens"}, "lengths": {0: "batch"}, "weights": {0: "batch", 1: "tokens"}}

    def write(tmp: Path) -> None:
        import onnx  # the optional extra distilcache[onnx]

        with warnings.catch_warnings():
            # The TorchScript exporter, deprecated but kept on purpose: torch.export (torch 2.13) pins the
            # token dimension of an LSTM to the example's length; this exporter emits ONNX's own LSTM op.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")  # about sequence_lens, unused here
            torch.onnx.export(model, example, str(tmp), input_names=INPUT_NAMES, output_names=["vectors"],
                              dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, {ONNX_WEIGHTS_KEY: weights_digest(student_dir, info)})
        onnx.save(graph, str(tmp))

    write_atomic(output, write)
    log.info("wrote %s", output)
    return output


CHECK_TEXTS = ["The weather is nice today.", "今天天气很好，我们去公园散步吧。", "", "a" * 300, "BERT模型很大，LSTM很小"]


def check_onnx(student_dir: Path, onnx_file: Path, texts: list[str] = CHECK_TEXTS) -> float:
    """The largest absolute difference between onnxruntime's and torch's vectors for texts."""
    import onnxruntime  # the optional extra distilcache[onnx]

    torch_student = load_student(student_dir, backend="torch")
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    onnx_student = Student(student_dir, torch_student.info, torch_student.model, torch_student.tokenizer,
                           torch_student.idf, onnx_session=session, backend="onnx", reader=torch_student.reader)
    return float(np.abs(onnx_student.encode(texts) - torch_student.encode(texts)).max())
