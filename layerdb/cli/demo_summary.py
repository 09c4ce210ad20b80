"""What ``layerdb demo`` prints at the end: what was trained, what the queries find, what next."""
from __future__ import annotations

import pandas as pd
from rich.console import Console

from ..named_queries import run_query
from ..output import emit
from ..store import Store


def print_summary(options, run, console: Console, seconds: float) -> None:
    db = options.db_path
    trained = pd.DataFrame([{
        "model": m.repo_id, "params": m.n_params, "steps": m.steps,
        "checkpoints": len(m.revisions), "final train loss": round(m.final_loss, 3),
        "train s": round(m.train_seconds, 1), "reused": m.reused,
    } for m in run.training.models])
    console.rule("[bold]4. what the store says")
    emit(trained, title="trained (byte-level BPE on the standard library's source)", console=console)
    with Store.open(db, read_only=True) as store:
        lowers = run_query(store, "lowers-loss")
        lowers = lowers.sort_values(["significant", "delta"], ascending=[False, True],
                                    na_position="last")
        shown = lowers[["model", "step", "component", "layer", "baseline_loss", "loss", "delta",
                        "delta_ci_low", "delta_ci_high", "significant"]].head(12)
        n_sig = int(lowers["significant"].fillna(False).astype(bool).sum())
        emit(shown, title=f"lowers-loss: {len(lowers)} ablations lower the loss, {n_sig} significantly "
                          "(significant first)", console=console)
        for model in [m.repo_id for m in run.training.models]:
            top = run_query(store, "layer-importance", model=model)
            top = top.groupby("component", sort=False).head(3)
            emit(top[["model", "step", "component", "rank", "layer", "delta", "significant"]]
                 if "rank" in top.columns else top,
                 title=f"most important layers of {model} at its last step", console=console)
        dups = run_query(store, "duplicate-checkpoints")
        emit(dups, title="duplicate checkpoints (identical weights)", console=console)
    console.print(f"\n[bold green]done[/] in {seconds:.0f} s "
                  f"(train {run.seconds['train']:.0f} s, collect {run.seconds['collect']:.0f} s, "
                  f"report {run.seconds['report']:.0f} s)")
    console.print(f"report:  {options.out / 'report.html'}")
    console.print(f"heatmap: {options.out / 'heatmap.png'}")
    console.print(f"store:   {db}\n\ntry next:")
    for command in (
        f"layerdb --db {db} queries",
        f"layerdb --db {db} query lowers-loss -p significant_only=true",
        f"layerdb --db {db} query emergence -p threshold=0.05",
        f"layerdb --db {db} sql \"SELECT model, step, component, layer, delta FROM ablations "
        "WHERE significant ORDER BY delta DESC LIMIT 10\"",
        f"layerdb --db {db} chart layer-loss -p model={run.training.models[0].repo_id} -o layer-loss.html",
    ):
        console.print(f"  {command}", highlight=False, soft_wrap=True)
