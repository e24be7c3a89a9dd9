"""Static token vectors: the teacher's output for each vocabulary token on its own, stored in the cache
(model2vec's idea) so a student's embedding can start from the teacher without loading it. A large
vocabulary (a SentencePiece teacher's 250k pieces) gets vectors only for the pieces the cache uses."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from distilcache.devices import autocast
from distilcache.teacher.model import forward_layer
from distilcache.weighting.student_vocab import LARGE_VOCABULARY

METHOD = ("teacher output at the token's position for the input [CLS] prefix token [SEP] (the cache's teacher prefix, "
          "often none), at the pooling layer")


def coverage(tokenizer: PreTrainedTokenizerBase, partitioned: bool) -> str:
    """all: every vocabulary token; used: the pieces the cache's rows use and the special tokens. A run split
    into partitions cannot know every row's pieces when it computes them, so it covers all."""
    return "used" if len(tokenizer) > LARGE_VOCABULARY and not partitioned else "all"


def used_token_ids(shards: list[Path], tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    """The teacher token ids the shards' token_ids hold, with the special tokens; sorted."""
    used = {int(i) for i in tokenizer.all_special_ids}
    for path in shards:
        column = pq.read_table(path, columns=["token_ids"])["token_ids"]
        used.update(pc.unique(pc.list_flatten(column)).to_pylist())
    return np.array(sorted(i for i in used if i < len(tokenizer)), dtype=np.int64)  # added student tokens have none


@torch.inference_mode()
def compute_token_vectors(model: nn.Module, tokenizer: PreTrainedTokenizerBase, token_ids: np.ndarray, layer: int,
                          prefix: str, device: torch.device, precision: str, batch_size: int = 512) -> np.ndarray:
    """(len(token_ids), dim) float32: row i is the vector of token_ids[i]."""
    head = ([tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else [])
    head += tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    tail = [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None else []
    vectors = np.zeros((len(token_ids), model.config.hidden_size), dtype=np.float32)
    for start in tqdm(range(0, len(token_ids), batch_size), desc="token vectors", unit=" batches", mininterval=1):
        ids = torch.as_tensor(token_ids[start : start + batch_size], dtype=torch.long)
        inputs = torch.cat([torch.tensor(head, dtype=torch.long).expand(len(ids), -1), ids[:, None],
                            torch.tensor(tail, dtype=torch.long).expand(len(ids), -1)], dim=1)
        batch = {"input_ids": inputs.to(device), "attention_mask": torch.ones_like(inputs).to(device)}
        with autocast(device, precision):
            hidden = forward_layer(model, batch, layer)
        vectors[start : start + len(ids)] = hidden[:, len(head)].float().cpu().numpy()
    return vectors


def token_vectors_table(token_ids: np.ndarray, vectors: np.ndarray, dtype: str) -> pa.Table:
    flat = pa.array(vectors.astype(dtype).reshape(-1))
    return pa.table({"token_id": pa.array(token_ids.astype(np.int32)),
                     "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
