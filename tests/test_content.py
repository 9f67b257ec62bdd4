"""The course's content, as issue 16 asks for it: questions before their answers, predictions before their reveals,
the finer BatchNorm checks, running statistics judged against torch.nn.BatchNorm1d in both modes, the BatchNorm
against LayerNorm experiment's plot, little reading before notebook 01's first exercise, time estimates and one
"explain why" question per notebook.

Source-level tests read what tools/build_notebooks.py generates (no run); output tests read the stored notebooks.
"""
import re
import sys

import nbformat
import pytest
import torch

import build_notebooks as bn

sys.path.insert(0, str(bn.SOURCES))
from norm_layers import compare_with_batchnorm1d  # noqa: E402

NAMES = ["01_atomic_backprop", "02_fused_cross_entropy", "03_fused_batchnorm", "04_full_training"]


@pytest.fixture(scope="module")
def learner():
    """The exercise versions as the sources generate them, unexecuted."""
    return {name: bn.versions(name)["learner"] for name in NAMES}


def stored(name, which="solution"):
    return nbformat.read(bn.paths(name)[which], as_version=4)


def outputs(cell) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", []))


def is_answer(cell) -> bool:
    return cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution", False)


def is_check(cell) -> bool:
    return cell.cell_type == "code" and "check" in cell.metadata.get("tags", [])


def words(markdown: str) -> int:
    """Words of prose: displayed equations and figure captions left out."""
    markdown = re.sub(r"\$\$.+?\$\$", " ", markdown, flags=re.S)
    markdown = re.sub(r"!\[[^\]]*\]\(attachment:[^)]*\)", " ", markdown)
    return len(re.findall(r"[A-Za-z0-9][\w'-]*", markdown))


def first(cells, pred) -> int:
    return next(i for i, c in enumerate(cells) if pred(c))


# ---------------------------------------------------------------------------------------------- item 5

def test_at_most_800_words_before_the_first_cell_to_fill_in_01(learner):
    cells = learner["01_atomic_backprop"].cells
    stop = first(cells, is_answer)
    before = sum(words(c.source) for c in cells[:stop]
                 if c.cell_type == "markdown" and "badge" not in c.metadata.get("tags", []))
    assert 300 < before <= 800, before


def test_04_appendix_prose_is_folded():
    """The speed appendix (solution only) is folded, so notebook 04 reads as a training notebook first."""
    cells = bn.versions("04_full_training")["solution"].cells
    start = first(cells, lambda c: c.cell_type == "markdown" and "## Appendix" in c.source)
    long = [c for c in cells[start + 1:] if c.cell_type == "markdown" and words(c.source) > 100]
    assert long and all("<details>" in c.source for c in long)


# ---------------------------------------------------------------------------------------------- items 1 and 2

def test_every_prediction_comes_before_its_reveal(learner):
    """Each `predicted_x = ...` is asked in a cell to fill, and every cell that reads it comes after that cell."""
    for name, nb in learner.items():
        asked = {m: i for i, c in enumerate(nb.cells) if is_answer(c)
                 for m in re.findall(r"^(predicted_\w+) = \.\.\.", c.source, re.M)}
        assert len(asked) >= 2, name
        for p, i in asked.items():
            readers = [j for j, c in enumerate(nb.cells) if c.cell_type == "code" and not is_answer(c)
                       and re.search(rf"\b{p}\b", c.source)]
            assert readers and min(readers) > i, f"{name}: {p} read at {readers}, asked at {i}"


def test_one_prediction_about_b1_and_no_trivial_ones(learner):
    """The b1 / zero-column-sum fact is predicted once (01 4.11); 02's predictions are asked before deriving."""
    asked = {name: re.findall(r"^(predicted_\w+) = \.\.\.", "\n".join(c.source for c in nb.cells if is_answer(c)),
                              re.M) for name, nb in learner.items()}
    assert "predicted_db1_nonzero" in asked["01_atomic_backprop"]
    assert not {"predicted_dhprebn_sum", "predicted_db1_zero", "predicted_pull_at_label"} & set(sum(asked.values(), []))
    cells = learner["02_fused_cross_entropy"].cells
    predict = first(cells, lambda c: is_answer(c) and "predicted_row_sum" in c.source)
    derive = first(cells, lambda c: is_answer(c) and "def cross_entropy_backward" in c.source)
    assert predict < derive


def answer_after(cells, phrase, after) -> None:
    """No markdown cell before index `after` contains `phrase`; some cell after it does."""
    where = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and phrase in c.source]
    assert where and min(where) > after, (phrase, where, after)


def test_no_answer_before_its_question_in_01(learner):
    cells = learner["01_atomic_backprop"].cells
    reveal = first(cells, lambda c: c.cell_type == "code" and not is_answer(c)
                   and "predicted_db1_nonzero" in c.source)
    answer_after(cells, "every column of `dhprebn` sums", reveal)
    ask = first(cells, lambda c: is_answer(c) and "predicted_dlogit_maxes" in c.source)
    assert "numerical safety" not in cells[ask - 1].source


def test_no_answer_before_its_question_in_03(learner):
    cells = learner["03_fused_batchnorm"].cells
    stats_check = first(cells, lambda c: is_check(c) and "batchnorm_stats_backward" in c.source)
    full_check = first(cells, lambda c: is_check(c) and '"batchnorm_backward"' in c.source)
    answer_after(cells, "attachment:batchnorm_graph.png", stats_check)  # the figure shows d sigma^2 / d mu = 0
    answer_after(cells, "\\frac{n}{n-1}", full_check)                    # Bessel's fingerprint on the backward
    assert not any("which is why the lecture writes its own" in c.source for c in cells)


# ---------------------------------------------------------------------------------------------- item 3

def test_03_checks_the_variance_and_mean_gradients_before_the_whole_layer():
    cells = stored("03_fused_batchnorm").cells
    i = first(cells, lambda c: is_check(c) and "batchnorm_stats_backward" in c.source)
    j = first(cells, lambda c: is_check(c) and '"batchnorm_backward"' in c.source)
    assert i < j
    said = outputs(cells[i])
    assert re.search(r"^bnvar +\| exact: \w+ +\| approximate: True", said, re.M), said
    assert re.search(r"^bnmeani +\| exact: \w+ +\| approximate: True", said, re.M), said
    assert "not implemented yet" in outputs(stored("03_fused_batchnorm", "learner").cells[i])


# ---------------------------------------------------------------------------------------------- item 7

def solution_function(name, source_name):
    """A function as the solution notebook defines it, run in a namespace of its own."""
    cell = next(c for c in bn.versions(name)["solution"].cells if f"def {source_name}(" in c.source)
    ns = {"torch": torch}
    exec(bn.render(cell.source, "solved"), ns)
    return ns[source_name]


BATCHES = [torch.randn(8, 5, generator=torch.Generator().manual_seed(k)) * 2 + 1 for k in range(4)]
GAIN, BIAS = torch.rand(5) + 0.5, torch.randn(5)


def test_the_solutions_running_statistics_are_batchnorm1d_in_both_modes(capsys):
    for name in ("03_fused_batchnorm", "04_full_training"):
        layer = solution_function(name, "batchnorm_layer")
        for momentum in (0.1, 0.001):
            assert compare_with_batchnorm1d(layer, BATCHES, GAIN, BIAS, momentum=momentum)
    said = capsys.readouterr().out
    assert "training mode, batch 3:" in said and "evaluation mode:" in said


def wrong(kind):
    def layer(x, gain, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
        mean, var = (x.mean(0), x.var(0, correction=0)) if training or kind == "eval uses the batch" else (
            running_mean, running_var)
        if kind == "unbiased in training" and training:
            var = x.var(0, correction=1)
        if training:
            keep = x.var(0, correction=0 if kind == "biased running_var" else 1)
            w = 1 - momentum if kind == "momentum reversed" else momentum
            running_mean = (1 - w) * running_mean + w * mean
            running_var = (1 - w) * running_var + w * keep
        return gain * (x - mean) / torch.sqrt(var + eps) + bias, running_mean, running_var
    return layer


@pytest.mark.parametrize("kind, said", [
    ("unbiased in training", "normalised with the unbiased variance"),
    ("biased running_var", "running_var kept the biased variance"),
    ("momentum reversed", "momentum is the weight of the new batch"),
    ("eval uses the batch", "evaluation mode uses the running ones"),
])
def test_a_wrong_running_statistic_is_named(kind, said, capsys):
    assert not compare_with_batchnorm1d(wrong(kind), BATCHES, GAIN, BIAS)
    assert said in capsys.readouterr().out


def test_an_unfinished_or_raising_layer_gets_one_line(capsys):
    assert not compare_with_batchnorm1d(lambda *a: (..., ..., ...), BATCHES, GAIN, BIAS)
    assert not compare_with_batchnorm1d(lambda *a: 1 / 0, BATCHES, GAIN, BIAS)
    said = capsys.readouterr().out
    assert "not implemented yet" in said and "your layer raised ZeroDivisionError" in said


def test_running_statistics_check_in_the_stored_03():
    for which, verdict in (("solution", "True"), ("learner", "False")):
        cell = next(c for c in stored("03_fused_batchnorm", which).cells
                    if is_check(c) and "compare_with_batchnorm1d(" in c.source)
        assert f"torch.nn.BatchNorm1d in both modes: {verdict}" in outputs(cell), which


def test_04_uses_the_running_statistics():
    text = "".join(outputs(c) for c in stored("04_full_training").cells)
    assert "running statistics will be kept during training: True" in text
    val = re.findall(r"running statistics: train loss \d\.\d+, val loss (\d\.\d+)", text)
    assert val and 2.0 < float(val[-1]) <= 2.12, val
    assert re.search(r"calibrated: +train loss", text)  # the lecture's alternative, shown beside it


def test_the_batch_size_experiment_plot_is_stored():
    cells = stored("03_fused_batchnorm").cells
    plot = next(c for c in cells if c.cell_type == "code" and "fig, (left, right)" in c.source)
    assert any("image/png" in o.get("data", {}) for o in plot.get("outputs", []))
    text = "".join(outputs(c) for c in cells)
    assert "whatever its batch-mates, at every batch size: True" in text
    assert "less and less as the batch grows: True" in text
    learner_cells = stored("03_fused_batchnorm", "learner").cells
    assert any("the experiment waits until your BatchNorm and LayerNorm" in outputs(c) for c in learner_cells)


# ---------------------------------------------------------------------------------------------- time and why

SECTIONS_WITHOUT_TIME = re.compile(r"^## (Scoreboard|What you did|Appendix|Set-up)", re.M)


def test_time_estimates_on_top_and_per_section(learner):
    for name, nb in learner.items():
        md = [c.source for c in nb.cells if c.cell_type == "markdown"]
        assert any(re.search(r"\*\*Time: about [^*]+\*\*", s) for s in md[:4]), name
        for s in md:
            for heading in re.findall(r"^## .*$", s, re.M):
                if not SECTIONS_WITHOUT_TIME.match(heading):
                    assert re.search(r"\*About \d+ (minutes|hours?)", s), f"{name}: no time for {heading}"


def test_one_explain_why_question_each_with_a_folded_model_answer(learner):
    for name, nb in learner.items():
        asked = [c.source for c in nb.cells if c.cell_type == "markdown" and "**Explain why" in c.source]
        assert len(asked) == 1, name
        assert re.search(r"<details><summary>A model answer.*?</details>", asked[0], re.S), name
