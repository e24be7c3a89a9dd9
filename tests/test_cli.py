import json

from conftest import CORPUS, write_lines
from distilcache.cli import main


def test_precompute_inspect_verify_from_the_command_line(teacher_dir, tmp_path, capsys):
    corpus = write_lines(tmp_path / "corpus.txt", CORPUS + [""])
    cache = tmp_path / "cache"
    assert main(["precompute", "--teacher", str(teacher_dir), "--input", str(corpus), "--output", str(cache),
                 "--device", "cpu", "--shard-size", "5", "--teacher-name", "tiny-bert"]) == 0
    assert f"{len(CORPUS)} rows, 1 rejected" in capsys.readouterr().out

    assert main(["inspect", str(cache)]) == 0
    shown = capsys.readouterr().out
    assert "teacher      tiny-bert (BertModel, 2 layers, hidden 64)" in shown
    assert f"rows         {len(CORPUS)} (0 truncated, 0 without tokens, {len(CORPUS)} distinct teacher inputs)" in shown
    assert "vectors      dim 64, float16" in shown and "shards       3 " in shown
    assert "rejected     1 {'empty': 1}" in shown

    assert main(["inspect", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["teacher"]["name"] == "tiny-bert"

    assert main(["verify", str(cache)]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    shard = cache / "shards" / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-1])
    assert main(["verify", str(cache)]) == 1
    assert "shards/part-00001.parquet: sha256 mismatch" in capsys.readouterr().out


def test_errors_are_one_clear_line_and_exit_2(teacher_dir, tmp_path, capsys):
    corpus = write_lines(tmp_path / "corpus.txt", CORPUS)
    cache = str(tmp_path / "cache")
    common = ["precompute", "--teacher", str(teacher_dir), "--input", str(corpus), "--output", cache, "--device", "cpu"]
    assert main(common) == 0
    capsys.readouterr()
    assert main(common + ["--pooling", "mean"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distilcache precompute: error: ") and "pooling.mode: cache has 'idf', this run has 'mean'" in err
    assert main(["precompute", "--teacher", str(tmp_path), "--input", str(corpus), "--output", str(tmp_path / "x")]) == 2
    assert "no config.json" in capsys.readouterr().err
