"""``_compat`` gives the installed Airflow's own classes, whichever major version it is."""

from __future__ import annotations

import configparser
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from airflow_sm_provider import _compat
from airflow_sm_provider.operators.jobs import TrainingJobOperator
from airflow_sm_provider.triggers.jobs import JobStatusTrigger

OPTION = ("operators", "default_deferrable")
ENV = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"


def test_major_version_flag_matches_the_installed_airflow() -> None:
    major = int(version("apache-airflow").split(".")[0])
    assert _compat.AIRFLOW_V3 is (major >= 3)


def test_authoring_names_build_a_dag_around_our_operator() -> None:
    params = {"epochs": _compat.Param(3, type="integer")}
    with _compat.DAG(dag_id="compat", schedule=None, params=params) as dag:

        @_compat.task
        def plan() -> dict:
            return {}

        plan() >> TrainingJobOperator(task_id="train", config={}, aws_conn_id=None)
    assert set(dag.task_ids) == {"plan", "train"}
    assert dag.params["epochs"] == 3


def test_param_validation_error_is_what_params_raise() -> None:
    with pytest.raises(_compat.ParamValidationError):
        _compat.Param(3, type="integer", minimum=1).resolve(0)


def test_task_deferred_is_what_defer_raises() -> None:
    op = TrainingJobOperator(task_id="train", config={}, aws_conn_id=None)
    trigger = JobStatusTrigger(jobs=[{"kind": "training", "name": "job"}], aws_conn_id=None)
    with pytest.raises(_compat.TaskDeferred) as info:
        op.defer(trigger=trigger, method_name="execute_complete")
    assert info.value.trigger is trigger


def test_lazy_names_resolve_on_first_access_and_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(vars(_compat), "DAG", raising=False)
    assert "DAG" not in vars(_compat)
    dag_class = _compat.DAG
    assert vars(_compat)["DAG"] is dag_class
    assert dag_class.__module__.startswith("airflow.sdk" if _compat.AIRFLOW_V3 else "airflow.models")


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchName"):
        _compat.NoSuchName  # noqa: B018


@pytest.fixture
def cfg_option(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No env override and no airflow.cfg value for the option; the live config is restored after."""
    monkeypatch.delenv(ENV, raising=False)
    parser = configparser.ConfigParser
    old = parser.get(_compat.conf, *OPTION) if parser.has_option(_compat.conf, *OPTION) else None
    if old is not None:
        parser.remove_option(_compat.conf, *OPTION)
    yield
    if parser.has_option(_compat.conf, *OPTION):
        parser.remove_option(_compat.conf, *OPTION)
    if old is not None:
        parser.set(_compat.conf, *OPTION, old)


def set_cfg(value: str) -> None:
    if not configparser.ConfigParser.has_section(_compat.conf, OPTION[0]):
        configparser.ConfigParser.add_section(_compat.conf, OPTION[0])
    configparser.ConfigParser.set(_compat.conf, *OPTION, value)


def test_operators_defer_when_the_deployment_is_silent(cfg_option) -> None:
    assert _compat.default_deferrable() is True


@pytest.mark.parametrize("value", ["False", "True"])
def test_an_explicit_setting_wins(cfg_option, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV, value)
    assert _compat.default_deferrable() is (value == "True")


def test_airflow_cfg_false_turns_deferral_off(cfg_option) -> None:
    set_cfg("False")
    assert _compat.default_deferrable() is False


def test_trigger_bases_and_xcom_are_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the triggerer and the UI need these; DAG parsing must not pay for their import."""
    names = ("BaseTrigger", "TriggerEvent", "XCom")
    for name in names:
        monkeypatch.delitem(vars(_compat), name, raising=False)
        assert name in _compat._LAZY and name not in vars(_compat)
    from airflow_sm_provider._compat import BaseTrigger, TriggerEvent, XCom  # as triggers/jobs.py does

    assert [vars(_compat)[name] for name in names] == [BaseTrigger, TriggerEvent, XCom]


def test_lazy_trigger_bases_are_the_triggerers_own() -> None:
    from airflow.triggers.base import BaseTrigger, TriggerEvent

    assert _compat.BaseTrigger is BaseTrigger and _compat.TriggerEvent is TriggerEvent
    assert issubclass(JobStatusTrigger, BaseTrigger)
