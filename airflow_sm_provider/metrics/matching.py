"""Applies SageMaker ``MetricDefinitions`` to log lines, bounded in time: the one home of matching.

Theory of operation. A definition is a name and a regex; as SageMaker does, a line yields a
point for a definition when the regex matches in it, and the value is the regex's first capture
group parsed as a float (``nan``, ``inf``, ``-inf`` and ``1e-3`` included). Definitions carry no
step, so a second regex (``step_regex``, default ``epoch[=: ]+(\\d+)``) is matched on the same
line; where it does not match, the step is the metric's order in the stream (0, 1, 2, ...).

Speed: instead of one call per line and definition, each regex runs once over a whole chunk of
lines joined with ``\\n`` (``MULTILINE``, so ``^``/``$`` still anchor at line ends), through
``split()``, which builds no match objects; counting the ``\\n`` between matches maps each
match back to its line. A match must not span lines: one that does is thrown away and the
lines it covered are searched one by one, so the result equals per-line matching (only a
lookbehind peeking across the line start can still see the ``\\n``). The step regex runs only
over the lines that hold a metric. Patterns are compiled with the ``regex`` package (its
default V0 behaviour is ``re``'s), which is also what SageMaker-style patterns such as
``\\p{L}`` need.

Time bound: every pass over a chunk is first made by a guard (see :func:`_compile`) under the
``regex`` package's ``timeout=``, which bounds a whole pass. A definition that times out is
disabled from then on and reported once, by name, through :meth:`LineMatcher.take_disabled`;
the others carry on. So a catastrophic regex such as ``(a|aa)+$`` costs at most one timeout
per definition over a whole job's logs.

Two callers share this code: the local engine feeds lines as a job prints them
(:meth:`LineMatcher.feed` with one line or a few), and the metric collector matches whole
CloudWatch Logs pages (:func:`match_lines`). Pure: no AWS, no Airflow.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import regex

# botocore's sagemaker model: MetricDefinitionList max 40; MetricName 1-255, MetricRegex 1-500.
MAX_DEFINITIONS = 40
NAME_LENGTH = (1, 255)
REGEX_LENGTH = (1, 500)
DEFAULT_STEP_REGEX = r"epoch[=: ]+(\d+)"
# Seconds one regex may spend on one chunk; an ordinary regex needs about 5 ms per 10,000 lines.
DEFAULT_TIMEOUT_SECONDS = 1.0
CHUNK_LINES = 10_000
STEP_REGEX_NAME = "step_regex"


class MetricDefinitionError(ValueError):
    """Raised when a metric definition or the step regex breaks a rule; names field and rule."""


@dataclass(frozen=True)
class MetricDefinition:
    """One SageMaker metric definition: ``Name`` and ``Regex``."""

    name: str
    regex: str


@dataclass(frozen=True)
class DisabledDefinition:
    """A definition switched off because a match ran past its time budget."""

    name: str
    reason: str


@dataclass
class Matches:
    """Matched points, column by column (cheap for a million lines); ``line`` counts from 0."""

    metric: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    line: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.metric)

    def extend(self, other: Matches) -> None:
        self.metric.extend(other.metric)
        self.value.extend(other.value)
        self.step.extend(other.step)
        self.line.extend(other.line)


def _check_pattern(field_name: str, pattern: Any, lengths: tuple[int, int]) -> list[str]:
    if not isinstance(pattern, str):
        return [f"{field_name}: must be a string"]
    problems = []
    if not lengths[0] <= len(pattern) <= lengths[1]:
        problems.append(f"{field_name}: length must be {lengths[0]}-{lengths[1]} characters")
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        problems.append(f"{field_name}: not a valid regular expression ({exc})")
    else:
        if compiled.groups < 1:
            problems.append(f"{field_name}: needs a capture group (its first group is the value)")
    return problems


def validate_definitions(definitions: Iterable[Mapping[str, Any]]) -> list[MetricDefinition]:
    """Checks ``MetricDefinitions`` as SageMaker would; all problems at once in one error."""
    items = list(definitions)
    problems = []
    if len(items) > MAX_DEFINITIONS:
        problems.append(f"MetricDefinitions: at most {MAX_DEFINITIONS} definitions, got {len(items)}")
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"MetricDefinitions[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping with Name and Regex")
            continue
        name = item.get("Name")
        if not isinstance(name, str) or not NAME_LENGTH[0] <= len(name) <= NAME_LENGTH[1]:
            problems.append(f"{where}.Name: must be a string of {NAME_LENGTH[0]}-{NAME_LENGTH[1]} characters")
        elif name in seen:
            problems.append(f"{where}.Name: {name!r} is defined twice")
        else:
            seen.add(name)
        problems.extend(_check_pattern(f"{where}.Regex", item.get("Regex"), REGEX_LENGTH))
    if problems:
        raise MetricDefinitionError("; ".join(problems))
    return [MetricDefinition(item["Name"], item["Regex"]) for item in items]


def _parse_floats(texts: list[str | None]) -> list[float | None]:
    """Floats of the captured texts; None where one does not parse (SageMaker skips those)."""
    try:
        return list(map(float, texts))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        out: list[float | None] = []
        for text in texts:
            try:
                out.append(float(text))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                out.append(None)
        return out


_Pair = tuple[regex.Pattern[str], regex.Pattern[str]]


def _compile(pattern: str, field_name: str) -> _Pair:
    """The pattern, and its guard: the same search that never succeeds, so it runs with a timeout.

    ``regex``'s ``timeout=`` costs about 4 us per match found, which would halve throughput;
    the guard finds nothing (``(*SKIP)(*FAIL)`` resumes after each match, as ``finditer`` does),
    so it pays nothing per match yet does the same work. Only a chunk the guard finished
    within the budget is then matched for real, without the timeout.
    """
    plain = regex.compile(pattern, regex.MULTILINE)
    # In verbose mode a trailing "# comment" would swallow the closing parenthesis.
    end = "\n)" if plain.flags & regex.VERBOSE else ")"
    try:
        guard = regex.compile(f"(?:{pattern}{end}(*SKIP)(*FAIL)", regex.MULTILINE)
    except regex.error as exc:
        raise MetricDefinitionError(f"{field_name}: cannot be bounded in time ({exc})") from None
    return plain, guard


class LineMatcher:
    """Stateful matcher over one stream of lines (one log stream of a job).

    ``definitions`` are ``MetricDefinitions`` entries (``{"Name": ..., "Regex": ...}``),
    validated here, so a bad one fails before any line is read.
    Feed it lines in order, a few or thousands at a time; line numbers and the fallback step
    order continue across calls. ``unparsed`` counts per metric the matches whose first group
    was not a float, so nothing is dropped without a trace.
    """

    def __init__(
        self,
        definitions: Iterable[Mapping[str, Any]],
        *,
        step_regex: str | None = DEFAULT_STEP_REGEX,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.definitions = validate_definitions(definitions)
        if step_regex is not None:
            problems = _check_pattern(STEP_REGEX_NAME, step_regex, REGEX_LENGTH)
            if problems:
                raise MetricDefinitionError("; ".join(problems))
        self._patterns = {
            d.name: _compile(d.regex, f"MetricDefinitions[{i}].Regex") for i, d in enumerate(self.definitions)
        }
        self._step = _compile(step_regex, STEP_REGEX_NAME) if step_regex else None
        self._timeout = timeout
        self._lines_seen = 0
        self._order = dict.fromkeys(self._patterns, 0)
        self.disabled: dict[str, str] = {}
        self._unreported: list[DisabledDefinition] = []
        self.unparsed = dict.fromkeys(self._patterns, 0)

    def take_disabled(self) -> list[DisabledDefinition]:
        """Definitions disabled since the last call: report each once."""
        out, self._unreported = self._unreported, []
        return out

    def _disable(self, name: str) -> None:
        reason = f"matching ran past its time budget of {self._timeout:g} s per chunk; disabled"
        self.disabled[name] = reason
        self._unreported.append(DisabledDefinition(name, reason))

    def _first_matches(
        self, name: str, pattern: _Pair, lines: Sequence[str], text: str, newlines: int
    ) -> tuple[list[int], list[str | None]]:
        """Per line, the first match's group 1: (line indexes in the chunk, texts).

        ``text`` is ``"\\n".join(lines)`` and ``newlines`` its count of ``"\\n"`` (counted once a chunk).
        """
        plain, guard = pattern
        try:
            guard.search(text, timeout=self._timeout)
        except TimeoutError:
            self._disable(name)
            return [], []
        # Usual case, at C speed: split() hands back the text between matches and the groups;
        # counting the "\n" between matches gives each match's line. If every "\n" is found
        # between matches, no match spans lines; if no line holds two, each is its line's first.
        pieces = plain.split(text)
        stride = plain.groups + 1
        between, groups = pieces[0::stride], pieces[1::stride]
        idx = list(itertools.accumulate(map(str.count, between[:-1], itertools.repeat("\n"))))
        found_newlines = (idx[-1] if idx else 0) + between[-1].count("\n")
        if found_newlines == newlines and len(set(idx)) == len(idx):
            return idx, groups
        # No timeout needed: the guard just did this same search within the budget.
        found = [(m.start(), m.end(), m.group(1)) for m in plain.finditer(text)]
        begins, ends, firsts = zip(*found, strict=True)
        starts = _line_starts(lines)
        idx = [a - 1 for a in map(functools.partial(bisect.bisect_right, starts), begins)]
        return self._first_per_line(name, plain, lines, starts, idx, ends, firsts)

    def _first_per_line(
        self,
        name: str,
        plain: regex.Pattern[str],
        lines: Sequence[str],
        starts: list[int],
        idx: list[int],
        ends: Sequence[int],
        groups: Sequence[str | None],
    ) -> tuple[list[int], list[str | None]]:
        """The rare case: keeps each line's first match; lines a match spans are searched alone."""
        out_idx: list[int] = []
        out_groups: list[str | None] = []
        last = -1
        for i, end, group in zip(idx, ends, groups, strict=True):
            if i <= last:
                continue
            if end < starts[i + 1]:
                out_idx.append(i)
                out_groups.append(group)
                last = i
                continue
            j = bisect.bisect_right(starts, end) - 1
            for k in range(i, min(j, len(lines) - 1) + 1):
                try:
                    one = plain.search(lines[k], timeout=self._timeout)
                except TimeoutError:
                    self._disable(name)
                    return out_idx, out_groups
                if one is not None:
                    out_idx.append(k)
                    out_groups.append(one.group(1))
            last = j
        return out_idx, out_groups

    def feed(self, lines: Sequence[str]) -> Matches:
        """Matches a chunk of lines that follows the lines fed before."""
        out = Matches()
        if not lines:
            return out
        text = "\n".join(lines)
        newlines = text.count("\n")
        base = self._lines_seen
        self._lines_seen += len(lines)
        found: list[tuple[str, list[int], list[float]]] = []
        for name, pattern in self._patterns.items():
            if name in self.disabled:
                continue
            idx, texts = self._first_matches(name, pattern, lines, text, newlines)
            values = _parse_floats(texts)
            if None in values:
                self.unparsed[name] += values.count(None)
                idx = [i for i, v in zip(idx, values, strict=True) if v is not None]
                values = [v for v in values if v is not None]
            found.append((name, idx, values))  # type: ignore[arg-type]
        steps = self._steps(lines, sorted(set().union(*(idx for _, idx, _ in found))))
        for name, idx, values in found:
            order = self._order[name]
            out.metric.extend([name] * len(idx))
            out.value.extend(values)
            out.step.extend(map(steps.get, idx, range(order, order + len(idx))))
            out.line.extend(map(base.__add__, idx))
            self._order[name] = order + len(idx)
        return out

    def _steps(self, lines: Sequence[str], matched: list[int]) -> dict[int, int]:
        """Step per line, from the step regex, run over only the lines that hold a metric."""
        if self._step is None or STEP_REGEX_NAME in self.disabled or not matched:
            return {}
        sub = [lines[i] for i in matched]
        text = "\n".join(sub)
        idx, texts = self._first_matches(STEP_REGEX_NAME, self._step, sub, text, text.count("\n"))
        lines_of = map(matched.__getitem__, idx)
        try:
            return dict(zip(lines_of, map(int, texts), strict=True))  # type: ignore[arg-type]
        except (TypeError, ValueError):  # a step that is no integer: that line falls back to order
            return {
                line: int(t)
                for line, t in zip(map(matched.__getitem__, idx), texts, strict=True)
                if _is_int(t)
            }


def _is_int(text: str | None) -> bool:
    """Whether a step regex's capture is an integer (``int()`` accepts it)."""
    try:
        int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _line_starts(lines: Sequence[str]) -> list[int]:
    """Offsets of each line in ``"\n".join(lines)``, plus the end (one past the last "\n")."""
    return [0, *itertools.accumulate(len(line) + 1 for line in lines)]


@dataclass
class MatchResult:
    """Everything matched in a batch of lines, and the definitions that had to be disabled."""

    matches: Matches
    disabled: list[DisabledDefinition]
    unparsed: dict[str, int]


def match_lines(
    lines: Iterable[str],
    definitions: Iterable[Mapping[str, Any]],
    *,
    step_regex: str | None = DEFAULT_STEP_REGEX,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    chunk_lines: int = CHUNK_LINES,
) -> MatchResult:
    """Validates ``definitions`` and matches a whole stream of lines, chunk by chunk."""
    matcher = LineMatcher(definitions, step_regex=step_regex, timeout=timeout)
    result = Matches()
    iterator = iter(lines)
    while chunk := list(itertools.islice(iterator, chunk_lines)):
        result.extend(matcher.feed(chunk))
    return MatchResult(result, matcher.take_disabled(), matcher.unparsed)
