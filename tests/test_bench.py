"""Smoke test of the speed benchmark: `tools/bench.py --quick` runs and every hand-written gradient matches.

The 0.50 speed target is checked by the benchmark itself (`make bench`), not here: timings in a test would
only measure how busy the test machine is.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_and_gradients_match():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    match_lines = [line for line in out.splitlines() if "match:" in line]
    assert len(match_lines) >= 8 + 6, out  # 4 steps x 2 dtypes, 3 pieces x 2 variants
    assert all("match: True" in line for line in match_lines), out
    assert "all gradients match: True" in out
    assert out.strip().splitlines()[-1].startswith("manual/autograd step time ratio: ")
