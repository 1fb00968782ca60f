"""The NLU pipeline's per-message shortcuts, as graph components named in config.yml.

They are Rasa's own components, registered under their own names, with only the per-message path
replaced; training, persistence and every other case run Rasa's code (the base class).

- `CountVectorsFeaturizer` turns each message into matrices through scikit-learn's `transform`,
  whose checks and sparse conversions cost more than the counting. `FastCountVectorsFeaturizer`
  builds one message's matrices from the vocabulary directly, and counts each token once.
- `DIETClassifier` stacks each featurizer's sparse matrix onto the others one `hstack` at a time
  (with a deep copy first), turns its one message into training-style model data (empty
  placeholders deep-copied from every feature matrix, a batch generator), and calls its traced
  TensorFlow function through the generic dispatch that re-inspects every input. `FastDIETClassifier`
  stacks all matrices at once, builds the model's input arrays from the message's features directly,
  and calls the traced function with the tensors directly.

`tests/test_nlu_components.py` checks each against the base class, matrix entry for matrix entry and
parse for parse.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse
from keras.utils.tf_utils import sync_to_numpy_or_python_type
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.shared.constants import DIAGNOSTIC_DATA
from rasa.shared.nlu.constants import FEATURE_TYPE_SENTENCE, FEATURE_TYPE_SEQUENCE, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.utils.tensorflow.constants import FEATURIZERS, MASK, SENTENCE, SEQUENCE, SEQUENCE_LENGTH
from rasa.utils.tensorflow.models import RasaModel
from sklearn.feature_extraction.text import CountVectorizer
from tensorflow.python.eager import context as tf_context
from tensorflow.python.framework.constant_op import convert_to_eager_tensor

_TEXT_INPUTS = [MASK, SENTENCE, SEQUENCE, SEQUENCE_LENGTH]


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class FastCountVectorsFeaturizer(CountVectorsFeaturizer):
    """Rasa's `CountVectorsFeaturizer`; one message's matrices without scikit-learn's `transform`."""

    def _create_features(self, attribute: str, all_tokens: list[list[str]]) -> tuple[list[Any], list[Any]]:
        """The same matrices, entry for entry, as `transform` followed by Rasa's `sort_indices`, for
        one message as `process` asks for it (in training too; several at once go to Rasa's)."""
        vectorizer = (self.vectorizers or {}).get(attribute)
        if vectorizer is None or len(all_tokens) != 1 or not all_tokens[0]:
            return super()._create_features(attribute, all_tokens)
        return count_vector_features(vectorizer, attribute, all_tokens[0])


def count_vector_features(
    vectorizer: CountVectorizer, attribute: str, tokens: list[str]
) -> tuple[list[Any], list[Any]]:
    counter = _counters.get(vectorizer) or _counters.setdefault(vectorizer, _VocabularyCounter(vectorizer))
    sequence = counter.matrix([counter.of_token(token) for token in tokens])
    sentence = counter.matrix([counter.of(" ".join(tokens))]) if attribute in DENSE_FEATURIZABLE_ATTRIBUTES else None
    return [sequence], [sentence]


class _VocabularyCounter:
    """What `CountVectorizer.transform` computes for a document: its known features' counts, sorted by
    column. Tokens recur from message to message, so their counts are kept."""

    TOKENS_KEPT = 20_000

    def __init__(self, vectorizer: CountVectorizer) -> None:
        vectorizer._check_vocabulary()  # as `transform` does; sets `vocabulary_`
        self.vocabulary = vectorizer.vocabulary_
        self.analyze = vectorizer.build_analyzer()
        self.binary = vectorizer.binary
        self.dtype = vectorizer.dtype
        self.of_token = functools.lru_cache(maxsize=self.TOKENS_KEPT)(self.of)

    def of(self, document: str) -> tuple[tuple[int, int], ...]:
        counts: dict[int, int] = {}
        for feature in self.analyze(document):
            column = self.vocabulary.get(feature)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        return tuple(sorted(counts.items()))

    def matrix(self, rows: list[tuple[tuple[int, int], ...]]) -> scipy.sparse.coo_matrix:
        cells = [cell for row in rows for cell in row]
        row = np.repeat(np.arange(len(rows)), [len(counts) for counts in rows])
        column = np.array([column for column, _ in cells], dtype=np.int64)
        data = np.ones(len(cells)) if self.binary else np.array([count for _, count in cells])
        shape = (len(rows), len(self.vocabulary))
        return scipy.sparse.coo_matrix((data.astype(self.dtype), (row, column)), shape=shape)


_counters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR],
    is_trainable=True,
)
class FastDIETClassifier(DIETClassifier):
    """Rasa's `DIETClassifier`; a message with only sparse text features (this pipeline's) goes to the
    traced model directly. Anything else goes to Rasa's `_predict`."""

    def _predict(self, message: Message) -> dict[str, Any] | None:
        batch = self._text_batch(message)
        if batch is None:
            return super()._predict(message)
        return predict_traced(self.model, batch)

    def _text_batch(self, message: Message) -> tuple[np.ndarray, ...] | None:
        """Mask, sentence features, sequence features and sequence length, as `prepare_batch` gives them."""
        signature = getattr(self.model, "predict_data_signature", None)
        if signature is None or list(signature) != [TEXT] or list(signature[TEXT]) != _TEXT_INPUTS:
            return None
        featurizers = self.component_config[FEATURIZERS]
        if message.get_dense_features(TEXT, featurizers) != (None, None):
            return None
        sequence = combine_sparse(message, FEATURE_TYPE_SEQUENCE, featurizers)
        sentence = combine_sparse(message, FEATURE_TYPE_SENTENCE, featurizers)
        if sequence is None or sentence is None:
            return None
        length = np.array([sequence.shape[0]], np.float32)
        return (np.ones((1, 1, 1), np.float32), *_sparse_input(sentence), *_sparse_input(sequence), length)


def combine_sparse(message: Message, kind: str, featurizers: list[str]) -> scipy.sparse.coo_matrix | None:
    """The text's sparse features of one kind, stacked in one step: entry for entry the matrix of
    `Message.get_sparse_features` (Rasa's successive `hstack`s); None when there are none or when
    their row counts differ (Rasa's path then raises its own error)."""
    blocks = [
        f.features.tocoo()
        for f in message.features
        if f.attribute == TEXT and f.is_sparse() and f.type == kind and (f.origin in featurizers or not featurizers)
    ]
    if not blocks or any(block.shape[0] != blocks[0].shape[0] for block in blocks):
        return None
    offsets = np.cumsum([0] + [block.shape[1] for block in blocks])
    data = np.concatenate([block.data for block in blocks])
    row = np.concatenate([block.row for block in blocks])
    column = np.concatenate([block.col + offset for block, offset in zip(blocks, offsets)])
    return scipy.sparse.coo_matrix((data, (row, column)), shape=(blocks[0].shape[0], int(offsets[-1])))


def _sparse_input(matrix: scipy.sparse.coo_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One example's sparse matrix as a batch of one: (example, row, column) indices, values, shape."""
    indices = np.stack([np.zeros_like(matrix.row), matrix.row, matrix.col], axis=1).astype(np.int64)
    shape = np.array((1, *matrix.shape), np.int64)
    return indices, matrix.data.astype(np.float32), shape


def predict_traced(model: RasaModel, batch_in: Sequence[np.ndarray]) -> dict[str, Any]:
    """`RasaModel._rasa_predict` once the prediction function is traced: the same outputs."""
    step = model._tf_predict_step
    if step is None or model._run_eagerly or not model.prepared_for_prediction:
        return model._rasa_predict(batch_in)  # traces on the first call
    flat = model.__dict__.get("_flat_predict_step")
    if flat is None or flat.function is not step:
        flat = model._flat_predict_step = _FlatPredictStep(step)
    outputs = sync_to_numpy_or_python_type(flat(batch_in))
    if DIAGNOSTIC_DATA in outputs:
        outputs[DIAGNOSTIC_DATA] = model._empty_lists_to_none_in_dict(outputs[DIAGNOSTIC_DATA])
    return outputs


class _FlatPredictStep:
    """A model's traced prediction function, called with its input tensors directly."""

    def __init__(self, function: Any) -> None:
        self.function = function
        self.concrete = function.get_concrete_function()
        (self.specs,) = function.input_signature

    def __call__(self, batch_in: Sequence[np.ndarray]) -> Any:
        if len(batch_in) != len(self.specs):
            return self.function(batch_in)  # Rasa's dispatch, and its error
        context = tf_context.context()
        tensors = [convert_to_eager_tensor(value, context, spec.dtype) for value, spec in zip(batch_in, self.specs)]
        return self.concrete._call_flat(tensors, self.concrete.captured_inputs)
