"""The text demo: which part of Python's standard library a sentence of its documentation comes from.

``insights-app --demo text`` must work on a fresh machine with no download, so the texts are
the docstrings of standard-library modules (they ship with Python), grouped into four topics:
files and paths, networking, text, math and numbers. Each docstring is split into sentences
(4 to 40 words), and each sentence is one example labelled with its module's topic. The first
start collects them, trains a small token classifier (an embedding, masked mean and max
pooling, two linear layers: seconds on two CPU cores) and caches the weights, the vocabulary
and the sentences themselves (docstrings change between Python versions; the cache keeps the
ones it was trained on). Later starts only load it. The cache lives beside the digits demo's
(``insights_app.demos.cache.cache_root()``) and is rebuilt when it is missing, incomplete or no
longer loads.

It is served through ``data_adapters.from_texts``, the adapter for plain torch text
classifiers: tokens are attributed through the embedding layer, from the padding token's
embedding (see ``data_adapters/text.py``). The held-out sentences are shown shortest first,
so that a batch pads little and a page reads quickly.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cache import DemoCache, Progress, say, training_threads

DEMO_NAME = "stdlib-docs-v1"  # bump when the data, the model or the training changes
DEMO_TITLE = "Insights demo: which part of Python's standard library a docstring sentence is about"
TOPICS: dict[str, tuple[str, ...]] = {
    "files and paths": ("os.path", "pathlib", "shutil", "glob", "fnmatch", "tempfile", "filecmp", "zipfile", "tarfile"),
    "networking": (
        "socket",
        "http.client",
        "urllib.request",
        "urllib.parse",
        "smtplib",
        "ftplib",
        "ssl",
        "http.server",
        "ipaddress",
        "socketserver",
    ),
    "text": ("re", "string", "textwrap", "difflib", "unicodedata", "codecs", "html", "locale"),
    "math and numbers": ("math", "statistics", "decimal", "fractions", "random", "cmath", "numbers", "operator"),
}
MIN_WORDS, MAX_WORDS = 4, 40
PER_CLASS = 400  # sentences kept per topic (networking has three times the others' docstrings)
VALID_FRACTION = 0.2
MIN_COUNT = 2  # a word seen fewer times in training is <unk>
EMBEDDING_DIM = 32
HIDDEN = 32
EPOCHS = 12
LEARNING_RATE = 5e-3
SEED = 0
PAD, UNK = "<pad>", "<unk>"
WORD = re.compile(r"[a-z]+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def words(text: str) -> list[str]:
    """A text's tokens: its lower-case words (letters only)."""
    return WORD.findall(text.lower())


# ---------------------------------------------------------------- the data


def _docstrings(module_name: str) -> list[str]:
    """The module's docstring and those of its public functions, classes and their methods."""
    module = importlib.import_module(module_name)
    seen: set = set()
    out: list[str] = []

    def add(obj: Any) -> None:
        doc = inspect.getdoc(obj)
        if doc and id(obj) not in seen:
            seen.add(id(obj))
            out.append(doc)

    add(module)
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name, None)
        if not (inspect.isroutine(obj) or inspect.isclass(obj)):
            continue
        home = getattr(obj, "__module__", None) or ""
        # its own names (and those of its C accelerator or its platform module), not re-exports
        if home and home.lstrip("_") not in (module_name, module_name.split(".")[-1], "posixpath", "ntpath"):
            continue
        add(obj)
        if inspect.isclass(obj):
            for key, value in sorted(vars(obj).items()):
                if not key.startswith("_") and (inspect.isroutine(value) or isinstance(value, property)):
                    add(value)
    return out


def sentences(doc: str) -> list[str]:
    """A docstring's sentences of MIN_WORDS to MAX_WORDS words (examples and signatures left out)."""
    out = []
    for para in re.split(r"\n\s*\n", doc):
        if ">>>" in para:
            continue
        flat = " ".join(para.split())
        for s in SENTENCE_END.split(flat):
            if MIN_WORDS <= len(words(s)) <= MAX_WORDS:
                out.append(s)
    return out


def collect_examples(per_class: int = PER_CLASS, seed: int = SEED) -> tuple[list[str], list[int]]:
    """(sentences, topic indices): up to ``per_class`` distinct sentences per topic, in a seeded order.

    Sentences with the same words are one ("Same as a + b." and "Same as a - b."); a sentence found
    under two topics is dropped from both (it says nothing about either).
    """
    by_topic: list[list[str]] = []
    for modules in TOPICS.values():
        found: dict[tuple[str, ...], str] = {}
        for name in modules:
            try:
                docs = _docstrings(name)
            except ImportError:  # a module this Python lacks (e.g. ssl without OpenSSL)
                continue
            for doc in docs:
                for s in sentences(doc):
                    found.setdefault(tuple(words(s)), s)
        by_topic.append(list(found.values()))
    counts = Counter(tuple(words(s)) for topic in by_topic for s in topic)
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for label, topic in enumerate(by_topic):
        unique = [s for s in topic if counts[tuple(words(s))] == 1]
        keep = sorted(rng.permutation(len(unique))[:per_class].tolist())
        texts.extend(unique[i] for i in keep)
        labels.extend([label] * len(keep))
    order = rng.permutation(len(texts)).tolist()
    return [texts[i] for i in order], [labels[i] for i in order]


def build_vocab(texts: Sequence[str], min_count: int = MIN_COUNT) -> list[str]:
    """<pad>, <unk>, then the words seen at least ``min_count`` times, most frequent first."""
    counts = Counter(w for t in texts for w in words(t))
    return [PAD, UNK] + sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))


class Tokenizer:
    """text -> token ids (unknown words -> <unk>), at most MAX_WORDS of them."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.index = {w: i for i, w in enumerate(vocab)}
        self.unk = self.index[UNK]

    def __call__(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk) for w in words(text)[:MAX_WORDS]]


# ---------------------------------------------------------------- the model


def docs_classifier(
    vocab_size: int, n_classes: int, dim: int = EMBEDDING_DIM, hidden: int = HIDDEN, pad_index: int = 0
) -> Any:
    """Embedding -> masked mean and max over the tokens -> two linear layers (about 50k parameters)."""
    import torch
    from torch import nn

    class DocsClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pad_index = pad_index
            self.embedding = nn.Embedding(vocab_size, dim)
            self.hidden = nn.Linear(2 * dim, hidden)
            self.relu = nn.ReLU()
            self.out = nn.Linear(hidden, n_classes)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            e = self.embedding(ids)
            mask = (ids != self.pad_index)[..., None]
            n = mask.sum(dim=1).clamp_min(1).to(e.dtype)
            mean = (e * mask).sum(dim=1) / n
            top = torch.where(mask, e, torch.full_like(e, -1e4)).max(dim=1).values
            return self.out(self.relu(self.hidden(torch.cat([mean, top], dim=1))))

    return DocsClassifier()


def _pad(seqs: Sequence[Sequence[int]]) -> Any:
    from data_adapters.text import pad_ids

    return pad_ids(seqs, 0)


# ---------------------------------------------------------------- the cache


class TextDemoFiles(DemoCache):
    """The text demo's files in the cache: the weights, and the vocabulary and sentences they go with."""

    REQUIRED = ("model.pt", "data.json")

    @property
    def weights(self) -> Path:
        return self.root / "model.pt"

    @property
    def data(self) -> Path:
        return self.root / "data.json"


def demo_files(cache: Path | None = None) -> TextDemoFiles:
    return TextDemoFiles.in_cache(DEMO_NAME, cache)


def train_demo(files: TextDemoFiles, progress: Progress = say, epochs: int = EPOCHS) -> float:
    """Collect the sentences, train the classifier, write the cache; returns the held-out accuracy."""
    import torch

    t0 = time.perf_counter()
    texts, labels = collect_examples()
    n_valid = int(round(len(texts) * VALID_FRACTION))
    train_x, train_y = texts[n_valid:], labels[n_valid:]
    valid_x, valid_y = texts[:n_valid], labels[:n_valid]
    vocab = build_vocab(train_x)
    progress(
        f"collected {len(texts)} docstring sentences from {sum(len(m) for m in TOPICS.values())} standard-"
        f"library modules ({len(vocab)} words in the vocabulary)"
    )
    tok = Tokenizer(vocab)
    x_train, x_valid = _pad([tok(t) for t in train_x]), _pad([tok(t) for t in valid_x])
    y_train, y_valid = torch.tensor(train_y), torch.tensor(valid_y)
    torch.manual_seed(SEED)
    model = docs_classifier(len(vocab), len(TOPICS))
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(SEED)
    with training_threads():
        for _epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=gen)
            for i in range(0, len(order), 32):
                idx = order[i : i + 32]
                loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(x_valid).argmax(1) == y_valid).float().mean())
    progress(f"trained the text demo model: {epochs} epochs, held-out accuracy {acc:.3f}")
    torch.save(model.state_dict(), files.weights)
    files.data.write_text(
        json.dumps(
            {
                "classes": list(TOPICS),
                "vocab": vocab,
                "valid_texts": valid_x,
                "valid_labels": valid_y,
                "train_size": len(train_x),
            }
        )
    )
    files.meta.write_text(
        json.dumps(
            {
                "name": DEMO_NAME,
                "accuracy": acc,
                "epochs": epochs,
                "examples": len(texts),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    )
    return acc


def ensure_demo(cache: Path | None = None, progress: Progress = say, retrain: bool = False) -> TextDemoFiles:
    """The cached files, trained first when missing (or ``retrain``)."""
    files = demo_files(cache)
    files.ensure("the text demo model", lambda work: train_demo(work, progress), progress, retrain)
    return files


def load_demo(files: TextDemoFiles, device: str | None = None) -> tuple[Any, dict[str, Any]]:
    """(the trained model, the cached data) from the cache; raises when they do not load."""
    import torch

    data = json.loads(files.data.read_text())
    model = docs_classifier(len(data["vocab"]), len(data["classes"]))
    model.load_state_dict(torch.load(files.weights, map_location="cpu", weights_only=True))
    if device is not None:
        model.to(device)
    return model.eval(), data


def demo_source(cache: Path | None = None, progress: Progress = say, device: str | None = None) -> Any:
    """The demo as a ``data_adapters.Source``: the cached classifier on its held-out sentences."""
    from data_adapters import source_from_texts

    def load(files: TextDemoFiles) -> Any:
        model, data = load_demo(files, device)
        tok = Tokenizer(data["vocab"])
        pairs = sorted(zip(data["valid_texts"], data["valid_labels"]), key=lambda p: len(tok(p[0])))
        return source_from_texts(
            [t for t, _ in pairs],
            model,
            tok,
            data["vocab"],
            0,
            [y for _, y in pairs],
            data["classes"],
            batch_size=16,
            name="docstring topics (torch)",
        )

    files = ensure_demo(cache, progress)
    progress(f"loading the text demo model from {files.root}")
    try:
        return load(files)
    except Exception as exc:  # written by another version, or damaged: train once more
        progress(f"the cached text demo does not load ({type(exc).__name__}: {exc}); training it again")
        return load(ensure_demo(cache, progress, retrain=True))


def demo_visualizer(
    cache: Path | None = None, progress: Progress = say, device: str | None = None, **visualizer_kwargs: Any
) -> Any:
    """The text demo's :class:`~insights_app.AttributionVisualizer` (``demo_visualizer().render()`` in a notebook)."""
    visualizer_kwargs.setdefault("title", DEMO_TITLE)
    if device is not None:
        visualizer_kwargs.setdefault("device", device)
    return demo_source(cache, progress, device).visualizer(**visualizer_kwargs)


__all__: list[str] = [
    "DEMO_NAME",
    "DEMO_TITLE",
    "TOPICS",
    "collect_examples",
    "demo_source",
    "demo_visualizer",
    "ensure_demo",
    "train_demo",
]
