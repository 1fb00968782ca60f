"""The leave-one-out check tells the editors which entries their questions confuse."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bot.confusions import ConfusionReport, Miss, check
from bot.knowledge import SPECIAL_FILES, KnowledgeBase
from bot.ranker import EntryRanker
from bot.settings import CONTENT_DIR
from ops import cli

QUESTIONS_KEPT = 2  # per entry: enough to rank, few enough for a fast check


@pytest.fixture(scope="module")
def small_content(tmp_path_factory) -> Path:
    """The shipped content with only the first questions of each entry, and the phone's first question
    also listed under the opening hours."""
    target = tmp_path_factory.mktemp("confusions") / "content"
    shutil.copytree(CONTENT_DIR, target)
    for path in target.glob("*.yml"):
        if path.name in SPECIAL_FILES:
            continue
        data = yaml.safe_load(path.read_text())
        for entry in (data or {}).get("entries") or []:
            if entry.get("questions"):
                entry["questions"] = entry["questions"][:QUESTIONS_KEPT]
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
    _ask_also(target, "som.yml", "som.hours", _shared(target))
    return target


@pytest.fixture(scope="module")
def result(small_content) -> ConfusionReport:
    return check(KnowledgeBase.load(small_content))


def _shared(content_dir: Path) -> str:
    return KnowledgeBase.load(content_dir).entry("som.phone").questions[0]


def _ask_also(content_dir: Path, file: str, entry_id: str, question: str) -> None:
    path = content_dir / file
    data = yaml.safe_load(path.read_text())
    entry = next(e for e in data["entries"] if e["id"] == entry_id)
    entry["questions"].append(question)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def test_a_question_another_entry_also_lists_is_a_confusion_toward_it(small_content, result):
    shared = _shared(small_content)

    assert Miss("som.hours", "som.phone", shared) in result.misses
    pair = next(p for p in result.pairs() if (p.expected, p.ranked_first) == ("som.hours", "som.phone"))
    assert pair.asked == QUESTIONS_KEPT + 1 and pair.example == shared
    hits, asked = result.by_entry["som.hours"]
    assert asked == QUESTIONS_KEPT + 1 and hits < asked
    assert result.entry_accuracy("som.hours") == hits / asked
    assert result.questions == sum(asked for _, asked in result.by_entry.values())
    assert result.accuracy == result.correct / result.questions
    assert 0.5 < result.accuracy < 1


def test_each_question_is_ranked_by_a_ranker_that_does_not_know_it(small_content):
    kb = KnowledgeBase.load(small_content)
    listed = Counter(q for e in kb.entries.values() for q in e.questions)
    ranked: list[tuple[str, int]] = []

    class Spy(EntryRanker):
        def __init__(self, kb: KnowledgeBase) -> None:
            super().__init__(kb)
            self.known = Counter(q for e in kb.entries.values() for q in e.questions)

        def rank(self, text, context):
            ranked.append((text, self.known[text]))
            return super().rank(text, context)

    result = check(kb, ranker=Spy)

    assert len(ranked) == result.questions == sum(len(e.questions) for e in EntryRanker(kb).entries)
    assert all(known == listed[text] - 1 for text, known in ranked)


def test_content_check_lists_the_confusions(small_content, result, monkeypatch, capsys):
    shared = _shared(small_content)
    monkeypatch.setenv("SOM_CONTENT_DIR", str(small_content))

    assert cli.main(["content-check", "--confusions", "1000"]) == 0

    out = capsys.readouterr().out.splitlines()
    figure = next(line for line in out if line.startswith("Sin cada pregunta"))
    assert f"en {result.correct} de {result.questions} casos" in figure
    header = out.index("Preguntas que el asistente confunde (deje fuera cada pregunta y vea qué respuesta gana):")
    pairs = out[header + 1 :]
    assert len(pairs) == len(result.pairs()) < 1000
    assert f"  som.hours → som.phone (1 de {QUESTIONS_KEPT + 1}): «{shared}»" in pairs


def test_content_check_lists_fifteen_confusions_by_default(small_content, monkeypatch, capsys):
    monkeypatch.setenv("SOM_CONTENT_DIR", str(small_content))
    assert cli.main(["content-check", "--confusions"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("Preguntas que el asistente confunde"))
    assert len(out[header + 1 :]) == 15
