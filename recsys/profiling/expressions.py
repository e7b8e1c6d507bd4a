"""A small, safe, vectorised expression language for tag conditions and confidence formulas.

Rules in ``tags.yaml`` say things like::

    when: interest_beauty >= 0.135 and engagement_beauty >= 3
    confidence: saturate(engagement_beauty, 10) * clip(interest_beauty / 0.3, 0, 1)

An expression is parsed once with Python's ``ast`` and only these forms are allowed: numbers,
feature names, ``+ - * /``, unary minus, comparisons (chains too), ``and`` / ``or`` / ``not``
and calls of the functions in ``FUNCTIONS``. Evaluation maps every name to a whole column, so
a rule costs a few numpy operations however many users there are. Comparisons with a missing
value (NaN) are false.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping

import numpy as np


def _saturate(x, k):
    """1 - exp(-x / k): 0 without evidence, 0.63 at k, 0.95 at 3k."""
    return 1.0 - np.exp(-np.maximum(x, 0.0) / k)


FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "saturate": _saturate,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "log": np.log,
    "log1p": np.log1p,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "abs": np.abs,
    "min": np.minimum,
    "max": np.maximum,
    "clip": np.clip,
}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class ExpressionError(ValueError):
    """An expression that does not parse, uses a forbidden form or an unknown name."""


class Expression:
    """A parsed expression; ``evaluate(columns)`` returns one value per row."""

    def __init__(self, source: str) -> None:
        self.source = str(source).strip()
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as err:
            raise ExpressionError(f"cannot parse {self.source!r}: {err.msg}") from None
        self._tree = tree.body
        names: list[str] = []
        self._check(self._tree, names)
        self.names: tuple[str, ...] = tuple(dict.fromkeys(names))

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def _check(self, node: ast.AST, names: list[str]) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                raise ExpressionError(
                    f"{self.source!r}: only numbers are allowed, got {node.value!r}"
                )
            return
        if isinstance(node, ast.Name):
            names.append(node.id)
            return
        if isinstance(node, ast.Call):
            if (
                not isinstance(node.func, ast.Name)
                or node.func.id not in FUNCTIONS
                or node.keywords
            ):
                raise ExpressionError(
                    f"{self.source!r}: unknown function; allowed: {sorted(FUNCTIONS)}"
                )
            for arg in node.args:
                self._check(arg, names)
            return
        allowed = (
            (ast.BinOp, tuple(_BINARY)),
            (ast.UnaryOp, (ast.USub, ast.UAdd, ast.Not)),
            (ast.BoolOp, (ast.And, ast.Or)),
        )
        for kind, ops in allowed:
            if isinstance(node, kind):
                if not isinstance(node.op, ops):
                    break
                for child in ast.iter_child_nodes(node):
                    if not isinstance(child, (ast.operator, ast.unaryop, ast.boolop)):
                        self._check(child, names)
                return
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            for child in [node.left, *node.comparators]:
                self._check(child, names)
            return
        raise ExpressionError(f"{self.source!r}: {type(node).__name__} is not allowed")

    def evaluate(self, columns: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
        """Values of the expression for ``n_rows`` rows; names are looked up in ``columns``."""
        missing = [n for n in self.names if n not in columns]
        if missing:
            raise ExpressionError(f"{self.source!r}: unknown features {missing}")
        out = self._eval(self._tree, columns)
        return np.broadcast_to(np.asarray(out), (n_rows,))

    def _eval(self, node: ast.AST, cols: Mapping[str, np.ndarray]):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return np.asarray(cols[node.id], dtype=np.float64)
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id](*(self._eval(a, cols) for a in node.args))
        if isinstance(node, ast.BinOp):
            with np.errstate(divide="ignore", invalid="ignore"):
                return _BINARY[type(node.op)](
                    self._eval(node.left, cols), self._eval(node.right, cols)
                )
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, cols)
            if isinstance(node.op, ast.Not):
                return ~np.asarray(value, dtype=bool)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BoolOp):
            parts = [np.asarray(self._eval(v, cols), dtype=bool) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return combine.reduce(np.broadcast_arrays(*parts))
        return self._compare(node, cols)

    def _compare(self, node: ast.Compare, cols: Mapping[str, np.ndarray]) -> np.ndarray:
        left = self._eval(node.left, cols)
        result = np.asarray(True)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._eval(right_node, cols)
            result = result & _COMPARE[type(op)](left, right)
            left = right
        return result
