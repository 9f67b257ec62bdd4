"""The speed benchmark and the module it imports, course/speed.py.

`tools/bench.py --quick` must run and find every hand-written gradient equal to autograd's. The 0.50 speed target
is checked by the benchmark itself (`make bench`), not here: timings in a test would only measure how busy the
test machine is. The other tests are quick checks of course/speed.py on small sizes, and of the promise that
notebook 04 can include each of its definitions on its own.
"""
import ast
import builtins
import subprocess
import symtable
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "course")]
import lecture  # noqa: E402
import speed  # noqa: E402

SPEED = ROOT / "course" / "speed.py"
SMALL = (27, 4, 16, 3, 8)  # vocab_size, n_embd, n_hidden, block_size, batch_size: fast, and unlike notebook 04's
# what notebook 04 has imported before its appendix: the included definitions may use these and nothing else
NOTEBOOK_IMPORTS = {"torch", "F", "time", "statistics"}
# the names notebook 04's appendix includes (`# include: speed.<name>`): they must keep existing
PUBLIC = ["train_forward", "autograd_step_lecture", "autograd_step_tuned", "manual_step_lecture", "manual_step",
          "make_fastest_step", "STEPS", "new_step", "step_gradients", "autograd_gradients", "check_gradients",
          "clock", "time_calls", "step_calls", "time_steps", "make_matmul_step", "count_work", "count_ops",
          "format_table", "cross_entropy_backward_fused", "cross_entropy_backward_chunked",
          "batchnorm_backward_fused", "batchnorm_backward_chunked", "BACKWARD_PIECES", "lecture_forward"]


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 27, (500, 3), generator=g)
    return X, torch.randint(0, 27, (500,), generator=g)


def test_bench_quick_runs_and_gradients_match():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    match_lines = [line for line in out.splitlines() if "match:" in line]
    assert len(match_lines) >= 8 + 6, out  # 4 steps x 2 dtypes, 3 pieces x 2 variants
    assert all("match: True" in line for line in match_lines), out
    assert "all gradients match: True" in out
    # the scaling table ran at its quick sizes, with the gradients proven at each
    scaling_rows = [line for line in out.splitlines() if line.rstrip().endswith(("| match", "| WRONG"))]
    assert len(scaling_rows) == 2 and all(line.endswith("| match") for line in scaling_rows), out
    assert out.strip().splitlines()[-1].startswith("manual/autograd step time ratio: ")


def test_bench_imports_its_code():
    source = (ROOT / "tools" / "bench.py").read_text()
    calls = {node.func.id for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not calls & {"exec", "eval", "compile"}
    assert "import speed" in source


def test_every_step_matches_autograd_at_other_sizes(data):
    Xtr, Ytr = data
    results = speed.check_gradients(SMALL, Xtr, Ytr, seed=1)
    assert len(results) == 2 * (len(speed.STEPS) - 1)
    assert all(ok for ok, _ in results.values()), results


def test_backward_pieces_match_autograd(data):
    t = speed.lecture_forward(SMALL, *data, seed=1)
    for piece, (target, variants) in speed.BACKWARD_PIECES.items():
        for variant, fn in variants.items():
            assert torch.allclose(fn(t), t.grad[target], rtol=1e-5, atol=1e-7), (piece, variant)


def test_count_work_counts_the_six_matmuls(data):
    vocab_size, n_embd, n_hidden, block_size, n = SMALL
    work = speed.count_work(SMALL, *data, names=("autograd, tuned", "manual, fastest"))
    six_matmuls = 6 * n * n_hidden * (n_embd * block_size + vocab_size)  # 2*m*k*n, two forward, four backward
    assert work["autograd, tuned"]["flops"] == six_matmuls
    assert work["manual, fastest"]["flops"] == six_matmuls + 2 * n * vocab_size  # b2's update is a matmul by ones
    assert work["manual, fastest"]["ops"] < work["autograd, tuned"]["ops"]
    assert work["manual, fastest"]["allocated"] < work["autograd, tuned"]["allocated"]  # buffers made once
    assert speed.count_ops(SMALL, *data, names=("manual, fastest",)) == {"manual, fastest": 29}


def test_time_calls_interleaves_and_returns_medians():
    order = []
    calls = {name: (lambda r, name=name: order.append((r, name)), lambda: None) for name in "ab"}
    timed = speed.time_calls(calls, rounds=2, iters=3)
    assert order == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]  # warm-up, then reversed each round
    assert set(timed) == {"a", "b"} and all(w >= 0 and c >= 0 for w, c in timed.values())


def _free_names(node: ast.AST) -> set[str]:
    """The global names one top-level definition reads, in any of its scopes, minus those it defines."""
    def walk(table):
        if table.get_type() == "module":  # at the top every name is global: keep those read but not bound here
            names = {s.get_name() for s in table.get_symbols()
                     if s.is_referenced() and not (s.is_assigned() or s.is_namespace() or s.is_imported())}
        else:
            names = {s.get_name() for s in table.get_symbols() if s.is_global()}
        for child in table.get_children():
            names |= walk(child)
        return names
    return walk(symtable.symtable(ast.unparse(node), "speed.py", "exec"))


def test_each_definition_can_be_included_on_its_own():
    """The notebook gets speed.py's definitions, not its imports: each may only use the notebook's imports,
    the lecture's definitions (included by their plain names) and other definitions of speed.py."""
    tree = ast.parse(SPEED.read_text())
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    defined |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Name)}
    lecture_names = {name for name in vars(lecture) if not name.startswith("__")}
    allowed = NOTEBOOK_IMPORTS | lecture_names | defined | set(dir(builtins))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)):  # imports, the docstring
            continue
        unknown = _free_names(node) - allowed
        assert not unknown, f"{getattr(node, 'name', ast.unparse(node)[:40])} uses {unknown}"
    assert set(PUBLIC) <= defined, set(PUBLIC) - defined


def _row(batch, hidden, mflop, fastest, readable):
    """A made-up scaling row: autograd 1000 µs, matmuls 100 µs, the two manual steps at the given ratios."""
    return dict(batch=batch, hidden=hidden, mflop=mflop, gradients_match=True,
                ops={"manual, fastest": 29, "manual, readable": 53, "autograd, tuned": 44},
                melements={"manual, fastest": 1.0, "manual, readable": 2.0, "autograd, tuned": 1.5},
                mb={"manual, fastest": 0.5, "manual, readable": 9.0, "autograd, tuned": 6.0},
                cpu_us={"matmuls": 100.0, "manual, fastest": 1000 * fastest, "manual, readable": 1000 * readable,
                        "autograd, tuned": 1000.0},
                ratio={"manual, fastest": fastest, "manual, readable": readable})


def test_scaling_conclusion_is_read_off_the_rows():
    sys.path.insert(0, str(ROOT / "tools"))
    import bench
    rows = [_row(4096, 2048, 2869.0, 0.50, 1.40), _row(32, 200, 2.2, 0.40, 0.60),
            _row(256, 512, 44.8, 0.60, 1.05), _row(32, 512, 5.6, 0.45, 0.70)]
    lines = bench.scaling_conclusion(rows)
    text = " ".join(lines)
    assert lines[0].startswith("small: at batch 32, hidden 200 (2 MFLOP")
    assert "every one up to batch 32, hidden 512 (6 MFLOP" in text  # the readable step's last paying size
    assert "every one from batch 256, hidden 512 (45 MFLOP of matmuls) on" in text
    assert lines[-1].startswith("so: a hand-written backward pays by dispatching fewer, cheaper operations only "
                                "while they dominate the step, here up to about 6 MFLOP")
    assert "the fastest step: 0.50x to 0.60x" in lines[-1] and "the readable step: 1.05x to 1.40x" in lines[-1]
    # other numbers, other conclusion: nothing in it is fixed text about this machine
    fast_everywhere = [_row(32, 200, 2.2, 0.40, 0.60), _row(4096, 2048, 2869.0, 0.45, 0.70)]
    assert bench.scaling_conclusion(fast_everywhere)[-1].startswith(
        "so: fewer, cheaper operations paid at every size measured, up to 2869 MFLOP")
