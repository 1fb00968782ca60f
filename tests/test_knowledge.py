"""The knowledge base as shipped is valid and complete, and the checker catches each kind of mistake."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bot.knowledge import ANSWERED_INTENTS, MAX_MESSAGE_CHARS, ContentError, KnowledgeBase, LiveKnowledgeBase
from bot.ranker import EntryRanker
from bot.settings import CONTENT_DIR, NLU_DIR
from bot.sources import Source
from bot.vocabulary import LiveVocabulary


def test_every_answered_intent_has_exactly_one_main_entry(kb):
    for intent in ANSWERED_INTENTS:
        assert kb.main_entry(intent) is not None, intent


def test_every_entry_is_sourced_dated_and_phone_sized(kb):
    for entry in kb.entries.values():
        assert entry.sources, entry.id
        assert entry.reviewed.year >= 2026, entry.id
        assert all(len(m) <= MAX_MESSAGE_CHARS for m in entry.messages), entry.id


def test_country_table_covers_the_countries_people_name(kb):
    required = {
        "España", "Chile", "Argentina", "Estados Unidos", "Italia", "Japón", "Corea del Sur", "Canadá",
        "Uruguay", "Ecuador", "Bolivia", "Colombia", "Venezuela", "Brasil", "Alemania", "Francia",
        "Reino Unido", "México",
    }  # fmt: skip
    assert required <= set(kb.countries.by_name)
    andean = {c.name for c in kb.countries if c.andean_community}
    assert andean == {"Bolivia", "Colombia", "Ecuador"}


def test_menu_offers_the_seven_audiences(kb):
    assert [item.intent for item in kb.menu] == [
        "work_abroad", "rights_abroad", "return_to_peru", "returned_migrant",
        "family_abroad", "andean_worker", "foreigner_work_peru",
    ]  # fmt: skip


def test_unverified_contact_data_is_flagged_for_review(kb):
    """The facts file attributes 0800-16872 to SUNAFIL: the SOM must re-check it."""
    contact = kb.main_entry("contact_channels")
    assert "0800-16872" in " ".join(contact.messages)
    assert contact.verify and "0800" in contact.verify


@pytest.fixture
def content_copy(tmp_path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, target)
    return target


def _edit_first_entry(content_dir: Path, file: str, change) -> str:
    path = content_dir / file
    data = yaml.safe_load(path.read_text())
    entry = data["entries"][0]
    change(entry)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return entry["id"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda e: e.pop("sources"), "missing sources"),
        (lambda e: e.pop("reviewed"), "'reviewed' date"),
        (lambda e: e.update(buttons=[{"title": "x", "goto": "no.such.entry"}]), "missing entry 'no.such.entry'"),
        (lambda e: e.update(links=[{"title": "x", "url": "htp:/broken"}]), "malformed link"),
        (lambda e: e.update(messages=["a" * (MAX_MESSAGE_CHARS + 1)]), f"{MAX_MESSAGE_CHARS + 1} characters"),
        (lambda e: e.update(sources=["https://andina.pe"]), "bare domain 'https://andina.pe'"),
        (lambda e: e.update(sources=["https://andina.pe/noticia-123.aspx"], verify=None), "no primary source"),
        (lambda e: e.update(verify="solo prensa", messages=["El trámite es gratuito."]), "never tells the person"),
        (lambda e: e.update(aspects=["price"]), "unknown aspects ['price']"),
        (lambda e: e.update(country="Narnia"), "unknown country 'Narnia'"),
        (lambda e: e.update(topic="weather"), "unknown topic 'weather'"),
        (lambda e: e.update(title="Convenio con un país"), "is also social_security.by_country's"),
        (lambda e: e.update(follows=["weather"], aspects=["cost"]), "unknown topic 'weather'"),
        (lambda e: e.update(follows=["contact_channels"], aspects=[]), "answers no aspect"),
    ],
)
def test_checker_names_file_entry_and_problem(content_copy, change, expected):
    entry_id = _edit_first_entry(content_copy, "som.yml", change)
    with pytest.raises(ContentError) as error:
        KnowledgeBase.load(content_copy)
    assert any(p.startswith(f"som.yml: {entry_id}") and expected in p for p in error.value.problems), error.value


def test_content_edits_are_live_and_bad_edits_are_ignored(content_copy, monkeypatch):
    monkeypatch.setattr(LiveKnowledgeBase, "CHECK_INTERVAL_SECONDS", 0.0)
    live = LiveKnowledgeBase(content_copy)
    entry_id = _edit_first_entry(content_copy, "som.yml", lambda e: e.update(messages=["Texto nuevo."]))
    time.sleep(0.01)
    assert live.current().entry(entry_id).messages == ("Texto nuevo.",)
    _edit_first_entry(content_copy, "som.yml", lambda e: e.pop("sources"))
    assert live.current().entry(entry_id).messages == ("Texto nuevo.",)


def test_words_added_to_the_content_are_known_after_the_reload(content_copy, monkeypatch):
    monkeypatch.setattr(LiveKnowledgeBase, "CHECK_INTERVAL_SECONDS", 0.0)
    vocabulary = LiveVocabulary(sorted(NLU_DIR.glob("*.yml")), LiveKnowledgeBase(content_copy))
    assert vocabulary.current().is_unreadable("xoquetzalli")
    _edit_first_entry(content_copy, "som.yml", lambda e: e.update(messages=["Consulte por Xoquetzalli."]))
    time.sleep(0.01)
    assert not vocabulary.current().is_unreadable("xoquetzalli")


def test_every_fact_has_a_primary_source_or_is_flagged_and_no_bare_domains(kb):
    items = [(e.id, e.sources, e.verify) for e in kb.entries.values()]
    items += [(c.name, c.sources, c.verify) for c in kb.countries]
    for name, sources, verify in items:
        assert not [s.ref for s in sources if s.is_bare_domain], name
        assert verify or any(kb.policy.is_primary(s) for s in sources), name


def test_the_person_sees_the_institution_and_never_a_secondary_source(kb):
    assert kb.policy.shown([Source("leaflet")]) == "folleto del SOM"
    secondary, official = Source("https://ro.scribd.com/document/1"), Source("https://www.migraciones.gob.pe/tramite/")
    assert kb.policy.shown([secondary]) is None
    assert (
        kb.policy.shown([secondary, official])
        == "Superintendencia Nacional de Migraciones — https://www.migraciones.gob.pe/tramite/"
    )
    named = Source("https://www.gob.pe/74664-cancilleria", name="Cancillería del Perú")
    assert kb.policy.shown([named]).startswith("Cancillería del Perú — ")
    assert not kb.policy.is_primary(Source("https://gob.pe.example.com/page")), "a look-alike domain is not gob.pe"


def test_every_answerable_entry_says_how_people_ask_for_it(kb):
    for entry in EntryRanker(kb).entries:
        assert len(entry.questions) >= 3, entry.id


def test_stale_items_are_listed_for_the_editors(content_copy):
    _edit_first_entry(content_copy, "som.yml", lambda e: e.update(reviewed=dt.date(2020, 1, 1)))
    result = subprocess.run(
        [sys.executable, "-m", "bot", "content-check", "--stale", "365", "--today", "2026-12-02"],
        capture_output=True, text=True, env={**os.environ, "SOM_CONTENT_DIR": str(content_copy)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stale = [line for line in result.stdout.splitlines() if "2020-01-01" in line]
    assert len(stale) == 1 and "som.yml" in stale[0], result.stdout
