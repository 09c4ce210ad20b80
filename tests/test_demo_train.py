"""The demo's training half, on a reduced config: 2 layers x 32, a 384-token BPE, 40 docs, 40 steps."""
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from collectors.demo.corpus import EOS, encode_documents, prepare_corpus  # noqa: E402
from collectors.demo.specs import DemoModelSpec  # noqa: E402
from collectors.demo.train import checkpoint_steps, learning_rate, train_demo  # noqa: E402

TINY = DemoModelSpec("demo/tiny", n_layers=2, d_model=32, n_heads=2, seq_len=32, batch_size=8,
                     steps=40, lr=1e-2, warmup_steps=4)
TINY_DEMO = dict(seed=0, specs=(TINY,), vocab_size=384, max_docs=40, threads=1)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    return train_demo(tmp_path_factory.mktemp("demo"), **TINY_DEMO)


def test_checkpoint_steps_are_log_spaced_with_the_final_step():
    assert checkpoint_steps(40) == [0, 1, 2, 4, 8, 16, 32, 40]
    assert checkpoint_steps(256) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]


def test_learning_rate_warms_up_then_decays_to_the_floor():
    assert learning_rate(TINY, 1) == pytest.approx(TINY.lr / 4)
    assert learning_rate(TINY, 4) == pytest.approx(TINY.lr)
    assert learning_rate(TINY, 40) == pytest.approx(TINY.lr * TINY.min_lr_ratio)


def test_corpus_split_is_disjoint_and_fixed_by_seed():
    a, b, c = prepare_corpus(0, max_docs=40), prepare_corpus(0, max_docs=40), prepare_corpus(1, max_docs=40)
    assert a == b and a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert len(a.heldout_docs) == 2 and len(a.train_docs) == 38
    assert not {d.path for d in a.train_docs} & {d.path for d in a.heldout_docs}
    assert all(d.path.endswith(".py") and "/test/" not in f"/{d.path}" for d in a.train_docs)


def test_heldout_jsonl_holds_the_heldout_documents(tiny_demo):
    rows = [json.loads(line) for line in tiny_demo.heldout_path.read_text().splitlines()]
    corpus = prepare_corpus(0, max_docs=40)
    assert [r["text"] for r in rows] == [d.text for d in corpus.heldout_docs]


def test_tokenizer_is_byte_level_with_eos(tiny_demo):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_demo.tokenizer_dir)
    assert len(tok) == 384 and tok.eos_token == EOS and tok.eos_token_id == 0
    text = "def f(x):\n    return 'π ≈ 3.14'  # ünïcode\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.eos_token_id not in ids and tok.decode(ids) == text
    stream = encode_documents(tok, prepare_corpus(0, max_docs=40).heldout_docs)
    assert (stream == tok.eos_token_id).sum() == 2 and stream[-1] == tok.eos_token_id


def test_training_lowers_the_loss(tiny_demo):
    (model,) = tiny_demo.models
    assert len(model.losses) == 40 and model.steps == 40
    assert model.losses[0] > 5.5  # about ln(384) at init
    assert model.final_loss < model.losses[0] - 1.0
    assert 10_000 < model.n_params < 100_000
    assert model.revisions == [f"step{s}" for s in checkpoint_steps(40)]


def test_checkpoints_load_by_revision_from_the_offline_cache(tiny_demo):
    """Exactly the hub code path, in a fresh process: HF_HOME + HF_HUB_OFFLINE, then from_pretrained."""
    script = (
        "import json, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "out = {}\n"
        "for rev in ['step0', 'step8', 'step40', 'main']:\n"
        "    m = AutoModelForCausalLM.from_pretrained('demo/tiny', revision=rev)\n"
        "    out[rev] = [type(m).__name__, m.config.use_parallel_residual,\n"
        "                sum(p.double().sum().item() for p in m.parameters())]\n"
        "tok = AutoTokenizer.from_pretrained('demo/tiny', revision='step8')\n"
        "out['eos'] = tok.eos_token\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HF_HOME": str(tiny_demo.hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["eos"] == EOS
    assert out["step8"][:2] == ["GPTNeoXForCausalLM", True]
    assert out["step40"][2] == out["main"][2]
    assert len({out["step0"][2], out["step8"][2], out["step40"][2]}) == 3  # weights differ by step


def test_training_is_deterministic_for_a_seed(tiny_demo, tmp_path):
    # alongside a model that reads a longer stream: each model's data depends on its own spec only
    longer = replace(TINY, repo_id="demo/tiny-longer", steps=50, batch_size=12)
    again = train_demo(tmp_path / "again", **{**TINY_DEMO, "specs": (TINY, longer)}).models[0]
    assert not again.reused
    assert again.losses == pytest.approx(tiny_demo.models[0].losses, rel=1e-5)
    other = train_demo(tmp_path / "other", **{**TINY_DEMO, "seed": 1}).models[0]
    assert other.losses[0] != pytest.approx(again.losses[0], rel=1e-5)


def _files(folder):  # {path: (size, mtime_ns)} of every file below folder
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_rerun_reuses_the_trained_model(tiny_demo):
    events = []
    cached = _files(tiny_demo.hf_home)
    rerun = train_demo(tiny_demo.out_dir, progress=lambda *e: events.append(e), **TINY_DEMO)
    (model,) = rerun.models
    assert model.reused and model.losses == tiny_demo.models[0].losses
    assert [e for e in events if e[0] == "demo/tiny"] == [
        ("demo/tiny", 40, 40, "demo/tiny: reused, loss %.3f" % model.final_loss)]  # no training step
    assert [e for e in events if e[0] == "tokenizer"] == [
        ("tokenizer", 1, 1, "tokenizer: reused (384 tokens)")]
    assert _files(tiny_demo.hf_home) == cached  # no checkpoint rewritten


def test_a_changed_spec_retrains_and_drops_stale_revisions(tmp_path):
    from collectors.hub_cache import repo_cache_dir

    short = replace(TINY, steps=10, warmup_steps=2)
    train_demo(tmp_path, **{**TINY_DEMO, "specs": (short,)})
    model = train_demo(tmp_path, **{**TINY_DEMO, "specs": (replace(short, steps=12),)}).models[0]
    assert not model.reused and model.revisions[-1] == "step12"
    refs = repo_cache_dir("demo/tiny", tmp_path / "hf_home" / "hub") / "refs"
    assert sorted(p.name for p in refs.iterdir()) == sorted(model.revisions + ["main"])


def test_rich_progress_callback_keeps_one_task_per_key():
    from rich.progress import Progress

    from collectors.demo.train import rich_progress_callback

    progress = Progress(disable=True)
    update = rich_progress_callback(progress)
    update("demo/a", 0, 10, "demo/a: preparing")
    update("demo/a", 4, 10, "demo/a: step 4")
    update("tokenizer", 1, 1, "tokenizer: 384 tokens")
    tasks = {t.description: t for t in progress.tasks}
    assert set(tasks) == {"demo/a: step 4", "tokenizer: 384 tokens"}
    assert tasks["demo/a: step 4"].completed == 4 and tasks["demo/a: step 4"].total == 10
