"""The benchmark scripts run (tiny settings), so they cannot rot; their figures are not checked
here: speed belongs to the benchmarks themselves."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_gpu_sweep_smoke_prints_and_appends_a_table(tmp_path):
    results = tmp_path / "RESULTS.md"
    out = run("gpu_sweep.py", "--smoke", "--out", str(results))
    assert re.search(r"bf16 matmul [\d.]+ TFLOP/s measured", out)
    section = results.read_text()
    assert section.startswith("\n## ") and "`python benchmarks/gpu_sweep.py --smoke --out" in section
    header, rule, row = [line for line in section.splitlines() if line.startswith("|")]
    assert header.count("|") == rule.count("|") == row.count("|") == 13
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "smoke" and cells[2] == "128"  # 4 sequences of 32 tokens
    assert 0 < float(cells[10]) < 1.5 and float(cells[11]) < 0.05  # ratio; bf16 vs fp32


def test_sweep_benchmark_runs_both_cases():
    out = run("sweep.py", "--layers", "2", "--width", "32", "--seq-len", "16", "--sequences", "2",
              "--batch-size", "2", "--repeats", "1", "--malloc", "tuned")
    rows = [line.split() for line in out.splitlines() if line.startswith(("single", "spans"))]
    assert [r[0] for r in rows] == ["single", "spans"]
    assert all(float(r[-1]) < 1e-5 for r in rows)  # the same losses either way


def test_ingest_benchmark_runs_every_case():
    out = run("ingest.py", "--rows", "2000", "--repeat", "1")
    cases = [line for line in out.splitlines()
             if line.startswith(("into an empty file", "new keys", "newer rows"))]
    assert len(cases) == 3 and all(float(line.split()[-1]) > 0 for line in cases)


def test_the_hub_benchmark_runs_and_ends_with_the_prefetch_ratio():
    out = run("hub.py", "--revisions", "2", "--layers", "2", "--width", "32", "--tokens", "128",
              "--seq-len", "32", "--bytes-per-s", "1e6")  # no calibration run: one process less
    lines = out.splitlines()
    number = r"\d+\.\d\d"
    patterns = [
        r"hub benchmark: 2 revisions of a 2 x 32 GPT-NeoX, \d+\.\d MB of weights each, "
        r"128 tokens per sweep",
        rf"hub throttled to {number} MB/s: {number} s to download a revision's weights",
        rf"prefetch off:  wall +{number} s, downloading +{number} s, sweeping +{number} s",
        rf"prefetch on:   wall +{number} s, downloading +{number} s, sweeping +{number} s",
        rf"prefetch ratio {number}",
    ]
    assert len(lines) == len(patterns), out
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), (line, pattern)
