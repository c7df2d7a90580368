"""How well the offline guardrails do on public data nobody on the team wrote.

    python bench/guardrails.py                       # everything, with ../shared/corpora
    python bench/guardrails.py --corpus PATH         # or KEEL_CORPORA=PATH
    python bench/guardrails.py --smoke               # a few records of each; the tests run this

**Injection** (:func:`keel.guardrails.detect_injection`), per source:

- CyberSecEval (``cyberseceval_dev.json``): share of attacks caught, read as user input.
- NotInject (``NotInject_one/two.json``): benign prompts full of trigger words; the share
  flagged is the false-positive rate.
- BIPIA: clean e-mails read as tool results (``in_data=True``): the share flagged is the
  false-positive rate on data; every e-mail of a part with every attack string of the same
  part inserted once at the start, once in the middle and once at the end: the share caught,
  for the text and the code attacks, per category and per position.

**PII** (:func:`keel.guardrails.detect_pii`): presidio-research's labelled sentences, precision
and recall per entity type. A find counts as right when it overlaps a labelled span of the
same type. Labels this detector does not cover are listed, not scored.

**Latency**: per message and per source, mean and p99 over the messages of each message's
median of 5 timings, one message at a time: the CPU time of the thread
(``time.thread_time_ns``, what the detector costs) and the wall time (``time.perf_counter_ns``,
which also counts waiting for a core on a busy machine).

To keep the rules honest, they were written and adjusted looking only at the *dev* part of
each source (the even-numbered CyberSecEval records, NotInject_one, the first two attacks of
each BIPIA category, the first 25 BIPIA e-mails, generated_small.json and the first 1,000
records of generated_large.json); the *held-out* parts are reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from keel.guardrails import detect_injection, detect_pii

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora"

# presidio-research label -> our entity type.
PII_LABELS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
}


def _load(path: Path) -> Any:
    if not path.exists():
        sys.exit(f"missing {path}: pass --corpus PATH or set KEEL_CORPORA (see the docstring)")
    return json.loads(path.read_text())


def _rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({100 * hits / total:.1f}%)" if total else "n/a"


def _caught(texts: Sequence[str], *, in_data: bool) -> int:
    return sum(detect_injection(t, in_data=in_data).is_attack for t in texts)


def _insert(email: str, attack: str, where: int) -> str:
    if where == 0:
        return f"{attack}\n{email}"
    if where == 2:
        return f"{email}\n{attack}"
    cut = email.rfind(". ", 0, len(email) // 2 + 1) + 1 or len(email) // 2
    return f"{email[:cut]} {attack} {email[cut:]}"


def injection(corpus: Path, limit: int | None) -> dict[str, list[str]]:
    """The injection figures, one line each; returns the messages scored, per source."""
    root = corpus / "injection"

    attacks = _load(root / "cyberseceval_dev.json")[:limit]
    print("\n## Injection: CyberSecEval attacks (read as user input), caught")
    for part, chosen in (("dev (even)", attacks[0::2]), ("held-out (odd)", attacks[1::2])):
        for kind in ("direct", "indirect"):
            texts = [r["user_input"] for r in chosen if r["injection_type"] == kind]
            print(f"  {part:15} {kind:8} {_rate(_caught(texts, in_data=False), len(texts))}")
        texts = [r["user_input"] for r in chosen]
        print(f"  {part:15} {'both':8} {_rate(_caught(texts, in_data=False), len(texts))}")
    cyberseceval = [r["user_input"] for r in attacks]
    print(f"  {'all':24} {_rate(_caught(cyberseceval, in_data=False), len(cyberseceval))}")
    by_variant: dict[str, list[int]] = {}
    for r in attacks:
        hit = detect_injection(r["user_input"]).is_attack
        by_variant.setdefault(r["injection_variant"], []).append(int(hit))
    print(
        "  by variant: "
        + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_variant.items()))
    )

    print("\n## Injection: NotInject benign prompts (user input), false positives")
    notinject: list[str] = []
    for name, part in (("NotInject_one", "dev"), ("NotInject_two", "held-out")):
        texts = [r["prompt"] for r in _load(root / f"{name}.json")][:limit]
        print(f"  {name} ({part}) FPR {_rate(_caught(texts, in_data=False), len(texts))}")
        notinject += texts

    lines = (root / "bipia" / "email_train.jsonl").read_text().splitlines()
    emails = [json.loads(line)["context"] for line in lines if line.strip()]
    if limit:
        emails = emails[:limit] + emails[25 : 25 + limit]
        dev_mails, held_mails = emails[:limit], emails[limit:]
    else:
        dev_mails, held_mails = emails[:25], emails[25:]
    print("\n## Injection: BIPIA e-mails read as tool results (in_data=True)")
    for part, chosen in (("dev (first 25)", dev_mails), ("held-out (the rest)", held_mails)):
        print(f"  clean e-mails, {part}: FPR {_rate(_caught(chosen, in_data=True), len(chosen))}")
    bipia = list(emails)
    where_names = ("start", "middle", "end")
    for kind in ("text", "code"):
        categories = _load(root / "bipia" / f"{kind}_attack_train.json")
        by_category: dict[str, list[int]] = {}
        by_where: dict[str, list[int]] = {}
        for part, mails, pick in (
            ("dev (dev e-mails x first 2 attacks of each category)", dev_mails, slice(0, 2)),
            ("held-out (held-out e-mails x the other attacks)", held_mails, slice(2, None)),
        ):
            caught = total = 0
            for name, attacks_of in list(categories.items())[: 2 if limit else None]:
                for attack in attacks_of[pick]:
                    for where, where_name in enumerate(where_names):
                        poisoned = [_insert(email, attack, where) for email in mails]
                        hits = _caught(poisoned, in_data=True)
                        caught, total = caught + hits, total + len(poisoned)
                        for counts in (by_category.setdefault(name, [0, 0]),
                                       by_where.setdefault(where_name, [0, 0])):  # fmt: skip
                            counts[0] += hits
                            counts[1] += len(poisoned)
                        bipia += poisoned
            print(f"  {kind} attacks inserted, {part}: caught {_rate(caught, total)}")
        for label, counts_of in (("category", by_category), ("position", by_where)):
            print(
                f"  {kind} by {label}, both parts: "
                + ", ".join(f"{k} {100 * c / n:.0f}%" for k, (c, n) in counts_of.items() if n)
            )
    return {"CyberSecEval": cyberseceval, "NotInject": notinject, "BIPIA": bipia}


def pii(corpus: Path, limit: int | None) -> list[str]:
    """Precision and recall per entity type, per file; returns the texts, for latency."""
    texts: list[str] = []
    large = _load(corpus / "pii" / "generated_large.json")
    small = _load(corpus / "pii" / "generated_small.json")
    sources = [
        ("generated_small (dev)", small[:limit]),
        ("generated_large[:1000] (dev)", large[:1000][:limit]),
        ("generated_large[1000:] (held-out)", large[1000:][:limit]),
    ]
    uncovered: Counter[str] = Counter()
    for name, records in sources:
        tp: Counter[str] = Counter()
        fp: Counter[str] = Counter()
        fn: Counter[str] = Counter()
        for record in records:
            text = record["full_text"]
            texts.append(text)
            gold = set()
            for span in record["spans"]:
                label = PII_LABELS.get(span["entity_type"])
                if label is None:
                    uncovered[span["entity_type"]] += 1
                    continue
                gold.add((span["start_position"], span["end_position"], label))
            found = [(m.start, m.end, m.entity) for m in detect_pii(text)]
            for s, e, kind in gold:
                hit = any(k == kind and a < e and s < b for a, b, k in found)
                (tp if hit else fn)[kind] += 1
            for a, b, kind in found:
                if not any(k == kind and a < e and s < b for s, e, k in gold):
                    fp[kind] += 1
        print(f"\n## PII: {name}, {len(records)} records")
        print(f"  {'type':12} {'precision':>18} {'recall':>18}")
        for kind in sorted(set(tp) | set(fp) | set(fn)):
            precision = _rate(tp[kind], tp[kind] + fp[kind])
            print(f"  {kind:12} {precision:>18} {_rate(tp[kind], tp[kind] + fn[kind]):>18}")
    print(
        "  labels not covered (spans, all files): "
        + ", ".join(f"{k} {v}" for k, v in uncovered.most_common())
    )
    return texts


def _summary(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"mean {statistics.fmean(ordered):.0f} µs, p99 {p99:.0f} µs, max {ordered[-1]:.0f} µs"


def latency(name: str, texts: Sequence[str], detect: Callable[[str], object]) -> None:
    """CPU and wall time of ``detect`` per message (each message's median of 5 timings)."""
    if not texts:
        return
    for text in texts[:20]:
        detect(text)  # warm the regex caches
    cpu: list[float] = []
    wall: list[float] = []
    for text in texts:
        # The median of 5 timings of each message: the machine is shared, and one timing
        # can include a pause of the whole process (GC, another tenant) of several ms.
        cpu_runs, wall_runs = [], []
        for _ in range(5):
            started_cpu, started = time.thread_time_ns(), time.perf_counter_ns()
            detect(text)
            wall_runs.append((time.perf_counter_ns() - started) / 1000)
            cpu_runs.append((time.thread_time_ns() - started_cpu) / 1000)
        cpu.append(statistics.median(cpu_runs))
        wall.append(statistics.median(wall_runs))
    size = statistics.fmean(len(t) for t in texts)
    print(f"  {name:28} {len(texts)} messages (mean {size:.0f} chars)")
    print(f"  {'':28} CPU  {_summary(cpu)}")
    print(f"  {'':28} wall {_summary(wall)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=Path(os.environ.get("KEEL_CORPORA", DEFAULT_CORPUS)),
        help="the shared corpora folder (default: ../shared/corpora from the repository)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few records of each source")
    args = parser.parse_args()
    limit = 6 if args.smoke else None
    print(f"# Guardrails on {args.corpus} ({platform.python_version()}, {os.cpu_count()} cores)")
    sources = injection(args.corpus, limit)
    texts = pii(args.corpus, limit)
    print("\n## Latency per message")
    for source, messages in sources.items():
        as_read = partial(detect_injection, in_data=source == "BIPIA")
        latency(f"detect_injection, {source}", messages, as_read)
    everything = [m for messages in sources.values() for m in messages]
    latency("detect_injection, all", everything, lambda t: detect_injection(t, in_data=True))
    latency("detect_pii", texts, detect_pii)
    if hasattr(os, "getloadavg"):
        print(
            "  load average at the end (1, 5, 15 min): "
            + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        )


if __name__ == "__main__":
    main()
