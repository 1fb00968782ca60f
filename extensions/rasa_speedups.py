"""Per-turn costs of Rasa 3.6 that do no useful work, removed (issue 8; found with py-spy).

- Every action server answer is validated with `jsonschema.validate`, which first re-checks the
  schema itself against its meta-schema: about 30 ms of CPU per turn. The answer is still
  validated against the same schema, by a validator built once.
- Every event read from the tracker store looks its class up by walking the whole `Event`
  subclass tree (`Event.resolve_by_type`): most of the time of loading a tracker. The lookup is
  cached; an unknown name still goes through Rasa's own lookup.
- Every request to an endpoint (the action server) opens a new HTTP session and connection. Each
  endpoint now keeps one session per event loop, and its connections while they are in use.
- Every graph run (the NLU pipeline once a message, the policies twice) is handed to dask, whose
  scheduler costs more than the policy itself. The graph's nodes now run in a fixed order,
  computed once per set of targets.
- Every message checks whether the domain is empty by building an empty domain to compare with.
  The empty domain is now built once.
- The count-vector featurizers turn each message into matrices through scikit-learn's
  `transform`, whose checks and sparse conversions cost more than the counting. A message's
  matrices are now built from the vocabulary directly, and each token is counted once.
- The NLU classifier stacks each featurizer's sparse matrix onto the others one `hstack` at a
  time (with a deep copy first), turns its one message into training-style model data (empty
  placeholders deep-copied from every feature matrix, a batch generator), and calls its traced
  TensorFlow function through the generic dispatch that re-inspects every input. All matrices are
  now stacked at once, the message's input arrays built from its features directly, and the
  traced function called with the tensors directly.

`install()` runs wherever Rasa imports this package (see `channels/__init__.py`): the Rasa server,
and `rasa train` through the policy named in config.yml. `PATCHES` lists what it replaces and
`ORIGINALS` keeps Rasa's versions, so tests can compare both.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import numpy as np
import scipy.sparse
from jsonschema import validators
from jsonschema.exceptions import best_match
from keras.utils.tf_utils import sync_to_numpy_or_python_type
from rasa.core.actions.action import RemoteAction
from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.shared.constants import DIAGNOSTIC_DATA
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.features import Features
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.utils.common import all_subclasses
from rasa.utils.endpoints import DEFAULT_REQUEST_TIMEOUT, EndpointConfig
from rasa.utils.tensorflow.constants import FEATURIZERS, MASK, SENTENCE, SEQUENCE, SEQUENCE_LENGTH
from rasa.utils.tensorflow.models import RasaModel
from sklearn.feature_extraction.text import CountVectorizer
from tensorflow.python.eager import context as tf_context
from tensorflow.python.framework.constant_op import convert_to_eager_tensor

_event_classes: dict[str, type[Event]] = {}
IDLE_CONNECTION_SECONDS = 2.0


class ActionResultValidator:
    """Rasa's schema for action server answers, checked once and compiled.

    Each event is checked against the one alternative of the schema's `oneOf` that its `event`
    name selects (the alternatives differ by that name), instead of against all 22 of them. An
    invalid answer is re-validated against the whole schema, for Rasa's own error message.
    """

    def __init__(self) -> None:
        schema = RemoteAction.action_response_format_spec()
        validator_class = validators.validator_for(schema)
        validator_class.check_schema(schema)
        event_schema = schema["properties"]["events"]["items"]
        common = {key: value for key, value in event_schema.items() if key != "oneOf"}
        shape = {**schema, "properties": {**schema["properties"], "events": {"type": "array", "items": common}}}
        self.whole = validator_class(schema)
        self.shape = validator_class(shape)
        self.by_event = {each["properties"]["event"]["const"]: validator_class(each) for each in event_schema["oneOf"]}

    def first_error(self, result: Any) -> Exception | None:
        if self.shape.is_valid(result) and all(self._event_is_valid(event) for event in result.get("events") or ()):
            return None
        return best_match(self.whole.iter_errors(result))

    def _event_is_valid(self, event: dict[str, Any]) -> bool:
        validator = self.by_event.get(event["event"])
        return validator is not None and validator.is_valid(event)


_ACTION_RESULT = ActionResultValidator()


def validate_action_result(_action: RemoteAction, result: dict[str, Any]) -> bool:
    """Rasa's `_validate_action_result`: the same schema and error, without the schema re-check."""
    error = _ACTION_RESULT.first_error(result)
    if error is None:
        return True
    error.message += ". Failed to validate Action server response from API."
    raise error


def resolve_event_type(type_name: str, default: type[Event] | None = None) -> type[Event] | None:
    """`Event.resolve_by_type` from a table; rebuilt once when a name is missing (new classes)."""
    found = _event_classes.get(type_name)
    if found is None:
        _event_classes.clear()
        for event_class in all_subclasses(Event):
            _event_classes.setdefault(event_class.type_name, event_class)  # Rasa's first match wins
        found = _event_classes.get(type_name)
    return found if found is not None else rasas(Event, "resolve_by_type")(type_name, default)


def kept_alive_session(endpoint: EndpointConfig) -> _Borrowed:
    """`EndpointConfig.session`, reused by every request of the endpoint on the running loop.

    Idle connections are dropped after `IDLE_CONNECTION_SECONDS`, before the action server (Sanic:
    5 s) closes them: reusing a connection the server is closing loses that action call."""
    loop = asyncio.get_running_loop()
    session_loop, session = endpoint.__dict__.get("_kept_alive", (None, None))
    if session is None or session.closed or session_loop is not loop:
        auth = (
            aiohttp.BasicAuth(endpoint.basic_auth["username"], endpoint.basic_auth["password"])
            if endpoint.basic_auth
            else None
        )
        session = aiohttp.ClientSession(
            headers=endpoint.headers,
            auth=auth,
            timeout=aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT),
            connector=aiohttp.TCPConnector(keepalive_timeout=IDLE_CONNECTION_SECONDS),
        )
        endpoint._kept_alive = (loop, session)
    return _Borrowed(session)


class _Borrowed:
    """Lets Rasa write `async with endpoint.session()` without closing the shared session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __aenter__(self) -> aiohttp.ClientSession:
        return self.session

    async def __aexit__(self, *_exc: Any) -> None:
        return None


def run_graph(
    runner: DaskGraphRunner, inputs: dict[str, Any] | None = None, targets: list[str] | None = None
) -> dict[str, Any]:
    """`DaskGraphRunner.run` without dask: the same nodes called with the same arguments.

    As in Rasa, an input is passed on as `(name, value)`, each node returns `(name, output)`, a
    need nobody provides is passed as its bare name, and the result maps each target to its output."""
    run_targets = list(targets or runner._graph_schema.target_names)
    order = _execution_order(runner, tuple(run_targets))
    graph: dict[str, Any] = dict.fromkeys(order)
    runner._add_inputs_to_graph(inputs, graph)  # Rasa's check that inputs do not clash with nodes
    results = {name: given for name, given in graph.items() if given is not None}
    nodes = runner._graph_schema.nodes
    try:
        for name in order:
            if name not in results:
                needs = (results.get(need, need) for need in nodes[name].needs.values())
                results[name] = runner._instantiated_nodes[name](*needs)
    except RuntimeError as error:
        raise GraphRunError("Error running runner.") from error
    return dict(results[target] for target in run_targets)


def _execution_order(runner: DaskGraphRunner, targets: tuple[str, ...]) -> list[str]:
    """The targets and everything they need, each after what it needs (cached per targets)."""
    orders = runner.__dict__.setdefault("_execution_orders", {})
    if targets not in orders:
        nodes, order = runner._graph_schema.nodes, []

        def visit(name: str) -> None:
            if name in order or name not in nodes:  # done, or an input
                return
            for need in nodes[name].needs.values():
                visit(need)
            order.append(name)

        for target in targets:
            visit(target)
        orders[targets] = order
    return orders[targets]


def domain_is_empty(domain: Domain) -> bool:
    """`Domain.is_empty`, compared with an empty domain built once."""
    return domain.as_dict() == _empty_domain()


@functools.cache
def _empty_domain() -> dict[str, Any]:
    return Domain.empty().as_dict()


def count_vector_features(
    featurizer: CountVectorsFeaturizer, attribute: str, all_tokens: list[list[str]]
) -> tuple[list[Any], list[Any]]:
    """`CountVectorsFeaturizer._create_features` for one message, as `process` asks for it (in
    training too; several at once go to Rasa's): the same matrices, entry for entry, as
    scikit-learn's `transform` followed by Rasa's `sort_indices`."""
    vectorizer = (featurizer.vectorizers or {}).get(attribute)
    if vectorizer is None or len(all_tokens) != 1 or not all_tokens[0]:
        return rasas(CountVectorsFeaturizer, "_create_features")(featurizer, attribute, all_tokens)
    counter = _counters.get(vectorizer) or _counters.setdefault(vectorizer, _VocabularyCounter(vectorizer))
    tokens = all_tokens[0]
    sequence = counter.matrix([counter.of_token(token) for token in tokens])
    sentence = counter.matrix([counter.of(" ".join(tokens))]) if attribute in DENSE_FEATURIZABLE_ATTRIBUTES else None
    return [sequence], [sentence]


class _VocabularyCounter:
    """What `CountVectorizer.transform` computes for a document: its known features' counts,
    sorted by column. Tokens recur from message to message, so their counts are kept."""

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


def combine_features(features: list[Features], featurizers: list[str]) -> Features | None:
    """`Message._combine_features` for sparse features: one stacking of all the featurizers'
    matrices, entry for entry what Rasa's successive `hstack`s give."""
    if len(features) < 2 or not all(f.is_sparse() for f in features):
        return rasas(Message, "_combine_features")(features, featurizers)
    blocks = [f.features.tocoo() for f in features]
    rows = blocks[0].shape[0]
    if any(block.shape[0] != rows for block in blocks):
        return rasas(Message, "_combine_features")(features, featurizers)  # Rasa's own error
    offsets = np.cumsum([0] + [block.shape[1] for block in blocks])
    data = np.concatenate([block.data for block in blocks])
    row = np.concatenate([block.row for block in blocks])
    column = np.concatenate([block.col + offset for block, offset in zip(blocks, offsets)])
    matrix = scipy.sparse.coo_matrix((data, (row, column)), shape=(rows, int(offsets[-1])))
    return Features(matrix, features[0].type, features[0].attribute, featurizers)


class FlatPredictStep:
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


def diet_predict(classifier: DIETClassifier, message: Message) -> dict[str, Any] | None:
    """`DIETClassifier._predict` for a message whose text has only sparse features (this
    pipeline's): the model's input built from them directly, the arrays Rasa's model data and
    batch preparation make of them. Anything else goes to Rasa's."""
    batch = _text_batch(classifier, message)
    if batch is None:
        return rasas(DIETClassifier, "_predict")(classifier, message)
    return classifier.model._rasa_predict(batch)


def _text_batch(classifier: DIETClassifier, message: Message) -> tuple[np.ndarray, ...] | None:
    """Mask, sentence features, sequence features and sequence length, as `prepare_batch` gives them."""
    signature = getattr(classifier.model, "predict_data_signature", None)
    if signature is None or list(signature) != [TEXT] or list(signature[TEXT]) != _TEXT_INPUTS:
        return None
    featurizers = classifier.component_config[FEATURIZERS]
    if message.get_dense_features(TEXT, featurizers) != (None, None):
        return None
    sequence, sentence = message.get_sparse_features(TEXT, featurizers)
    if sequence is None or sentence is None:
        return None
    length = np.array([sequence.features.shape[0]], np.float32)
    return (
        np.ones((1, 1, 1), np.float32),
        *_sparse_input(sentence.features),
        *_sparse_input(sequence.features),
        length,
    )


def _sparse_input(matrix: scipy.sparse.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One example's sparse matrix as a batch of one: (example, row, column) indices, values, shape."""
    coo = matrix.tocoo()
    indices = np.stack([np.zeros_like(coo.row), coo.row, coo.col], axis=1).astype(np.int64)
    shape = np.array((1, *coo.shape), np.int64)
    return indices, coo.data.astype(np.float32), shape


def rasa_predict(model: RasaModel, batch_in: Sequence[np.ndarray]) -> dict[str, Any]:
    """`RasaModel._rasa_predict` once the prediction function is traced: the same outputs."""
    step = model._tf_predict_step
    if step is None or model._run_eagerly or not model.prepared_for_prediction:
        return rasas(RasaModel, "_rasa_predict")(model, batch_in)  # traces on the first call
    flat = model.__dict__.get("_flat_predict_step")
    if flat is None or flat.function is not step:
        flat = model._flat_predict_step = FlatPredictStep(step)
    outputs = sync_to_numpy_or_python_type(flat(batch_in))
    if DIAGNOSTIC_DATA in outputs:
        outputs[DIAGNOSTIC_DATA] = model._empty_lists_to_none_in_dict(outputs[DIAGNOSTIC_DATA])
    return outputs


_counters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TEXT_INPUTS = [MASK, SENTENCE, SEQUENCE, SEQUENCE_LENGTH]
PATCHES: list[tuple[Any, str, Any]] = [
    (RemoteAction, "_validate_action_result", validate_action_result),
    (Event, "resolve_by_type", staticmethod(resolve_event_type)),
    (EndpointConfig, "session", kept_alive_session),
    (DaskGraphRunner, "run", run_graph),
    (Domain, "is_empty", domain_is_empty),
    (CountVectorsFeaturizer, "_create_features", count_vector_features),
    (Message, "_combine_features", staticmethod(combine_features)),
    (DIETClassifier, "_predict", diet_predict),
    (RasaModel, "_rasa_predict", rasa_predict),
]
ORIGINALS: dict[tuple[Any, str], Any] = {(owner, name): owner.__dict__[name] for owner, name, _ in PATCHES}


def rasas(owner: Any, name: str) -> Callable:
    """Rasa's own version of a replaced function, callable as `owner.name` was."""
    return ORIGINALS[(owner, name)].__get__(None, owner)


def install() -> None:
    for owner, name, replacement in PATCHES:
        setattr(owner, name, replacement)
