"""The per-turn shortcuts in `extensions.rasa_speedups` give Rasa's own answers, only cheaper."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import jsonschema
import numpy as np
import pytest
import scipy.sparse
from aiohttp import web
from rasa.core.actions.action import RemoteAction
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event, SlotSet, UserUttered
from rasa.shared.nlu.constants import FEATURE_TYPE_SEQUENCE, TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.loading import load_data
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.utils.common import all_subclasses
from rasa.utils.endpoints import EndpointConfig
from sklearn.feature_extraction.text import CountVectorizer

from bot.settings import PROJECT_ROOT
from extensions import rasa_speedups  # importing `channels` installs them
from extensions.rasa_speedups import count_vector_features

VALID_ANSWER = {
    "events": [
        {"event": "slot", "name": "country", "value": "Chile", "timestamp": None},
        {"event": "bot", "text": "hola", "data": {"buttons": [{"title": "Sí", "payload": "/affirm"}]}},
        {"event": "action", "name": "action_listen"},
    ],
    "responses": [{"text": "Para trabajar en Chile…", "buttons": [{"title": "Menú", "payload": "/show_menu"}]}],
}
INVALID_ANSWERS = [
    [],
    {"events": "x"},
    {"events": [{}]},
    {"events": [{"event": 7}]},
    {"events": [{"event": "no_such_event"}]},
    {"events": [{"event": "slot"}]},
    {"events": [{"event": "slot", "name": 3, "value": 1}]},
    {"events": [{"event": "slot", "name": "a", "value": 1, "timestamp": "ayer"}]},
    {"events": [{"event": "user", "parse_data": {"intent": {"name": 3}}}]},
    {"responses": [1]},
]


def rasa_verdict(answer) -> str | None:
    try:
        jsonschema.validate(answer, RemoteAction.action_response_format_spec())
    except jsonschema.ValidationError as error:
        return error.message
    return None


def test_action_answers_are_still_validated_against_rasas_schema():
    assert RemoteAction._validate_action_result is rasa_speedups.validate_action_result
    for answer in [VALID_ANSWER, {}, {"events": []}]:
        assert rasa_verdict(answer) is None
        assert RemoteAction("action_answer", None)._validate_action_result(answer) is True
    for answer in INVALID_ANSWERS:
        expected = rasa_verdict(answer)
        assert expected is not None
        with pytest.raises(jsonschema.ValidationError) as raised:
            RemoteAction("action_answer", None)._validate_action_result(answer)
        assert raised.value.message.startswith(expected)


def test_event_classes_are_found_as_rasa_finds_them():
    names = {event_class.type_name for event_class in all_subclasses(Event)}
    for name in names:
        expected = next(c for c in all_subclasses(Event) if c.type_name == name)
        assert Event.resolve_by_type(name) is expected
    assert Event.resolve_by_type("slot") is SlotSet and Event.resolve_by_type("user") is UserUttered
    assert Event.resolve_by_type("topic") is None  # Rasa's backwards compatibility
    assert Event.resolve_by_type("no_such_event", default=SlotSet) is SlotSet
    with pytest.raises(ValueError):
        Event.resolve_by_type("no_such_event")


async def _requests_and_peers(pauses: list[float]) -> tuple[list, list]:
    """Send one request, then one more after each pause; the answers and each request's client port."""
    peers = []

    async def webhook(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"events": [], "responses": []})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app, keepalive_timeout=5.0)  # what the action server (Sanic) keeps
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    endpoint = EndpointConfig(f"http://127.0.0.1:{port}/webhook")
    try:
        answers = [await endpoint.request(json={"n": 0}, method="post")]
        for n, pause in enumerate(pauses, start=1):
            await asyncio.sleep(pause)
            answers.append(await endpoint.request(json={"n": n}, method="post"))
    finally:
        await runner.cleanup()
    return answers, peers


def test_requests_to_an_endpoint_share_one_connection():
    answers, peers = asyncio.run(_requests_and_peers([0, 0, 0, 0]))
    assert answers == [{"events": [], "responses": []}] * 5
    assert len(set(peers)) == 1  # Rasa alone would open five connections


def test_idle_connections_are_dropped_before_the_server_drops_them():
    """Reusing a connection the server is closing loses the action call ("closing transport")."""
    pause = rasa_speedups.IDLE_CONNECTION_SECONDS + 0.5  # still open on the server side
    answers, peers = asyncio.run(_requests_and_peers([pause]))
    assert answers == [{"events": [], "responses": []}] * 2
    assert peers[0] != peers[1]


def test_stacked_features_equal_rasas_successive_hstacks():
    rng = np.random.default_rng(7)
    widths = (3, 40, 7, 120)
    for rows in (1, 5):
        features = [
            Features(scipy.sparse.random(rows, width, density=0.3, format="coo", dtype=np.float32, random_state=rng),
                     FEATURE_TYPE_SEQUENCE, TEXT, origin)
            for width, origin in zip(widths, ("regex", "lexical", "words", "chars"))
        ]  # fmt: skip
        origins = ["regex", "lexical", "words", "chars"]
        ours = rasa_speedups.combine_features(features, origins)
        theirs = rasa_speedups.rasas(Message, "_combine_features")(features, origins)
        assert (ours.type, ours.attribute, ours.origin) == (theirs.type, theirs.attribute, theirs.origin)
        assert ours.features.shape == theirs.features.shape == (rows, sum(widths))
        assert ours.features.dtype == theirs.features.dtype
        for part in ("row", "col", "data"):  # the same entries in the same order
            assert np.array_equal(getattr(ours.features, part), getattr(theirs.features, part))
    unequal = [features[0], Features(scipy.sparse.coo_matrix((2, 4)), FEATURE_TYPE_SEQUENCE, TEXT, "x")]
    with pytest.raises(ValueError):  # Rasa's own error
        rasa_speedups.combine_features(unequal, origins)


@pytest.mark.parametrize(
    "vectorizer",
    [
        CountVectorizer(token_pattern=r"(?u)\b\w+\b"),  # Rasa's word analyzer
        CountVectorizer(analyzer="char_wb", ngram_range=(1, 4)),
        CountVectorizer(analyzer="char_wb", ngram_range=(2, 3), binary=True),
    ],
)
def test_count_vectors_equal_rasas_through_scikit_learn(vectorizer):
    vectorizer.fit(["quiero trabajar en italia", "mis aportes en chile", "hola buenas tardes, aa"])
    featurizer = SimpleNamespace(vectorizers={TEXT: vectorizer})  # all that either version reads
    rasas = rasa_speedups.rasas(CountVectorsFeaturizer, "_create_features")
    for tokens in (["quiero", "trabajar", "en", "japón", "aa", "aa"], ["xyz"], ["Italia", "italia"]):
        ([sequence], [sentence]) = count_vector_features(featurizer, TEXT, [tokens])
        ([rasa_sequence], [rasa_sentence]) = rasas(featurizer, TEXT, [tokens])
        for ours, theirs in ((sequence, rasa_sequence), (sentence, rasa_sentence)):
            assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
            for part in ("row", "col", "data"):
                assert np.array_equal(getattr(ours, part), getattr(theirs, part))
    assert rasas(featurizer, TEXT, [[]]) == count_vector_features(featurizer, TEXT, [[]]) == ([None], [None])


def test_the_empty_domain_is_still_recognised():
    assert Domain.empty().is_empty()
    assert not Domain.from_dict({"intents": ["greet"]}).is_empty()


@pytest.mark.model
def test_the_trained_pipeline_parses_exactly_as_with_rasas_own_code(trained_model, monkeypatch):
    """DIET's direct call, the one-shot feature stacking and the runner without dask, end to end."""
    from rasa.core.agent import Agent
    from rasa.core.channels.channel import UserMessage

    texts = [
        example.get(TEXT) for example in load_data(str(PROJECT_ROOT / "tests" / "nlu" / "test_nlu.yml")).intent_examples
    ]
    agent = Agent.load(str(trained_model))

    def parse_all() -> list[dict]:
        return [asyncio.run(agent.processor.parse_message(UserMessage(text))) for text in texts]

    with monkeypatch.context() as rasa_only:
        for (owner, name), original in rasa_speedups.ORIGINALS.items():
            rasa_only.setattr(owner, name, original)
        expected = parse_all()
    assert DaskGraphRunner.run is rasa_speedups.run_graph
    for ours, theirs in zip(parse_all(), expected, strict=True):
        assert ours["intent"]["name"] == theirs["intent"]["name"], ours["text"]
        assert ours["intent"]["confidence"] == pytest.approx(theirs["intent"]["confidence"], abs=1e-6)
        assert [r["name"] for r in ours["intent_ranking"]] == [r["name"] for r in theirs["intent_ranking"]]
        assert ours["entities"] == theirs["entities"]
