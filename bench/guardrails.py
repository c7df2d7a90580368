"""How well the offline guardrails do on public data nobody on the team wrote.

    python bench/guardrails.py                       # everything, with ../shared/corpora
    python bench/guardrails.py --corpus PATH         # or KEEL_CORPORA=PATH
    python bench/guardrails.py --smoke               # a few records of each; the tests run this

**Injection** (:func:`keel.guardrails.detect_injection`), per source:

- CyberSecEval (``cyberseceval_dev.json``): share of attacks caught, read as user input.
- NotInject (``NotInject_one/two.json``): benign prompts full of trigger words; the share
  flagged is the false-positive rate.
- BIPIA: clean e-mails read as tool results (``in_data=True``): the share flagged is the
  false-positive rate on data; the same e-mails with one attack string inserted (start,
  middle or end, in turn): the share caught, for the text and the code attacks.

**PII** (:func:`keel.guardrails.detect_pii`): presidio-research's labelled sentences, precision
and recall per entity type. A find counts as right when it overlaps a labelled span of the
same type. Labels this detector does not cover are listed, not scored.

**Latency**: per message, mean and p99 over the messages of each message's median of 5
timings, on this machine, one message at a time.

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


def injection(corpus: Path, limit: int | None) -> list[str]:
    """The injection figures, one line each; returns every message scored, for latency."""
    root = corpus / "injection"
    messages: list[str] = []

    attacks = _load(root / "cyberseceval_dev.json")[:limit]
    print("\n## Injection: CyberSecEval attacks (read as user input), caught")
    for part, chosen in (("dev (even)", attacks[0::2]), ("held-out (odd)", attacks[1::2])):
        for kind in ("direct", "indirect"):
            texts = [r["user_input"] for r in chosen if r["injection_type"] == kind]
            print(f"  {part:15} {kind:8} {_rate(_caught(texts, in_data=False), len(texts))}")
    texts = [r["user_input"] for r in attacks]
    print(f"  {'all':24} {_rate(_caught(texts, in_data=False), len(texts))}")
    messages += texts
    by_variant: dict[str, list[int]] = {}
    for r in attacks:
        hit = detect_injection(r["user_input"]).is_attack
        by_variant.setdefault(r["injection_variant"], []).append(int(hit))
    print(
        "  by variant: "
        + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_variant.items()))
    )

    print("\n## Injection: NotInject benign prompts (user input), false positives")
    for name, part in (("NotInject_one", "dev"), ("NotInject_two", "held-out")):
        texts = [r["prompt"] for r in _load(root / f"{name}.json")][:limit]
        print(f"  {name} ({part}) FPR {_rate(_caught(texts, in_data=False), len(texts))}")
        messages += texts

    lines = (root / "bipia" / "email_train.jsonl").read_text().splitlines()
    emails = [json.loads(line)["context"] for line in lines if line.strip()][:limit]
    print("\n## Injection: BIPIA e-mails read as tool results (in_data=True)")
    for part, chosen in (("dev (first 25)", emails[:25]), ("held-out (last 25)", emails[25:])):
        print(f"  clean e-mails, {part}: FPR {_rate(_caught(chosen, in_data=True), len(chosen))}")
    messages += emails
    for kind in ("text", "code"):
        categories = _load(root / "bipia" / f"{kind}_attack_train.json")
        for part, pick in (("dev (first 2)", slice(0, 2)), ("held-out (rest)", slice(2, None))):
            poisoned = [
                _insert(emails[(i * 7 + j) % len(emails)], attack, (i + j) % 3)
                for i, attacks_of in enumerate(categories.values())
                for j, attack in enumerate(attacks_of[pick][:limit])
            ]
            print(
                f"  {kind} attacks inserted, {part}: caught "
                f"{_rate(_caught(poisoned, in_data=True), len(poisoned))}"
            )
            messages += poisoned
        per = {
            name: sum(
                detect_injection(_insert(emails[0], a, 1), in_data=True).is_attack for a in found
            )
            for name, found in categories.items()
        }
        print(f"  {kind} by category: " + ", ".join(f"{k} {v}/5" for k, v in per.items()))
    return messages


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


def latency(name: str, texts: Sequence[str], detect: Callable[[str], object]) -> None:
    """Mean and p99 time of ``detect`` per message (each message's median of 5 timings)."""
    for text in texts[:20]:
        detect(text)  # warm the regex caches
    times: list[float] = []
    for text in texts:
        # The median of 5 timings of each message: the machine is shared, and one timing
        # can include a pause of the whole process (GC, another tenant) of several ms.
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            detect(text)
            runs.append(time.perf_counter() - started)
        times.append(statistics.median(runs))
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    mean = statistics.fmean(times)
    size = statistics.fmean(len(t) for t in texts)
    print(
        f"  {name:18} {len(texts)} messages (mean {size:.0f} chars): "
        f"mean {mean * 1e6:.0f} µs, p99 {p99 * 1e6:.0f} µs, max {times[-1] * 1e6:.0f} µs"
    )


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
    messages = injection(args.corpus, limit)
    texts = pii(args.corpus, limit)
    print("\n## Latency per message")
    latency("detect_injection", messages, lambda t: detect_injection(t, in_data=True))
    latency("detect_pii", texts, detect_pii)


if __name__ == "__main__":
    main()
