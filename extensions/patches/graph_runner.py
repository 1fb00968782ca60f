"""Every graph run (the NLU pipeline once a message, the policies twice) is handed to dask, whose
scheduler costs more than the policy itself. The graph's nodes now run in a fixed order, computed
once per set of targets."""

from __future__ import annotations

from typing import Any

from rasa.engine.exceptions import GraphRunError
from rasa.engine.runner.dask import DaskGraphRunner

from extensions.patches import Patch


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


# SHA-256 of the Rasa 3.6 source this replaces; a different source keeps Rasa's own code.
RASA_SOURCE_SHA256 = "45f0f52f574f3aa9546a552bf671183e171092c18b66e97f5771a7fa295de37e"
PATCH = Patch("graph_runner", DaskGraphRunner, "run", run_graph, RASA_SOURCE_SHA256)
