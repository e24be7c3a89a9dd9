"""The README's snippets for opening a cache without distilcache really work."""

import re
from pathlib import Path

import pytest

from conftest import CORPUS, write_lines
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippets() -> list[str]:
    section = README.read_text(encoding="utf-8").split("### Open a cache without distilcache", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_has_the_five_snippets():
    assert [re.search(r"^(?:import|from) (\w+)", s, flags=re.M).group(1) for s in _snippets()] == [
        "pyarrow", "pandas", "duckdb", "glob", "datasets"]


@pytest.fixture(scope="module")
def cache_dir(teacher_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(write_lines(root / "c.txt", CORPUS))],
                                output=root / "cache", shard_size=4, device="cpu"))
    return root / "cache"


@pytest.mark.parametrize("index", range(5))
def test_a_readme_snippet_reads_every_row(cache_dir, index):
    code = _snippets()[index].replace("demo/cache", str(cache_dir))
    namespace: dict = {}
    exec(compile(code, f"README snippet {index}", "exec"), namespace)
    if "table" in namespace:
        assert namespace["table"]["text"].to_pylist() == CORPUS
        assert len(namespace["table"]["vector"][0]) == 64
    elif "df" in namespace:
        assert namespace["df"]["text"].tolist() == CORPUS and namespace["df"]["vector"][0].shape == (64,)
    elif "rows" in namespace:
        assert sorted(r[1] for r in namespace["rows"]) == sorted(CORPUS) and {r[2] for r in namespace["rows"]} == {64}
    else:
        assert namespace["ds"]["text"] == CORPUS and len(namespace["ds"][0]["vector"]) == 64
