"""The whole demo: train (or reuse) the models, collect every checkpoint through the same hub path
a real model takes (skipping what is complete), then write the report and the heatmap.

``HF_HOME`` must point at ``<out>/hf_home`` (with ``HF_HUB_OFFLINE=1``) before huggingface_hub is
imported; the CLI sets both before it imports this module.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..collect import collect
from .specs import FULL, QUICK, DemoSize
from .train import DemoTraining, rich_progress_callback, train_demo


@dataclass(frozen=True)
class DemoOptions:
    out: Path
    seed: int = 0
    quick: bool = False

    @property
    def size(self) -> DemoSize:
        return QUICK if self.quick else FULL

    @property
    def db_path(self) -> Path:
        return self.out / "layerdb.duckdb"


@dataclass
class DemoRun:
    training: DemoTraining
    seconds: dict[str, float]


def run_demo(options: DemoOptions, console: Console) -> DemoRun:
    """Train (or reuse), collect (or skip what is complete), and write the report and heatmap."""
    options.out.mkdir(parents=True, exist_ok=True)
    size = options.size
    seconds = {}
    start = time.perf_counter()
    console.rule("[bold]1. training tiny Pythia-style models on the standard library's source")
    with _progress(console) as progress:
        training = train_demo(options.out, seed=options.seed, specs=size.specs,
                              max_docs=size.max_docs, progress=rich_progress_callback(progress))
    seconds["train"] = time.perf_counter() - start

    start = time.perf_counter()
    console.rule("[bold]2. collecting every checkpoint: baseline, block/attn/mlp of every layer, "
                 "spans of 2 blocks, layer metrics")
    for spec, trained in zip(size.specs, training.models):
        collect(str(options.db_path), trained.repo_id,
                revisions=trained.revisions + ["main"], data=str(training.heldout_path),
                tokens=size.eval_tokens, seq_len=spec.seq_len, batch_size=size.batch_size,
                spans=size.spans, device="cpu", console=console)
    seconds["collect"] = time.perf_counter() - start

    start = time.perf_counter()
    write_outputs(options, size.specs[0].repo_id, console)
    seconds["report"] = time.perf_counter() - start
    return DemoRun(training, seconds)


def write_outputs(options: DemoOptions, heatmap_model: str, console: Console) -> None:
    from layerdb import Store
    from layerdb.charts import write_chart
    from layerdb.report import write_report

    console.rule("[bold]3. report and charts")
    with Store.open(options.db_path, read_only=True) as store:
        write_report(store, options.out / "report.html")
        write_chart(store, "heatmap", options.out / "heatmap.png", model=heatmap_model)


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console, transient=False)
