"""distilcache precompute | idf | merge | inspect | verify | train | encode | evaluate | demo — parse arguments, call the library."""

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from distilcache.cache_format import CacheError, open_cache, read_manifest, verify_cache
from distilcache.cache_format.errors import ConfigError, DistilcacheError
from distilcache.cache_format.layout import MANIFEST_FILE


def _location(value: str) -> str | Path:
    """A cache location: a URI stays a string (a Path would fold its '//'), anything else is a Path."""
    return value if "://" in value else Path(value)


def _add_precompute_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pooling", choices=["idf", "mean", "cls"], default="idf", help="sentence pooling (default: idf, LTD-BERT)")
    parser.add_argument("--layer", type=int, default=-1, help="teacher layer to pool: -1 last (default), 0 embeddings, k the k-th layer")
    parser.add_argument("--smoothing", type=float, default=0.1, help="added to every character's IDF weight (default 0.1)")
    parser.add_argument("--max-length", type=int, help="teacher tokens per text, specials included (default: 256, or fewer if the teacher has fewer positions)")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise the stored vectors")
    parser.add_argument("--idf", type=Path, help="reuse this IDF table (an idf.parquet) instead of computing one from the inputs")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="stored vector type (default float16)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=100_000, help="rows per shard file (default 100000)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="auto: bf16/fp16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--export-seed-layers", type=int, default=0, metavar="K",
                        help="also store the teacher's embeddings and K of its layers (the first and the last, "
                             "the rest evenly between), to seed transformer students")
    parser.add_argument("--no-token-vectors", dest="token_vectors", action="store_false",
                        help="do not store the teacher's static vector of every vocabulary token (students start from them)")
    parser.add_argument("--on-duplicate-id", choices=["error", "keep-first"], default="error",
                        help="a repeated id stops the run (default) or is rejected and counted")
    parser.add_argument("--student-vocab", choices=["auto", "teacher", "teacher+cjk"], default="auto",
                        help="the students' tokens: the teacher's, or the teacher's plus one per CJK character it reads as [UNK] "
                             "(auto, the default: teacher+cjk with --target-field)")


def _precompute_config(args: argparse.Namespace, teacher: Path, inputs: list[Path], output: Path, teacher_name: str | None):
    from distilcache.precompute import InputSpec, PoolingConfig, PrecomputeConfig

    return PrecomputeConfig(
        teacher=teacher,
        inputs=[InputSpec(p, id_field=getattr(args, "id_field", "id"), text_field=getattr(args, "text_field", "text"),
                          target_field=getattr(args, "target_field", None)) for p in inputs],
        output=output,
        pooling=PoolingConfig(args.pooling, args.layer, args.smoothing, args.max_length, args.normalize),
        dtype=args.dtype,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        idf_file=args.idf,
        device=args.device,
        precision=args.precision,
        keep_first_duplicate=args.on_duplicate_id == "keep-first",
        teacher_name=teacher_name,
        export_seed_layers=args.export_seed_layers,
        token_vectors=args.token_vectors,
        num_partitions=getattr(args, "num_partitions", 1),
        partition=getattr(args, "partition", 0),
        student_vocab=args.student_vocab,
        engine=getattr(args, "engine", "local"),
        ray_workers=getattr(args, "ray_workers", 1),
    )


def _cmd_precompute(args: argparse.Namespace) -> int:
    from distilcache.precompute import precompute

    manifest = precompute(_precompute_config(args, args.teacher, args.input, args.output, args.teacher_name))
    if "partition" in manifest:  # a partition that did not finish last
        print(f"partition {manifest['partition']} of {manifest['num_partitions']} done: {len(manifest['shards'])} shards; "
              f"the last partition to finish (or `distilcache merge {args.output}`) writes the manifest")
        return 0
    print(f"cache {args.output}: {manifest['total_rows']} rows, {manifest['rejected']['count']} rejected, fingerprint {manifest['fingerprint'][:16]}")
    return 0


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{int(num_bytes)} B"
        num_bytes /= 1024
    raise AssertionError


def describe(cache_dir: Path, manifest: dict[str, Any]) -> str:
    on_disk = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
    pooling = manifest["pooling"]
    teacher = manifest["teacher"]
    lines = [
        f"cache        {cache_dir}",
        f"format       v{manifest['format_version']} (distilcache {manifest['package_version']}), created {manifest['created_at']}",
        f"teacher      {teacher['name']} ({teacher['architecture']}, {teacher['num_layers']} layers, hidden {teacher['hidden_size']})",
        f"pooling      {pooling['mode']}, layer {pooling['layer']}, smoothing {pooling['smoothing']}, "
        f"max_length {pooling['max_length']}, normalize {pooling['normalize']}",
        f"vectors      dim {manifest['vector']['dim']}, {manifest['vector']['dtype']}",
        f"rows         {manifest['total_rows']} ({manifest['stats']['truncated_rows']} truncated, "
        f"{manifest['stats']['rows_without_tokens']} without tokens)",
        f"rejected     {manifest['rejected']['count']} {manifest['rejected']['by_reason'] or ''}".rstrip(),
        f"shards       {len(manifest['shards'])} ({_size(sum(s['bytes'] for s in manifest['shards']))})",
        f"size on disk {_size(on_disk)} ({on_disk / max(manifest['total_rows'], 1):.0f} bytes/row)",
        f"fingerprint  {manifest['fingerprint']}",
    ]
    if manifest["idf"]:
        idf = manifest["idf"]
        lines.insert(5, f"idf          {idf['num_words']} words over {idf['num_documents']} texts (source: {idf['source']['kind']})")
    if manifest.get("student_tokenizer"):
        added = manifest["student_tokenizer"]["added_tokens"]
        lines.insert(6, f"student vocab the teacher's + {added} CJK characters it reads as [UNK] ({manifest['student_tokenizer']['dir']}/)")
    lines += [f"input        {i['name']}: {i['input_rows']} rows in, {i['rows']} kept, {i['rejected']} rejected"
              + (f", {i['rows_with_target']} with a target ({i['target_field']!r} fed the teacher)" if "target_field" in i else "")
              for i in manifest["inputs"]]
    return "\n".join(lines)


def _cmd_idf(args: argparse.Namespace) -> int:
    from distilcache.precompute import InputSpec
    from distilcache.precompute.idf_pass import compute_idf, merge_idf_files, write_idf

    if bool(args.input) == bool(args.merge):
        raise ConfigError("give either --input files to count, or --merge partial tables")
    if args.merge:
        table = merge_idf_files(args.merge)
    else:
        specs = [InputSpec(p, id_field=args.id_field, text_field=args.text_field, target_field=args.target_field) for p in args.input]
        table = compute_idf(specs, args.num_partitions, args.partition, args.on_duplicate_id == "keep-first")
    write_idf(table, args.output, (args.partition, args.num_partitions) if args.input and args.num_partitions > 1 else None)
    print(f"{args.output}: {len(table.df)} words over {table.num_documents} texts")
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from distilcache.precompute.run import merge_partitions

    manifest = merge_partitions(args.cache)
    print(f"cache {args.cache}: {manifest['total_rows']} rows in {len(manifest['shards'])} shards, fingerprint {manifest['fingerprint'][:16]}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    cache = open_cache(args.cache, verify=False)  # a URI is pulled into its local mirror
    try:
        text = json.dumps(cache.manifest, indent=2, ensure_ascii=False) if args.json else describe(cache.path, cache.manifest)
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
    manifest = open_cache(args.cache, verify=False).manifest
    print(f"OK: {args.cache}: {len(manifest['shards'])} shard(s), {manifest['total_rows']} rows, checksums, schema and row counts match")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from distilcache import demo
    from distilcache.precompute import precompute

    inputs = demo.write_corpus(args.workdir / "corpus")
    cache_dir = args.workdir / "cache"
    precompute(_precompute_config(args, demo.teacher_dir(), inputs, cache_dir, demo.TEACHER_NAME))
    print(describe(cache_dir, read_manifest(cache_dir)))
    cache = open_cache(cache_dir)  # verifies every checksum
    print(f"verified: {cache.num_rows} rows; first row {cache.table(['id', 'text']).slice(0, 1).to_pylist()[0]}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from distilcache.train import TrainConfig, train

    options = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    summary = train(TrainConfig(**options))
    print(f"student {args.output}: {summary['student']}, {summary['parameters']} parameters, held-out fidelity "
          f"{summary['best_val_fidelity']:.4f} (epoch {summary['best_epoch']}; untrained {summary['untrained_fidelity']:.4f})")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from distilcache.onnx_export import check_onnx, export_onnx

    path = export_onnx(args.model, args.output)
    difference = check_onnx(args.model, path)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB; onnxruntime vs torch on test sentences: max abs difference {difference:.2e}")
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from distilcache.cache_format import write_parquet_atomic
    from distilcache.precompute.inputs import InputSpec, Record, iter_corpus
    from distilcache.student import load_student
    from distilcache.devices import resolve_device

    student = load_student(args.model, device=resolve_device(args.device), backend=args.backend)
    specs = [InputSpec(p, id_field=args.id_field, text_field=args.text_field) for p in args.input]
    records, rejections = [], []
    for item in iter_corpus(specs):
        (records if isinstance(item, Record) else rejections).append(item)
    vectors = student.encode([r.text for r in records], batch_size=args.batch_size, normalize_embeddings=args.normalize,
                             show_progress_bar=True)
    table = pa.table({
        "id": pa.array([r.id for r in records], pa.string()),
        "text": pa.array([r.text for r in records], pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), student.dim),
    })
    write_parquet_atomic(table, args.output)
    rejected_path = args.output.with_name(args.output.stem + ".rejected.jsonl")
    if rejections:
        rejected_path.write_text("".join(r.to_json() + "\n" for r in rejections), encoding="utf-8")
    print(f"{args.output}: {len(records)} vectors of dim {student.dim}"
          + (f"; {len(rejections)} rows rejected, see {rejected_path}" if rejections else ""))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from distilcache.evaluate import evaluate_models, read_sts
    from distilcache.evaluate.encoders import TeacherEncoder, student_eval_model
    from distilcache.evaluate.report import markdown_tables, write_report
    from distilcache.precompute import PoolingConfig
    from distilcache.weighting import IdfTable

    if not args.model and not args.teacher:
        raise ConfigError("name at least one --model or a --teacher to evaluate")
    cache = open_cache(args.teacher_cache) if args.teacher_cache else None
    models = []
    if args.teacher:
        cached = cache.manifest["pooling"] if cache else {}
        pooling = PoolingConfig(args.pooling or cached.get("mode", "mean"), cached.get("layer", -1),
                                cached.get("smoothing", 0.1), cached.get("max_length"), cached.get("normalize", False))
        idf = IdfTable.load(args.idf) if args.idf else (IdfTable.load(cache.idf_path) if cache and cache.manifest["idf"] else None)
        teacher = TeacherEncoder(args.teacher, pooling, idf if pooling.mode == "idf" else None, args.teacher_layers, args.device)
        label = f"teacher ({pooling.mode} pooling)" + (f", first {args.teacher_layers} layers" if args.teacher_layers else "")
        models.append(teacher.as_eval_model(label, is_teacher=args.teacher_layers is None))
    students = [student_eval_model(path, args.device) for path in args.model]
    models += students
    val_fraction = args.val_fraction
    if val_fraction is None:  # rows every student held out: a smaller fraction selects a subset
        fractions = [m.info["training"]["val_fraction"] for m in students]
        val_fraction = min(fractions, default=0.05)
    results = evaluate_models(models, [read_sts(p) for p in args.sts], cache, val_fraction, args.max_rows, args.k,
                              args.speed_sentences, args.batch_size)
    print(markdown_tables(results, args.k))
    if args.out:
        paths = write_report(results, args.out, k=args.k)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilcache", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("precompute", help="run a teacher once over a corpus and write a cache")
    p.add_argument("--teacher", type=Path, required=True, help="local Hugging Face model directory (never fetched from a hub)")
    p.add_argument("--input", type=Path, action="append", required=True, help=".txt, .jsonl, .csv, .tsv or .parquet; repeat for several")
    p.add_argument("--output", type=_location, required=True,
                   help="cache directory (created; resumed if interrupted), or a URI: s3://bucket/cache, gs://..., hdfs://...")
    p.add_argument("--text-field", "--text-column", default="text",
                   help="text column/field of .jsonl/.csv/.tsv/.parquet inputs: what students read (default text)")
    p.add_argument("--target-field", "--target-column",
                   help="parallel text: the teacher encodes this column instead (e.g. the English translation of a Chinese "
                        "text); rows where it is empty keep the plain meaning")
    p.add_argument("--teacher-name", help="how the manifest names the teacher (default: its directory's name)")
    p.add_argument("--id-field", "--id-column", default="id", help="id column/field (default id); '' numbers the rows <file stem>:<row>")
    p.add_argument("--num-partitions", type=int, default=1, help="split the shards between N jobs (job arrays; needs --idf)")
    p.add_argument("--partition", type=int, default=0, help="which of the N partitions this job computes (0-based)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="ray: run the teacher on Ray Data actors (pip install 'distilcache[ray]'; joins RAY_ADDRESS or starts a local Ray)")
    p.add_argument("--ray-workers", type=int, default=1, help="--engine ray: teacher actors (one GPU each on CUDA)")
    _add_precompute_options(p)
    p.set_defaults(run=_cmd_precompute)

    p = commands.add_parser("merge", help="write the manifest of a partitioned precompute once every partition is done")
    p.add_argument("cache", type=_location)
    p.set_defaults(run=_cmd_merge)

    p = commands.add_parser("idf", help="compute an IDF table (optionally one partition of it), or merge partial tables")
    p.add_argument("--input", type=Path, action="append", default=[], help="corpus files, as for precompute")
    p.add_argument("--merge", type=Path, nargs="+", help="partial idf.parquet files to add up")
    p.add_argument("--output", type=Path, required=True, help="idf.parquet to write")
    p.add_argument("--text-field", "--text-column", default="text")
    p.add_argument("--target-field", "--target-column", help="as for precompute: target texts count as documents too")
    p.add_argument("--id-field", "--id-column", default="id")
    p.add_argument("--num-partitions", type=int, default=1)
    p.add_argument("--partition", type=int, default=0)
    p.add_argument("--on-duplicate-id", choices=["error", "keep-first"], default="error")
    p.set_defaults(run=_cmd_idf)

    p = commands.add_parser("inspect", help="show what a cache holds")
    p.add_argument("cache", type=_location)
    p.add_argument("--json", action="store_true", help="print the whole manifest")
    p.set_defaults(run=_cmd_inspect)

    p = commands.add_parser("verify", help="check checksums, schema and row counts; exit 1 on any mismatch")
    p.add_argument("cache", type=_location)
    p.set_defaults(run=_cmd_verify)

    p = commands.add_parser("train", help="train a student against a cache (the teacher is never loaded)")
    p.add_argument("--cache", type=_location, required=True, help="cache directory or URI (s3://...)")
    p.add_argument("--output", type=Path, required=True, help="student directory (also holds checkpoint.pt, train_log.jsonl)")
    p.add_argument("--student", choices=["bilstm", "transformer"], default="bilstm")
    p.add_argument("--preset", choices=["default", "fast"], default="default",
                   help="BiLSTM sizes: default (the quality recipe) or fast (a PCA of the token vectors to a third of the "
                        "teacher dim and a small LSTM: about 3x the default's encode speed); --hidden / --embedding-dim override")
    p.add_argument("--layers", type=int, help="LSTM layers (default 1) or transformer layers (default 2)")
    p.add_argument("--hidden", type=int, help="LSTM size per direction (default: teacher dim / 3; --preset fast: / 6) or transformer width (default 256)")
    p.add_argument("--embedding-dim", type=int, help="BiLSTM token embedding size (default: the teacher dim with token vectors, a PCA of them when smaller; else 256)")
    p.add_argument("--no-concat-embeddings", dest="concat_embeddings", action="store_false",
                   help="BiLSTM: pool the LSTM states alone instead of [embedding; states]")
    p.add_argument("--heads", type=int, default=4, help="transformer attention heads (default 4)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--init", choices=["auto", "random", "token-vectors", "seed"], default="auto",
                   help="auto (default): a BiLSTM starts from the cache's token vectors, a transformer from its seed layers "
                        "(precompute --export-seed-layers), when the cache has them")
    p.add_argument("--pooling", choices=["cache", "mean"], default="cache",
                   help="student pooling: the cached per-token (IDF) weights (default) or a plain mean")
    p.add_argument("--attention-pooling", action=argparse.BooleanOptionalAction,
                   help="learn a per-token score that reweights those weights (softmax of log weight + score); "
                        "default: on for a BiLSTM, off for a transformer")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 2e-3 bilstm, 5e-4 transformer, 4e-4 seeded)")
    p.add_argument("--embedding-lr-scale", type=float, default=3.0,
                   help="BiLSTM: the token embedding learns at --lr times this (default 3; 0 freezes it)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.05, help="warm-up, as a fraction of all steps")
    p.add_argument("--schedule", choices=["linear", "cosine"], default="linear", help="decay after warm-up")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--loss", choices=["cosine", "mse", "mix"], default="cosine")
    p.add_argument("--mse-weight", type=float, default=0.5, help="the MSE share of --loss mix")
    p.add_argument("--similarity-weight", type=float, default=0.0,
                   help="add this times the in-batch similarity-matrix loss (KL of softmax over cosines)")
    p.add_argument("--temperature", type=float, default=0.05, help="temperature of the similarity-matrix loss")
    p.add_argument("--val-fraction", type=float, default=0.05, help="held-out rows, chosen by id hash (default 0.05)")
    p.add_argument("--patience", type=int, default=3, help="epochs without a better held-out fidelity before stopping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="auto: bf16 autocast on CUDA, else fp32")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.set_defaults(run=_cmd_train)

    p = commands.add_parser("encode", help="encode texts with a trained student into a Parquet file of vectors")
    p.add_argument("--model", type=Path, required=True, help="student directory")
    p.add_argument("--input", type=Path, action="append", required=True, help=".txt, .jsonl, .csv or .parquet")
    p.add_argument("--output", type=Path, required=True, help="vectors.parquet: id, text, vector")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", default="id")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--normalize", action="store_true", help="L2-normalise the vectors")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=["auto", "torch", "torch-int8", "onnx"], default="auto",
                   help="auto (default): torch-int8 for a --preset fast student on the CPU, else torch; "
                        "torch-int8: quantise the LSTM/linear layers to int8 on load (CPU, ~1.4x a BiLSTM's speed); "
                        "onnx: run the student.onnx written by `distilcache export-onnx` in onnxruntime (CPU)")
    p.set_defaults(run=_cmd_encode)

    p = commands.add_parser("export-onnx", help="export a student to ONNX (student.onnx in its directory) and check it against torch")
    p.add_argument("model", type=Path, help="student directory")
    p.add_argument("--output", type=Path, help="where to write the .onnx file (default: <model>/student.onnx)")
    p.set_defaults(run=_cmd_export_onnx)

    p = commands.add_parser("evaluate", help="STS Spearman, fidelity, retrieval agreement and speed, side by side")
    p.add_argument("--model", type=Path, action="append", default=[], help="student directory; repeat for several")
    p.add_argument("--teacher", type=Path, help="also evaluate this local teacher directory, through the precompute code path")
    p.add_argument("--teacher-cache", type=_location, help="cache whose held-out rows give fidelity and recall@k")
    p.add_argument("--sts", type=Path, action="append", default=[], help="TSV with sentence1, sentence2, score; repeat for several")
    p.add_argument("--out", type=Path, help="write report.md, report.json and quality_vs_speed.png here")
    p.add_argument("--pooling", choices=["idf", "mean", "cls"], help="teacher pooling (default: the cache's, else mean)")
    p.add_argument("--idf", type=Path, help="IDF table for teacher IDF pooling (default: the cache's)")
    p.add_argument("--teacher-layers", type=int, help="keep only the teacher's first k layers (no training)")
    p.add_argument("--val-fraction", type=float, help="held-out fraction (default: the smallest the students trained with)")
    p.add_argument("--max-rows", type=int, default=5000, help="held-out rows used at most (default 5000)")
    p.add_argument("--k", type=int, default=10, help="neighbours for recall@k (default 10)")
    p.add_argument("--speed-sentences", type=int, default=2000, help="sentences timed for throughput (default 2000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=_cmd_evaluate)

    p = commands.add_parser("demo", help="precompute the embedded default: all-MiniLM-L6-v2 over 8,708 HSK sentences (zh + en)")
    p.add_argument("--workdir", type=Path, default=Path("demo"), help="where the corpus and cache go (default ./demo)")
    _add_precompute_options(p)
    p.set_defaults(run=_cmd_demo)
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
