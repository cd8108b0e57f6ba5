"""Batch jobs over all profiles: the CLV fit (BG/NBD + Gamma-Gamma) and RFM clustering (k-means).

Both read the purchase aggregates the consumer keeps, write their results onto the profiles in bulk,
and record a :class:`BatchRun` with their parameters. ``as_of`` defaults to now, the wall clock: the
fleet's one clock, which the 360's ``rfm.recency_days`` and the churn service's "as of" use too. Replayed
historical data is shifted to end now (``shared.replay``); pass ``as_of`` to score data as of its own time.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from services.profile import repository as repo
from services.profile.models import BatchRun
from services.profile.schemas import BatchJobResult, BatchStatus
from shared.contracts import utcnow
from shared.db import unit_of_work
from shared.logging import get_logger
from shared.stats.bgnbd import BgNbd, expected_purchases, fit_bgnbd, p_alive
from shared.stats.gamma_gamma import GammaGamma, expected_average_value, fit_gamma_gamma

log = get_logger(__name__)

WEEK_DAYS = 7.0
Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


@dataclass(frozen=True)
class ClvRun:
    version: str
    customers: int
    bgnbd: BgNbd
    gamma_gamma: GammaGamma | None
    as_of: datetime
    horizon_days: int


def _buyers(session: Session) -> list[dict[str, Any]]:
    return [
        r for r in repo.all_active_customers(session) if r["orders"] > 0 and r["first_order_at"] is not None
    ]


def fit_clv(
    factory: sessionmaker[Session],
    *,
    horizon_days: int = 90,
    as_of: datetime | None = None,
    progress: Progress = _noop,
) -> ClvRun:
    """Fit BG/NBD and Gamma-Gamma on every buyer and write P(alive), expected purchases and value."""
    with unit_of_work(factory) as session:
        progress("loading profiles")
        rows = _buyers(session)
        if len(rows) < 10:
            raise ValueError(f"CLV needs at least 10 customers with purchases; there are {len(rows)}")
        end = as_of or utcnow()
        x = np.array([max(r["purchase_days"] - 1, 0) for r in rows], dtype=float)
        t_x = np.array(
            [(r["last_order_at"] - r["first_order_at"]).total_seconds() / 86400 / WEEK_DAYS for r in rows]
        )
        age = np.array(
            [max((end - r["first_order_at"]).total_seconds() / 86400 / WEEK_DAYS, 0.0) for r in rows]
        )
        t_x = np.minimum(t_x, age)
        # The consumer keeps revenue and order counts, so the mean order value stands in for the mean of
        # the repeat purchases that Gamma-Gamma is defined on.
        monetary = np.array([r["revenue"] / r["orders"] for r in rows])
        progress("fitting BG/NBD")
        bgnbd = fit_bgnbd(x, t_x, age)
        progress("fitting Gamma-Gamma")
        try:
            gamma_gamma: GammaGamma | None = fit_gamma_gamma(x, monetary)
        except ValueError:
            gamma_gamma = None
        horizon = horizon_days / WEEK_DAYS
        alive = p_alive(bgnbd, x, t_x, age)
        purchases = expected_purchases(bgnbd, horizon, x, t_x, age)
        mean_value = float(np.mean(monetary))
        value_per_order = (
            expected_average_value(gamma_gamma, x, monetary, mean_value)
            if gamma_gamma
            else np.full_like(x, mean_value)
        )
        value = purchases * value_per_order
        version = f"clv-{utcnow():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        progress("writing profiles")
        repo.update_customers(
            session,
            [
                {
                    "id": r["id"],
                    "clv_p_alive": float(alive[i]),
                    "clv_expected_purchases": float(purchases[i]),
                    "clv_expected_value": float(value[i]),
                    "clv_horizon_days": horizon_days,
                    "clv_model_version": version,
                }
                for i, r in enumerate(rows)
            ],
        )
        session.add(
            BatchRun(
                id=version,
                kind="clv",
                fitted_at=utcnow(),
                customers=len(rows),
                params={
                    "bgnbd": bgnbd.as_dict(),
                    "gamma_gamma": gamma_gamma.as_dict() if gamma_gamma else None,
                    "as_of": end.isoformat(),
                    "horizon_days": horizon_days,
                    "time_unit": "weeks",
                },
            )
        )
    log.info("clv_fitted", version=version, customers=len(rows), **bgnbd.as_dict())
    return ClvRun(version, len(rows), bgnbd, gamma_gamma, end, horizon_days)


# --- RFM clustering ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterRun:
    version: str
    customers: int
    k: int
    silhouette: float
    names: dict[str, int]
    silhouettes: dict[int, float]


def name_clusters(centers: np.ndarray) -> list[str]:
    """Words for standardised (recency, frequency, monetary) centroids, relative to the population."""
    names: list[str] = []
    for recency, frequency, monetary in centers:
        recent = recency < 0  # fewer days since the last order than average
        valuable = frequency + monetary > 0
        if recent and valuable:
            name = "champions" if frequency > 0.75 and monetary > 0.5 else "loyal"
        elif recent:
            name = "new" if frequency < -0.5 else "promising"
        elif valuable:
            name = "at risk" if recency < 1.0 else "cannot lose them"
        else:
            name = "hibernating" if recency < 1.0 else "lost"
        names.append(name)
    # Two clusters with one word: rank them by value so names stay unique and meaningful.
    counts: dict[str, int] = {}
    order = np.argsort(-(centers[:, 1] + centers[:, 2]))
    final = list(names)
    for index in order:
        base = names[index]
        counts[base] = counts.get(base, 0) + 1
        if counts[base] > 1:
            final[index] = f"{base} {counts[base]}"
    return final


def _quintiles(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    ranks = values.argsort(kind="stable").argsort(kind="stable") / max(len(values) - 1, 1)
    scores = np.minimum((ranks * 5).astype(int) + 1, 5)
    return np.asarray(scores if higher_is_better else 6 - scores)


def cluster_customers(
    factory: sessionmaker[Session],
    *,
    max_k: int = 8,
    as_of: datetime | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ClusterRun:
    """k-means on log RFM features, k by silhouette; writes each buyer's cluster name and RFM scores."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    with unit_of_work(factory) as session:
        rows = _buyers(session)
        if len(rows) < 10:
            raise ValueError(f"clustering needs at least 10 customers with purchases; there are {len(rows)}")
        end = as_of or utcnow()
        recency = np.array([max((end - r["last_order_at"]).total_seconds() / 86400, 0.0) for r in rows])
        frequency = np.array([float(r["orders"]) for r in rows])
        monetary = np.array([float(r["revenue"]) for r in rows])
        features = StandardScaler().fit_transform(np.log1p(np.column_stack([recency, frequency, monetary])))
        rng = np.random.default_rng(seed)
        sample = rng.choice(len(rows), size=min(len(rows), 4000), replace=False)
        best: tuple[float, int, Any] | None = None
        silhouettes: dict[int, float] = {}
        candidates = list(range(2, min(max_k, len(rows) - 1) + 1))
        for step, k in enumerate(candidates, start=1):
            model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(features)
            score = float(silhouette_score(features[sample], model.labels_[sample]))
            silhouettes[k] = round(score, 4)
            if best is None or score > best[0]:
                best = (score, k, model)
            if progress:
                progress(step, len(candidates))
        assert best is not None
        score, k, model = best
        names = name_clusters(model.cluster_centers_)
        labels = model.labels_
        r_scores = _quintiles(recency, higher_is_better=False)
        f_scores = _quintiles(frequency, higher_is_better=True)
        m_scores = _quintiles(monetary, higher_is_better=True)
        repo.update_customers(
            session,
            [
                {
                    "id": r["id"],
                    "rfm_cluster": names[labels[i]],
                    "rfm_scores": f"{r_scores[i]}{f_scores[i]}{m_scores[i]}",
                }
                for i, r in enumerate(rows)
            ],
        )
        sizes = {name: int(np.sum(labels == i)) for i, name in enumerate(names)}
        version = f"rfm-{utcnow():%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        session.add(
            BatchRun(
                id=version,
                kind="rfm_clusters",
                fitted_at=utcnow(),
                customers=len(rows),
                params={"k": k, "silhouette": score, "silhouettes": silhouettes, "sizes": sizes,
                        "as_of": end.isoformat(), "centers": model.cluster_centers_.round(4).tolist(), "names": names},
            )
        )  # fmt: skip
    log.info("rfm_clustered", version=version, k=k, silhouette=round(score, 4), sizes=sizes)
    return ClusterRun(version, len(rows), k, score, sizes, silhouettes)


def uses_time_window(rule: Any) -> bool:
    if isinstance(rule, dict):
        if rule.get("op") in {"within", "older_than"} or rule.get("field") == "recency_days":
            return True
        return any(uses_time_window(v) for v in rule.values() if isinstance(v, dict | list))
    if isinstance(rule, list):
        return any(uses_time_window(v) for v in rule)
    return False


JobName = Literal["segments", "clv", "rfm_clusters"]


class BatchScheduler:
    """Runs the time-window segment refresh, the CLV fit and the clustering in a background thread: every
    ``batch_interval_s`` (when above 0), and at once on :meth:`request_run` (``POST /models/fit``; ``crm up``
    asks for one when the demo data is in). :attr:`status` says where it is."""

    FIRST_RUN_AFTER_S = 30.0

    def __init__(self, factory: sessionmaker[Session], settings: Any, service: Any = None) -> None:
        self.factory = factory
        self.settings = settings
        self.service = service
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._periodic = False
        self._in_run = False
        self._status = BatchStatus(state="idle")

    @property
    def status(self) -> BatchStatus:
        with self._lock:
            return self._status.model_copy(deep=True)

    def start(self) -> None:
        """Run periodically (and on request) until :meth:`stop`."""
        self._periodic = True
        self._ensure_thread()

    def request_run(self) -> BatchStatus:
        """Start a run now, in the background. During a run, another one follows it (it may have read the
        profiles before the latest events); requests made meanwhile share that one. The answer's
        ``requested`` is the run number that includes everything applied before the request."""
        with self._lock:
            requested = self._status.runs + (2 if self._in_run else 1)
            self._status = self._status.model_copy(
                update={"requested": max(requested, self._status.requested)}
            )
            self._wake.set()
        self._ensure_thread()
        return self.status

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="profile-batch-jobs", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def refresh_time_windows(self) -> int:
        """Re-evaluate segments whose rules use time windows: "last seen within 30d" changes with the
        clock, not only with events. Returns the number of membership changes announced."""
        if self.service is None:
            return 0
        with unit_of_work(self.factory) as session:
            outbound = []
            for segment in repo.list_segments(session):
                if uses_time_window(segment.rule):
                    outbound.extend(self.service.refresh_segment(session, segment))
            session.flush()
            self.service.publish(outbound)
        return len(outbound)

    def run_once(self) -> BatchStatus:
        """Run every job now, in this thread; returns the finished status."""
        jobs: list[tuple[JobName, Callable[[], str | None]]] = [
            ("segments", lambda: (self.refresh_time_windows(), None)[1]),
            ("clv", lambda: fit_clv(self.factory, horizon_days=self.settings.clv_horizon_days).version),
            (
                "rfm_clusters",
                lambda: cluster_customers(self.factory, max_k=self.settings.max_clusters).version,
            ),
        ]
        with self._lock:
            self._in_run = True
            self._wake.clear()  # this run serves every request made until now
            self._status = self._status.model_copy(
                update={"state": "running", "step": None, "steps_done": 0, "steps_total": len(jobs),
                        "started_at": utcnow(), "finished_at": None}
            )  # fmt: skip
        log.info("batch_jobs_started", jobs=[name for name, _ in jobs])
        results: list[BatchJobResult] = []
        for done, (name, job) in enumerate(jobs):
            with self._lock:
                self._status = self._status.model_copy(update={"step": name, "steps_done": done})
            try:
                results.append(BatchJobResult(job=name, outcome="fitted", version=job()))
            except ValueError as exc:  # too few buyers yet
                log.info("batch_job_skipped", job=name, reason=str(exc))
                results.append(BatchJobResult(job=name, outcome="skipped", detail=str(exc)))
            except Exception as exc:
                log.exception("batch_job_failed", job=name)
                results.append(
                    BatchJobResult(job=name, outcome="failed", detail=f"{type(exc).__name__}: {exc}")
                )
        with self._lock:
            self._in_run = False
            self._status = self._status.model_copy(
                update={"state": "done", "step": None, "steps_done": len(jobs), "runs": self._status.runs + 1,
                        "finished_at": utcnow(), "jobs": results}
            )  # fmt: skip
        log.info("batch_jobs_finished", **{r.job: r.version or r.outcome for r in results})
        return self.status

    def _run(self) -> None:
        wait: float | None = self.FIRST_RUN_AFTER_S if self._periodic else None
        while not self._stop.is_set():
            requested = self._wake.wait(wait)
            if self._stop.is_set():
                return
            if not requested and not self._periodic:
                continue
            self.run_once()
            wait = self.settings.batch_interval_s if self._periodic else None
