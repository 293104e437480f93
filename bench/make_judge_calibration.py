"""Build bench/data/judge_calibration_v1.jsonl: (good, bad) answer pairs for bench/judge.py.

Each hand-written good answer (bench/data/judge_good_answers.py) is paired with one bad answer of every
kind below, made from its own prompt the way a gaming or failing model would write it. Deterministic:
`python bench/make_judge_calibration.py` rewrites the same file. The third prompt of each cell is held out
(`holdout`: true) from tuning.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "data"))

from judge_good_answers import GOOD  # noqa: E402

SEED_PACK = ROOT / "nexa_assets" / "raw" / "data" / "seed_pack.jsonl"
OUT = ROOT / "bench" / "data" / "judge_calibration_v1.jsonl"
TEMPLATES = ROOT / "nexa_core" / "data" / "templates"

KINDS: tuple[str, ...] = (
    "fixed_answer",
    "instruction_echo",
    "keyword_stuffing",
    "invented_content",
    "example_copy",
    "wrong_topic",
    "truncated",
    "repetitive",
    "refusal",
    "invented_citation",
)

FIXED = {
    "hypothesis": [
        """Hypotheses for: {topic}
1. Increasing the treatment dose raises the response rate; measurable outcome: response rate (%) at day 14.
2. The effect is mediated by the target pathway; measurable outcome: pathway marker level (ng/mL) vs. baseline.
3. The effect persists after withdrawal; measurable outcome: response rate (%) 30 days after the last dose.""",
        """Here are three testable hypotheses.
1. The main driver is an environmental factor. Prediction: changing this factor by 50% will change the measured outcome by at least 20% compared with the control.
2. A structural property of the system is responsible. Prediction: samples differing in this property will show a 2-fold difference in the measured rate.
3. An interaction between the two factors explains the effect. Prediction: the combined change will give a larger effect than either alone (n = 3, p < 0.05).""",
    ],
    "methodology": [
        """Protocol for: {topic}
1. Randomise 40 samples into treatment and control groups (n=20 each), blinded to the analyst.
2. Apply the treatment to the treatment group; give the control group a matched vehicle.
3. Hold temperature, timing and handling identical across both groups for 14 days.
4. Record the readout: the primary outcome measured by a calibrated assay at day 14.
5. Compare groups with a two-sided t-test at alpha 0.05 and report effect size with 95% CI.""",
        """1. Prepare the samples and divide them into an experimental group and a control group (n = 5 per group).
2. Expose the experimental group to the variable of interest at three levels (low, medium, high) for 24 h at 25 °C.
3. Measure the outcome with a calibrated instrument every 2 h and record the data.
4. Include a negative control and a positive control in every run.
5. Analyse the results with a one-way ANOVA and report mean ± standard deviation of three replicates.""",
    ],
}

ABSURD = [
    ("the moon", "emits {n} mg of {x} every night"),
    ("a hidden lattice of sugar crystals", "stores {n} J of {x}"),
    ("the colour of the laboratory walls", "shifts {x} by {n}%"),
    ("tidal forces from Jupiter", "pull {n} µg of {x} out of the sample"),
    ("cosmic background vibrations", "resonate with {x} at {n} Hz"),
    ("the operator's mood", "changes {x} by {n}-fold"),
]

REFUSALS = [
    "I'm sorry, but I cannot help with designing experiments or proposing hypotheses on this topic.",
    "As an AI language model, I am not able to provide scientific hypotheses. Please consult a qualified researcher.",
    "I apologize, but I can't provide an answer to this question because it requires laboratory expertise. "
    "However, in general, scientists study {topic} by doing experiments and measuring results.",
    "Sorry, I cannot answer that. It is a complex question and more research is needed on {topic}.",
]

CITATION_STYLES = [
    (" (Smith et al., 2019)", " [1]", "\n\nReferences: [1] Zhang, L. et al. Nature 512, 45-49 (2014). doi:10.1038/nature13501"),
    (" (Garcia and Lee, 2021)", " [2, 3]", "\n\nAs previous studies have shown (Kumar et al., 2018), this is well established."),
    (" [4]", " (Brown, 2016)", "\n\nSee arXiv:2103.04512 and doi:10.1021/jacs.0c01234 for the original data."),
]

_LEAD = re.compile(
    r"(?i)^(?:propose|suggest|offer|generate|formulate|design|outline|describe|why might)\b.*?"
    r"\b(?:for why|about why|explaining why|explaining|for|about|to|why|how you would)\s+"
)


def _rows() -> dict[tuple[str, str], list[dict]]:
    rows = [json.loads(line) for line in SEED_PACK.read_text().splitlines() if line.strip()]
    cells: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        cells.setdefault((row["domain"], row["task_type"]), []).append(row)
    return cells


def _subject(instruction: str) -> str:
    """The instruction's topic phrase: what is asked about, without the asking."""
    rest = _LEAD.sub("", instruction.strip().rstrip(".?"), count=1)
    return rest.split(". ")[0]


def _topic(instruction: str) -> str:
    return " ".join(instruction.split()[:12]).rstrip(".?!")


def echo(task_type: str, instruction: str, context: str | None, rng: random.Random) -> str:
    s = _subject(instruction)
    c = (context or "").rstrip(".")
    if task_type == "hypothesis":
        variants = [
            f"1. {s[0].upper() + s[1:]}. Prediction: this will be observed.\n"
            f"2. The reason is that {s}. Prediction: {s} will be seen again.\n"
            f"3. Another explanation of why {s}. Prediction: this explains why {s}.",
            f"Hypothesis 1: {s[0].upper() + s[1:]} because of the conditions.\n"
            f"Hypothesis 2: {s[0].upper() + s[1:]} because of the environment.\n"
            f"Hypothesis 3: {(c or s)} happens for a reason that can be tested.",
        ]
    else:
        variants = [
            f"1. Prepare the setup to {s}.\n2. Carry out the experiment to {s}.\n"
            f"3. Measure the results to {s}.\n4. Analyse the data to {s}.",
            f"Step 1: Plan how to {s}.\nStep 2: {(c or s)}.\nStep 3: Perform the study of {s}.\n"
            f"Step 4: Record what happens to {s}.\nStep 5: Conclude about {s}.",
        ]
    return rng.choice(variants)


def stuffing(task_type: str, instruction: str, context: str | None, rng: random.Random) -> str:
    s = _subject(instruction)
    extras = [
        "with a control, n = 3 replicates, at 37 °C for 24 h",
        "measured at 10 mg/mL with a baseline control (n = 5, p < 0.05)",
        "using 3 independent replicates, a vehicle control and a calibrated assay at 25 °C",
        "quantified every 30 min with triplicate samples and a one-way ANOVA",
    ]
    rng.shuffle(extras)
    if task_type == "hypothesis":
        return "\n".join(
            f"{i}. {s[0].upper() + s[1:]}, {e}. Prediction: the rate increases by {rng.choice([20, 35, 50])}% versus control."
            for i, e in enumerate(extras[:3], 1)
        )
    verbs = ["Prepare", "Measure", "Quantify", "Record", "Compare"]
    return "\n".join(f"{i}. {v} the {s}, {extras[(i - 1) % 4]}." for i, v in enumerate(verbs, 1))


def invented(task_type: str, instruction: str, context: str | None, rng: random.Random) -> str:
    s = _subject(instruction)
    words = [w for w in re.findall(r"[a-zA-Z][a-zA-Z-]{5,}", instruction) if w.lower() not in {"propose", "testable", "hypotheses", "explaining", "suggest", "design", "experiment", "outline", "protocol", "describe", "measure", "method", "generate", "described"}]
    x = rng.choice(words) if words else "the signal"
    picks = rng.sample(ABSURD, 3)
    if task_type == "hypothesis":
        lines = []
        for i, (who, what) in enumerate(picks, 1):
            claim = what.format(n=rng.choice([12, 4.7, 380, 0.03, 95]), x=x)
            lines.append(f"{i}. {who[0].upper() + who[1:]} {claim}, which is why {s}. "
                         f"Prediction: {x} increases by {rng.choice([12, 40, 73])}% when {who} is stronger.")
        return "\n".join(lines)
    who = [p[0] for p in picks]
    return (
        f"1. Calibrate {who[0]} to exactly {rng.choice([12, 380])} mg so that {s}.\n"
        f"2. Expose the samples to {who[1]} for {rng.choice([7, 13])} h at {rng.choice([451, 3])} K; keep a control away from it.\n"
        f"3. Measure {x} with a {who[2]}-meter every 5 min (n = 3).\n"
        f"4. Compare the readout with a t-test; {x} should change by {rng.choice([17, 42])}% if {who[0]} matters."
    )


def example_copy(task_type: str, instruction: str, context: str | None, rng: random.Random) -> str:
    body = (TEMPLATES / f"example_{task_type}.txt").read_text().partition("\n---\n")[2].strip()
    lines = body.splitlines()
    if rng.random() < 0.5:
        return body
    # keep most of the example, with the first item bent toward the prompt's words
    lines[0] = re.sub(r"^(\d\.\s+)", lambda m: m.group(1) + f"For {_subject(instruction)}: ", lines[0])
    return "\n".join(lines)


def truncated(good: str, rng: random.Random) -> str:
    cut = int(len(good) * rng.uniform(0.35, 0.6))
    return good[:cut].rsplit(" ", 1)[0]


def repetitive(good: str, rng: random.Random) -> str:
    first = good.strip().splitlines()[0]
    loop = rng.choice([
        "This is important because it affects the results of the experiment.",
        "The results will show the effect of the conditions on the outcome.",
        "Prediction: the measured value will increase.",
    ])
    if rng.random() < 0.5:
        return first + "\n" + " ".join([loop] * 8)
    item = re.sub(r"^\W*\d\.\s*|^\W*(?:Hypothesis|Step)\s*\d:?\s*", "", first)
    return "\n".join(f"{i}. {item}" for i in range(1, 5))


def cited(good: str, rng: random.Random) -> str:
    a, b, tail = rng.choice(CITATION_STYLES)
    lines = good.strip().splitlines()
    numbered = [i for i, line in enumerate(lines) if re.match(r"^\W*(?:\d\.|Hypothesis|Step|- H)", line)]
    for k, i in enumerate(numbered[:2]):
        lines[i] = re.sub(r"(?<=[a-z)])\.(\s|$)", (a if k == 0 else b) + r".\1", lines[i], count=1)
    return "\n".join(lines) + tail


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    cells = _rows()
    goods = []
    for domain, task_type, index, answer in GOOD:
        row = cells[(domain, task_type)][index]
        goods.append({**row, "good": answer.strip(), "cell_index": index})
    by_cell: dict[tuple[str, str], list[dict]] = {}
    for g in goods:
        by_cell.setdefault((g["domain"], g["task_type"]), []).append(g)
    out = []
    for n, g in enumerate(goods):
        rng = random.Random(f"judge-calibration-{n}")
        task_type, instruction, context = g["task_type"], g["instruction"], g["context"]
        holdout = by_cell[(g["domain"], task_type)].index(g) == 2
        # a well-written answer to a prompt of another domain, same task type
        others = [o for o in goods if o["task_type"] == task_type and o["domain"] != g["domain"]]
        fixed = FIXED[task_type][n % 2].format(topic=_topic(instruction))
        bad = {
            "fixed_answer": (fixed, "stop"),
            "instruction_echo": (echo(task_type, instruction, context, rng), "stop"),
            "keyword_stuffing": (stuffing(task_type, instruction, context, rng), "stop"),
            "invented_content": (invented(task_type, instruction, context, rng), "stop"),
            "example_copy": (example_copy(task_type, instruction, context, rng), "stop"),
            "wrong_topic": (others[n % len(others)]["good"], "stop"),
            "truncated": (truncated(g["good"], rng), "length"),
            "repetitive": (repetitive(g["good"], rng), "stop"),
            "refusal": (rng.choice(REFUSALS).format(topic=_subject(instruction)), "stop"),
            "invented_citation": (cited(g["good"], rng), "stop"),
        }
        for kind in KINDS:
            text, finish = bad[kind]
            out.append(
                {
                    "id": f"{g['domain'][:4]}-{task_type[:4]}-{g['cell_index']}-{kind}",
                    "kind": kind,
                    "domain": g["domain"],
                    "task_type": task_type,
                    "instruction": instruction,
                    "context": context,
                    "good": g["good"],
                    "bad": text,
                    "bad_finish_reason": finish,
                    "holdout": holdout,
                }
            )
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    print(f"wrote {len(out)} pairs ({len(goods)} prompts x {len(KINDS)} kinds) to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
