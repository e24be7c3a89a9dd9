"""`distilcache idf`: the IDF table of a corpus, computed once before a partitioned precompute,
itself splittable into partitions whose tables merge into the same table."""

from pathlib import Path

from tqdm.auto import tqdm

from distilcache.cache_format import write_parquet_atomic
from distilcache.precompute.inputs import InputSpec, Record, iter_corpus
from distilcache.weighting import IdfTable


def compute_idf(specs: list[InputSpec], num_partitions: int = 1, partition: int = 0, keep_first_duplicate: bool = False) -> IdfTable:
    """Document frequencies over the accepted rows (those precompute keeps) whose position in the
    corpus is partition mod num_partitions; a row's target text counts as a document of its own."""
    table = IdfTable()
    records = (item for item in iter_corpus(specs, keep_first_duplicate) if isinstance(item, Record))
    for position, record in enumerate(tqdm(records, desc="IDF", unit=" rows", mininterval=1)):
        if position % num_partitions == partition:
            for document in record.documents:
                table.add_document(document)
    return table


def write_idf(table: IdfTable, path: Path) -> None:
    write_parquet_atomic(table.to_arrow(), path)


def merge_idf_files(paths: list[Path]) -> IdfTable:
    return IdfTable.merge(IdfTable.load(p) for p in paths)
