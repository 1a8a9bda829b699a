"""deploy/observability: the Grafana dashboard and the Prometheus alert rules use only metrics LCE
defines (read from the code's metric definitions, plus the queue and executor-registry gauges), with
labels those metrics have, in PromQL that parses."""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "deploy" / "observability"
PACKAGES = ("common", "gateway", "session_service", "execution_service", "executor")
# Served by execution_service from its registry of executors and its queues: metric name -> labels.
REGISTRY_GAUGES = {
    "lce_queue_depth": ("queue",),
    "lce_queue_oldest_seconds": ("queue",),
    "lce_executors_alive": ("pool", "sandbox_mode"),
    "lce_executor_slots": ("pool", "state"),
}
# What each kind of metric is exposed as: the suffixes of its series, and labels it gains.
_SERIES = {
    "Counter": (("_total", "_created"), ()),
    "Gauge": (("",), ()),
    "Histogram": (("_bucket", "_sum", "_count", "_created"), ("le",)),
    "Summary": (("_sum", "_count", "_created"), ()),
}


@functools.cache
def defined_metrics() -> dict[str, set[str]]:
    """Every series name the code can expose (Counter("x", ..., ["a"]) gives x_total ...) -> its labels."""
    series: dict[str, set[str]] = {name: set(labels) for name, labels in REGISTRY_GAUGES.items()}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SERIES):
                    continue
                if not (node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                    continue
                labels = _labels_of(node)
                suffixes, extra = _SERIES[node.func.id]
                for suffix in suffixes:
                    series[node.args[0].value + suffix] = {*labels, *extra}
    return series


def _labels_of(call: ast.Call) -> set[str]:
    given = (
        call.args[2] if len(call.args) > 2 else next((k.value for k in call.keywords if k.arg == "labelnames"), None)
    )
    if isinstance(given, ast.List | ast.Tuple):
        return {element.value for element in given.elts if isinstance(element, ast.Constant)}
    return set()


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every rule and every dashboard query."""
    found = [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    for panel in dashboard_panels(dashboard()["panels"]):
        found += [(f"panel {panel['title']}", target["expr"]) for target in panel.get("targets", [])]
    return found


EXPRESSIONS = expressions()


# --- PromQL, structurally: a recursive-descent parser of the language's grammar (no evaluation) -------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<duration>(?:\d+(?:ms|[smhdwy]))+|\$__\w+)
    | (?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=])
    | (?P<punct>[(){}\[\],:])
    )""",
    re.VERBOSE,
)
AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "group"}
FUNCTIONS = {
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "absent", "absent_over_time",
    "vector", "scalar", "time", "clamp_min", "clamp_max", "abs", "ceil", "floor", "round", "sort", "sort_desc",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time", "changes", "resets",
    "label_replace", "timestamp",
}  # fmt: skip
KEYWORD_OPERATORS = {"and", "or", "unless"}
MATCHERS = {"=", "!=", "=~", "!~"}
BINARY = {"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<="}


class PromQLError(ValueError):
    pass


def tokens(expr: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(expr.rstrip()):
        matched = _TOKEN.match(expr, position)
        if matched is None or matched.end() == position:
            raise PromQLError(f"cannot read {expr[position:]!r}")
        kind = matched.lastgroup
        assert kind is not None
        found.append((kind, matched.group(kind)))
        position = matched.end()
    return found


class Parser:
    def __init__(self, expr: str) -> None:
        self.tokens = tokens(expr)
        self.at = 0
        self.metrics: list[tuple[str, set[str]]] = []  # each selector's metric and the labels it matches on

    def parse(self) -> None:
        self.expression()
        if self.at != len(self.tokens):
            raise PromQLError(f"unexpected {self.peek()[1]!r}")

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        have_kind, have = self.peek()
        if (value is not None and have != value) or (kind is not None and have_kind != kind) or have_kind == "end":
            raise PromQLError(f"expected {value or kind}, found {have!r}")
        self.at += 1
        return have

    def expression(self) -> None:
        self.unary()
        while self.peek()[1] in BINARY or self.peek()[1] in KEYWORD_OPERATORS:
            self.take()
            if self.peek()[1] == "bool":
                self.take()
            if self.peek()[1] in ("on", "ignoring"):
                self.take()
                self.label_list()
            self.unary()

    def unary(self) -> None:
        if self.peek()[1] in ("-", "+"):
            self.take()
        self.primary()
        if self.peek()[1] == "[":
            self.take("[")
            self.take(kind="duration")
            self.take("]")

    def primary(self) -> None:
        kind, value = self.peek()
        if kind in ("number", "string"):
            self.take()
        elif value == "(":
            self.take("(")
            self.expression()
            self.take(")")
        elif value in AGGREGATIONS:
            self.aggregation()
        elif kind == "name" and value in FUNCTIONS:
            self.take()
            self.arguments()
        elif kind == "name" and value not in KEYWORD_OPERATORS:
            self.selector()
        else:
            raise PromQLError(f"unexpected {value!r}")

    def aggregation(self) -> None:
        self.take()
        if self.peek()[1] in ("by", "without"):
            self.take()
            self.label_list()
        self.arguments()
        if self.peek()[1] in ("by", "without"):
            self.take()
            self.label_list()

    def arguments(self) -> None:
        self.take("(")
        self.expression()
        while self.peek()[1] == ",":
            self.take(",")
            self.expression()
        self.take(")")

    def label_list(self) -> None:
        self.take("(")
        self.take(kind="name")
        while self.peek()[1] == ",":
            self.take(",")
            self.take(kind="name")
        self.take(")")

    def selector(self) -> None:
        metric, labels = self.take(kind="name"), set()
        if self.peek()[1] == "{":
            self.take("{")
            while self.peek()[1] != "}":
                labels.add(self.take(kind="name"))
                if self.take(kind="op") not in MATCHERS:
                    raise PromQLError("a label matcher is one of = != =~ !~")
                self.take(kind="string")
                if self.peek()[1] != "}":
                    self.take(",")
            self.take("}")
        self.metrics.append((metric, labels))


def parsed(expr: str) -> Parser:
    parser = Parser(expr)
    parser.parse()
    return parser


# --- the tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "expr"), EXPRESSIONS, ids=[where for where, _ in EXPRESSIONS])
def test_every_expression_parses_and_uses_defined_metrics_and_labels(where: str, expr: str) -> None:
    metrics = defined_metrics()
    selectors = parsed(expr).metrics
    assert selectors, f"{where} reads no metric"
    for metric, labels in selectors:
        assert metric in metrics, f"{where}: {metric} is no metric LCE defines"
        assert labels <= metrics[metric], f"{where}: {metric} has no label {sorted(labels - metrics[metric])}"


@pytest.mark.parametrize(
    "broken",
    [
        "sum(rate(lce_x_total[5m])",  # a parenthesis left open
        'lce_x_total{status="500"',  # a selector left open
        "rate(lce_x_total[5q])",  # no such duration
        "sum by (route (lce_x_total)",  # a label list left open
        "lce_x_total lce_y_total",  # two operands, no operator
        'lce_x_total{status=="500"}',  # no such matcher
        "lce_x_total >",  # an operator without its right side
    ],
)
def test_the_parser_refuses_broken_promql(broken: str) -> None:
    with pytest.raises(PromQLError):
        parsed(broken)


def test_the_metrics_read_from_the_code_are_the_ones_it_serves() -> None:
    metrics = defined_metrics()
    assert metrics["lce_gateway_requests_total"] == {"route", "method", "status"}
    assert metrics["lce_gateway_request_seconds_bucket"] == {"route", "method", "le"}
    assert metrics["lce_executor_sandbox_info"] == {"mode"}
    assert metrics["lce_executions_finished_total"] == {"language", "status", "reason"}


def test_the_alerts_asked_for_are_there_each_with_a_severity_and_a_summary() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for required in ("LCEQueueStalled", "LCENoExecutorAlive", "LCEGatewayErrors", "LCESandboxUnconfined"):
        assert required in rules
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"]["summary"], name
    assert 'mode="none"' in rules["LCESandboxUnconfined"]["expr"]


def test_the_dashboard_is_grafana_s_shape() -> None:
    board = dashboard()
    assert board["templating"]["list"][0] == {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
    }
    panels = list(dashboard_panels(board["panels"]))
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert [target["refId"] for target in panel["targets"]] == [
                chr(ord("A") + i) for i in range(len(panel["targets"]))
            ]
