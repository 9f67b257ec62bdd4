"""Speed benchmark: notebook 04's hand-written training steps against autograd's, measured side by side.

    python tools/bench.py                 # everything, about 4 minutes on a quiet 2-core machine (make bench)
    python tools/bench.py --quick         # smoke test: every gradient check, short timings, about 10 seconds
    python tools/bench.py --json out.json --no-train
    python tools/bench.py --record course/bench_as_run.txt   # what make bench runs: notebook 04 shows that file

The steps, the gradient proof and the timing code live in course/speed.py (notebook 04's appendix shows the same
definitions); this script imports them. Before timing anything it proves every hand-written gradient equal to
autograd's (float32 and float64). Then it times the five steps and the three backward pieces at notebook 04's
sizes, the fastest and the readable manual step against tuned autograd as the batch and the hidden layer grow
(each size's gradients proven again first), and the 200,000-step training. The last line printed is
`manual/autograd step time ratio: X.XX` (fastest manual step / tuned autograd step, at notebook 04's sizes).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import textwrap
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "course")]
import facts  # noqa: E402
import speed  # noqa: E402
import utils  # noqa: E402

SEED = 2147483647
THREADS = 1  # one thread for every variant: at this size a second thread only adds noise
_S = facts.sizes("04_full_training")
SIZES = (utils.vocab_size, _S["n_embd"], _S["n_hidden"], _S["block_size"], _S["batch_size"])  # notebook 04's sizes
MANUAL, READABLE, AUTOGRAD = "manual, fastest", "manual, readable", "autograd, tuned"
TARGET = 0.50  # the fastest manual step must take at most half the tuned autograd step's time
# the scaling table: batch sizes x hidden sizes, the other sizes as in notebook 04
SCALING = [(n, h) for n in (32, 256, 1024, 4096) for h in (200, 512, 2048)]
QUICK_SCALING = [(32, 200), (64, 256)]
PAYS, BARELY = 0.80, 0.90  # a ratio at most PAYS: worth writing by hand; at least BARELY: saves less than 10%


def check_gradients(data) -> bool:
    (Xtr, Ytr), _ = data
    print("gradients of one step vs loss.backward(), same parameters and batch:")
    ok_all = True
    for (name, dtype), (ok, maxdiff) in speed.check_gradients(SIZES, Xtr, Ytr, SEED).items():
        print(f"  {name:24s} {dtype:8s} match: {str(ok):5s} max |diff| {maxdiff:.1e}")
        ok_all &= ok
    t = speed.lecture_forward(SIZES, Xtr, Ytr, SEED)
    for piece, (target, variants) in speed.BACKWARD_PIECES.items():
        for variant, fn in variants.items():
            ok = torch.allclose(fn(t), t.grad[target], rtol=1e-5, atol=1e-7)
            print(f"  {piece + ', ' + variant:35s} float32  match: {ok}")
            ok_all &= ok
    print(f"all gradients match: {ok_all}")
    return ok_all


def bench_steps(data, rounds, iters) -> dict:
    (Xtr, Ytr), _ = data
    results = speed.time_steps(SIZES, Xtr, Ytr, rounds=rounds, iters=iters, seed=SEED)
    ops = speed.count_ops(SIZES, Xtr, Ytr)
    print(f"\ntraining step (sample + forward + backward + update), median of {rounds} rounds x {iters} steps:")
    print(speed.format_table(results, AUTOGRAD, ops))
    return {name: dict(wall_us=w, cpu_us=c, operations=ops[name]) for name, (w, c) in results.items()}


def bench_pieces(data, rounds, iters) -> dict:
    (Xtr, Ytr), _ = data
    t = speed.lecture_forward(SIZES, Xtr, Ytr, SEED)
    results = {}
    for piece, (_, variants) in speed.BACKWARD_PIECES.items():
        print(f"\n{piece}, median of {rounds} rounds x {iters} calls:")
        timed = speed.race({v: (lambda fn=fn: fn(t)) for v, fn in variants.items()}, rounds, iters)
        results[piece] = {v: dict(wall_us=w, cpu_us=c) for v, (w, c) in timed.items()}
    return results


# ---------------------------------------------------------------------------------------------- scaling

def scaling_row(data, batch, hidden, rounds, sample_us) -> dict:
    """One size: gradients proven in float64, work counted, then the two manual steps, tuned autograd and the
    six matmuls alone timed interleaved, with as many steps per round as fill about sample_us of CPU time."""
    (Xtr, Ytr), _ = data
    sizes = (SIZES[0], SIZES[1], hidden, SIZES[3], batch)
    names = (MANUAL, READABLE, AUTOGRAD)
    checks = speed.check_gradients(sizes, Xtr, Ytr, SEED, names=names, dtypes=(torch.float64,))
    work = speed.count_work(sizes, Xtr, Ytr, names, SEED)
    probe = speed.time_steps(sizes, Xtr, Ytr, names=(AUTOGRAD,), rounds=1, iters=1, seed=SEED)[AUTOGRAD][1]
    iters = max(1, min(200, round(sample_us / probe)))
    calls = speed.step_calls(sizes, Xtr, Ytr, names, seed=SEED)
    calls["matmuls"] = (lambda r: None, speed.make_matmul_step(sizes, SEED))
    cpu = {name: c for name, (_, c) in speed.time_calls(calls, rounds, iters).items()}
    return dict(batch=batch, hidden=hidden, iters=iters, gradients_match=all(ok for ok, _ in checks.values()),
                mflop=work[AUTOGRAD]["flops"] / 1e6, ops={k: w["ops"] for k, w in work.items()},
                melements={k: w["elements"] / 1e6 for k, w in work.items()},
                mb={k: w["allocated"] / 2**20 for k, w in work.items()}, cpu_us=cpu,
                ratio={k: cpu[k] / cpu[AUTOGRAD] for k in (MANUAL, READABLE)})


def format_scaling(rows, rounds) -> str:
    """Two tables: the work of one step (counted), then its time (measured)."""
    three = (MANUAL, READABLE, AUTOGRAD)
    def heads(width):
        return " ".join(f"{h:>{width}s}" for h in ("fast", "read", "aut"))

    lines = ["work per step:  fastest / readable / autograd (tuned)",
             f"{'':13s} {'matmul':>7s} | {'operations':^14s} | {'other Melements':^17s} | {'new tensors, MB':^17s}",
             f"{'batch hidden':13s} {'MFLOP':>7s} | {heads(4)} | {heads(5)} | {heads(5)}"]
    for r in rows:
        lines.append(f"{r['batch']:5d} {r['hidden']:7d} {r['mflop']:7.1f} | "
                     + " ".join(f"{r['ops'][k]:4d}" for k in three) + " | "
                     + " ".join(f"{r['melements'][k]:5.1f}" for k in three) + " | "
                     + " ".join(f"{r['mb'][k]:5.1f}" for k in three))
    lines += ["", f"time per step: CPU µs, median of {rounds} interleaved rounds",
              f"{'batch hidden':13s} | {'matmuls':>8s} {'fastest':>8s} {'readable':>8s} {'autograd':>8s} | "
              f"{'fast/aut':>8s} {'read/aut':>8s} | float64 gradients"]
    for r in rows:
        c = r["cpu_us"]
        lines.append(f"{r['batch']:5d} {r['hidden']:7d} | {c['matmuls']:8.0f} {c[MANUAL]:8.0f} {c[READABLE]:8.0f} "
                     f"{c[AUTOGRAD]:8.0f} | {r['ratio'][MANUAL]:8.2f} {r['ratio'][READABLE]:8.2f} | "
                     + ("match" if r["gradients_match"] else "WRONG"))
    return "\n".join(lines)


def sizes(some, rows) -> str:
    return f"{len(some)} of {len(rows)} size" + ("s" if len(rows) > 1 else "")


def where(r) -> str:
    return f"batch {r['batch']}, hidden {r['hidden']} ({r['mflop']:.0f} MFLOP of matmuls)"


def scaling_conclusion(rows) -> list[str]:
    """Where a hand-written backward stops paying, and why, read off the measured rows."""
    rows = sorted(rows, key=lambda r: (r["mflop"], r["batch"]))
    small, large = rows[0], rows[-1]

    def per_op(r, name):  # µs of the step beyond its matmuls, per dispatched operation
        return (r["cpu_us"][name] - r["cpu_us"]["matmuls"]) / r["ops"][name]

    def share(r, name):  # the part of the step's time its matmuls alone take
        return r["cpu_us"]["matmuls"] / r["cpu_us"][name]

    def work(r, name):
        return f"{r['melements'][name]:.3g} M elements written and {r['mb'][name]:.3g} MB of new tensors"

    out = [f"small: at {where(small)} the matmuls are {share(small, AUTOGRAD):.0%} of tuned autograd's step. The "
           f"rest is dispatch, about {per_op(small, AUTOGRAD):.1f} µs per operation for autograd (its graph "
           f"included), {per_op(small, READABLE):.1f} for the readable and {per_op(small, MANUAL):.1f} for the "
           f"fastest manual step, which take {small['ratio'][READABLE]:.2f}x and {small['ratio'][MANUAL]:.2f}x "
           f"autograd's time.",
           f"large: the operation counts stay put while the work grows with batch x hidden. At {where(large)} the "
           f"matmuls, the same in every step, are {share(large, AUTOGRAD):.0%} of autograd's step and "
           f"{share(large, MANUAL):.0%} of the fastest step's; the rest is elementwise work over memory: autograd "
           f"{work(large, AUTOGRAD)}, the readable step {work(large, READABLE)}, the fastest {work(large, MANUAL)}."]
    for name, label in ((READABLE, "readable step (no graph, a new tensor for every result)"),
                        (MANUAL, "fastest step (buffers made once, results written in place)")):
        ratios = [r["ratio"][name] for r in rows]
        pays = [r for r in rows if r["ratio"][name] <= PAYS]
        barely = [r for r in rows if r["ratio"][name] >= BARELY]
        text = f"{label}: {min(ratios):.2f}x to {max(ratios):.2f}x autograd's time; at most {PAYS:.2f}x at "
        if pays:
            span = "every one up to" if pays == rows[:len(pays)] else "the largest"
            text += f"{sizes(pays, rows)}, {span} {where(pays[-1])}"
        else:
            text += "no size"
        if barely:
            span = f"every one from {where(barely[0])} on" if barely == rows[-len(barely):] else \
                f"the smallest {where(barely[0])}"
            text += f"; {BARELY:.2f}x or more (saving less than {1 - BARELY:.0%}) at {sizes(barely, rows)}, {span}"
        else:
            text += f"; below {BARELY:.2f}x at every size measured"
        out.append(text + ".")
    readable_pays = [r for r in rows if r["ratio"][READABLE] <= PAYS]
    limit = readable_pays[-1]["mflop"] if readable_pays else 0.0
    beyond = [r for r in rows if r["mflop"] > limit]
    if not readable_pays:
        text = "so: fewer, cheaper operations did not pay at any size measured"
    elif not beyond:
        text = f"so: fewer, cheaper operations paid at every size measured, up to {limit:.0f} MFLOP of matmuls per step"
    else:
        text = (f"so: a hand-written backward pays by dispatching fewer, cheaper operations only while they dominate "
                f"the step, here up to about {limit:.0f} MFLOP of matmuls per step; beyond that it pays only by "
                f"allocating less than autograd (the fastest step: {min(r['ratio'][MANUAL] for r in beyond):.2f}x "
                f"to {max(r['ratio'][MANUAL] for r in beyond):.2f}x), and not when it allocates more (the readable "
                f"step: {min(r['ratio'][READABLE] for r in beyond):.2f}x to "
                f"{max(r['ratio'][READABLE] for r in beyond):.2f}x)")
    out.append(text + ".")
    return out


def bench_scaling(data, sizes, rounds, sample_us) -> list[dict]:
    print(f"\nas the work grows: the fastest and the readable manual step against tuned autograd, one thread, "
          f"steps per round chosen to fill ~{sample_us / 1e3:.0f} ms; gradients proven in float64 at every size first")
    rows = [scaling_row(data, batch, hidden, rounds, sample_us) for batch, hidden in sizes]
    print(format_scaling(rows, rounds))
    print("matmul MFLOP: 2*m*k*n summed over the six matrix products of forward and backward. Other Melements: "
          "the size of every other operation's output (about one flop each). New tensors: what the step allocates.")
    if len(rows) > 1:
        if rounds < 3:
            print(f"({rounds} round per size is too short to conclude anything: the lines below only show that the "
                  "code runs)")
        for line in scaling_conclusion(rows):
            print(textwrap.fill(line, 116, subsequent_indent="  "))
    return rows


# ---------------------------------------------------------------------------------------------- training

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


def bench_training(data, max_steps, chunk=10_000) -> dict:
    """Notebook 04's training (lr 0.1, then 0.01 from the halfway step) with both steps, in alternating chunks."""
    (Xtr, Ytr), _ = data
    runs = {}
    for name in (MANUAL, AUTOGRAD):
        g = torch.Generator().manual_seed(SEED)
        step, params = speed.new_step(name, SIZES, Xtr, Ytr, g)
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


class Tee:
    """Writes to every stream it holds: the terminal and the record of the run."""
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
            s.flush()  # a long run shows its progress as it goes

    def flush(self):
        for s in self.streams:
            s.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short timings, two small sizes, no full training (the smoke test)")
    ap.add_argument("--train", action=argparse.BooleanOptionalAction, default=None,
                    help="run the full training with both steps (default: on, off with --quick)")
    ap.add_argument("--steps", type=int, default=200_000, help="training steps (default 200,000)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--record", type=Path, default=None, help="also write everything printed to this file")
    args = ap.parse_args()
    if not args.record:
        return run(args)
    with args.record.open("w") as record, contextlib.redirect_stdout(Tee(sys.stdout, record)):
        return run(args)


def run(args) -> int:
    train = (not args.quick) if args.train is None else args.train
    step_rounds, step_iters, piece_rounds, piece_iters = (3, 50, 3, 20) if args.quick else (12, 500, 12, 200)
    scaling, scaling_rounds, sample_us = (QUICK_SCALING, 1, 2e3) if args.quick else (SCALING, 7, 8e4)

    torch.set_num_threads(THREADS)
    words = utils.load_words(ROOT / "names.txt")
    train_split, dev_split, _ = utils.split_dataset(words, SIZES[3])
    data = (train_split, dev_split)
    print(f"torch {torch.__version__} on {platform.machine()}, threads: {torch.get_num_threads()} (every variant), "
          f"steps from course/speed.py")
    load = "/".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    print(f"run on {datetime.date.today()}, {os.cpu_count()} CPUs, load average (1/5/15 min) {load}")

    out = dict(torch=torch.__version__, threads=torch.get_num_threads(), quick=args.quick)
    out["gradients_match"] = check_gradients(data)
    if not out["gradients_match"]:
        print("a hand-written gradient does not match autograd's: not timing anything")
        return 1
    out["steps"] = bench_steps(data, step_rounds, step_iters)
    out["pieces"] = bench_pieces(data, piece_rounds, piece_iters)
    out["scaling"] = bench_scaling(data, scaling, scaling_rounds, sample_us)
    scaling_ok = all(r["gradients_match"] for r in out["scaling"])
    if not scaling_ok:
        print("a hand-written gradient does not match autograd's at some size (WRONG above)")
    if train:
        out["training"] = bench_training(data, args.steps)
    ratio = out["steps"][MANUAL]["cpu_us"] / out["steps"][AUTOGRAD]["cpu_us"]
    out["ratio"] = ratio
    wall_ratio = out["steps"][MANUAL]["wall_us"] / out["steps"][AUTOGRAD]["wall_us"]
    print(f"\n(wall-clock ratio {wall_ratio:.2f}; the ratio below uses CPU time, which other programs cannot inflate)")
    if not args.quick:  # a 3-round smoke test is too short to judge speed
        print(f"speed target, fastest manual step <= {TARGET:.2f} x tuned autograd: {ratio <= TARGET}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(f"manual/autograd step time ratio: {ratio:.2f}")
    if not scaling_ok or (train and not out["training"]["agree"]):
        return 1
    return 0 if args.quick or ratio <= TARGET else 2


if __name__ == "__main__":
    sys.exit(main())
