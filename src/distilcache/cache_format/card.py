"""The dataset card (README.md) in every cache: what it holds, how it was made, how to load it.

Its YAML header is a Hugging Face dataset card that points `datasets` at the shards, so
`datasets.load_dataset("<cache dir>")` reads the rows and nothing else.
"""

from typing import Any

from distilcache.cache_format.layout import SHARDS_DIR


def dataset_card(manifest: dict[str, Any], name: str) -> str:
    teacher, pooling, vector = manifest["teacher"], manifest["pooling"], manifest["vector"]
    prefix_note = f", the teacher read {pooling['prefix']!r} before each text" if pooling.get("prefix") else ""
    inputs = "\n".join(
        f"| {i['name']} | {i['format']} | {i.get('text_field', '(line)')} | {i.get('target_field') or '—'} | "
        f"{i['input_rows']:,} | {i['rows']:,} | {i['rejected']:,} |"
        for i in manifest["inputs"]
    )
    idf = manifest.get("idf")
    idf_line = (f"IDF table `{idf['file']}`: {idf['num_words']:,} words over {idf['num_documents']:,} texts, "
                f"idf = {idf['formula']}, segmenter {idf['segmenter']}." if idf else "No IDF table (not IDF pooling).")
    student = manifest.get("student_tokenizer")
    student_line = (f"Student tokenizer `{student['dir']}/`: {student['rule']} ({student['added_tokens']:,} added)."
                    if student else "Students use the teacher's tokenizer (`tokenizer/`).")
    augment = manifest.get("augment")
    augment_line = (f"\n\nAfter each row without a target come {augment['copies']} variants of its text "
                    f"({', '.join(augment.get('operations', []))}; ids `{augment.get('ids')}`), encoded by the teacher like any row."
                    if augment else "")
    states = manifest.get("token_states")
    states_line = (f" `token_states`: the teacher's state at each of `token_ids`, as its {states['dim']} principal components "
                   f"(`{states['file']}`) in float16, or null where the teacher read another text." if states else "")
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: {SHARDS_DIR}/part-*.parquet
tags:
- sentence-embeddings
- distillation
- distilcache
---

# {name}: sentence vectors from {teacher['name']}

A distilcache cache (format v{manifest['format_version']}, made by distilcache
{manifest['package_version']}): one teacher sentence vector per input row, for training
small student encoders as often as wanted without running the teacher again.

| | |
|---|---|
| rows | {manifest['total_rows']:,} in {len(manifest['shards'])} shard(s) (`{SHARDS_DIR}/`), {manifest['rejected']['count']:,} input rows rejected (`{manifest['rejected']['file']}`) |
| teacher | {teacher['name']} ({teacher['architecture']}, {teacher['num_layers']} layers, hidden {teacher['hidden_size']}) |
| pooling | {pooling['mode']}, layer {pooling['layer']}, smoothing {pooling['smoothing']}, max length {pooling['max_length']}, normalised {pooling['normalize']}{prefix_note} |
| vectors | {vector['dim']} × {vector['dtype']} |
| fingerprint | `{manifest['fingerprint']}` |

{idf_line} {student_line} Everything, with the sha256 of every file, is in `manifest.json`;
`distilcache verify <dir>` checks it.{augment_line}

## Inputs

| file | format | text field | target field (what the teacher encoded) | rows in | rows | rejected |
|---|---|---|---|---|---|---|
{inputs}

## Columns

`id` (string, unique), `text` (what students read), `target_text` (what the teacher encoded
instead of `text`, or null), `token_ids` and `weights` (the students' tokens of `text` and their
pooling weights, summing to 1), `truncated`, `vector` (fixed-size list of {vector['dim']} {vector['dtype']}).{states_line}

## Load it

```python
import datasets, pyarrow.dataset as ds
rows = datasets.load_dataset("path/to/this/dir", split="train")   # reads the shards listed above
table = ds.dataset("path/to/this/dir/{SHARDS_DIR}", format="parquet").to_table()
```

pandas (`pd.read_parquet(".../{SHARDS_DIR}")`) and duckdb
(`SELECT * FROM '.../{SHARDS_DIR}/*.parquet'`) read it as well. The texts keep the licences of
their sources.
"""
