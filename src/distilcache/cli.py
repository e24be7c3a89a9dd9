"""distilcache precompute | idf | merge | inspect | verify | train | finetune | encode | export-onnx | export | evaluate | demo.

Parse the arguments, build the library's config by keyword, call the library. Every default and
every choice comes from the config dataclasses and their constants, which import without torch.
"""

import argparse
import dataclasses
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from distilcache.cache_format import CacheError, open_cache, verify_cache
from distilcache.cache_format.errors import ConfigError, DistilcacheError
from distilcache.cache_format.layout import MANIFEST_FILE
from distilcache.cache_format.summary import describe
from distilcache.evaluate.config import EvaluationConfig
from distilcache.inputs import InputSpec
from distilcache.precompute.config import AUGMENT_OPERATIONS, DTYPES, ENGINES, PRECISIONS, STUDENT_VOCABS, PrecomputeConfig
from distilcache.precompute.workers import spare_cores
from distilcache.student.backends import BACKENDS, EXPORT_MODULES
from distilcache.teacher.config import POOLING_MODES, PoolingConfig
from distilcache.train import config as train_config
from distilcache.train.config import FinetuneConfig, TrainConfig


def _location(value: str) -> str | Path:
    """A cache location: a URI stays a string (a Path would fold its '//'), anything else is a Path."""
    return value if "://" in value else Path(value)


def _default(config: type, name: str) -> Any:
    """The default of one field of a config dataclass: the one place it is written."""
    field = config.__dataclass_fields__[name]
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _options(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The parsed options that are fields of `config`, by keyword."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config) if f.name in vars(args)}


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _dims(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected dimensions separated by commas, such as 64,128,256; got {text!r}") from None


# ---------------------------------------------------------------- options shared by several commands


def _add_input_options(parser: argparse.ArgumentParser, targets: bool = True) -> None:
    parser.add_argument("--text-field", "--text-column", default=_default(InputSpec, "text_field"),
                        help="text column/field of .jsonl/.csv/.tsv/.parquet inputs: what students read (default %(default)s)")
    parser.add_argument("--id-field", "--id-column", default=_default(InputSpec, "id_field"),
                        help="id column/field (default %(default)s); '' numbers the rows <file stem>:<row>")
    if targets:
        parser.add_argument("--target-field", "--target-column", default=_default(InputSpec, "target_field"),
                            help="parallel text: the teacher encodes this column instead (e.g. the English translation of a "
                                 "Chinese text); rows where it is empty keep the plain meaning")
    parser.add_argument("--on-duplicate-id", choices=["error", "keep-first"], default="error",
                        help="a repeated id stops the run (default) or is rejected and counted")


def _inputs(args: argparse.Namespace, paths: list[Path]) -> list[InputSpec]:
    return [InputSpec(path, **_options(args, InputSpec)) for path in paths]


def _add_cache_options(parser: argparse.ArgumentParser) -> None:
    """How the teacher's vectors are made and stored (precompute and demo)."""
    parser.add_argument("--pooling", dest="mode", choices=POOLING_MODES, default=_default(PoolingConfig, "mode"),
                        help="sentence pooling (default %(default)s: LTD-BERT's IDF weighting)")
    parser.add_argument("--layer", type=int, default=_default(PoolingConfig, "layer"),
                        help="teacher layer to pool: -1 the last (default), 0 the embeddings, k the k-th layer")
    parser.add_argument("--smoothing", type=float, default=_default(PoolingConfig, "smoothing"),
                        help="added to every character's IDF weight (default %(default)s)")
    parser.add_argument("--max-length", type=int, default=_default(PoolingConfig, "max_length"),
                        help="teacher tokens per text, specials included (default: 256, or fewer if the teacher has fewer positions)")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise the stored vectors")
    parser.add_argument("--prefix", default=_default(PoolingConfig, "prefix"),
                        help="prepended to what the teacher reads, e.g. \"query: \" for an e5 teacher; students never see it "
                             "(its tokens weigh nothing under --pooling idf and count under mean)")
    parser.add_argument("--idf", dest="idf_file", type=Path, help="reuse this IDF table (an idf.parquet) instead of computing one")
    parser.add_argument("--dtype", choices=DTYPES, default=_default(PrecomputeConfig, "dtype"), help="stored vector type (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=_default(PrecomputeConfig, "batch_size"))
    parser.add_argument("--shard-size", type=int, default=_default(PrecomputeConfig, "shard_size"), help="rows per shard file (default %(default)s)")
    parser.add_argument("--device", default=_default(PrecomputeConfig, "device"), help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", choices=PRECISIONS, default=_default(PrecomputeConfig, "precision"),
                        help="auto: bf16/fp16 autocast on CUDA, fp32 on CPU; part of the cache's identity")
    parser.add_argument("--export-seed-layers", type=int, default=_default(PrecomputeConfig, "export_seed_layers"), metavar="K",
                        help="also store the teacher's embeddings and K of its layers (the first and the last, "
                             "the rest evenly between), to seed transformer students")
    parser.add_argument("--no-token-vectors", dest="token_vectors", action="store_false",
                        help="do not store the teacher's static vector of every vocabulary token (students start from them)")
    parser.add_argument("--token-states", type=int, default=_default(PrecomputeConfig, "token_states"), metavar="K",
                        help="also store the teacher's state at every student token, projected onto its K principal "
                             "components in float16 (for train --token-loss); 0, the default: none")
    parser.add_argument("--student-vocab", choices=STUDENT_VOCABS, default=_default(PrecomputeConfig, "student_vocab"),
                        help="the students' tokens: the teacher's, or the teacher's plus one per CJK character it reads as [UNK] "
                             "(auto, the default: teacher+cjk with --target-field)")


def _cache_options(args: argparse.Namespace) -> dict[str, Any]:
    """PrecomputeConfig keywords from the parsed options (teacher, inputs and output aside)."""
    return _options(args, PrecomputeConfig) | {"pooling": PoolingConfig(**_options(args, PoolingConfig)),
                                               "keep_first_duplicate": args.on_duplicate_id == "keep-first"}


# ---------------------------------------------------------------- commands


def _cmd_precompute(args: argparse.Namespace) -> int:
    from distilcache.precompute.run import precompute

    manifest = precompute(PrecomputeConfig(**_cache_options(args) | {"inputs": _inputs(args, args.input)}))
    if "partition" in manifest:  # a partition that did not finish last
        print(f"partition {manifest['partition']} of {manifest['num_partitions']} done: {len(manifest['shards'])} shards; "
              f"the last partition to finish (or `distilcache merge {args.output}`) writes the manifest")
        return 0
    print(f"cache {args.output}: {manifest['total_rows']} rows, {manifest['rejected']['count']} rejected, fingerprint {manifest['fingerprint'][:16]}")
    return 0


def _cmd_idf(args: argparse.Namespace) -> int:
    from distilcache.precompute.idf_pass import compute_idf, merge_idf_files, write_idf
    from distilcache.precompute.workers import workers_for

    if bool(args.input) == bool(args.merge):
        raise ConfigError("give either --input files to count, or --merge partial tables")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.merge:
        table = merge_idf_files(args.merge)
    else:
        inputs = _inputs(args, args.input)
        table = compute_idf(inputs, args.num_partitions, args.partition, args.on_duplicate_id == "keep-first",
                            workers=workers_for(inputs, args.workers))
    write_idf(table, args.output, (args.partition, args.num_partitions) if args.input and args.num_partitions > 1 else None)
    print(f"{args.output}: {len(table.df)} words over {table.num_documents} texts")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from distilcache.precompute.finish import merge_partitions

    manifest = merge_partitions(args.cache)
    print(f"cache {args.cache}: {manifest['total_rows']} rows in {len(manifest['shards'])} shards, fingerprint {manifest['fingerprint'][:16]}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    cache = open_cache(args.cache, verify=False)  # a URI is pulled into its local mirror
    try:
        text = json.dumps(cache.manifest, indent=2, ensure_ascii=False) if args.json else describe(cache)
    except (KeyError, TypeError, AttributeError) as exc:  # a manifest from elsewhere, without a field describe shows
        raise CacheError(f"{cache.path / MANIFEST_FILE}: missing or malformed field {exc}") from None
    print(text)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    problems = verify_cache(args.cache)
    if problems:
        print(f"FAILED: {args.cache} has {len(problems)} problem(s):")
        for problem in problems:
            print(f"  {problem}")
        return 1
    cache = open_cache(args.cache, verify=False)
    print(f"OK: {args.cache}: {len(cache.shard_paths)} shard(s), {cache.num_rows} rows, checksums, schema, row counts, ids and "
          "vectors check out")
    return 0


def config_for_train(args: argparse.Namespace) -> TrainConfig:
    """What `distilcache train` with these parsed options trains (benchmarks check reused students against it)."""
    return TrainConfig(**_options(args, TrainConfig))


def _cmd_train(args: argparse.Namespace) -> int:
    from distilcache.train.loop import train

    summary = train(config_for_train(args))
    print(f"student {args.output}: {summary['student']}, {summary['parameters']} parameters, held-out fidelity "
          f"{summary['best_val_fidelity']:.4f} (epoch {summary['best_epoch']}; untrained {summary['untrained_fidelity']:.4f})")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from distilcache.train.finetune import finetune

    summary = finetune(FinetuneConfig(**_options(args, FinetuneConfig)))
    scores = [entry["dev_spearman"] for entry in summary["history"]]
    dev = f"; dev Spearman {scores[0]:.2f} before, {scores[summary['best_epoch']]:.2f} after (epoch {summary['best_epoch']})" \
        if scores[0] is not None else ""
    print(f"student {args.output}: fine-tuned on {summary['pairs_count']} pairs "
          f"({summary['sentences_with_cached_vectors']} sentences with the teacher's cached vectors){dev}")
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    from distilcache.devices import resolve_device
    from distilcache.student.encode import encode_files, load_student, rejections_file

    student = load_student(args.model, device=resolve_device(args.device), backend=args.backend)
    written, rejections = encode_files(student, _inputs(args, args.input), args.output, args.batch_size, args.normalize, args.dim)
    print(f"{args.output}: {written} vectors of dim {args.dim or student.dim}"
          + (f"; {len(rejections)} rows rejected, see {rejections_file(args.output)}" if rejections else ""))
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from distilcache.student.onnx import check_onnx, export_onnx

    path = export_onnx(args.model, args.output)
    difference = check_onnx(args.model, path)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB; onnxruntime vs torch on test sentences: max abs difference {difference:.2e}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from distilcache.student.st_export import export_sentence_transformers

    modules = export_sentence_transformers(args.model, args.output, args.modules)
    load = "SentenceTransformer(dir)" if modules == "plain" else "SentenceTransformer(dir, trust_remote_code=True) with distilcache installed"
    print(f"{args.output}: {args.model} as a sentence-transformers directory ({modules} modules); load it with {load}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from distilcache.evaluate.compare import compare
    from distilcache.evaluate.report import markdown_tables, write_report

    config = EvaluationConfig(**_options(args, EvaluationConfig))
    results = compare(config)
    print(markdown_tables(results, config.k))
    if args.out:
        paths = write_report(results, args.out, k=config.k)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from distilcache.demo import run_demo

    run_demo(args.workdir, **_cache_options(args))
    return 0


# ---------------------------------------------------------------- the parser


def _add_train_options(p: argparse.ArgumentParser) -> None:
    default = lambda name: _default(TrainConfig, name)  # noqa: E731
    p.add_argument("--cache", type=_location, required=True, help="cache directory or URI (s3://...)")
    p.add_argument("--output", type=Path, required=True, help="student directory (also holds checkpoint.pt, train_log.jsonl)")
    p.add_argument("--student", choices=train_config.STUDENTS, default=default("student"))
    p.add_argument("--preset", choices=tuple(train_config.PRESETS), default=default("preset"),
                   help="BiLSTM sizes: default (the quality recipe) or fast (a PCA of the token vectors to a third of the "
                        "teacher dim and a small LSTM, for CPU speed); --hidden / --embedding-dim override")
    p.add_argument("--layers", type=int, default=default("layers"),
                   help="LSTM layers (default 1) or transformer layers (default 2; seeded: the seed's, or fewer of them)")
    p.add_argument("--hidden", type=int, default=default("hidden"),
                   help="LSTM size per direction (default: teacher dim / 3; --preset fast: / 6) or transformer width (default 256)")
    p.add_argument("--embedding-dim", type=int, default=default("embedding_dim"),
                   help="BiLSTM token embedding size (default: the teacher dim with token vectors, a PCA of them when smaller; else 256)")
    p.add_argument("--no-concat-embeddings", dest="concat_embeddings", action="store_false",
                   help="BiLSTM: pool the LSTM states alone instead of [embedding; states]")
    p.add_argument("--heads", type=int, default=default("heads"), help="transformer attention heads (default %(default)s)")
    p.add_argument("--dropout", type=float, default=default("dropout"))
    p.add_argument("--init", choices=train_config.INITS, default=default("init"),
                   help="auto (default): a BiLSTM starts from the cache's token vectors, a transformer from its seed layers "
                        "(precompute --export-seed-layers), when the cache has them")
    p.add_argument("--vocabulary", choices=train_config.VOCABULARIES, default=default("vocabulary"),
                   help="the embedding table: the pieces the cache uses (and the special tokens), or the whole tokenizer; "
                        "auto (default): the cache's pieces for a vocabulary over 65,536 (a SentencePiece teacher's)")
    p.add_argument("--token-weights", "--pooling", choices=train_config.TOKEN_WEIGHTS, default=default("token_weights"),
                   help="what the student pools with: uniform weights (mean, default) or the cached per-token IDF weights "
                        "(cache; LTD-BERT's student, which then weights text with jieba at encode time too)")
    p.add_argument("--attention-pooling", action=argparse.BooleanOptionalAction, default=default("attention_pooling"),
                   help="learn a per-token score that reweights those weights (softmax of log weight + score); "
                        "default: on for a BiLSTM, off for a transformer")
    p.add_argument("--special-tokens", action=argparse.BooleanOptionalAction, default=default("special_tokens"),
                   help="read each text's pieces between the tokenizer's start and end tokens ([CLS] ... [SEP]), as the teacher "
                        "read them; they weigh 0 in pooling (default: on for a transformer, off for a BiLSTM)")
    p.add_argument("--epochs", type=int, default=default("epochs"))
    p.add_argument("--batch-size", type=int, default=default("batch_size"))
    p.add_argument("--lr", type=float, default=default("lr"),
                   help="AdamW learning rate (default: by student, %s)" % ", ".join(f"{k} {v:g}" for k, v in train_config.DEFAULT_LR.items()))
    p.add_argument("--embedding-lr-scale", type=float, default=default("embedding_lr_scale"),
                   help="BiLSTM: the token embedding learns at --lr times this (default %(default)s; 0 freezes it)")
    p.add_argument("--weight-decay", type=float, default=default("weight_decay"))
    p.add_argument("--embedding-anchor", type=float, default=default("embedding_anchor"),
                   help="BiLSTM: pull the token embedding toward its starting (teacher) vectors by lr times this each step, "
                        "instead of decaying it (default %(default)s: off)")
    p.add_argument("--warmup", type=float, default=default("warmup"), help="warm-up, as a fraction of all steps")
    p.add_argument("--schedule", choices=train_config.SCHEDULES, default=default("schedule"), help="decay after warm-up")
    p.add_argument("--grad-clip", type=float, default=default("grad_clip"), help="largest gradient norm (0: no clipping)")
    p.add_argument("--loss", choices=train_config.LOSSES, default=default("loss"))
    p.add_argument("--mse-weight", type=float, default=default("mse_weight"), help="the MSE share of --loss mix")
    p.add_argument("--similarity-weight", type=float, default=default("similarity_weight"),
                   help="add this times the in-batch similarity-matrix loss (KL of softmax over cosines)")
    p.add_argument("--temperature", type=float, default=default("temperature"), help="temperature of the similarity-matrix loss")
    p.add_argument("--similarity-queue", type=int, default=default("similarity_queue"), metavar="N",
                   help="compare each row in the similarity-matrix loss with the teacher vectors of the last N training rows "
                        "too, not only its batch")
    p.add_argument("--token-loss", type=float, default=default("token_loss"),
                   help="add this times the token-state loss: each token's output against the teacher's state there, in the "
                        "cache's principal components (a cache made with precompute --token-states K); default %(default)s: off")
    p.add_argument("--matryoshka-dims", type=_dims, default=default("matryoshka_dims"),
                   help="e.g. 64,128,256: train the first k dimensions of the vectors to work on their own "
                        "(encode --dim k); each adds the similarity-matrix loss of the student's first k dimensions")
    p.add_argument("--matryoshka-weight", type=float, default=default("matryoshka_weight"),
                   help="weight of those Matryoshka losses (default %(default)s)")
    p.add_argument("--shuffle-buffer", type=int, default=default("shuffle_buffer"),
                   help="rows shuffled together; training holds this many rows in memory, not the cache (default %(default)s)")
    p.add_argument("--val-fraction", type=float, default=default("val_fraction"), help="held-out rows, chosen by id hash (default %(default)s)")
    p.add_argument("--dev-sts", type=Path, action="append", default=list(default("dev_sts")),
                   help="a similarity set (sentence1, sentence2, score TSV) scored after every epoch; repeat for several")
    p.add_argument("--select", choices=train_config.SELECTIONS, default=default("select"),
                   help="what picks the saved epoch: held-out fidelity (default), or Spearman on the first --dev-sts set")
    p.add_argument("--patience", type=int, default=default("patience"), help="epochs without a better selection score before stopping")
    p.add_argument("--seed", type=int, default=default("seed"))
    p.add_argument("--device", default=default("device"))
    p.add_argument("--precision", choices=train_config.PRECISIONS, default=default("precision"),
                   help="auto: bf16 autocast on CUDA, else fp32")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")


def _add_evaluate_options(p: argparse.ArgumentParser) -> None:
    default = lambda name: _default(EvaluationConfig, name)  # noqa: E731
    p.add_argument("--model", dest="models", type=Path, action="append", default=default("models"), help="student directory; repeat for several")
    p.add_argument("--teacher", type=Path, help="also evaluate this local teacher directory, through the precompute code path")
    p.add_argument("--teacher-cache", type=_location, help="cache whose held-out rows give fidelity, similarity agreement and recall@k")
    p.add_argument("--sts", type=Path, action="append", default=default("sts"), help="TSV with sentence1, sentence2, score; repeat for several")
    p.add_argument("--out", type=Path, help="write report.md, report.json and quality_vs_speed.png here")
    p.add_argument("--pooling", choices=POOLING_MODES, help="teacher pooling (default: the cache's, else mean)")
    p.add_argument("--prefix", help="prepended to what the teacher reads (default: the cache's, else none)")
    p.add_argument("--idf", type=Path, help="IDF table for teacher IDF pooling (default: the cache's)")
    p.add_argument("--teacher-layers", type=int, help="keep only the teacher's first k layers (no training)")
    p.add_argument("--val-fraction", type=float, help="held-out fraction (default: the smallest the students trained with)")
    p.add_argument("--max-rows", type=int, default=default("max_rows"), help="held-out rows used at most (default %(default)s)")
    p.add_argument("--k", type=int, default=default("k"), help="neighbours for recall@k (default %(default)s)")
    p.add_argument("--speed-sentences", type=int, default=default("speed_sentences"), help="sentences timed for throughput (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=default("batch_size"))
    p.add_argument("--device", default=default("device"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilcache", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("precompute", help="run a teacher once over a corpus and write a cache")
    p.add_argument("--teacher", type=Path, required=True, help="local Hugging Face model directory (never fetched from a hub)")
    p.add_argument("--input", type=Path, action="append", required=True, help=".txt, .jsonl, .csv, .tsv or .parquet; repeat for several")
    p.add_argument("--output", type=_location, required=True,
                   help="cache directory (created; resumed if interrupted), or a URI: s3://bucket/cache, gs://..., hdfs://...")
    p.add_argument("--teacher-name", help="how the manifest names the teacher (default: its directory's name)")
    p.add_argument("--num-partitions", type=int, default=_default(PrecomputeConfig, "num_partitions"),
                   help="split the shards between N jobs (job arrays; needs --idf)")
    p.add_argument("--partition", type=int, default=_default(PrecomputeConfig, "partition"), help="which of the N partitions this job computes (0-based)")
    p.add_argument("--engine", choices=ENGINES, default=_default(PrecomputeConfig, "engine"),
                   help="ray: run the teacher on Ray Data actors (pip install 'distilcache[ray]'; joins RAY_ADDRESS or starts a local Ray)")
    p.add_argument("--ray-workers", type=int, default=_default(PrecomputeConfig, "ray_workers"), help="--engine ray: teacher actors (one GPU each on CUDA)")
    p.add_argument("--workers", type=int, default=_default(PrecomputeConfig, "workers"),
                   help="processes for the CPU side (the IDF pass, tokenising and weighting), at most one per 4 MiB of input; default: "
                        f"with a GPU the cores but one ({spare_cores()} here), on the CPU 1 (a thread: the teacher's forward needs "
                        "the cores)")
    p.add_argument("--augment", type=int, default=_default(PrecomputeConfig, "augment"), metavar="K",
                   help="after each row, K variants of its text (word dropout, a deleted span, a crop, a local shuffle, or joined "
                        "with the row before), encoded by the teacher: more training pairs for students (ids <id>#aug<k>)")
    p.add_argument("--augment-seed", type=int, default=_default(PrecomputeConfig, "augment_seed"), help="draws the variants")
    p.add_argument("--augment-operations", type=_names, default=_default(PrecomputeConfig, "augment_operations"),
                   help="the kinds of variant drawn from, separated by commas (default: all: %s)" % ",".join(AUGMENT_OPERATIONS))
    _add_input_options(p)
    _add_cache_options(p)
    p.set_defaults(run=_cmd_precompute)

    p = commands.add_parser("merge", help="write the manifest of a partitioned precompute once every partition is done")
    p.add_argument("cache", type=_location)
    p.set_defaults(run=_cmd_merge)

    p = commands.add_parser("idf", help="compute an IDF table (optionally one partition of it), or merge partial tables")
    p.add_argument("--input", type=Path, action="append", default=[], help="corpus files, as for precompute")
    p.add_argument("--merge", type=Path, nargs="+", help="partial idf.parquet files to add up, each partition once")
    p.add_argument("--output", type=Path, required=True, help="idf.parquet to write")
    p.add_argument("--num-partitions", type=int, default=1)
    p.add_argument("--partition", type=int, default=0)
    p.add_argument("--workers", type=int, default=spare_cores(),
                   help="processes that segment (at most one per 4 MiB of input); default: the cores but one (%(default)s here)")
    _add_input_options(p)
    p.set_defaults(run=_cmd_idf)

    p = commands.add_parser("inspect", help="show what a cache holds")
    p.add_argument("cache", type=_location)
    p.add_argument("--json", action="store_true", help="print the whole manifest")
    p.set_defaults(run=_cmd_inspect)

    p = commands.add_parser("verify", help="check names, checksums, schema, row counts, ids and vectors; exit 1 on any problem")
    p.add_argument("cache", type=_location)
    p.set_defaults(run=_cmd_verify)

    p = commands.add_parser("train", help="train a student against a cache (the teacher is never loaded)")
    _add_train_options(p)
    p.set_defaults(run=_cmd_train)

    p = commands.add_parser("finetune", help="fine-tune a trained student on labelled pairs, the teacher as a soft label")
    default = lambda name: _default(FinetuneConfig, name)  # noqa: E731
    p.add_argument("--student", type=Path, required=True, help="a trained student directory")
    p.add_argument("--pairs", type=Path, required=True, help="TSV: sentence1, sentence2, score (0-5 or 0/1); a header is optional")
    p.add_argument("--output", type=Path, required=True, help="the fine-tuned student directory (new or empty)")
    p.add_argument("--cache", type=_location, help="the teacher's vectors for the pair sentences this cache holds "
                                                  "(default: the student's own vectors before fine-tuning, for all)")
    p.add_argument("--dev", type=Path, help="pairs that choose the best epoch by Spearman (default: the last epoch)")
    p.add_argument("--loss", choices=train_config.FINETUNE_LOSSES, default=default("loss"), help="on the gold scores")
    p.add_argument("--alpha", type=float, default=default("alpha"),
                   help="weight of the teacher side (the in-batch similarity-matrix loss); 1 - alpha on the gold scores "
                        "(default %(default)s)")
    p.add_argument("--temperature", type=float, default=default("temperature"), help="of the teacher side (default %(default)s)")
    p.add_argument("--epochs", type=int, default=default("epochs"))
    p.add_argument("--batch-size", type=int, default=default("batch_size"), help="pairs per step")
    p.add_argument("--lr", type=float, default=default("lr"),
                   help="AdamW learning rate (default: by student, %s)" % ", ".join(f"{k} {v:g}" for k, v in train_config.FINETUNE_LR.items()))
    p.add_argument("--weight-decay", type=float, default=default("weight_decay"))
    p.add_argument("--seed", type=int, default=default("seed"))
    p.add_argument("--device", default=default("device"))
    p.set_defaults(run=_cmd_finetune)

    p = commands.add_parser("encode", help="encode texts with a trained student into a Parquet file of vectors")
    p.add_argument("--model", type=Path, required=True, help="student directory")
    p.add_argument("--input", type=Path, action="append", required=True, help=".txt, .jsonl, .csv, .tsv or .parquet")
    p.add_argument("--output", type=Path, required=True, help="vectors.parquet: id, text, vector")
    _add_input_options(p, targets=False)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--normalize", action="store_true", help="L2-normalise the vectors (after --dim)")
    p.add_argument("--dim", type=int, help="keep the first k dimensions (a student trained with --matryoshka-dims)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto (default): torch-int8 for a --preset fast student on the CPU, else torch; "
                        "torch-int8: quantise the LSTM/linear layers to int8 on load (CPU); "
                        "onnx: run the student.onnx written by `distilcache export-onnx` in onnxruntime (CPU)")
    p.set_defaults(run=_cmd_encode)

    p = commands.add_parser("export-onnx", help="export a student to ONNX (student.onnx in its directory) and check it against torch")
    p.add_argument("model", type=Path, help="student directory")
    p.add_argument("--output", type=Path, help="where to write the .onnx file (default: <model>/student.onnx)")
    p.set_defaults(run=_cmd_export_onnx)

    p = commands.add_parser("export", help="write a student in another library's format (sentence-transformers)")
    p.add_argument("model", type=Path, help="student directory")
    p.add_argument("--format", choices=["sentence-transformers"], required=True)
    p.add_argument("--output", type=Path, required=True, help="a new or empty directory")
    p.add_argument("--modules", choices=EXPORT_MODULES, default="auto",
                   help="plain: sentence-transformers' own modules, loadable without distilcache (a transformer student that "
                        "pools with uniform weights, no attention); distilcache: one module running the student as "
                        "load_student does (any student; needs distilcache installed and trust_remote_code=True); "
                        "auto (default): plain when the student allows it")
    p.set_defaults(run=_cmd_export)

    p = commands.add_parser("evaluate", help="STS Spearman, fidelity, similarity agreement, retrieval agreement and speed, side by side")
    _add_evaluate_options(p)
    p.set_defaults(run=_cmd_evaluate)

    p = commands.add_parser("demo", help="both stages on the embedded default: all-MiniLM-L6-v2 over 8,708 HSK sentences "
                                         "(zh + en) into a cache, a student trained from it, the two compared")
    p.add_argument("--workdir", type=Path, default=Path("demo"), help="where the corpus, cache and student go (default ./demo)")
    _add_cache_options(p)
    p.set_defaults(run=_cmd_demo, on_duplicate_id="error")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (DistilcacheError, OSError) as exc:  # what the user can fix; anything else is a bug and shows its traceback
        if args.verbose:
            traceback.print_exc()
        print(f"distilcache {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
