"""What the support inbox shows, shaped from ``/v1/support`` answers: tickets by queue and urgency, the
triage of each message in words, and the reply suggestions.

Plain functions and dataclasses, no HTTP (like ``views.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.gateway.console.api import Answer
from services.gateway.console.views import customer_name, customer_value, pct

UNKNOWN = "unknown"
URGENCIES = ("high", "medium", "low")
STATUSES = ("open", "pending", "resolved")
TICKET_SCAN = 500
"""The inbox reads this many of the most recently updated tickets of the chosen status."""
LANGUAGES = {"en": "English", "zh": "Chinese"}
ENTITY_WORDS = {
    "order_id": "order",
    "amount": "amount",
    "date": "date",
    "email": "email",
    "phone": "phone",
    "item_id": "item",
}
STATUS_WORDS = {
    "open": "open: waiting on an agent",
    "pending": "pending: answered, waiting on the customer",
    "resolved": "resolved",
}


def intent_label(intent: str | None) -> str:
    """'order_status' -> 'order status'."""
    return (intent or "—").replace("_", " ")


def intent_words(intent: str, confidence: float, top_intent: str | None = None) -> str:
    """The classifier's answer in words: the intent and how sure it is, or that it is not sure at all."""
    if intent == UNKNOWN:
        closest = f" (closest: {intent_label(top_intent)}, {pct(confidence)})" if top_intent else ""
        return f"not sure → a person{closest}"
    return f"{intent_label(intent)} ({pct(confidence)} sure)"


def routing_words(queue: str, intent: str, language: str, urgency: str) -> str:
    """Why a message went to its queue: the triage facts the routing rules matched on."""
    what = "an intent it is not sure of" if intent == UNKNOWN else f"intent {intent_label(intent)}"
    return f"routed to {queue} on {what}, {LANGUAGES.get(language, language)}, urgency {urgency}"


def escalation_words(escalated: bool, reasons: list[str]) -> str:
    if not escalated:
        return "not escalated"
    return f"escalated to a person: {'; '.join(reasons)}" if reasons else "escalated to a person"


class _OnTicket:
    """What the inbox's row and the ticket page say alike of ``self.ticket`` (a ``/v1`` ticket)."""

    ticket: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.ticket["id"])

    @property
    def customer_id(self) -> str:
        return str(self.ticket["customer_id"])

    @property
    def escalation(self) -> str:
        return ticket_escalation(self.ticket)


@dataclass
class TicketRow(_OnTicket):
    ticket: dict[str, Any]
    name: str

    @property
    def intent(self) -> str:
        return intent_words(self.ticket["intent"], self.ticket["confidence"])


@dataclass
class InboxView:
    """The tickets of one status after the queue and urgency filters, most urgent first, with the counts of
    every queue by urgency (the filters' choices)."""

    rows: list[TicketRow]
    problem: str | None
    status: str
    queue: str
    urgency: str
    counts: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    total: int = 0
    names_problem: str | None = None

    @property
    def queues(self) -> list[str]:
        known = [q for q, _ in self.counts]
        return known + ([self.queue] if self.queue and self.queue not in known else [])

    @property
    def capped(self) -> bool:
        return self.total >= TICKET_SCAN

    @classmethod
    def of(cls, tickets: Answer, customers: Answer, status: str, queue: str, urgency: str) -> InboxView:
        if not tickets.ok:
            return cls([], f"The tickets are not available: {tickets.problem}.", status, queue, urgency)
        every = list(tickets.body["tickets"])
        counts: dict[str, dict[str, int]] = {}
        for t in every:
            by_urgency = counts.setdefault(t["queue"], dict.fromkeys(URGENCIES, 0))
            by_urgency[t["urgency"]] = by_urgency.get(t["urgency"], 0) + 1
        names: dict[str, str] = {}
        names_problem = None
        if customers.ok and isinstance(customers.body, dict):
            names = {c["id"]: customer_name(c) for c in customers.body["items"]}
        elif customers.status != 204:
            names_problem = f"Customer names are not shown: {customers.problem}."
        chosen = [
            t
            for t in every
            if (not queue or t["queue"] == queue) and (not urgency or t["urgency"] == urgency)
        ]
        # Most urgent first; within an urgency, the most recently updated first (the answer's order).
        rank = {u: i for i, u in enumerate(URGENCIES)}
        chosen.sort(key=lambda t: rank.get(t["urgency"], len(rank)))
        rows = [TicketRow(t, names.get(t["customer_id"]) or t["customer_id"]) for t in chosen]
        ordered = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        return cls(rows, None, status, queue, urgency, ordered, len(every), names_problem)


@dataclass
class MessageView:
    message: dict[str, Any]

    @property
    def intent(self) -> str:
        m = self.message
        return intent_words(m["intent"], m["confidence"], m.get("top_intent"))

    @property
    def language(self) -> str:
        language = str(self.message["language"])
        return LANGUAGES.get(language, language)

    @property
    def entities(self) -> list[tuple[str, str, str]]:
        """(what, value, the words it was read from)."""
        return [
            (ENTITY_WORDS.get(e["kind"], e["kind"].replace("_", " ")), e["value"], e["text"])
            for e in self.message.get("entities") or []
        ]

    @property
    def routing(self) -> str:
        m = self.message
        return routing_words(m["queue"], m["intent"], m["language"], m["urgency"])

    @property
    def escalation(self) -> str:
        return ticket_escalation(self.message)


@dataclass
class TicketView(_OnTicket):
    """One ticket: its state, its customer (name, churn band, value when the 360 answers), its messages
    with their triage, and the reply suggestions for the last one."""

    ticket: dict[str, Any]
    messages: list[MessageView]
    customer_name: str
    customer_known: bool
    churn: dict[str, Any] | None
    value: float | None
    suggestions: list[dict[str, Any]]
    suggestions_problem: str | None
    intent: str | None

    @property
    def status_words(self) -> str:
        return status_words(self.ticket["status"])

    @classmethod
    def of(cls, ticket: dict[str, Any], suggestions: Answer, c360: Answer) -> TicketView:
        profile = (c360.body or {}).get("profile") or {} if c360.ok else {}
        found = suggestions.ok and isinstance(suggestions.body, dict)
        return cls(
            ticket=ticket,
            messages=[MessageView(m) for m in ticket.get("messages") or []],
            customer_name=customer_name(profile) or str(ticket["customer_id"]),
            customer_known=c360.ok,
            churn=(c360.body or {}).get("churn") if c360.ok else None,
            value=customer_value(profile) if profile else None,
            suggestions=list(suggestions.body["suggestions"]) if found else [],
            suggestions_problem=None if found else f"No suggestions right now: {suggestions.problem}.",
            intent=suggestions.body.get("intent") if found else None,
        )


FEEDBACK_WORDS = {"sent": "sent as is", "edited": "sent after editing", "rejected": "rejected"}


def feedback_action(decision: str, reply: str, draft: str) -> str:
    """What the agent did with a suggestion: rejected it, or sent it as drafted or edited."""
    if decision == "reject":
        return "rejected"
    return "sent" if reply.strip() == draft.strip() else "edited"


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def ticket_escalation(ticket: dict[str, Any]) -> str:
    return escalation_words(bool(ticket.get("escalated")), ticket.get("escalation_reasons") or [])


FILTERS = {"status_words": status_words, "escalation_of": ticket_escalation}
