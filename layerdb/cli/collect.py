"""``layerdb collect``: layer-ablation sweeps over a model's checkpoints, into the store.

The help lists defaults, components and families from their one definition (``collectors.settings``,
``layerdb.schema``, ``collectors.families``: all torch-free); the torch half is imported inside the
command only, so ``import layerdb.cli`` stays torch-free.
"""
from __future__ import annotations

import math

import click

from collectors.families import supported
from collectors.placement import DEVICE_MAPS
from collectors.settings import (DEFAULT_BATCH_SIZE, DEFAULT_CPUS_PER_TASK, DEFAULT_DATA,
                                 DEFAULT_MAX_RETRIES, DEFAULT_SEQ_LEN, DEFAULT_TOKENS, DTYPES,
                                 MAX_RETRIES_LIMIT)

from ..schema import ABLATED_COMPONENTS, METHODS
from .common import LayerdbError, console, console_err, db_path

FAMILY_LIST = supported()


def _parse_spans(ctx, param, value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        spans = tuple(dict.fromkeys(int(v) for v in value.split(",") if v.strip()))
    except ValueError:
        raise LayerdbError(f"--spans takes a comma list of integers, not {value!r}") from None
    if not spans or min(spans) < 1:
        raise LayerdbError(f"--spans must be lengths of at least 1 (got {value})")
    return spans


def _parse_precision(ctx, param, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        eps = float(value)
    except ValueError:
        raise LayerdbError(f"--precision takes a number of nats, not {value!r}") from None
    if not (eps > 0 and math.isfinite(eps)):
        raise LayerdbError(f"--precision must be a positive number of nats (got {value})")
    return eps


@click.command("collect")
@click.argument("model")
@click.option("--revision", "-r", "revisions", multiple=True, metavar="R",
              help="A hub revision (branch, tag or commit); repeat for more. Default: main.")
@click.option("--steps", metavar="SPEC",
              help="Select revisions by training step: all, log (0, 1, 2, 4 ... 512, 1000, 2000, "
                   "4000 ... and the final step) or a comma list of steps. The steps are those of "
                   "the revisions the hub (or else the HF cache) lists with a step in their name; "
                   "Pythia's published schedule serves only when neither can be read.")
@click.option("--data", metavar="SOURCE",
              help="Evaluation text: a .txt file (one document), .jsonl (field 'text'), .parquet "
                   "(column 'text') or hf:NAME[:SPLIT] (needs the datasets library). "
                   f"Default: {DEFAULT_DATA} (the first documents of the Pile, Pythia's training "
                   "data; downloaded once by datasets).")
@click.option("--tokens", type=int, default=DEFAULT_TOKENS, show_default=True, metavar="N",
              help="Evaluation tokens; the first floor(N / seq-len) sequences are used.")
@click.option("--seq-len", type=int, default=None, metavar="N",
              help=f"Tokens per sequence. Default: {DEFAULT_SEQ_LEN}, or the model's context if "
                   "shorter.")
@click.option("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, show_default=True, metavar="N",
              help="Sequences per forward pass.")
@click.option("--components", default=",".join(ABLATED_COMPONENTS), show_default=True,
              metavar="LIST",
              help=f"Comma list of what to ablate per layer: {', '.join(ABLATED_COMPONENTS)}.")
@click.option("--spans", metavar="LIST", callback=_parse_spans,
              help="Comma list of span lengths n >= 2: also drop every run of n contiguous whole "
                   "blocks k..k+n-1 (rows component=block, layer=k, span=n); 1 is the "
                   "single-layer block drop.")
@click.option("--swaps", is_flag=True,
              help="Also swap every adjacent pair: layer k+1 runs on the residual entering layer "
                   "k, then layer k (rows component=swap, layer=k, span=2).")
@click.option("--method", default=METHODS[0], show_default=True, metavar="|".join(METHODS),
              help="zero: the ablated term is removed (a dropped block passes its input on); "
                   "mean: it is replaced by its mean over every position of every evaluation "
                   "sequence of the clean model (a block: its mean update).")
@click.option("--precision", metavar="EPS", callback=_parse_precision,
              help="Adaptive evaluation: sequences run in a seeded random order and each "
                   "ablation stops once its anytime-valid 95% interval is narrower than EPS nats "
                   "or excludes zero by more than EPS. Default: every ablation gets the full "
                   "--tokens budget.")
@click.option("--dtype", default="auto", show_default=True, metavar="|".join(DTYPES),
              help="Weights dtype; auto = bfloat16 on GPU, float32 on CPU. The loss is always float32.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:i]",
              help="Where to run; auto = the first GPU if there is one.")
@click.option("--device-map", type=click.Choice(DEVICE_MAPS), default=None,
              help="Spread each checkpoint over several devices (GPUs, then CPU, then disk) with "
                   "accelerate's device maps, for models larger than one device.")
@click.option("--max-memory", metavar="DEV=SIZE,...",
              help="With --device-map: the most each device may hold, e.g. 0=70GiB,cpu=200GiB "
                   "(accelerate's max_memory).")
@click.option("--offload-folder", type=click.Path(file_okay=False), default=None,
              help="With --device-map: where weights offloaded to disk go.")
@click.option("--evict", is_flag=True,
              help="Delete each finished revision's files from the HF cache (a full Pythia-2.8B "
                   "sweep is ~860 GB), keeping the files that revisions still to come share.")
@click.option("--sweep-duplicates", is_flag=True,
              help="Also download and sweep revisions whose weights are another revision's (they "
                   "stay marked, and the charts leave them out).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: checkpoint after checkpoint in this process. ray: one Ray task per "
                   "checkpoint, one GPU each where the cluster has GPUs (needs "
                   "pip install 'layerdb[ray]'); this process stays the only writer of the store.")
@click.option("--ray-address", metavar="ADDRESS",
              help="With --executor ray: the Ray cluster to use (HOST:6379, auto or "
                   "ray://HOST:10001). Default: start a local Ray instance on this machine.")
@click.option("--cpus-per-task", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --executor ray: CPUs each task reserves (and its torch threads on CPU). "
                   f"[default: {DEFAULT_CPUS_PER_TASK}]")
@click.option("--max-retries", type=click.IntRange(0, MAX_RETRIES_LIMIT), default=None, metavar="N",
              help="With --executor ray: how often a checkpoint is retried when its worker dies "
                   "(killed, out of memory) or hits a CUDA or I/O error, before it is reported. "
                   f"Bad input is never retried. [default: {DEFAULT_MAX_RETRIES}]")
@click.pass_context
def collect(ctx, model: str, revisions: tuple[str, ...], steps: str | None, data: str | None,
            tokens: int, seq_len: int | None, batch_size: int, components: str,
            spans: tuple[int, ...], swaps: bool, method: str, precision: float | None,
            dtype: str, device: str, device_map: str | None, max_memory: str | None,
            offload_folder: str | None, evict: bool, sweep_duplicates: bool, executor: str,
            ray_address: str | None, cpus_per_task: int | None,
            max_retries: int | None) -> None:
    """Sweep MODEL's checkpoints: the loss with nothing ablated and with each layer's block,
    attention or MLP removed, one transaction per checkpoint.

    Per checkpoint the per-layer metrics of the clean pass (block influence, update, attention
    and MLP norm ratios, angular distance for each span) are stored too, at no extra forward.
    Re-running with more (--spans, --swaps, --method mean) adds only what is missing.

    MODEL is a Hugging Face repo id (loaded with from_pretrained(MODEL, revision=R); HF_HOME and
    HF_HUB_OFFLINE apply) or a local checkpoint folder. Checkpoints already complete for the same
    eval set are skipped, so re-running resumes. The store is held only while a checkpoint's rows
    are written: query it while a sweep runs.

    Before any download, the weights of every planned revision are audited on the hub (see
    `layerdb audit`): of revisions with identical weights only the one with the highest step is
    downloaded and swept; the others get a checkpoint row marked with its name (same_weights_as)
    and no results. Where the hub gives no digest, identical weights found after loading are not
    swept either. A download failing with a server error is tried 4 times in all, 1, 4 and 16 s
    apart; a revision that still fails is reported at the end and the others are collected.

    Families: {families}.

    With --executor ray each checkpoint is a Ray task on a cluster (or a local Ray instance);
    tasks return their rows and this process writes them as they arrive. A task whose worker dies
    is retried, then reported; Ctrl-C cancels the rest and leaves whole checkpoints only.

    Example: layerdb --db pythia.duckdb collect EleutherAI/pythia-160m --steps log --evict
    """
    names = [c.strip() for c in components.split(",") if c.strip()]
    if names == ["all"]:
        names = list(ABLATED_COMPONENTS)
    if executor != "ray":
        given = {"--ray-address": ray_address, "--cpus-per-task": cpus_per_task,
                 "--max-retries": max_retries}
        ray_only = [name for name, value in given.items() if value is not None]
        if ray_only:
            raise LayerdbError(f"{', '.join(ray_only)}: only with --executor ray")
    from collectors.collect import LocalExecutor, collect as run_collect

    if executor == "ray":
        from collectors.ray_executor import RayExecutor

        chosen = RayExecutor(address=ray_address,
                             max_retries=_or(max_retries, DEFAULT_MAX_RETRIES),
                             cpus_per_task=_or(cpus_per_task, DEFAULT_CPUS_PER_TASK))
    else:
        chosen = LocalExecutor()
    report = run_collect(db_path(ctx), model, executor=chosen, revisions=revisions, steps=steps,
                         data=data, tokens=tokens, seq_len=seq_len, batch_size=batch_size,
                         components=tuple(names), spans=spans, swaps=swaps, method=method,
                         precision=precision, dtype=dtype, device=device,
                         device_map=device_map, max_memory=max_memory,
                         offload_folder=offload_folder, evict=evict,
                         sweep_duplicates=sweep_duplicates, console=console_err)
    not_swept = sum(r not in report.written for r in report.duplicates)
    console.print(
        f"{report.model}: {len(report.written)} checkpoint(s) collected, {len(report.skipped)} "
        f"already complete" + (f", {not_swept} not swept (another revision's weights)"
                               if not_swept else "")
        + f", eval set {report.eval_set}", highlight=False)


collect.help = collect.help.replace("{families}", FAMILY_LIST)


def _or(value, default):
    return default if value is None else value


def register(main) -> None:
    main.add_command(collect)
