import pyarrow as pa

from distilcache.cache_format.layout import FORMAT_VERSION

VECTOR_DTYPES = {"float16": pa.float16(), "float32": pa.float32()}


def vector_type(dim: int, dtype: str, version: int = FORMAT_VERSION) -> pa.DataType:
    """The `vector` column's type: dim values of dtype, declared non-null from format version 2 on."""
    if dtype not in VECTOR_DTYPES:
        raise ValueError(f"vector dtype must be one of {sorted(VECTOR_DTYPES)}, got {dtype!r}")
    return pa.list_(pa.field("element", VECTOR_DTYPES[dtype], nullable=version < 2), dim)


def shard_schema(dim: int, dtype: str, token_states: int = 0, version: int = FORMAT_VERSION) -> pa.Schema:
    """Arrow schema of every shard row in that cache-format version; with token_states = k > 0, the optional last column."""
    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            # parallel text: what the teacher encoded instead of text (null: the teacher encoded text)
            pa.field("target_text", pa.string(), nullable=True),
            # student token ids of text without special tokens, after truncation: the teacher's
            # tokenizer, or the cache's student_tokenizer/ when it has one (teacher ids + added ones)
            pa.field("token_ids", pa.list_(pa.int32()), nullable=False),
            # pooling weights aligned with token_ids; they sum to 1 (empty when no token is left)
            pa.field("weights", pa.list_(pa.float32()), nullable=False),
            pa.field("truncated", pa.bool_(), nullable=False),
            pa.field("vector", vector_type(dim, dtype, version), nullable=False),
        ]
    )
    if not token_states:
        return schema
    # precompute --token-states k: the teacher's state at each of token_ids' positions, projected onto the k
    # principal components of token_projection.parquet; null where the teacher did not read token_ids (a row
    # with a target text)
    return schema.append(pa.field("token_states", pa.list_(pa.list_(pa.float16(), token_states)), nullable=True))


IDF_SCHEMA = pa.schema(
    [
        pa.field("word", pa.string(), nullable=False),
        pa.field("df", pa.int64(), nullable=False),
        pa.field("idf", pa.float64(), nullable=False),
    ]
)
