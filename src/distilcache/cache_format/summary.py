"""A cache in a few lines for a terminal (`distilcache inspect`)."""

from distilcache.cache_format.manifest import upgrade
from distilcache.cache_format.reader import Cache


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{int(num_bytes)} B"
        num_bytes /= 1024
    raise AssertionError


def describe(cache: Cache) -> str:
    """What `distilcache inspect` prints: the manifest in a few lines, and the size on disk."""
    cache_dir, manifest = cache.path, cache.manifest
    on_disk = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file() and not p.is_symlink())
    pooling = manifest["pooling"]
    teacher = manifest["teacher"]
    lines = [
        f"cache        {cache_dir}",
        f"format       v{manifest['format_version']} (distilcache {manifest['package_version']}), created {manifest['created_at']}",
        f"teacher      {teacher['name']} ({teacher['architecture']}, {teacher['num_layers']} layers, hidden {teacher['hidden_size']})",
        f"pooling      {pooling['mode']}, layer {pooling['layer']}, smoothing {pooling['smoothing']}, "
        f"max_length {pooling['max_length']}, normalize {pooling['normalize']}"
        + (f", teacher prefix {pooling['prefix']!r}" if pooling.get("prefix") else ""),
        f"vectors      dim {manifest['vector']['dim']}, {manifest['vector']['dtype']}, computed in "
        f"{upgrade(manifest)['precision'] or 'a precision not recorded'}",
        f"rows         {manifest['total_rows']} ({manifest['stats']['truncated_rows']} truncated, "
        f"{manifest['stats']['rows_without_tokens']} without tokens"
        + (f", {manifest['stats']['teacher_inputs']} distinct teacher inputs)" if "teacher_inputs" in manifest["stats"] else ")"),
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
              + (f", {i['augmented_rows']} variants" if "augmented_rows" in i else "")
              for i in manifest["inputs"]]
    if manifest.get("augment"):
        augment = manifest["augment"]
        lines.append(f"augment      {augment['copies']} variants after each row (seed {augment.get('seed')}; ids {augment.get('ids')})")
    if manifest.get("token_states"):
        states = manifest["token_states"]
        lines.append(f"token states {states['dim']} principal components ({states['file']}), float16, for "
                     f"{states.get('rows_with_states')} rows, {states.get('bytes_per_row')} bytes/row")
    return "\n".join(lines)
