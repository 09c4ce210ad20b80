"""The torch half of layerdb: load checkpoints, run layer-ablation sweeps, hand rows to the store.

Imports layerdb; layerdb imports only its torch-free parts (``settings``, ``families``,
``ablations``) at start-up, and the rest lazily inside ``collect``/``demo``.

The public API, in the order a run uses it (each module's docstring has the details):

    from collectors.collect import prepare, run_checkpoint, collect, LocalExecutor
    from collectors.writer import completed, write_rows

    plan = prepare("EleutherAI/pythia-160m", steps="log", data="eval.jsonl", tokens=131072,
                   seq_len=1024, batch_size=8, components=("block", "attn", "mlp"),
                   dtype="auto", device="auto")          # all input checks + eval tokens; no store
    todo = [r for r in plan.revisions if r not in completed(db, plan.ref.name,
            plan.tokens.eval_set, plan.options.method, plan.options.components)]
    rows = run_checkpoint(plan, todo[0])                   # pure: load, sweep, free -> SweepRows
    write_rows(db, rows)                                   # one transaction per checkpoint

    collect(db, "EleutherAI/pythia-160m", steps="log", ...)  # all of the above, with progress
    collect(db, ..., executor=RayExecutor(address="auto"))   # the same flow, one Ray task each

Lower down: ``checkpoints`` (resolve_model, plan_revisions, load_checkpoint, weights_fingerprint),
``eval_tokens`` (read_documents, build_eval_tokens), ``sweep`` (sweep_checkpoint, sweep_losses,
SweepOptions), ``families`` (Family, family_for), ``hub`` (download_revision, Prefetcher,
evict_revision), ``integrity`` (audit_revisions, the weights digest and the keep rule),
``same_weights`` (collect's bookkeeping of identical weights), ``ray_executor`` (RayExecutor),
``demo`` (the offline demo).
"""
