"""HTTP routes of the churn service: parse, call the service, shape the response."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from services.churn import repository as repo
from services.churn.ml.features import from_days
from services.churn.ml.training import list_versions, load_current
from services.churn.models import RuleRow
from services.churn.schemas import (
    AtRiskCustomer,
    AtRiskResponse,
    BatchScores,
    ChurnScore,
    ModelInfo,
    ReactionIn,
    ReactionOut,
    RescoreResult,
    RowScore,
    RuleIn,
    RuleOut,
    ScoreRequest,
    ScoreResponse,
)
from services.churn.service import ChurnService, Scored, _reason_dict
from shared.errors import Conflict, NotFound
from shared.runtime import request_session


def get_service(request: Request) -> ChurnService:
    service: ChurnService = request.app.state.churn
    return service


SessionDep = Annotated[Session, Depends(request_session)]
ServiceDep = Annotated[ChurnService, Depends(get_service)]

router = APIRouter(tags=["churn"])


def to_schema(scored: Scored) -> ChurnScore:
    return ChurnScore(
        customer_id=scored.customer_id,
        has_history=scored.has_history,
        probability=min(1.0, max(0.0, scored.probability)),
        band=scored.band,
        trend=scored.trend,
        reasons=[_reason_dict(r) for r in scored.reasons],
        raw_score=scored.raw_score,
        base_value=scored.base_value,
        other_weight=scored.other_weight,
        next_best_action=scored.next_best_action,
        actions_withheld=scored.actions_withheld,
        value=scored.value,
        value_source=scored.value_source,
        model_version=scored.model_version,
        as_of=from_days(scored.as_of).isoformat() if scored.as_of is not None else None,
    )


@router.get("/churn/at-risk", response_model=AtRiskResponse)
def at_risk(
    session: SessionDep,
    min_probability: Annotated[float, Query(ge=0, le=1)] = 0.5,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AtRiskResponse:
    """Customers at risk, ranked by value at risk (probability x value) where the value is known, then by probability."""
    rows = repo.at_risk(session, min_probability, limit)
    return AtRiskResponse(
        customers=[
            AtRiskCustomer(
                customer_id=r.customer_id,
                probability=r.probability,
                band=r.band,
                value=r.value,
                value_at_risk=round(r.probability * r.value, 2) if r.value is not None else None,
                reasons=r.reasons,
                model_version=r.model_version,
            )
            for r in rows
        ]
    )


@router.get("/churn/model", response_model=ModelInfo)
def model_info(request: Request, service: ServiceDep) -> ModelInfo:
    """The served model versions and their metrics."""
    model, table = service.holder.events, service.holder.table
    return ModelInfo(
        status=service.holder.status,
        version=model.version if model else None,
        kind=model.kind if model else None,
        metrics={k: v for k, v in (model.metrics if model else {}).items() if not isinstance(v, list)},
        table_model_version=table.version if table else None,
        versions=list_versions(service.settings.models_path(), "events")
        + list_versions(service.settings.models_path(), "table"),
    )


@router.post("/churn/rescore", response_model=RescoreResult)
def rescore_all(request: Request, service: ServiceDep) -> RescoreResult:
    """Rescore every customer as of now and emit the band changes (run it periodically)."""
    result = service.rescore_all(request.app.state.runtime.session_factory)
    as_of = result["as_of"]
    return RescoreResult(
        customers=int(result["customers"]),
        band_changes=int(result["band_changes"]),
        as_of=from_days(as_of).isoformat(),
    )


@router.post("/churn/model/reload", response_model=ModelInfo)
def reload_models(request: Request, service: ServiceDep) -> ModelInfo:
    """Serve the current saved versions (after `crm churn train`) without a restart."""
    for kind in ("events", "table"):
        model = load_current(service.settings.models_path(), kind)
        if model is not None:
            service.holder.set(model)
    return model_info(request, service)


@router.get("/churn/{customer_id}", response_model=ChurnScore)
def churn_for_customer(customer_id: str, session: SessionDep, service: ServiceDep) -> ChurnScore:
    """A customer's churn probability, band, reasons, trend and next-best-action, as of now."""
    return to_schema(service.score_customer(session, customer_id))


@router.post("/churn/score", response_model=ScoreResponse)
def score_batch(body: ScoreRequest, session: SessionDep, service: ServiceDep) -> ScoreResponse:
    """Score customers by id, feature rows (with reasons on request) and/or columns of feature rows (bulk)."""
    customers = [to_schema(service.score_customer(session, c)) for c in body.customer_ids]
    rows = (
        [RowScore.model_validate(r) for r in service.score_rows(body.rows, body.model, body.reasons)]
        if body.rows
        else []
    )
    batch = None
    if body.columns:
        probability, bands, version = service.score_columns(body.columns, body.model)
        batch = BatchScores.model_construct(
            probabilities=probability.tolist(), bands=bands, model_version=version
        )
    return ScoreResponse(customers=customers, rows=rows, batch=batch)


# -- next-best-action rules and reactions ---------------------------------------------------------


def _rule_out(rule: RuleRow, counts: dict[str, dict[str, int]]) -> RuleOut:
    out = RuleOut.model_validate(rule)
    out.reactions = counts.get(rule.id, {"accepted": 0, "rejected": 0, "ignored": 0})
    return out


@router.get("/actions/rules", response_model=list[RuleOut], tags=["actions"])
def list_rules(session: SessionDep) -> list[RuleOut]:
    """Next-best-action rules, highest priority first, with their reaction counts."""
    counts = repo.reaction_counts(session)
    return [_rule_out(r, counts) for r in repo.rules(session)]


@router.post("/actions/rules", response_model=RuleOut, status_code=201, tags=["actions"])
def create_rule(body: RuleIn, session: SessionDep, service: ServiceDep) -> RuleOut:
    """Create a rule; every condition given must hold, the highest-priority match wins."""
    rule_id = body.id or re.sub(r"[^a-z0-9]+", "-", body.name.lower()).strip("-")[:100] or "rule"
    if repo.rule(session, rule_id) is not None:
        raise Conflict(f"rule {rule_id!r} exists")
    row = RuleRow(**{**body.model_dump(), "id": rule_id})
    session.add(row)
    session.flush()
    service.invalidate_rules()
    return _rule_out(row, {})


@router.get("/actions/rules/{rule_id}", response_model=RuleOut, tags=["actions"])
def get_rule(rule_id: str, session: SessionDep) -> RuleOut:
    """One rule with its reaction counts."""
    row = repo.rule(session, rule_id)
    if row is None:
        raise NotFound(f"no rule {rule_id!r}")
    return _rule_out(row, repo.reaction_counts(session))


@router.put("/actions/rules/{rule_id}", response_model=RuleOut, tags=["actions"])
def replace_rule(rule_id: str, body: RuleIn, session: SessionDep, service: ServiceDep) -> RuleOut:
    """Replace a rule's conditions and action."""
    row = repo.rule(session, rule_id)
    if row is None:
        raise NotFound(f"no rule {rule_id!r}")
    for key, value in body.model_dump(exclude={"id"}).items():
        setattr(row, key, value)
    session.flush()
    service.invalidate_rules()
    return _rule_out(row, repo.reaction_counts(session))


@router.delete("/actions/rules/{rule_id}", status_code=204, tags=["actions"])
def delete_rule(rule_id: str, session: SessionDep, service: ServiceDep) -> Response:
    """Delete a rule (its recorded reactions stay)."""
    row = repo.rule(session, rule_id)
    if row is None:
        raise NotFound(f"no rule {rule_id!r}")
    session.delete(row)
    session.flush()
    service.invalidate_rules()
    return Response(status_code=204)


@router.post("/actions/reactions", response_model=ReactionOut, status_code=201, tags=["actions"])
def record_reaction(body: ReactionIn, session: SessionDep) -> ReactionOut:
    """Record a customer's reaction to a suggested action; returns the rule's counts."""
    if repo.rule(session, body.rule_id) is None:
        raise NotFound(f"no rule {body.rule_id!r}")
    row = repo.add_reaction(session, body.customer_id, body.rule_id, body.action, body.reaction)
    counts: dict[str, Any] = repo.reaction_counts(session).get(body.rule_id, {})
    return ReactionOut(**body.model_dump(), id=row.id, counts=counts)
