from __future__ import annotations

import pytest

from airflow_sm_provider.local.errors import ValidationException
from airflow_sm_provider.local.search import paginate, resolve, run_search

JOBS = [
    {
        "TrainingJobName": "Alpha-1",
        "LastModifiedTime": 300.0,
        "CreationTime": 1_700_000_000.0,
        "HyperParameters": {"lr": "0.05", "epochs": "10"},
        "FinalMetricDataList": [{"MetricName": "accuracy", "Value": 0.91, "Timestamp": 5.0}],
        "Tags": [{"Key": "dag-run", "Value": "r1"}, {"Key": "team.name", "Value": "ml"}],
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/cat/train"}}},
            {"ChannelName": "test", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/dog/test"}}},
        ],
        "EnableManagedSpotTraining": True,
    },
    {
        "TrainingJobName": "beta-2",
        "LastModifiedTime": 100.0,
        "CreationTime": 1_800_000_000.0,
        "HyperParameters": {"lr": "0.5"},
        "FinalMetricDataList": [{"MetricName": "accuracy", "Value": 0.7, "Timestamp": 5.0}],
        "Tags": [{"Key": "dag-run", "Value": "r2"}],
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/dog/train"}}}
        ],
    },
    {"TrainingJobName": "gamma-3", "LastModifiedTime": 200.0, "CreationTime": 1_750_000_000.0},
]

COMPONENTS = [
    {
        "TrialComponentName": "exp-run-a",
        "LastModifiedTime": 1.0,
        "Parameters": {"lr": {"NumberValue": 0.01}, "SageMaker.ImageUri": {"StringValue": "img:1"}},
        "Metrics": [{"MetricName": "loss", "Max": 2.0, "Min": 0.1, "Last": 0.1}],
        "Parents": [{"TrialName": "group-1", "ExperimentName": "exp"}],
        "Tags": [{"Key": "sagemaker:trial-component-source", "Value": "run"}],
    },
    {
        "TrialComponentName": "exp-run-b",
        "LastModifiedTime": 2.0,
        "Parameters": {"lr": {"NumberValue": 0.1}},
        "Metrics": [{"MetricName": "loss", "Max": 5.0, "Min": 1.5, "Last": 1.5}],
        "Parents": [],
        "Tags": [],
    },
]


def names(response: dict, key: str = "TrainingJob") -> list[str]:
    return [r[key][f"{key}Name"] for r in response["Results"]]


def search_jobs(expression: dict | None = None, **request) -> dict:
    if expression is not None:
        request["SearchExpression"] = expression
    return run_search(JOBS, {"Resource": "TrainingJob", **request})


def search_components(expression: dict) -> list[str]:
    response = run_search(
        COMPONENTS, {"Resource": "ExperimentTrialComponent", "SearchExpression": expression}
    )
    return names(response, "TrialComponent")


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"Name": "TrainingJobName", "Operator": "Equals", "Value": "alpha-1"}, ["Alpha-1"]),
        ({"Name": "TrainingJobName", "Value": "BETA-2"}, ["beta-2"]),  # no Operator: Equals
        ({"Name": "TrainingJobName", "Operator": "NotEquals", "Value": "beta-2"}, ["Alpha-1", "gamma-3"]),
        ({"Name": "TrainingJobName", "Operator": "Contains", "Value": "ta-"}, ["beta-2"]),
        ({"Name": "TrainingJobName", "Operator": "In", "Value": "gamma-3, beta-2"}, ["gamma-3", "beta-2"]),
        ({"Name": "Tags.dag-run", "Operator": "Equals", "Value": "r2"}, ["beta-2"]),
        ({"Name": "Tags.team.name", "Operator": "Equals", "Value": "ml"}, ["Alpha-1"]),
        ({"Name": "Tags.dag-run", "Operator": "Exists"}, ["Alpha-1", "beta-2"]),
        ({"Name": "Tags.dag-run", "Operator": "NotExists"}, ["gamma-3"]),
        ({"Name": "Metrics.accuracy", "Operator": "GreaterThan", "Value": "0.9"}, ["Alpha-1"]),
        ({"Name": "HyperParameters.lr", "Operator": "LessThan", "Value": "0.5"}, ["Alpha-1"]),
        (
            {"Name": "HyperParameters.lr", "Operator": "LessThanOrEqualTo", "Value": "0.5"},
            ["Alpha-1", "beta-2"],
        ),
        (
            {"Name": "CreationTime", "Operator": "GreaterThan", "Value": "2024-01-01T00:00:00"},
            ["gamma-3", "beta-2"],
        ),
        ({"Name": "EnableManagedSpotTraining", "Operator": "Equals", "Value": "true"}, ["Alpha-1"]),
        ({"Name": "TrainingJobName", "Operator": "GreaterThan", "Value": "a"}, []),  # text: no order
    ],
)
def test_filter_operators(flt: dict, expected: list[str]) -> None:
    assert names(search_jobs({"Filters": [flt]})) == expected


def test_integer_value_compares_decimal_hyperparameters_as_integers() -> None:
    """The Filter docs: an integer Value makes decimal hyperparameters compare as integers."""
    found = search_jobs({"Filters": [{"Name": "HyperParameters.lr", "Operator": "Equals", "Value": "0"}]})
    assert names(found) == []  # Equals stays a text comparison
    found = search_jobs({"Filters": [{"Name": "HyperParameters.lr", "Operator": "LessThan", "Value": "1"}]})
    assert names(found) == ["Alpha-1", "beta-2"]


def test_nested_filters_need_one_element_satisfying_all() -> None:
    nested = {
        "NestedPropertyName": "InputDataConfig",
        "Filters": [
            {"Name": "InputDataConfig.ChannelName", "Operator": "Equals", "Value": "train"},
            {"Name": "InputDataConfig.DataSource.S3DataSource.S3Uri", "Operator": "Contains", "Value": "dog"},
        ],
    }
    assert names(search_jobs({"NestedFilters": [nested]})) == ["beta-2"]


def test_or_and_sub_expressions() -> None:
    expression = {
        "Operator": "Or",
        "Filters": [{"Name": "TrainingJobName", "Value": "gamma-3"}],
        "SubExpressions": [
            {
                "Filters": [
                    {"Name": "Tags.dag-run", "Operator": "Exists"},
                    {"Name": "Metrics.accuracy", "Operator": "LessThan", "Value": "0.8"},
                ]
            }
        ],
    }
    assert names(search_jobs(expression)) == ["gamma-3", "beta-2"]


def test_trial_component_paths() -> None:
    assert search_components(
        {"Filters": [{"Name": "Metrics.loss.Max", "Operator": "GreaterThan", "Value": "3"}]}
    ) == ["exp-run-b"]
    assert search_components(
        {"Filters": [{"Name": "Metrics.loss", "Operator": "LessThan", "Value": "1"}]}
    ) == ["exp-run-a"]
    assert search_components(
        {"Filters": [{"Name": "Parameters.lr", "Operator": "GreaterThan", "Value": "0.05"}]}
    ) == ["exp-run-b"]
    assert search_components({"Filters": [{"Name": "Parameters.SageMaker.ImageUri", "Value": "img:1"}]}) == [
        "exp-run-a"
    ]
    assert search_components(
        {
            "Filters": [
                {"Name": "TrialComponentName", "Value": "EXP-RUN-A"},
                {"Name": "Parents.TrialName", "Value": "group-1"},
                {"Name": "Tags.sagemaker:trial-component-source", "Value": "run"},
            ]
        }
    ) == ["exp-run-a"]
    assert search_components(
        {"Filters": [{"Name": "TrialComponent.TrialComponentName", "Value": "exp-run-b"}]}
    ) == ["exp-run-b"]


def test_results_are_wrapped_in_the_search_record_member() -> None:
    response = run_search(COMPONENTS, {"Resource": "ExperimentTrialComponent"})
    assert set(response["Results"][0]) == {"TrialComponent"}
    assert response["TotalHits"] == {"Value": 2, "Relation": "EqualTo"}
    assert run_search([], {"Resource": "Endpoint"})["Results"] == []


def test_sort_defaults_to_last_modified_descending_and_missing_values_go_last() -> None:
    assert names(search_jobs()) == ["Alpha-1", "gamma-3", "beta-2"]
    assert names(search_jobs(SortBy="TrainingJobName", SortOrder="Ascending")) == [
        "Alpha-1",
        "beta-2",
        "gamma-3",
    ]
    assert names(search_jobs(SortBy="Metrics.accuracy", SortOrder="Ascending")) == [
        "beta-2",
        "Alpha-1",
        "gamma-3",
    ]
    assert names(search_jobs(SortBy="Metrics.accuracy", SortOrder="Descending")) == [
        "Alpha-1",
        "beta-2",
        "gamma-3",
    ]


def test_paging_walks_every_result_once() -> None:
    seen, token, pages = [], None, 0
    while True:
        request = {"MaxResults": 2, "SortBy": "TrainingJobName", "SortOrder": "Ascending"}
        if token:
            request["NextToken"] = token
        response = search_jobs(**request)
        seen.extend(names(response))
        pages += 1
        token = response.get("NextToken")
        if not token:
            break
    assert seen == ["Alpha-1", "beta-2", "gamma-3"]
    assert pages == 2


def test_default_page_size_is_ten() -> None:
    page, token = paginate(list(range(25)), 10, None, "f")
    assert page == list(range(10))
    assert token is not None


def test_next_token_is_bound_to_its_query() -> None:
    token = search_jobs(MaxResults=1)["NextToken"]
    with pytest.raises(ValidationException, match="different request"):
        search_jobs(
            {"Filters": [{"Name": "TrainingJobName", "Operator": "Exists"}]}, MaxResults=1, NextToken=token
        )
    with pytest.raises(ValidationException, match="malformed"):
        search_jobs(MaxResults=1, NextToken="not-a-token")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({}, "at least one"),
        ({"Filters": [{"Name": "TrainingJobName", "Operator": "Equals"}]}, "requires a Value"),
        ({"Filters": [{"Name": "TrainingJobName"}]}, "Operator or a Value"),
        (
            {
                "Filters": [
                    {"Name": "TrainingJobName", "Operator": "Contains", "Value": "a"},
                    {"Name": "TrainingJobArn", "Operator": "Contains", "Value": "b"},
                ]
            },
            "'CONTAINS' operator usage limit of 1 exceeded",
        ),
    ],
)
def test_service_rules(expression: dict, message: str) -> None:
    with pytest.raises(ValidationException, match=message):
        search_jobs(expression)


def test_experiment_properties_allow_several_contains() -> None:
    records = [{"TrialComponentName": "abc", "DisplayName": "xyz", "LastModifiedTime": 1.0}]
    response = run_search(
        records,
        {
            "Resource": "ExperimentTrialComponent",
            "SearchExpression": {
                "Filters": [
                    {"Name": "TrialComponentName", "Operator": "Contains", "Value": "b"},
                    {"Name": "DisplayName", "Operator": "Contains", "Value": "y"},
                ]
            },
        },
    )
    assert len(response["Results"]) == 1


def test_resolve_fans_out_over_lists() -> None:
    record = {"Parents": [{"TrialName": "a"}, {"TrialName": "b"}]}
    assert resolve(record, "Parents.TrialName") == ["a", "b"]
    assert resolve(record, "Parents.Missing") == []
