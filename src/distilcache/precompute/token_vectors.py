"""Static token vectors: the teacher's output for every vocabulary token on its own, stored in the
cache (model2vec's idea) so a student's embedding can start from the teacher without loading it."""

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from distilcache.devices import autocast
from distilcache.teacher.model import forward_layer

METHOD = "teacher output at the token's position for the input [CLS] token [SEP], at the pooling layer"


@torch.inference_mode()
def compute_token_vectors(model: nn.Module, tokenizer: PreTrainedTokenizerBase, layer: int, device: torch.device,
                          precision: str, batch_size: int = 512) -> np.ndarray:
    """(vocabulary size, dim) float32; row i is token id i."""
    vocab_size = len(tokenizer)
    prefix = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
    suffix = [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None else []
    vectors = np.zeros((vocab_size, model.config.hidden_size), dtype=np.float32)
    for start in tqdm(range(0, vocab_size, batch_size), desc="token vectors", unit=" batches", mininterval=1):
        ids = torch.arange(start, min(start + batch_size, vocab_size))
        inputs = torch.cat([torch.tensor(prefix).expand(len(ids), -1), ids[:, None], torch.tensor(suffix).expand(len(ids), -1)], dim=1)
        batch = {"input_ids": inputs.to(device), "attention_mask": torch.ones_like(inputs).to(device)}
        with autocast(device, precision):
            hidden = forward_layer(model, batch, layer)
        vectors[start : start + len(ids)] = hidden[:, len(prefix)].float().cpu().numpy()
    return vectors


def token_vectors_table(vectors: np.ndarray, dtype: str) -> pa.Table:
    flat = pa.array(vectors.astype(dtype).reshape(-1))
    return pa.table({"token_id": pa.array(np.arange(len(vectors), dtype=np.int32)),
                     "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
