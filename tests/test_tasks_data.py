"""digits, digits-permuted and text: real data, fixed disjoint splits, baselines measured
on the held-out split, and text generation from a trained model."""

import hashlib
import math
import platform
import sys

import numpy as np
import pytest
import torch

from harness.cells import SequenceModel, build_cell
from harness.errors import UsageError
from harness.tasks import IGNORE_INDEX, SPLITS, TaskSizeError
from tasks import digits as digits_module
from tasks.digits import PERMUTATION, DigitsTask, PermutedDigitsTask, class_entropy, load
from tasks.text import TextTask, load_corpus

CPU = torch.device("cpu")


def rng(seed):
    return np.random.default_rng(seed)


# --- digits -----------------------------------------------------------------------------

def test_digits_data_and_its_fixed_stratified_splits():
    """1,797 images, pixels in [0, 1]; three disjoint splits that cover them; of each class's n images, the test split
    holds ranks 0 and 1 of every 10 and the validation split rank 2: 2·(n // 10) + min(n % 10, 2) and n // 10 + (n % 10 > 2)."""
    data = load()
    assert data.pixels.shape == (1797, 64) and data.pixels.min() == 0.0 and data.pixels.max() == 1.0
    sizes = {split: len(data.splits[split]) for split in SPLITS}
    assert sizes == {"train": 1248, "validation": 181, "test": 368}
    assert sorted(np.concatenate(list(data.splits.values()))) == list(range(1797))
    for label in range(10):
        in_class = np.count_nonzero(data.labels == label)
        tens, rest = divmod(in_class, 10)
        assert np.count_nonzero(data.labels[data.splits["test"]] == label) == 2 * tens + min(rest, 2)
        assert np.count_nonzero(data.labels[data.splits["validation"]] == label) == tens + (rest > 2)


@pytest.mark.parametrize("split", SPLITS)
def test_digits_batches_are_images_of_their_split_read_pixel_by_pixel(split):
    """Each sequence is one image of the split, row-major, with its label at the last step; a batch of the split's size holds each image once."""
    task, data = DigitsTask(), load()
    size = len(data.splits[split])
    batch = task.sample_split(size, rng(0), split)
    assert batch.x.shape == (64, size, 1)
    rows = {data.pixels[i].tobytes(): i for i in data.splits[split]}
    chosen = [rows[batch.x[:, column, 0].tobytes()] for column in range(size)]
    assert sorted(chosen) == sorted(data.splits[split])
    np.testing.assert_array_equal(batch.target[-1], data.labels[chosen])
    assert (batch.target[:-1] == IGNORE_INDEX).all()


def test_training_batches_come_from_the_training_split():
    task, data = DigitsTask(), load()
    train = {data.pixels[i].tobytes() for i in data.splits["train"]}
    batch = task.sample(300, rng(1))
    assert all(batch.x[:, column, 0].tobytes() in train for column in range(300))


def test_the_harness_holds_out_the_test_split():
    """The held-out set of every training run is drawn from the test split."""
    from harness.training import Recipe, held_out

    data = load()
    test = {data.pixels[i].tobytes() for i in data.splits["test"]}
    x, _ = held_out(DigitsTask(), Recipe(eval_size=400), 0, CPU, torch.float32)
    assert all(x[:, column, 0].numpy().tobytes() in test for column in range(400))


def test_permuted_digits_read_the_same_images_in_the_fixed_order():
    assert sorted(PERMUTATION) == list(range(64)) and list(PERMUTATION) != list(range(64))
    plain, permuted = DigitsTask().sample(16, rng(2)), PermutedDigitsTask().sample(16, rng(2))
    np.testing.assert_array_equal(permuted.x, plain.x[list(PERMUTATION)])
    np.testing.assert_array_equal(permuted.target, plain.target)


@pytest.mark.parametrize("task_class", [DigitsTask, PermutedDigitsTask])
def test_digits_baseline_is_the_input_free_loss_on_the_test_split(task_class):
    """Predicting the test split's class frequencies scores exactly the baseline on the whole test split (twice over), close to ln 10."""
    task = task_class()
    _, target = task.sample_split(2 * 368, rng(3), "test").to(CPU, torch.float64)
    labels = target[-1]
    frequencies = torch.bincount(labels, minlength=10).double() / len(labels)
    logits = frequencies.log().expand(64, len(labels), 10)
    assert float(task.loss(logits, target)) == pytest.approx(task.baseline, rel=1e-12)
    assert task.baseline == pytest.approx(class_entropy(load().labels[load().splits["test"]]))
    assert task.baseline == pytest.approx(math.log(10), abs=1e-3)
    assert not task.solved(task.baseline, float(frequencies.max()))


def test_the_digits_solved_rule_is_within_reach_of_a_linear_classifier():
    """Logistic regression on the 64 pixels at once, trained on the training split, reaches the 0.95 rule on the test split."""
    from sklearn.linear_model import LogisticRegression

    data = load()
    train, test = data.splits["train"], data.splits["test"]
    model = LogisticRegression(max_iter=2000).fit(data.pixels[train], data.labels[train])
    accuracy = model.score(data.pixels[test], data.labels[test])
    assert DigitsTask().solved(0.0, accuracy)


def test_digits_length_is_fixed_at_64():
    with pytest.raises(TaskSizeError, match="seq_len is fixed at 64 .* got 100; pass --seq-len 64"):
        DigitsTask(100)


def test_digits_without_scikit_learn_says_so_in_one_line(monkeypatch, rnnbench, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    load.cache_clear()
    try:
        with pytest.raises(UsageError, match=r"need scikit-learn, which is not installed: pip install 'rnnbench\[data\]'"):
            DigitsTask()
        result = rnnbench("run", "--tasks", "digits", "--cells", "lstm", "--measure", "accuracy", "--seq-len", "64",
                          "--profile", "smoke", "--device", "cpu", "--db", tmp_path / "r.sqlite", "--out", tmp_path / "o")
    finally:
        load.cache_clear()
    assert result.code == 2
    assert result.err.strip().splitlines()[-1].startswith("rnnbench: error: the digits tasks need scikit-learn")
    assert "Traceback" not in result.err


# --- text -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_task():
    return TextTask(40)


def test_default_corpus_is_pythons_help_text_recorded_by_size_and_hash(text_task):
    corpus = text_task.corpus
    assert corpus.name == f"pydoc-topics (Python {platform.python_version()})"
    assert corpus.sha256 == hashlib.sha256(corpus.text.encode()).hexdigest()
    assert text_task.options == {"corpus": corpus.name, "corpus_chars": len(corpus.text), "corpus_sha256": corpus.sha256}
    assert corpus.vocabulary == "".join(sorted(set(corpus.text)))
    assert "".join(corpus.vocabulary[c] for c in corpus.codes[:2000]) == corpus.text[:2000]
    if platform.python_version() == "3.11.7":  # the figures the module docstring states
        assert (len(corpus.text), len(corpus.vocabulary)) == (465_048, 103)
        assert corpus.sha256 == "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4"


@pytest.mark.parametrize("split", SPLITS)
def test_text_windows_lie_in_their_split_and_targets_are_the_next_characters(text_task, split):
    corpus = text_task.corpus
    start, stop = corpus.split_range(split)
    batch = text_task.sample_split(20, rng(4), split)
    inputs = batch.x.argmax(axis=-1)
    np.testing.assert_array_equal(batch.target[:-1], inputs[1:])
    for column in range(20):
        window = "".join(corpus.vocabulary[c] for c in [*inputs[:, column], batch.target[-1, column]])
        assert window in corpus.text[start:stop]


def test_text_splits_are_contiguous_and_disjoint(text_task):
    ranges = [text_task.corpus.split_range(split) for split in SPLITS]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(text_task.corpus.text)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


def test_text_baseline_and_solved_rule_are_the_losses_of_their_predictors(text_task):
    """On 4,000 test windows: unigram frequencies score the baseline; the predictor from the previous two characters
    (its counts taken from the test split) scores the solved threshold (bits), at the steps where it has two."""
    corpus, vocab = text_task.corpus, text_task.output_size
    test_codes = torch.from_numpy(corpus.codes[slice(*corpus.split_range("test"))])
    x, target = text_task.sample_split(4000, rng(5), "test").to(CPU, torch.float64)
    unigram = torch.bincount(test_codes, minlength=vocab).double()
    logits = (unigram / unigram.sum()).log().expand(40, 4000, vocab)
    assert float(text_task.loss(logits, target)) == pytest.approx(text_task.baseline, rel=0.01)
    grams = test_codes[:-2] * vocab * vocab + test_codes[1:-1] * vocab + test_codes[2:]
    counts = torch.bincount(grams, minlength=vocab ** 3).double().reshape(vocab * vocab, vocab)
    table = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1)).log()
    current = x.argmax(dim=-1)
    logits = torch.zeros(40, 4000, vocab, dtype=torch.float64)
    logits[1:] = table[current[:-1] * vocab + current[1:]]  # log P(next | previous, current)
    target[0] = IGNORE_INDEX  # the first step of a window has one character of context only
    assert float(text_task.loss(logits, target)) == pytest.approx(text_task.solved_bits, rel=0.02)
    assert 1.0 < text_task.solved_bits < text_task.baseline < math.log2(vocab)
    assert not text_task.solved(text_task.baseline, 0.0)
    assert text_task.solved(0.0, 1.0)


def test_conditional_entropy_of_a_hand_computed_text():
    """'abab' + 'b': after 'a' always 'b' (0 bits); after 'b': 'a' twice, 'b' once (H = 0.918 bits); 6 pairs."""
    from tasks.text import conditional_entropy_bits

    codes = np.array([0, 1, 0, 1, 0, 1, 1])  # a b a b a b b
    pairs_after_b = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert conditional_entropy_bits(codes, 1) == pytest.approx(3 * pairs_after_b / 6)
    assert conditional_entropy_bits(codes, 0) == pytest.approx(-(3 / 7 * math.log2(3 / 7) + 4 / 7 * math.log2(4 / 7)))


def test_text_loss_is_in_bits(text_task):
    _, target = text_task.sample(3, rng(6)).to(CPU, torch.float64)
    logits = torch.randn(40, 3, text_task.output_size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    nats = torch.nn.functional.cross_entropy(logits.reshape(-1, text_task.output_size), target.reshape(-1))
    assert float(text_task.loss(logits, target)) == pytest.approx(float(nats) / math.log(2))
    assert float(text_task.last_step_loss(logits[-1], target)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits[-1], target[-1])) / math.log(2))


def _model(task, seed=0):
    torch.manual_seed(seed)
    cell = build_cell(load_registry().cell("lstm"), task.input_size, 16)
    return SequenceModel(cell, 16, task.output_size)


def load_registry():
    from harness.plugins import load_plugins

    return load_plugins()


def test_generation_is_seeded_and_stays_in_the_vocabulary(text_task):
    model = _model(text_task)
    model.train()
    first = text_task.generate(model, "hello world, how are you?", 60, seed=1)
    assert first == text_task.generate(model, "hello world, how are you?", 60, seed=1)
    assert first != text_task.generate(model, "hello world, how are you?", 60, seed=2)
    assert len(first) == 60 and set(first) <= set(text_task.corpus.vocabulary)
    assert model.training  # generation leaves the model's mode as it found it


def test_greedy_generation_step_by_step_agrees_with_one_pass_over_the_whole_text(text_task):
    """At a tiny temperature each drawn character is the arg-max that one forward pass over prompt + text gives: the state is carried right."""
    model, prompt = _model(text_task, seed=3), "def f(x):"
    drawn = text_task.generate(model, prompt, 30, seed=0, temperature=1e-6)
    codes = text_task.encode(prompt + drawn)
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(np.eye(text_task.input_size, dtype=np.float32)[codes[:, None]]))
    np.testing.assert_array_equal(logits[len(prompt) - 1:-1, 0].argmax(dim=-1).numpy(), codes[len(prompt):])


def test_generation_refuses_characters_outside_the_corpus(text_task):
    with pytest.raises(UsageError, match="the prompt has characters that .* does not: '☃'"):
        text_task.generate(_model(text_task), "snow ☃", 5)


def test_text_from_a_file(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    task = TextTask(8, text_path=path)
    assert task.corpus.vocabulary == " .acehmnost"
    assert task.options["corpus"] == "poem.txt" and task.options["corpus_chars"] == 960
    with pytest.raises(TaskSizeError, match="the train split of poem.txt has 768 characters, fewer than a window of T \\+ 1 = 1001"):
        TextTask(1000, text_path=path)
    with pytest.raises(UsageError, match="cannot read"):
        TextTask(8, text_path=tmp_path / "missing.txt")
