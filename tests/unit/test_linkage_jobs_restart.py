"""`Match` on a job run by an earlier `LinkageJobs` (a server before a restart), on SQLite and
PostgreSQL: the matcher is rebuilt from the store once, replays the assigned records, and
a job whose matcher cannot be rebuilt gets a precise error naming it."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from veclink.linkage import LinkageSpec
from veclink.service.linkage_jobs import LinkageJobs

from tests.fixtures.linkage import support
from veclink.errors import FailedPrecondition, InvalidArgument, NotFound
from veclink.wire import TableSource

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"


S = support


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    eng = create_engine(url)
    yield eng
    eng.dispose()


class Encoders:
    """``encoder_for`` of a server: counts how often an encoder is asked for."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, spec: object) -> object:
        with self.lock:
            self.calls += 1
        return S.HashEncoder()


def _rows(name: str, n: int) -> list[dict[str, str]]:
    with open(FIX / name, encoding="latin-1", newline="") as f:
        return list(csv.DictReader(f))[:n]


def _finished(jobs: LinkageJobs, job_id: str) -> None:
    for _ in range(600):
        state = jobs.get(job_id).state
        if state in ("succeeded", "failed"):
            assert state == "succeeded", jobs.get(job_id).error
            return
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def test_match_after_restart_rebuilds_once_and_replays(engine) -> None:
    left, right = _rows("dblp_sample.csv", 40), _rows("acm_sample.csv", 60)
    before = LinkageJobs(engine, encoder_for=Encoders())
    job = before.start(
        "link", {"fields": S.DBLP_FIELDS}, TableSource(rows=left[1:]), TableSource(rows=right)
    )
    _finished(before, job)
    first = before.match(job, left[0], k=5, assign=True)
    peek = before.match(job, {**left[1], "id": "peek"}, k=5, assign=False)
    assert peek.candidates
    before.close()

    encoders = Encoders()
    after = LinkageJobs(engine, encoder_for=encoders)  # the restarted server
    answers = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(
                after.match(job, {**left[1], "id": "peek"}, k=5, assign=False)
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [peek] * 4
    assert encoders.calls == 1  # concurrent first calls built the matcher once
    # the assignment made before the restart was replayed from the match log
    with pytest.raises(InvalidArgument, match="already matched"):
        after.match(job, left[0], k=5, assign=True)
    assert after.match(job, left[0], k=5, assign=False).candidates == first.candidates
    after.close()


def test_match_errors_name_the_job(engine) -> None:
    jobs = LinkageJobs(engine, encoder_for=Encoders())
    with pytest.raises(NotFound, match="nope"):
        jobs.match("nope", {"id": "1"}, k=5, assign=False)
    spec = LinkageSpec().to_dict()
    queued = jobs.store.create_job("link", spec)
    with pytest.raises(FailedPrecondition, match=f"job {queued} is queued"):
        jobs.match(queued, {"id": "1"}, k=5, assign=False)
    old = jobs.store.create_job("link", spec)  # finished before matchers were stored
    jobs.store.save_results(old, pairs=[], entities=[], metrics={})
    with pytest.raises(FailedPrecondition, match=f"job {old} has no stored matcher"):
        jobs.match(old, {"id": "1"}, k=5, assign=False)
    broken = jobs.store.create_job("link", spec)
    jobs.store.save_results(
        broken, pairs=[], entities=[], metrics={}, matcher={"meta.json": b'{"format": 1}'}
    )
    with pytest.raises(FailedPrecondition, match=f"matcher of job {broken} cannot be rebuilt"):
        jobs.match(broken, {"id": "1"}, k=5, assign=False)
    jobs.close()
