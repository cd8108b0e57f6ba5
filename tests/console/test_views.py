"""The console's shaping of /v1 answers: the rule editor's rules and live counts, names, at-risk pages."""

from __future__ import annotations

from services.gateway.console.api import Answer
from services.gateway.console.views import AtRiskView, RuleDraft, customer_name


def test_rule_rows_make_an_and_rule_and_the_search_filters_that_count_it() -> None:
    draft = RuleDraft.of(["revenue", "churn_band", ""], ["gte", "eq", "gte"], ["100", "high", ""])
    assert draft.problem is None
    assert draft.rule == {
        "and": [
            {"field": "revenue", "op": "gte", "value": 100.0},
            {"field": "churn_band", "op": "eq", "value": "high"},
        ]
    }
    assert draft.search_params == {"min_revenue": 100.0, "churn_band": "high"}
    assert draft.words == "revenue at least 100 and churn band is high"


def test_a_rule_the_search_cannot_count_is_counted_once_saved() -> None:
    draft = RuleDraft.of(["average_rating"], ["gte"], ["4"])
    assert draft.rule == {"field": "average_rating", "op": "gte", "value": 4.0}
    assert draft.search_params is None


def test_a_bad_value_says_what_the_field_needs() -> None:
    assert RuleDraft.of(["orders"], ["gte"], ["many"]).problem == "Orders needs a count, e.g. 2, not 'many'."
    assert RuleDraft.of(["last_seen"], ["within"], ["soon"]).problem == (
        "Last seen needs a window, e.g. 30d, not 'soon'."
    )
    assert RuleDraft.of([""], ["gte"], [""]).problem == "Add at least one condition."


def test_a_name_comes_from_the_name_trait_or_first_and_last_name() -> None:
    assert customer_name({"traits": {"name": " Ada "}}) == "Ada"
    assert customer_name({"traits": {"first_name": "Grace", "last_name": "Hopper"}}) == "Grace Hopper"
    assert customer_name({"traits": {"age": 3}}) == ""


def test_at_risk_rows_are_ranked_by_value_at_risk_filtered_and_paged() -> None:
    customers = [
        {
            "customer_id": f"c{i}",
            "probability": 0.9,
            "band": "high" if i % 2 else "medium",
            "value_at_risk": i,
        }
        for i in range(60)
    ]
    members = Answer(200, {"items": [{"id": f"c{i}"} for i in range(0, 60, 3)]})
    view = AtRiskView.of(Answer(200, {"customers": customers}), members, "high", offset=0)
    assert [r["customer_id"] for r in view.rows][:3] == ["c57", "c51", "c45"]
    assert view.matching == 10
    assert view.next_offset is None
    assert AtRiskView.of(Answer(503, {"detail": "the churn service is unavailable"}), None, "").problem == (
        "The at-risk list is not available: the churn service is unavailable."
    )
