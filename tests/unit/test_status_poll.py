"""The pure poll planner: which calls for which jobs, and what their answers mean.

Search answers come from the engine's own pure ``run_search`` (the code that serves Search
over HTTP), fed plain records; ListProcessingJobs and Describe answers are plain dicts.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import botocore.session
import pytest

from airflow_sm_provider.errors import SageMakerApiError, is_access_denied, is_not_found, is_not_stoppable
from airflow_sm_provider.job_kinds import JobKind, Outcome
from airflow_sm_provider.local.search import run_search
from airflow_sm_provider.naming import JobIdentity, job_name
from airflow_sm_provider.status_poll import (
    MAX_FILTER_VALUE,
    MAX_FILTERS,
    MAX_LIST_PAGES,
    Call,
    StatusPoll,
    poll_delay,
    run_poll,
    run_poll_async,
)

MODEL = botocore.session.get_session().get_service_model("sagemaker")


def names(count: int, prefix: str = "digits-candidate") -> list[str]:
    return [job_name(prefix, JobIdentity("ns", "dag", "run", "train", i)) for i in range(count)]


class Service:
    """Answers poll calls from job records, counting every call (the planner's I/O edge)."""

    def __init__(
        self, training: dict[str, tuple[str, str]], processing: dict[str, str] | None = None
    ) -> None:
        self.training = training
        self.processing = processing or {}
        self.calls: list[Call] = []
        self.hidden: set[str] = set()  # jobs the Search index does not show yet
        self.denied: dict[str, str] = {}  # method -> error code the IAM policy answers with

    def record(self, name: str) -> dict[str, Any]:
        status, secondary = self.training[name]
        return {"TrainingJobName": name, "TrainingJobStatus": status, "SecondaryStatus": secondary}

    def __call__(self, call: Call) -> dict[str, Any]:
        self.calls.append(call)
        params = call.params
        if call.method in self.denied:
            raise SageMakerApiError(call.method, self.denied[call.method], "not authorized", 400)
        if call.method == "search":
            records = [self.record(n) for n in self.training if n not in self.hidden]
            return run_search(records, params)
        if call.method == "list_processing_jobs":
            matching = [n for n in self.processing if params.get("NameContains", "").lower() in n.lower()]
            start = int(params.get("NextToken") or 0)
            page = matching[start : start + params["MaxResults"]]
            response = {
                "ProcessingJobSummaries": [
                    {"ProcessingJobName": n, "ProcessingJobStatus": self.processing[n]} for n in page
                ]
            }
            if start + len(page) < len(matching):
                response["NextToken"] = str(start + len(page))
            return response
        name = next(iter(params.values()))
        if call.method == "describe_training_job":
            if name not in self.training:
                raise SageMakerApiError(
                    "DescribeTrainingJob", "ValidationException", "Requested resource not found."
                )
            return {
                **self.record(name),
                "FailureReason": "boom" if self.training[name][0] == "Failed" else None,
            }
        if name not in self.processing:
            raise SageMakerApiError(
                "DescribeProcessingJob", "ValidationException", f"Could not find job {name}"
            )
        return {"ProcessingJobName": name, "ProcessingJobStatus": self.processing[name]}

    def count(self, method: str) -> int:
        return sum(call.method == method for call in self.calls)


def validate(call: Call) -> None:
    """Every planned request passes botocore's own parameter validation (limits included)."""
    from botocore.validate import ParamValidator

    operation = MODEL.operation_model("".join(p.title() for p in call.method.split("_")))
    report = ParamValidator().validate(call.params, operation.input_shape)
    assert not report.has_errors(), report.generate_report()


@pytest.mark.parametrize("count", [1, 10, 250])
def test_running_training_jobs_cost_a_few_search_pages_not_a_describe_each(count):
    jobs = names(count)
    service = Service({n: ("InProgress", "Training") for n in jobs})
    states = run_poll([(JobKind.TRAINING, n) for n in jobs], service).states()
    assert all(s.outcome == Outcome.RUNNING for s in states.values())
    assert service.count("describe_training_job") == 0
    assert len(service.calls) == -(-count // 100)  # one page per 100 jobs
    for call in service.calls:
        validate(call)


def test_250_jobs_respect_filter_value_and_filter_count_limits():
    jobs = names(250, prefix="a-rather-long-readable-training-job-prefix-x")
    poll = StatusPoll([(JobKind.TRAINING, n) for n in jobs])
    searches = poll.next_calls()
    covered = []
    for call in searches:
        filters = call.params["SearchExpression"]["Filters"]
        assert len(filters) <= MAX_FILTERS and call.params["SearchExpression"]["Operator"] == "Or"
        assert all(len(f["Value"]) <= MAX_FILTER_VALUE for f in filters)
        assert call.params["MaxResults"] == 100
        covered += [n for f in filters for n in f["Value"].split(",")]
        validate(call)
    assert sorted(covered) == sorted(jobs)


def test_more_names_than_one_expression_holds_split_into_several_searches():
    jobs = names(1000, prefix="p" * 52)  # 63-char names: 16 per filter, 320 per expression
    searches = StatusPoll([(JobKind.TRAINING, n) for n in jobs]).next_calls()
    assert len(searches) == 4
    for call in searches:
        validate(call)


def test_terminal_states_are_confirmed_once_nothing_runs():
    jobs = names(3)
    service = Service(
        {
            jobs[0]: ("Completed", "Completed"),
            jobs[1]: ("InProgress", "Interrupted"),
            jobs[2]: ("Failed", "Failed"),
        }
    )
    refs = [(JobKind.TRAINING, n) for n in jobs]
    states = run_poll(refs, service).states()
    assert service.count("describe_training_job") == 0  # jobs[1] still runs: no Describe spent
    assert states[jobs[0]].outcome == Outcome.SUCCEEDED and not states[jobs[0]].confirmed
    assert states[jobs[1]].outcome == Outcome.RUNNING
    service.training[jobs[1]] = ("Stopped", "MaxRuntimeExceeded")
    service.calls.clear()
    states = run_poll(refs, service).states()
    assert service.count("describe_training_job") == 3 and service.count("search") == 1
    assert all(s.confirmed for s in states.values())
    assert states[jobs[1]].outcome == Outcome.FAILED
    assert states[jobs[2]].summary["failure_reason"] == "boom"


def test_a_job_search_does_not_show_yet_is_pending():
    jobs = names(2)
    service = Service({n: ("InProgress", "Training") for n in jobs})
    service.hidden.add(jobs[1])
    states = run_poll([(JobKind.TRAINING, n) for n in jobs], service).states()
    assert states[jobs[1]].outcome == Outcome.PENDING and states[jobs[0]].outcome == Outcome.RUNNING
    assert service.count("describe_training_job") == 0


def test_a_job_that_never_appears_is_described_and_reported_missing():
    jobs = names(2)
    service = Service({jobs[0]: ("Completed", "Completed")})
    states = run_poll([(JobKind.TRAINING, n) for n in jobs], service).states()
    assert states[jobs[1]].outcome == Outcome.FAILED and "not found" in states[jobs[1]].failure_reason
    assert states[jobs[0]].confirmed and states[jobs[0]].outcome == Outcome.SUCCEEDED


def test_a_lagging_search_is_overruled_by_describe():
    name = names(1)[0]
    service = Service({name: ("InProgress", "Training")})
    service.hidden.add(name)  # not indexed yet, and nothing else runs: one Describe settles it
    states = run_poll([(JobKind.TRAINING, name)], service).states()
    assert states[name].outcome == Outcome.RUNNING and not states[name].confirmed


def test_processing_jobs_are_listed_by_shared_prefix_with_paging_and_early_stop():
    ours = names(150, prefix="preprocess")
    others = {f"preprocess-old{i:05d}": "Completed" for i in range(300)}
    service = Service({}, {**{n: "InProgress" for n in ours}, **others})
    states = run_poll([(JobKind.PROCESSING, n) for n in ours], service).states()
    assert all(s.outcome == Outcome.RUNNING for s in states.values())
    assert service.count("list_processing_jobs") == 2  # stops once all 150 are seen
    assert service.calls[0].params["NameContains"] == "preprocess-"
    for call in service.calls:
        validate(call)


def test_unrelated_api_errors_propagate_with_their_code():
    def invoke(call: Call) -> dict:
        raise SageMakerApiError("Search", "ValidationException", "bad expression", 400)

    with pytest.raises(SageMakerApiError, match="ValidationException: bad expression"):
        run_poll([(JobKind.TRAINING, "x")], invoke)


def test_denied_describe_propagates_after_a_denied_listing():
    def invoke(call: Call) -> dict:
        raise SageMakerApiError(call.method, "AccessDeniedException", "not allowed", 400)

    with pytest.raises(SageMakerApiError, match=r"describe_training_job.*AccessDeniedException"):
        run_poll([(JobKind.TRAINING, "x")], invoke)


@pytest.mark.parametrize(
    ("kind", "method", "code"),
    [
        (JobKind.TRAINING, "search", "AccessDeniedException"),
        (JobKind.PROCESSING, "list_processing_jobs", "UnauthorizedOperation"),
    ],
)
def test_a_denied_listing_falls_back_to_a_describe_per_job_and_is_skipped_later(kind, method, code):
    """IAM policies written for the Amazon provider grant Describe but often not Search / List."""
    jobs = names(3)
    if kind == JobKind.TRAINING:
        service = Service({n: ("InProgress", "Training") for n in jobs})
    else:
        service = Service({}, {n: "InProgress" for n in jobs})
    service.denied[method] = code
    poll = run_poll([(kind, n) for n in jobs], service)
    assert all(s.outcome == Outcome.RUNNING for s in poll.states().values())
    assert set(poll.denied) == {method} and code in poll.denied[method]
    describe = f"describe_{kind.value}_job"
    assert service.count(method) == 1 and service.count(describe) == 3
    service.calls.clear()
    again = run_poll([(kind, n) for n in jobs], service, skip=poll.denied)
    assert service.count(method) == 0 and service.count(describe) == 3 and not again.denied
    assert all(s.outcome == Outcome.RUNNING for s in again.states().values())


def test_mixed_case_processing_names_share_one_lower_case_prefix():
    upper, lower = names(2, prefix="Preprocess"), names(2, prefix="preprocess")
    service = Service({}, {n: "InProgress" for n in upper + lower})
    states = run_poll([(JobKind.PROCESSING, n) for n in upper + lower], service).states()
    assert all(s.outcome == Outcome.RUNNING for s in states.values())
    assert [c.params["NameContains"] for c in service.calls] == ["preprocess-"]  # not "": the account


def test_processing_listing_stops_after_a_few_pages_and_describes_the_rest():
    ours = names(3, prefix="prep")
    others = {f"prep-old{i:05d}": "Completed" for i in range(50 * MAX_LIST_PAGES * 100)}
    service = Service({}, {**others, **{n: "InProgress" for n in ours}})  # ours listed last
    states = run_poll([(JobKind.PROCESSING, n) for n in ours], service).states()
    assert service.count("list_processing_jobs") == MAX_LIST_PAGES
    assert service.count("describe_processing_job") == 3
    assert all(s.outcome == Outcome.RUNNING for s in states.values())


def test_states_are_kept_per_kind_and_a_name_of_two_kinds_is_refused():
    with pytest.raises(ValueError, match="unique in one status poll"):
        StatusPoll([(JobKind.TRAINING, "same"), (JobKind.PROCESSING, "SAME")])
    service = Service({"Job-A": ("InProgress", "Training")}, {"job-b": "Completed"})
    states = run_poll([(JobKind.TRAINING, "job-a"), (JobKind.PROCESSING, "Job-B")], service).states()
    assert states["job-a"].kind == JobKind.TRAINING and states["job-a"].outcome == Outcome.RUNNING
    assert states["Job-B"].kind == JobKind.PROCESSING and states["Job-B"].outcome == Outcome.SUCCEEDED


def _mixed_service(jobs: list[str]) -> Service:
    training = {n: ("Completed", "Completed") for n in jobs[:6]}
    training[jobs[6]] = ("Failed", "Failed")
    training[jobs[7]] = ("Stopped", "MaxRuntimeExceeded")
    return Service(training, {"prep-a": "Completed", "prep-b": "Failed"})  # jobs[8:] do not exist


@pytest.mark.parametrize(
    ("scenario", "denied"),
    [("completed", None), ("mixed", None), ("running", None), ("mixed", "search")],
)
def test_async_runner_matches_the_sync_one(scenario, denied):
    """Both runners drive the same planner: same states, same calls, on the same answers."""
    jobs = names(10)
    refs = [(JobKind.TRAINING, n) for n in jobs]

    def service() -> Service:
        if scenario == "completed":
            made = Service({n: ("Completed", "Completed") for n in jobs})
        elif scenario == "running":
            made = Service({n: ("InProgress", "Training") for n in jobs})
        else:
            made = _mixed_service(jobs)
        if denied:
            made.denied = {denied: "AccessDeniedException"}
        return made

    if scenario == "mixed":
        refs += [(JobKind.PROCESSING, "prep-a"), (JobKind.PROCESSING, "prep-b")]
    sync_service, async_service = service(), service()
    sync_poll = run_poll(refs, sync_service)

    async def invoke(call: Call) -> dict:
        return async_service(call)

    async_poll = asyncio.run(run_poll_async(refs, invoke))
    assert async_poll.states() == sync_poll.states()
    assert async_poll.denied == sync_poll.denied
    assert sorted(map(repr, async_service.calls)) == sorted(map(repr, sync_service.calls))
    json.dumps([s.summary for s in async_poll.states().values()])
    if scenario == "completed":
        assert all(s.confirmed and s.outcome == Outcome.SUCCEEDED for s in async_poll.states().values())
        assert async_service.count("search") == 1 and async_service.count("describe_training_job") == 10
    if scenario == "mixed":
        outcomes = {name: state.outcome for name, state in async_poll.states().items()}
        assert outcomes[jobs[6]] == outcomes[jobs[7]] == outcomes[jobs[9]] == Outcome.FAILED
        assert outcomes["prep-a"] == Outcome.SUCCEEDED and outcomes["prep-b"] == Outcome.FAILED


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("ValidationException", "Requested resource not found.", True),
        ("ValidationException", "Could not find requested job with name x", True),
        ("ResourceNotFound", "Job x does not exist", True),
        ("ValidationException", "1 validation error detected", False),
        ("ThrottlingException", "Rate exceeded", False),
    ],
)
def test_not_found_recognises_both_wordings(code, message, expected):
    assert is_not_found(code, message) is expected


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            "ValidationException",
            "The request was rejected because the training job is in status Completed.",
            True,
        ),
        ("ValidationException", "Could not find requested job with name x", True),
        ("ValidationException", "1 validation error detected: Value 'a_b' at 'trainingJobName'", False),
        ("AccessDeniedException", "not authorized to perform: sagemaker:StopTrainingJob", False),
    ],
)
def test_only_an_ended_or_missing_job_counts_as_not_stoppable(code, message, expected):
    assert is_not_stoppable(code, message) is expected


def test_access_denied_codes():
    assert is_access_denied("AccessDeniedException") and is_access_denied("UnauthorizedOperation")
    assert not is_access_denied("ValidationException")


def test_backoff_grows_with_jitter_up_to_the_maximum_and_never_gives_up():
    rng = random.Random(1)
    delays = [poll_delay(elapsed, 10, 300, rng=rng) for elapsed in range(0, 28 * 86400, 3600)]
    assert len(delays) > 60  # far beyond the Amazon provider's 60-poll limit: still a delay
    assert all(8 <= d <= 300 for d in delays)
    assert poll_delay(0, 10, 300, rng=rng) <= 12
    assert poll_delay(86400, 10, 300, rng=rng) == pytest.approx(300, rel=0.2)
    assert len({round(poll_delay(0, 10, 300, rng=rng), 6) for _ in range(20)}) > 1  # jittered
    assert [poll_delay(t, 10, 300, jitter=0) for t in (0, 200, 1000, 10**6)] == [10, 20, 100, 300]
    assert poll_delay(0, 60, 30, jitter=0) == 60  # a maximum below the minimum is the minimum


def test_throttling_and_server_errors_are_transient():
    assert SageMakerApiError("Search", "ThrottlingException", "Rate exceeded", 400).transient
    assert SageMakerApiError("Search", "InternalFailure", "oops", 500).transient
    assert not SageMakerApiError("Search", "ValidationException", "bad", 400).transient
