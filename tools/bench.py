"""Speed benchmark: notebook 04's hand-written training step against autograd's, measured side by side.

    python tools/bench.py                 # everything, about 2.5 minutes on a quiet 2-core machine
    python tools/bench.py --quick         # smoke test: gradient checks and a short timing, well under a minute
    python tools/bench.py --json out.json --no-train

The steps and the timing code are not defined here: they live once, in the notebook cells tagged `speed`
(the last section of notebooks/solutions/04_full_training.ipynb), which this script reads and runs.
Before timing anything it proves every hand-written gradient equal to autograd's (float32 and float64).
The last line printed is `manual/autograd step time ratio: X.XX` (fastest manual step / tuned autograd step).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import nbformat
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import utils  # noqa: E402

DEFAULT_NOTEBOOK = ROOT / "notebooks" / "solutions" / "04_full_training.ipynb"
SEED = 2147483647
THREADS = 1  # one thread for every variant: at this size a second thread only adds noise
SIZES = (utils.vocab_size, 10, 200, 3, 32)  # vocab_size, n_embd, n_hidden, block_size, batch_size (notebook 04)
MANUAL, AUTOGRAD = "manual, fastest", "autograd, tuned"
TARGET = 0.50  # the fastest manual step must take at most half the tuned autograd step's time


def speed_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "speed" in c.metadata.get("tags", [])]


def load_speed_namespace(path: Path | None) -> tuple[dict, Path]:
    """exec the notebook's `speed` cells into a fresh namespace (they are self-contained by design)."""
    path = path or DEFAULT_NOTEBOOK
    sources = speed_cells(path)
    if not sources:
        sys.exit(f"no cells tagged `speed` in {path}")
    ns: dict = {}
    for src in sources:
        exec(compile(src, f"{path.name}[speed]", "exec"), ns)
    return ns, path


def check_gradients(ns, data) -> bool:
    (Xtr, Ytr), _ = data
    print("gradients of one step vs loss.backward(), same parameters and batch:")
    ok_all = True
    for (name, dtype), (ok, maxdiff) in ns["check_gradients"](SIZES, Xtr, Ytr, SEED).items():
        print(f"  {name:24s} {dtype:8s} match: {str(ok):5s} max |diff| {maxdiff:.1e}")
        ok_all &= ok
    t = ns["lecture_forward"](SIZES, Xtr, Ytr, SEED)
    for piece, (target, variants) in ns["BACKWARD_PIECES"].items():
        for variant, fn in variants.items():
            ok = torch.allclose(fn(t), t["grad"][target], rtol=1e-5, atol=1e-7)
            print(f"  {piece + ', ' + variant:35s} float32  match: {ok}")
            ok_all &= ok
    print(f"all gradients match: {ok_all}")
    return ok_all


def bench_steps(ns, data, rounds, iters) -> dict:
    (Xtr, Ytr), _ = data
    results = ns["time_steps"](SIZES, Xtr, Ytr, rounds=rounds, iters=iters, seed=SEED)
    ops = ns["count_ops"](SIZES, Xtr, Ytr)
    print(f"\ntraining step (sample + forward + backward + update), median of {rounds} rounds x {iters} steps:")
    print(ns["format_table"](results, AUTOGRAD, ops))
    return {name: dict(wall_us=w, cpu_us=c, operations=ops[name]) for name, (w, c) in results.items()}


def bench_pieces(ns, data, rounds, iters) -> dict:
    (Xtr, Ytr), _ = data
    t = ns["lecture_forward"](SIZES, Xtr, Ytr, SEED)
    results = {}
    for piece, (_, variants) in ns["BACKWARD_PIECES"].items():
        calls = {v: (lambda r: None, lambda fn=fn: fn(t)) for v, fn in variants.items()}
        timed = ns["time_calls"](calls, rounds, iters)
        print(f"\n{piece}, median of {rounds} rounds x {iters} calls:")
        print(ns["format_table"](timed, list(variants)[0]))
        results[piece] = {v: dict(wall_us=w, cpu_us=c) for v, (w, c) in timed.items()}
    return results


@torch.no_grad()
def final_losses(params, data) -> dict:
    """Notebook 04's evaluation: batchnorm statistics calibrated on the whole training split."""
    C, W1, b1, W2, b2, bngain, bnbias = params
    (Xtr, Ytr), (Xdev, Ydev) = data
    hprebn = C[Xtr].view(Xtr.shape[0], -1) @ W1 + b1
    bnmean, bnvar = hprebn.mean(0, keepdim=True), hprebn.var(0, keepdim=True, unbiased=True)
    losses = {}
    for split, (X, Y) in (("train", (Xtr, Ytr)), ("val", (Xdev, Ydev))):
        hpreact = bngain * (C[X].view(X.shape[0], -1) @ W1 + b1 - bnmean) * (bnvar + 1e-5) ** -0.5 + bnbias
        logits = torch.tanh(hpreact) @ W2 + b2
        losses[split] = torch.nn.functional.cross_entropy(logits, Y).item()
    return losses


def bench_training(ns, data, max_steps, chunk=10_000) -> dict:
    """Notebook 04's training (lr 0.1, then 0.01 from the halfway step) with both steps, in alternating chunks."""
    (Xtr, Ytr), _ = data
    runs = {}
    for name in (MANUAL, AUTOGRAD):
        g = torch.Generator().manual_seed(SEED)
        step, params = ns["new_step"](name, SIZES, Xtr, Ytr, g)
        runs[name] = dict(g=g, step=step, params=params, wall=0.0, cpu=0.0)
    for start in range(0, max_steps, chunk):
        for run in runs.values():
            g, step = run["g"], run["step"]
            w0, c0 = time.perf_counter(), time.thread_time()
            for i in range(start, min(start + chunk, max_steps)):
                step(g, 0.1 if i < max_steps // 2 else 0.01)
            run["wall"] += time.perf_counter() - w0
            run["cpu"] += time.thread_time() - c0
    print(f"\nfull training, {max_steps:,} steps (batch statistics calibrated on the training split):")
    results = {}
    for name, run in runs.items():
        results[name] = dict(wall_s=run["wall"], cpu_s=run["cpu"], **final_losses(run["params"], data))
        r = results[name]
        print(f"  {name:18s} wall {r['wall_s']:6.1f} s  CPU {r['cpu_s']:6.1f} s  train {r['train']:.4f}  val {r['val']:.4f}")
    m, a = results[MANUAL], results[AUTOGRAD]
    agree = abs(m["val"] - a["val"]) < 0.01 and abs(m["train"] - a["train"]) < 0.01
    print(f"  final losses agree (within 0.01): {agree}   manual val <= 2.12: {m['val'] <= 2.12}")
    print(f"  manual/autograd training time ratio: {m['cpu_s'] / a['cpu_s']:.2f}")
    results["agree"] = agree
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short timing, no full training (the smoke test)")
    ap.add_argument("--train", action=argparse.BooleanOptionalAction, default=None,
                    help="run the full training with both steps (default: on, off with --quick)")
    ap.add_argument("--steps", type=int, default=200_000, help="training steps (default 200,000)")
    ap.add_argument("--notebook", type=Path, default=None, help="notebook holding the `speed` cells")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    train = (not args.quick) if args.train is None else args.train
    step_rounds, step_iters, piece_rounds, piece_iters = (3, 50, 3, 20) if args.quick else (12, 500, 12, 200)

    torch.set_num_threads(THREADS)
    ns, path = load_speed_namespace(args.notebook)
    words = utils.load_words(ROOT / "names.txt")
    train_split, dev_split, _ = utils.split_dataset(words, SIZES[3])
    data = (train_split, dev_split)
    print(f"torch {torch.__version__} on {platform.machine()}, threads: {torch.get_num_threads()} (every variant), "
          f"speed cells from {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    out = dict(torch=torch.__version__, threads=torch.get_num_threads(), quick=args.quick)
    out["gradients_match"] = check_gradients(ns, data)
    if not out["gradients_match"]:
        print("a hand-written gradient does not match autograd's: not timing anything")
        return 1
    out["steps"] = bench_steps(ns, data, step_rounds, step_iters)
    out["pieces"] = bench_pieces(ns, data, piece_rounds, piece_iters)
    if train:
        out["training"] = bench_training(ns, data, args.steps)
    ratio = out["steps"][MANUAL]["cpu_us"] / out["steps"][AUTOGRAD]["cpu_us"]
    out["ratio"] = ratio
    wall_ratio = out["steps"][MANUAL]["wall_us"] / out["steps"][AUTOGRAD]["wall_us"]
    print(f"\n(wall-clock ratio {wall_ratio:.2f}; the ratio below uses CPU time, which other programs cannot inflate)")
    if not args.quick:  # a 3-round smoke test is too short to judge speed
        print(f"speed target, fastest manual step <= {TARGET:.2f} x tuned autograd: {ratio <= TARGET}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(f"manual/autograd step time ratio: {ratio:.2f}")
    if train and not out["training"]["agree"]:
        return 1
    return 0 if args.quick or ratio <= TARGET else 2


if __name__ == "__main__":
    sys.exit(main())
