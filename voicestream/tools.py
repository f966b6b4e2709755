"""Tools the model may call while it speaks: a safe calculator (never ``eval``).

``run_tool(name, input)`` returns ``(content, is_error)`` for a ``tool_result``:
unknown tools and bad input give the model an error to read, never a crash.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

CALCULATOR: dict[str, Any] = {
    "name": "calculator",
    "description": (
        "Evaluate an arithmetic expression exactly and return the number. Supports "
        "numbers, + - * / // % **, parentheses, and sqrt, abs, round, min, max, pi, e."
    ),
    "input_schema": {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (3 + 4) * 12.5"}},
        "required": ["expression"],
    },
}
TOOLS = [CALCULATOR]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_EXPONENT = 1000
MAX_LENGTH = 500


class ToolError(ValueError):
    pass


def calculate(expression: str) -> str:
    """The value of an arithmetic ``expression``, as text; :class:`ToolError` if it is not one."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    try:
        value = _evaluate(tree.body)
    except (ArithmeticError, ValueError, TypeError) as e:
        raise ToolError(f"cannot compute {expression!r}: {e}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value)


def _evaluate(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponents above {MAX_EXPONENT} are not computed")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args))
    raise ValueError(f"'{ast.unparse(node)}' is not allowed")


def run_tool(name: str, tool_input: Any) -> tuple[str, bool]:
    """``(content, is_error)`` of calling tool ``name`` with ``tool_input``."""
    if name != "calculator":
        return f"unknown tool '{name}'; the only tool is calculator", True
    expression = tool_input.get("expression") if isinstance(tool_input, dict) else None
    if not isinstance(expression, str):
        return "the calculator needs {'expression': '...'}", True
    try:
        return calculate(expression), False
    except ToolError as e:
        return str(e), True
