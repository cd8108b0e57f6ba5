"""The support service's logic: triage of support messages into tickets, the intent catalog and knowledge
base (refitted in seconds when either changes), reply suggestions with drafts, and agents' feedback."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from services.support import repository
from services.support.ml.classifier import (
    ClassifierConfig,
    Encoders,
    IntentClassifier,
    IntentPrediction,
    LabelledText,
    detect_language,
)
from services.support.ml.dataset import default_articles, default_catalog, out_of_scope_validation
from services.support.ml.encoder import SentenceEncoder, e5_encoder
from services.support.ml.entities import Entity, extract_entities
from services.support.ml.knowledge import Article, Feedback, KnowledgeIndex, ScoredArticle
from services.support.ml.triage import CustomerContext, Decision, TriagePolicy, decide
from services.support.models import ArticleRow, FeedbackRow, IntentRow, MessageRow, TicketRow
from services.support.settings import SupportSettings
from shared.contracts import CloudEvent, EventTypeName, stable_event_id
from shared.contracts.support import SupportTriaged, TriagedEntity
from shared.errors import InvalidRequest, NotFound, ServiceUnavailable
from shared.logging import get_logger

log = get_logger(__name__)
SOURCE = "/crm/support"
FEEDBACK_ACTIONS = ("sent", "edited", "rejected")


class TicketNotFound(NotFound):
    """No ticket with this id."""


class ArticleNotFound(NotFound):
    """No knowledge-base article with this id."""


class InvalidCatalog(InvalidRequest):
    """The intent catalog cannot be used."""


class ModelNotReady(ServiceUnavailable):
    """The triage model is still loading."""


class CachedEncoder:
    """Memoises an encoder's vectors (catalog examples and articles are embedded again at every refit)."""

    def __init__(self, encoder: SentenceEncoder, capacity: int = 20_000) -> None:
        self.encoder = encoder
        self.capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self.encoder.encode(missing)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    self._cache[text] = vector
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
        with self._lock:
            if not texts:
                return np.zeros((0, self.encoder.dim), dtype=np.float32)
            return np.stack([self._cache[t] for t in texts])

    def uncached(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(texts)


@dataclass(frozen=True)
class TriageModel:
    """One fitted snapshot, swapped in whole: the classifier, the knowledge index, and what they were fit on."""

    classifier: IntentClassifier
    knowledge: KnowledgeIndex
    version: str
    intents: list[str]


@dataclass(frozen=True)
class Triage:
    language: str
    prediction: IntentPrediction
    entities: list[Entity]
    decision: Decision
    model_version: str


@dataclass(frozen=True)
class Suggestion:
    article: Article
    score: float
    draft: str


def _stamp(version: tuple[int, datetime | None]) -> tuple[int, str | None]:
    """A stored table's (rows, newest update) comparable whether the driver returns aware or naive times."""
    count, newest = version
    if newest is None:
        return count, None
    return count, (newest.astimezone(UTC) if newest.tzinfo else newest).replace(tzinfo=None).isoformat()


@dataclass
class Versions:
    catalog: tuple[int, str | None] = (0, None)
    articles: tuple[int, str | None] = (0, None)


class _Blank(dict[str, str]):
    """Template values; a placeholder the draft cannot fill becomes empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ticket_id_for(customer_id: str, channel: str, first_event_id: str) -> str:
    digest = hashlib.sha256(f"{customer_id}\x00{channel}\x00{first_event_id}".encode()).hexdigest()
    return f"tkt_{digest[:24]}"


def article_of(row: ArticleRow) -> Article:
    return Article(row.id, row.title, row.body, row.language, tuple(row.intents), row.reply)


@dataclass
class SupportService:
    settings: SupportSettings
    session_factory: sessionmaker[Session]
    on_model_change: Callable[[str], None] | None = None
    _model: TriageModel | None = None
    _english: CachedEncoder | None = None
    _chinese: CachedEncoder | None = None
    _versions: Versions = field(default_factory=Versions)
    _items: set[str] = field(default_factory=set)
    _fit_lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # --- model life cycle ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> TriageModel:
        if self._model is None:
            raise ModelNotReady()
        return self._model

    @property
    def policy(self) -> TriagePolicy:
        s = self.settings
        return TriagePolicy(
            s.routing_rules, s.default_queue, frozenset(s.escalate_intents), s.high_value_revenue
        )

    def load(self) -> None:
        """Seed the default catalog and articles into an empty database, load MiniLM and fit (blocking)."""
        import torch

        torch.set_num_threads(self.settings.threads)
        with self.session_factory.begin() as session:
            if not repository.intents(session):
                repository.replace_intents(session, self._intent_rows(default_catalog()))
            if not repository.articles(session):
                for a in default_articles():
                    session.add(
                        ArticleRow(
                            id=a["id"],
                            title=a["title"],
                            body=a["body"],
                            reply=a.get("reply"),
                            language=a["language"],
                            intents=a["intents"],
                            updated_at=_now(),
                        )
                    )
            self._items = repository.item_ids(session)
        self._english = CachedEncoder(SentenceEncoder())
        if self.settings.chinese_encoder and (self.settings.chinese_encoder_dir() / "config.json").is_file():
            self._chinese = CachedEncoder(e5_encoder(self.settings.chinese_encoder_dir()))
        self.refit()

    def start(self) -> None:
        """Background work: build the Chinese encoder if it is missing, then watch the catalog for changes."""
        self._thread = threading.Thread(target=self._background, name="support-catalog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _background(self) -> None:
        if self.settings.chinese_encoder and self._chinese is None:
            try:
                from shared.e5 import build_base

                target = self.settings.chinese_encoder_dir()
                build_base(target, chinese_only=True)
                self._chinese = CachedEncoder(e5_encoder(target))
                self.refit()
                log.info("support_chinese_encoder_ready", path=str(target))
            except Exception:
                log.exception("support_chinese_encoder_failed")
        while not self._stop.wait(self.settings.catalog_poll_s):
            try:
                with self.session_factory() as session:
                    current = Versions(
                        _stamp(repository.catalog_version(session)),
                        _stamp(repository.articles_version(session)),
                    )
                if current != self._versions:
                    self.refit()
            except Exception:
                log.exception("support_refit_failed")

    def _encoders(self) -> Encoders:
        assert self._english is not None
        return Encoders(self._english, {"zh": self._chinese} if self._chinese is not None else {})

    def refit(self) -> TriageModel:
        """Fit the classifier and the knowledge index on what is stored now, and swap them in."""
        with self._fit_lock:
            with self.session_factory() as session:
                versions = Versions(
                    _stamp(repository.catalog_version(session)), _stamp(repository.articles_version(session))
                )
                catalog = [
                    {"name": r.name, "description": r.description, "examples": r.examples}
                    for r in repository.intents(session)
                ]
                articles = [article_of(r) for r in repository.articles(session)]
            model = self._fit(catalog, articles)
            self._model = model
            self._versions = versions
        log.info("support_model_fitted", version=model.version, intents=len(model.intents))
        if self.on_model_change is not None:
            self.on_model_change(model.version)
        return model

    def _fit(self, catalog: list[dict[str, Any]], articles: list[Article]) -> TriageModel:
        examples = [
            LabelledText(e["text"], intent["name"], e.get("language") or detect_language(e["text"]))
            for intent in catalog
            for e in intent["examples"]
        ]
        encoders = self._encoders()
        classifier = IntentClassifier(encoders, ClassifierConfig()).fit(
            examples, [x.text for x in out_of_scope_validation()]
        )
        knowledge = KnowledgeIndex(
            articles,
            {space: encoders.encoder(space) for space in encoders.spaces},
            encoders.space_of,
        )
        spaces = "+".join(encoders.spaces)
        digest = hashlib.sha256(repr((catalog, [a.id for a in articles])).encode()).hexdigest()[:10]
        return TriageModel(classifier, knowledge, f"support-{spaces}-{digest}", [i["name"] for i in catalog])

    # --- catalog and articles ------------------------------------------------------------------

    @staticmethod
    def _intent_rows(catalog: Sequence[dict[str, Any]]) -> list[IntentRow]:
        now = _now()
        return [
            IntentRow(
                name=intent["name"],
                position=i,
                description=intent.get("description", ""),
                examples=[
                    {"text": e["text"], "language": e.get("language") or detect_language(e["text"])}
                    for e in intent["examples"]
                ],
                updated_at=now,
            )
            for i, intent in enumerate(catalog)
        ]

    def intents(self, session: Session) -> list[IntentRow]:
        return repository.intents(session)

    def replace_catalog(self, session: Session, catalog: Sequence[dict[str, Any]]) -> TriageModel:
        """Store a new catalog and serve a model fitted on it before returning (other replicas poll)."""
        names = [i["name"] for i in catalog]
        if len(set(names)) != len(names):
            raise InvalidCatalog("intent names must be unique")
        if len(catalog) < 2:
            raise InvalidCatalog("a catalog needs at least two intents")
        if "unknown" in names:
            raise InvalidCatalog("'unknown' is the answer below the threshold, not an intent")
        rows = self._intent_rows(catalog)
        with self._fit_lock:
            articles = list(self.model.knowledge.articles)
            model = self._fit([dict(i) for i in catalog], articles)
            repository.replace_intents(session, rows)
            self._model = model
            self._versions.catalog = _stamp((len(rows), rows[0].updated_at if rows else None))
        if self.on_model_change is not None:
            self.on_model_change(model.version)
        return model

    def articles(self, session: Session) -> list[ArticleRow]:
        return repository.articles(session)

    def article(self, session: Session, article_id: str) -> ArticleRow:
        row = repository.article(session, article_id)
        if row is None:
            raise ArticleNotFound(f"no article {article_id!r}")
        return row

    def save_article(self, session: Session, article: Article) -> ArticleRow:
        row = repository.article(session, article.id)
        if row is None:
            row = ArticleRow(id=article.id)
            session.add(row)
        row.title, row.body, row.reply = article.title, article.body, article.reply
        row.language, row.intents, row.updated_at = article.language, list(article.intents), _now()
        session.flush()
        self._swap_articles([a for a in self.model.knowledge.articles if a.id != article.id] + [article])
        return row

    def delete_article(self, session: Session, article_id: str) -> None:
        session.delete(self.article(session, article_id))
        session.flush()
        self._swap_articles([a for a in self.model.knowledge.articles if a.id != article_id])

    def _swap_articles(self, articles: list[Article]) -> None:
        with self._fit_lock:
            current = self.model
            knowledge = KnowledgeIndex(articles, current.knowledge.encoders, current.knowledge.space_of)
            self._model = TriageModel(current.classifier, knowledge, current.version, current.intents)

    # --- triage ------------------------------------------------------------------------------------

    def context(self, session: Session, customer_id: str | None) -> CustomerContext:
        row = repository.customer(session, customer_id) if customer_id else None
        if row is None:
            return CustomerContext()
        return CustomerContext(row.name, row.churn_band, row.revenue or 0.0, row.sentiment)

    def triage_texts(
        self, texts: Sequence[str], contexts: Sequence[CustomerContext], languages: Sequence[str | None]
    ) -> list[Triage]:
        model = self.model
        predictions = model.classifier.predict(texts)
        now = _now()
        out = []
        for text, context, hint, prediction in zip(texts, contexts, languages, predictions, strict=True):
            language = hint if hint in ("en", "zh") else detect_language(text)
            entities = extract_entities(text, language, now, self._items, self.settings.phone_region)
            decision = decide(text, prediction.intent, language, context, self.policy)
            out.append(Triage(language, prediction, entities, decision, model.version))
        return out

    def handle_messages(
        self, session: Session, messages: Sequence[tuple[str, str, datetime, Any]]
    ) -> list[CloudEvent]:
        """(event id, customer id, time, SupportMessage payload) -> tickets and messages; the triaged events."""
        if not messages:
            return []
        contexts = [self.context(session, customer_id) for _, customer_id, _, _ in messages]
        results = self.triage_texts(
            [m[3].text for m in messages], contexts, [m[3].language for m in messages]
        )
        outgoing = []
        for (event_id, customer_id, at, payload), result in zip(messages, results, strict=True):
            if session.get(MessageRow, event_id) is not None:
                continue
            ticket = self._ticket_for(session, event_id, customer_id, payload, at, result)
            entities = [{"kind": e.kind, "value": e.value, "text": e.text} for e in result.entities]
            session.add(
                MessageRow(
                    event_id=event_id,
                    ticket_id=ticket.id,
                    customer_id=customer_id,
                    text=payload.text,
                    language=result.language,
                    intent=result.prediction.intent,
                    top_intent=result.prediction.top_intent,
                    confidence=result.prediction.confidence,
                    entities=entities,
                    urgency=result.decision.urgency,
                    queue=result.decision.queue,
                    escalated=result.decision.escalated,
                    escalation_reasons=result.decision.escalation_reasons,
                    received_at=at,
                )
            )
            session.flush()
            triaged = SupportTriaged(
                customer_id=customer_id,
                ticket_id=ticket.id,
                source_event_id=event_id,
                channel=ticket.channel,
                language=result.language,
                intent=result.prediction.intent,
                top_intent=result.prediction.top_intent,
                confidence=min(max(result.prediction.confidence, 0.0), 1.0),
                urgency=result.decision.urgency,
                queue=result.decision.queue,
                escalated=result.decision.escalated,
                escalation_reasons=result.decision.escalation_reasons,
                ticket_status=ticket.status,
                entities=[TriagedEntity(**e) for e in entities],
                model_version=result.model_version,
            )
            outgoing.append(
                CloudEvent.new(
                    EventTypeName.SUPPORT_TRIAGED,
                    triaged,
                    source=SOURCE,
                    subject=customer_id,
                    id=stable_event_id("support", event_id, at=at),
                    time=at,
                )
            )
        return outgoing

    def _ticket_for(
        self, session: Session, event_id: str, customer_id: str, payload: Any, at: datetime, result: Triage
    ) -> TicketRow:
        channel = payload.channel or "web"
        ticket = repository.ticket(session, payload.ticket_id) if payload.ticket_id else None
        if ticket is None and not payload.ticket_id:
            ticket = repository.open_ticket(session, customer_id, channel)
        decision, prediction = result.decision, result.prediction
        if ticket is None:
            ticket = TicketRow(
                id=payload.ticket_id or ticket_id_for(customer_id, channel, event_id),
                customer_id=customer_id,
                channel=channel,
                status="open",
                opened_at=at,
                reopened=0,
                escalated=False,
                escalation_reasons=[],
            )
            session.add(ticket)
        elif ticket.status == "resolved":
            ticket.status, ticket.reopened = "open", (ticket.reopened or 0) + 1
        else:
            ticket.status = "open"
        ticket.updated_at = at
        ticket.intent, ticket.confidence = prediction.intent, prediction.confidence
        ticket.urgency, ticket.queue = decision.urgency, decision.queue
        # Escalation sticks to the ticket until it is resolved: a person has been asked for.
        ticket.escalated = bool(ticket.escalated) or decision.escalated
        ticket.escalation_reasons = sorted(
            set(ticket.escalation_reasons or []) | set(decision.escalation_reasons)
        )
        return ticket

    # --- tickets, suggestions, feedback ------------------------------------------------------------

    def ticket(self, session: Session, ticket_id: str) -> TicketRow:
        row = repository.ticket(session, ticket_id)
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id!r}")
        return row

    def set_status(self, session: Session, ticket_id: str, status: str) -> TicketRow:
        row = self.ticket(session, ticket_id)
        row.status, row.updated_at = status, _now()
        if status == "resolved":
            row.escalated, row.escalation_reasons = False, []
        return row

    def suggestions(
        self, session: Session, ticket_id: str, recommendation: str | None = None, k: int | None = None
    ) -> tuple[TicketRow, MessageRow | None, list[Suggestion]]:
        ticket = self.ticket(session, ticket_id)
        messages = repository.messages(session, ticket_id)
        if not messages:
            return ticket, None, []
        last = messages[-1]
        found = self.suggest_for_text(
            session,
            last.text,
            last.language,
            last.top_intent,
            last.confidence,
            ticket.customer_id,
            [e["value"] for e in last.entities if e["kind"] == "order_id"],
            recommendation,
            k or self.settings.suggestions,
        )
        return ticket, last, found

    def suggest_for_text(
        self,
        session: Session,
        text: str,
        language: str,
        intent: str,
        confidence: float,
        customer_id: str | None,
        order_ids: Sequence[str] = (),
        recommendation: str | None = None,
        k: int = 3,
    ) -> list[Suggestion]:
        feedback = {
            article_id: Feedback(counts.get("sent", 0), counts.get("edited", 0), counts.get("rejected", 0))
            for article_id, counts in repository.feedback_counts(session).items()
        }
        hits = self.model.knowledge.search(text, language, intent, confidence, feedback, k)
        customer = repository.customer(session, customer_id) if customer_id else None
        return [
            Suggestion(h.article, h.score, self._draft(h, language, customer, order_ids, recommendation))
            for h in hits
        ]

    @staticmethod
    def _draft(
        hit: ScoredArticle, language: str, customer: Any, order_ids: Sequence[str], recommendation: str | None
    ) -> str:
        zh = hit.article.language == "zh"
        name = (customer.name if customer is not None else None) or ("" if zh else "there")
        orders = customer.orders if customer is not None else {}
        order_line = ""
        for order_id in order_ids:
            known = orders.get(order_id)
            if known is not None:
                placed = known.get("placed_at", "")[:10]
                order_line = (
                    f"您的订单 {order_id} 已于 {placed} 下单，正在处理中。"
                    if zh
                    else f"I can see your order {order_id}, placed on {placed}; it is being processed."
                )
            else:
                order_line = (
                    f"我们正在查询订单 {order_id}。"
                    if zh
                    else f"I'm looking into order {order_id} for you now."
                )
            break
        rec = ""
        if recommendation:
            rec = (
                f"您也许会喜欢 {recommendation}。"
                if zh
                else f"Before you go, you might like {recommendation}."
            )
        template = hit.article.reply or hit.article.body
        values = _Blank(name=name, order_line=order_line, recommendation=rec)
        try:
            text = template.format_map(values)
        except (ValueError, IndexError):  # an article's own braces: show it as written
            text = template
        return text.strip() if zh else " ".join(text.split())

    def record_feedback(self, session: Session, ticket_id: str, article_id: str, action: str) -> TicketRow:

        if action not in FEEDBACK_ACTIONS:
            raise InvalidRequest(f"action must be one of {', '.join(FEEDBACK_ACTIONS)}")
        ticket = self.ticket(session, ticket_id)
        self.article(session, article_id)
        now = _now()
        session.add(
            FeedbackRow(
                ticket_id=ticket_id,
                customer_id=ticket.customer_id,
                article_id=article_id,
                action=action,
                recorded_at=now,
            )
        )
        if action in ("sent", "edited"):
            ticket.status = "pending"  # answered: waiting on the customer
            if ticket.first_response_at is None:
                ticket.first_response_at = now
            ticket.updated_at = now
        session.flush()
        return ticket

    def customer_summary(self, session: Session, customer_id: str) -> dict[str, Any]:
        tickets = repository.tickets(session, customer_id=customer_id, limit=200)
        open_tickets = [t for t in tickets if t.status != "resolved"]
        last = tickets[0] if tickets else None
        return {
            "customer_id": customer_id,
            "open_tickets": len(open_tickets),
            "tickets": len(tickets),
            "last_intent": last.intent if last else None,
            "last_ticket_id": last.id if last else None,
            "escalated": any(t.escalated for t in open_tickets),
        }

    # --- customer context from the fleet's events ------------------------------------------------

    def record_identify(self, session: Session, customer_id: str, traits: dict[str, Any]) -> None:
        name = traits.get("first_name") or traits.get("name")
        if isinstance(name, str) and name.strip():
            repository.customer_for_update(session, customer_id).name = name.strip()[:200]

    def record_purchase(
        self, session: Session, customer_id: str, order_id: str, amount: float, at: datetime
    ) -> None:
        row = repository.customer_for_update(session, customer_id)
        orders = dict(row.orders or {})
        if order_id.upper() not in orders:
            orders[order_id.upper()] = {"placed_at": _aware(at).isoformat(), "amount": amount}
            row.orders = dict(list(orders.items())[-50:])  # the 50 newest orders are enough for drafts
            row.revenue = (row.revenue or 0.0) + amount

    def record_churn_band(self, session: Session, customer_id: str, band: str) -> None:
        repository.customer_for_update(session, customer_id).churn_band = band

    def record_sentiment(self, session: Session, customer_id: str, label: str) -> None:
        repository.customer_for_update(session, customer_id).sentiment = label

    def record_items(self, session: Session, items: Sequence[tuple[str, str]]) -> None:
        repository.upsert_items(session, items)
        self._items |= {item_id for item_id, _ in items}

    def erase_customer(self, session: Session, customer_id: str) -> int:
        return repository.erase_customer(session, customer_id)

    def merge_customers(self, session: Session, survivor_id: str, merged_id: str, undone: bool) -> None:
        if not undone:  # an undo re-keys future events only (docs/architecture.md, Merges)
            repository.merge_customers(session, survivor_id, merged_id)
