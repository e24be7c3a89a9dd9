"""Write evaluation results as Markdown tables, JSON and a quality-vs-speed plot."""

import json
import math
from pathlib import Path
from typing import Any


def _number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def markdown_tables(results: list[dict[str, Any]], k: int = 10) -> str:
    """A performance table and an accuracy table (with the gap to the teacher), as in distillation model cards."""
    sets = list(dict.fromkeys(name for r in results for name in r["sts"]))
    lines = []
    if any("sentences_per_second" in r for r in results):  # speed is optional (evaluate_models(speed_sentences=0))
        lines += ["### Performance (CPU, tokenisation included)", "",
                  "| model | params | weights MB | sentences/s (batch 256) | speed-up | batch-1 latency ms |", "|---|---|---|---|---|---|"]
        for r in results:
            lines.append(f"| {r['model']} | {r['parameters'] / 1e6:.1f}M | {r['weights_mb']:.1f} | "
                         f"{_number(r.get('sentences_per_second'), 0)} | {_number(r.get('speedup'))}x | {_number(r.get('latency_ms'), 2)} |")
        lines.append("")
    lines += ["### Accuracy (Spearman x100 of cosine similarity; fidelity, similarity agreement (Spearman x100 against the "
              "teacher's similarities of row pairs) and recall on held-out cache rows)", ""]
    summary = ["mean", "gap to teacher", "gap %"] if sets else []  # of the STS sets
    header = ["model", *sets, *summary, "fidelity", "similarity agreement", f"recall@{k}"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        scores = [_number(r["sts"].get(s, {}).get("spearman")) for s in sets]
        gaps = [_number(r.get("sts_mean")), _number(r.get("sts_gap")), _number(r.get("sts_gap_percent"))] if sets else []
        cells = [r["model"], *scores, *gaps, _number(r.get("fidelity"), 3), _number(r.get("similarity_agreement")),
                 _number(r.get(f"recall@{k}"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    nonfinite = [f"{r['model']} on {s}: {v['nonfinite_pairs']}" for r in results for s, v in r["sts"].items() if v["nonfinite_pairs"]]
    if nonfinite:
        lines += ["", "Pairs with a non-finite similarity (counted as 0): " + "; ".join(nonfinite)]
    return "\n".join(lines) + "\n"


def plot_quality_vs_speed(results: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in results if r.get("sentences_per_second") and r.get("sts_mean") is not None]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in points:
        axes.scatter(r["sentences_per_second"], r["sts_mean"], s=60, marker="*" if r["teacher"] else "o")
        axes.annotate(r["model"], (r["sentences_per_second"], r["sts_mean"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("CPU sentences/s (batch 256, log scale)")
    axes.set_ylabel("mean STS Spearman x100")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(results: list[dict[str, Any]], out_dir: Path, title: str = "distilcache evaluation", preamble: str = "",
                 k: int = 10, name: str = "report", plot: bool = True) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / f"{name}.md", "json": out_dir / f"{name}.json"}
    paths["json"].write_text(json.dumps({"title": title, "results": results}, indent=2, default=float) + "\n", encoding="utf-8")
    body = (f"# {title}\n\n{preamble}\n\n" if preamble else f"# {title}\n\n") + markdown_tables(results, k)
    if plot:
        paths["plot"] = out_dir / "quality_vs_speed.png"
        plot_quality_vs_speed(results, paths["plot"], title)
        body += f"\n![quality vs speed]({paths['plot'].name})\n"
    paths["markdown"].write_text(body, encoding="utf-8")
    return paths
