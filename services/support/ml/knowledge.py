"""The knowledge base as FAISS inner-product indexes of article embeddings (one per embedding space), and
the ranking of reply suggestions: similarity, the article's intents against the message's, its language,
and what agents did with its earlier suggestions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

Encode = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    body: str
    language: str
    intents: tuple[str, ...]
    reply: str | None = None


@dataclass(frozen=True)
class Feedback:
    sent: int = 0
    edited: int = 0
    rejected: int = 0

    @property
    def bonus(self) -> float:
        """Laplace-smoothed usefulness in [-1, 1]: sent counts fully, edited half, rejected against."""
        total = self.sent + self.edited + self.rejected
        return (self.sent + 0.5 * self.edited - self.rejected) / (total + 2)


@dataclass(frozen=True)
class RankingWeights:
    intent: float = 0.35
    language: float = 0.15
    feedback: float = 0.2


@dataclass(frozen=True)
class ScoredArticle:
    article: Article
    score: float
    similarity: float


@dataclass
class KnowledgeIndex:
    articles: list[Article]
    encoders: dict[str, Encode]  # space -> encoder
    space_of: Callable[[str], str]  # language -> space
    weights: RankingWeights = field(default_factory=RankingWeights)

    def __post_init__(self) -> None:
        self.indexes: dict[str, faiss.IndexFlatIP] = {}
        texts = [f"{a.title}. {a.body}" for a in self.articles]
        for space, encode in self.encoders.items():
            vectors = encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
            if not len(texts):
                continue
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self.indexes[space] = index

    def search(
        self,
        text: str,
        language: str,
        intent: str,
        confidence: float,
        feedback: dict[str, Feedback],
        k: int = 3,
    ) -> list[ScoredArticle]:
        space = self.space_of(language)
        index = self.indexes.get(space)
        if index is None or not self.articles:
            return []
        encode = getattr(self.encoders[space], "uncached", self.encoders[space])  # see Encoders.for_messages
        vector = np.ascontiguousarray(encode([text]), dtype=np.float32)
        similarities, ids = index.search(vector, min(len(self.articles), max(k * 5, 20)))
        scored = []
        for similarity, i in zip(similarities[0], ids[0], strict=True):
            if i < 0:
                continue
            article = self.articles[int(i)]
            score = float(similarity)
            if intent in article.intents:
                score += self.weights.intent * confidence
            if article.language == language:
                score += self.weights.language
            score += self.weights.feedback * feedback.get(article.id, Feedback()).bonus
            scored.append(ScoredArticle(article, score, float(similarity)))
        scored.sort(key=lambda s: -s.score)
        return scored[:k]
