"""What the scripted server answers: deterministic answers, logprobs and judge verdicts, each from a hash of the
request, so a test knows the answer to any prompt without a model."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

VERDICT_FAULTS: tuple[str, ...] = ("unparsable", "refusal", "off_scale")
# The line of the rubric's system prompt that names the metrics and the scale: "<metric>": <1-5>.
_SCORE_SLOT = re.compile(r'"(\w+)": <(\d+)-(\d+)>')


def fingerprint(model: str, messages: list[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON of model + messages; the client side computes the same value."""
    blob = json.dumps({"messages": messages, "model": model}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def text_of(content: Any) -> str:
    """Plain text of a message content (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def word_count(text: str) -> int:
    """Rough token count: whitespace-separated words."""
    return len(text.split())


# Technical terms the canned answers draw on, so each prompt gets content of its own (a fixed answer
# reused across prompts is what the judge rejects).
_TERMS: tuple[str, ...] = tuple(
    """spectroscopy calorimetry chromatography fluorescence impedance rheology tomography diffraction
    luminescence microfluidics nanoindentation phosphorylation isotope-labelling electrophoresis
    interferometry ellipsometry voltammetry titration sequencing crystallinity porosity viscosity
    conductivity permeability adsorption desorption oxidation hydrolysis methylation acetylation
    polarisation magnetisation resonance relaxation dispersion turbulence nucleation coarsening
    segregation passivation sintering annealing quenching doping grafting crosslinking swelling
    fouling sedimentation transcription translation secretion signalling""".split()
)
_ASKING = frozenset(
    "propose suggest offer generate formulate design describe outline testable hypotheses hypothesis "
    "explaining explain experiment method protocol study approach measure determine whether would "
    "could which their there these those about using between".split()
)


def _pick(prompt: str, salt: str, options: tuple[str, ...] | list[str], k: int) -> list[str]:
    """k options chosen deterministically from a hash of the prompt."""
    ranked = sorted(options, key=lambda o: hashlib.sha256(f"{salt}\x1f{prompt}\x1f{o}".encode()).digest())
    return ranked[:k]


def _number(prompt: str, salt: str, low: int, high: int) -> int:
    return low + int.from_bytes(hashlib.sha256(f"{salt}\x1f{prompt}".encode()).digest()[:4], "big") % (high - low + 1)


def answer_for(prompt: str) -> str:
    """The canned, deterministic answer to the last user message: a hypothesis list or a protocol built
    from the prompt's own words and terms chosen by its hash (so different prompts get different answers),
    or an echo of anything else."""
    low = prompt.lower()
    asked = re.search(r"(?m)^Task:\s*(.+)$", prompt)
    given = re.search(r"(?m)^Context:\s*(.+)$", prompt)
    source = " ".join(m.group(1) for m in (asked, given) if m) or prompt
    words = list(dict.fromkeys(w for w in re.findall(r"[A-Za-z][A-Za-z-]{4,}", source) if w.lower() not in _ASKING))
    topic = [(words or ["the system"])[i % max(1, len(words))] for i in range(12)]
    terms = _pick(prompt, "terms", _TERMS, 12)
    if "hypothes" in low:
        lines = [f"Hypotheses about {', '.join(words[:12]) or 'the system'}:"]
        for n in range(3):
            a, b, c = terms[3 * n : 3 * n + 3]
            words = " and ".join(topic[3 + 2 * n : 5 + 2 * n])
            rise = _number(prompt, f"rise{n}", 10, 90)
            lines.append(
                f"{n + 1}. {a.capitalize()} of the {words} is limited by {b}. Prediction: blocking {b} "
                f"lowers {c} by {rise}% within {_number(prompt, f'time{n}', 2, 48)} h, and {a} tracks it."
            )
        return "\n".join(lines)
    if any(k in low for k in ("method", "design", "protocol")):
        t = terms
        return "\n".join(
            [
                f"Protocol for {', '.join(words[:12]) or 'the system'}:",
                f"1. Prepare {_number(prompt, 'n', 6, 30)} samples of {topic[3]} for {t[0]} and {t[7]} at "
                f"{_number(prompt, 'dose', 2, 50)} mg/mL; keep untreated {topic[4]} as the control.",
                f"2. Vary {topic[5]} and {topic[6]} while holding {t[1]} at {_number(prompt, 'temp', 15, 80)} °C "
                f"for {_number(prompt, 'hours', 2, 72)} h.",
                f"3. Measure {t[2]} and {t[3]} of the {topic[7]} every {_number(prompt, 'minutes', 5, 60)} min "
                f"by {t[4]}.",
                f"4. Confirm with {t[5]} and {t[8]} as a second readout of {topic[8]}, calibrated against "
                f"{t[6]} standards.",
                f"5. Compare conditions, blocked by {t[9]} batch and {t[10]} drift, with a one-way ANOVA over "
                f"{_number(prompt, 'reps', 3, 6)} independent replicates.",
            ]
        )
    return f"Echo: {prompt}"


def logprobs_for(content: str | None, top_k: Any) -> dict[str, Any]:
    """OpenAI's `choices[].logprobs` for an answer: its "tokens" are the answer's words with the whitespace before
    them (they join back to the answer), each the most likely of `top_k` candidates, log-probabilities from a hash."""
    k = max(1, min(20, int(top_k or 1)))
    content_items = []
    for i, token in enumerate(re.findall(r"\s*\S+", content or "")):
        seed = _number(f"{i}{token}", "lp", 0, 100 * len(_TERMS) - 1)  # one hash a token: the double stays cheap
        best = -0.05 - (seed % 101) / 100
        start = seed // 100
        alternatives = [_TERMS[(start + n) % len(_TERMS)] for n in range(k + 1)]
        others = [w for w in alternatives if f" {w}" != token][: k - 1]
        top = [(token, best)] + [(f" {w}", best - 1.0 - n) for n, w in enumerate(others)]
        content_items.append({
            "token": token, "logprob": best, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
        })
    return {"content": content_items, "refusal": None}


def rubric_slots(system_prompt: str) -> tuple[list[str], int, int] | None:
    """(metrics, low, high) when the system prompt is a rubric judge prompt, else None."""
    slots = _SCORE_SLOT.findall(system_prompt)
    if not slots:
        return None
    return [m for m, _, _ in slots], int(slots[0][1]), int(slots[0][2])


def verdict_for(metrics: list[str], low: int, high: int, answer: str) -> dict[str, Any]:
    """The scripted judge's verdict on an answer: each score in the upper part of the scale (low + 2 .. high),
    from a hash of the metric and the answer; every score below 4 gets a `lacking` phrase."""
    top = max(low, min(high, low + 2))
    scores = {m: _number(answer, f"verdict:{m}", top, high) for m in metrics}
    lacking = {m: f"more concrete {m}" for m, v in scores.items() if v < 4}
    return {"scores": scores, "lacking": lacking}


def bad_verdict(fault: str, metrics: list[str], high: int) -> tuple[str | None, str | None]:
    """(content, refusal) of a scripted bad verdict."""
    if fault == "refusal":
        return None, "I can't help with grading this answer."
    if fault == "off_scale":
        return json.dumps({"scores": {m: high + 2 for m in metrics}, "lacking": {}}), None
    return "The answer looks reasonable overall; I would rate it fairly well.", None
