"""The NLU components of `extensions.nlu` give what Rasa's own components give, only cheaper."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import scipy.sparse
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, FEATURE_TYPE_SEQUENCE, TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.loading import load_data
from rasa.shared.nlu.training_data.message import Message
from sklearn.feature_extraction.text import CountVectorizer

from bot.settings import PROJECT_ROOT
from extensions import patches
from extensions.nlu import FastCountVectorsFeaturizer, FastDIETClassifier, combine_sparse, count_vector_features
from extensions.patches import graph_runner

ORIGINS = ["regex", "lexical", "words", "chars"]


def _same_matrix(ours: scipy.sparse.coo_matrix, theirs: scipy.sparse.spmatrix) -> None:
    theirs = theirs.tocoo()
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    for part in ("row", "col", "data"):  # the same entries in the same order
        assert np.array_equal(getattr(ours, part), getattr(theirs, part))


def test_stacked_features_equal_rasas_successive_hstacks():
    rng = np.random.default_rng(7)
    widths = (3, 40, 7, 120)
    for rows in (1, 5):
        features = [
            Features(
                scipy.sparse.random(rows if kind == FEATURE_TYPE_SEQUENCE else 1, width, density=0.3, format="coo",
                                    dtype=np.float32, random_state=rng),
                kind, TEXT, origin,
            )
            for kind in (FEATURE_TYPE_SEQUENCE, FEATURE_TYPE_SENTENCE)
            for width, origin in zip(widths, ORIGINS)
        ]  # fmt: skip
        message = Message(data={TEXT: "hola"}, features=features)
        rasa_sequence, rasa_sentence = message.get_sparse_features(TEXT, ORIGINS)
        _same_matrix(combine_sparse(message, FEATURE_TYPE_SEQUENCE, ORIGINS), rasa_sequence.features)
        _same_matrix(combine_sparse(message, FEATURE_TYPE_SENTENCE, ORIGINS), rasa_sentence.features)
        _same_matrix(
            combine_sparse(message, FEATURE_TYPE_SEQUENCE, ORIGINS[2:]),
            message.get_sparse_features(TEXT, ORIGINS[2:])[0].features,
        )
    unequal = Message(
        data={TEXT: "x"},
        features=[features[0], Features(scipy.sparse.coo_matrix((9, 4)), FEATURE_TYPE_SEQUENCE, TEXT, "x")],
    )
    assert combine_sparse(unequal, FEATURE_TYPE_SEQUENCE, []) is None  # Rasa's path raises its own error
    with pytest.raises(ValueError):
        unequal.get_sparse_features(TEXT, [])


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
    featurizer = FastCountVectorsFeaturizer.__new__(FastCountVectorsFeaturizer)
    featurizer.vectorizers = {TEXT: vectorizer}  # all that either version reads
    for tokens in (["quiero", "trabajar", "en", "japón", "aa", "aa"], ["xyz"], ["Italia", "italia"]):
        ([sequence], [sentence]) = count_vector_features(vectorizer, TEXT, tokens)
        ([rasa_sequence], [rasa_sentence]) = CountVectorsFeaturizer._create_features(featurizer, TEXT, [tokens])
        _same_matrix(sequence, rasa_sequence)
        _same_matrix(sentence, rasa_sentence)
        assert featurizer._create_features(TEXT, [tokens])[0][0].nnz == sequence.nnz
    empty = ([None], [None])
    assert (
        CountVectorsFeaturizer._create_features(featurizer, TEXT, [[]])
        == featurizer._create_features(TEXT, [[]])
        == empty
    )


@pytest.mark.model
def test_the_trained_pipeline_parses_exactly_as_with_rasas_own_code(trained_model, monkeypatch):
    """The components and the patches together, end to end, against Rasa's components without patches."""
    from rasa.core.agent import Agent
    from rasa.core.channels.channel import UserMessage

    texts = [example.get(TEXT) for example in load_data(str(PROJECT_ROOT / "tests/nlu/test_nlu.yml")).intent_examples]
    agent = Agent.load(str(trained_model))

    def parse_all() -> list[dict]:
        return [asyncio.run(agent.processor.parse_message(UserMessage(text))) for text in texts]

    with monkeypatch.context() as rasa_only:
        rasa_only.setattr(FastDIETClassifier, "_predict", DIETClassifier._predict)
        rasa_only.setattr(FastCountVectorsFeaturizer, "_create_features", CountVectorsFeaturizer._create_features)
        expected = parse_all()
    try:
        patches.install({})
        assert DaskGraphRunner.run is graph_runner.run_graph
        ours = parse_all()
    finally:
        for patch in patches.all_patches():
            patch.uninstall()
    for mine, theirs in zip(ours, expected, strict=True):
        assert mine["intent"]["name"] == theirs["intent"]["name"], mine["text"]
        assert mine["intent"]["confidence"] == pytest.approx(theirs["intent"]["confidence"], abs=1e-6)
        assert [r["name"] for r in mine["intent_ranking"]] == [r["name"] for r in theirs["intent_ranking"]]
        assert mine["entities"] == theirs["entities"]
