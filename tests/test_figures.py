"""The committed figures/ are exactly what tools/make_figures.py draws (it is deterministic)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {"forward_graph.png", "fanout_counts.png", "broadcast_sum.png", "batchnorm_graph.png"}
FIX = "run tools/make_figures.py and commit figures/"


def test_figures_are_up_to_date(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_figures.py"), "--out", str(tmp_path)],
                   check=True, cwd=ROOT)
    drawn = {p.name for p in tmp_path.glob("*.png")}
    committed = {p.name for p in (ROOT / "figures").glob("*.png")}
    assert drawn == FIGURES, f"the script drew {sorted(drawn)}, expected {sorted(FIGURES)}"
    assert committed == FIGURES, f"figures/ holds {sorted(committed)}, expected {sorted(FIGURES)}: {FIX}"
    stale = [n for n in sorted(FIGURES) if (tmp_path / n).read_bytes() != (ROOT / "figures" / n).read_bytes()]
    assert not stale, f"figures/{', '.join(stale)} differ from what the script draws now: {FIX}"
