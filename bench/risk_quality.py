#!/usr/bin/env python3
"""Prompt-risk detectors: quality over the labelled corpus, and cost on a 100k-token prompt.

Run from the repository root::

    .venv/bin/python bench/risk_quality.py            # 25 timed runs per figure
    .venv/bin/python bench/risk_quality.py --runs 5

Prints Markdown: precision / recall / F1 per detector over ``tests/data/risk_corpus.jsonl``
(all of it, and the held-out slice that was never tuned against, which is the honest
estimate for new phrasing), the corpus misses, then the median and p95 time of
``risk.scan`` on a prompt of about 100,000 tokens (o200k_base), with the default scan
cap and with the whole prompt scanned.  The prompt mixes the corpus's benign prose in
several languages with this repository's Python source, so it has the numbers,
punctuation and identifiers real long prompts carry; it raises no flag, because a scan
stops at its first hit and a clean prompt is the worst case.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pulse_proxy import risk
from pulse_proxy.accounting import tokens

CORPUS = ROOT / "tests" / "data" / "risk_corpus.jsonl"
DETECTORS = ("jailbreak", "pii", "secret")
TARGET_TOKENS = 100_000


def load_corpus() -> list[dict[str, Any]]:
    with CORPUS.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def quality(rows: Iterable[dict[str, Any]], flag: str) -> tuple[int, int, int, int]:
    """(support, true positives, false positives, false negatives) of one detector."""
    support = tp = fp = fn = 0
    for row in rows:
        predicted = flag in risk.scan(row["text"], detectors=frozenset({flag}))
        expected = flag in row["labels"]
        support += expected
        tp += predicted and expected
        fp += predicted and not expected
        fn += expected and not predicted
    return support, tp, fp, fn


def quality_table(title: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"### {title} ({len(rows)} prompts, {sum(not r['labels'] for r in rows)} benign)",
        "",
        "| detector | positives | TP | FP | FN | precision | recall | F1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for flag in DETECTORS:
        support, tp, fp, fn = quality(rows, flag)
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        lines.append(
            f"| {flag} | {support} | {tp} | {fp} | {fn} | {precision:.3f} | {recall:.3f} "
            f"| {f1:.3f} |"
        )
    return [*lines, ""]


def misses(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["### Disagreements with the labels", ""]
    for row in rows:
        got = set(risk.scan(row["text"])) - {"long_prompt"}
        want = set(row["labels"])
        if got != want:
            text = row["text"].replace("\n", " ")
            text = text if len(text) <= 90 else text[:89] + "…"
            split = row.get("split", "tuning")
            lines.append(
                f"- {split}, {row['lang']}: expected {sorted(want) or '[]'}, got "
                f"{sorted(got) or '[]'}: `{risk.mask(text)}`"
            )
    return [*lines, ""]


def long_prompt(rows: list[dict[str, Any]]) -> tuple[str, int]:
    """About TARGET_TOKENS tokens of benign prose and Python source, and its exact count."""
    prose = "\n\n".join(row["text"] for row in rows if not row["labels"])
    sources = sorted((ROOT / "pulse_proxy").glob("*.py"))
    # A scan stops at its first hit, so the prompt must be clean for a worst-case figure:
    # leave out sources that contain examples of what the detectors look for.
    code = "\n\n".join(
        source
        for source in (path.read_text(encoding="utf-8") for path in sources)
        if not risk.scan(source, max_chars=len(source))
    )
    block = prose + "\n\n" + code
    block_tokens = tokens.count_text(block, "gpt-4o")
    text = block * (TARGET_TOKENS // block_tokens + 1)
    # Trim to the target by characters, then report the exact count.
    text = text[: int(len(text) * TARGET_TOKENS / tokens.count_text(text, "gpt-4o"))]
    return text, tokens.count_text(text, "gpt-4o")


def timed(call: Callable[[], object], runs: int) -> tuple[float, float]:
    call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def timing_table(text: str, count: int, runs: int) -> list[str]:
    assert risk.scan(text, max_chars=len(text)) == [], "the timing prompt must raise no flag"
    lines = [
        (
            f"### Scan cost: {count:,} tokens, {len(text):,} characters "
            f"({len(text.encode()) / 1024:,.0f} KiB), {runs} runs"
        ),
        "",
        "| what | scanned chars | median ms | p95 ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    cap = risk.DEFAULT_MAX_CHARS
    cases: list[tuple[str, int, Callable[[], object]]] = [
        (
            "scan, all detectors, default cap",
            min(cap, len(text)),
            lambda: risk.scan(text, prompt_tokens=count),
        ),
        (
            "scan, all detectors, whole prompt",
            len(text),
            lambda: risk.scan(text, prompt_tokens=count, max_chars=len(text)),
        ),
    ]
    for flag in DETECTORS:
        only = frozenset({flag})
        cases.append(
            (
                f"  {flag} only, whole prompt",
                len(text),
                partial(risk.scan, text, max_chars=len(text), detectors=only),
            )
        )
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
    cases.append(("extract_text of a chat body", len(text), lambda: risk.extract_text(body)))
    cases.append(("mask, whole prompt", len(text), lambda: risk.mask(text)))
    for name, scanned, call in cases:
        median, p95 = timed(call, runs)
        lines.append(f"| {name} | {scanned:,} | {median:.1f} | {p95:.1f} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=25, help="timed runs per figure")
    args = parser.parse_args()
    rows = load_corpus()
    holdout = [row for row in rows if row.get("split") == "holdout"]
    out = [
        "## Prompt-risk detectors",
        "",
        (
            f"{platform.python_implementation()} {platform.python_version()} on "
            f"{platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        ),
        "",
        *quality_table("Whole corpus", rows),
        *quality_table("Held-out slice, never tuned against", holdout),
        *misses(rows),
    ]
    text, count = long_prompt(rows)
    out += timing_table(text, count, args.runs)
    print("\n".join(out))


if __name__ == "__main__":
    main()
