"""A safe arithmetic evaluator: parses with `ast` and walks a whitelist, never evals code.

Choices (the model is told the same in the tool's docstring):
- `^` means power (users type it), so `2^3` is 8; `×`, `÷` and `−` mean `*`, `/` and `-`.
- Python's number rules: `/` always gives a float (`4/2` is `2.0`), `//` and `%` floor;
  `-2**2` is -4 and `2**3**2` is 512 (power binds tighter than unary minus, right to left).
- Literals as Python writes them: `1_000`, `1e3`, `0x1f`, `0b101`; no complex numbers or booleans.
- Integer-only functions (factorial, gcd, lcm, comb, perm, round's digits) accept whole floats.
- Every operation is bounded before or right after it runs: integers stay below
  10**MAX_INT_DIGITS, floats must be finite, exponents, factorials and combinations are checked
  first, so no input of at most MAX_LENGTH characters and MAX_NODES nodes takes more than a few ms.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from types import MappingProxyType

Number = int | float

MAX_LENGTH = 1000  # characters in the expression
MAX_NODES = 200  # AST nodes, as counted by ast.walk
MAX_INT_DIGITS = 4300  # digits of any integer, also Python's default int->str limit
MAX_FACTORIAL = 1000  # largest factorial argument (1000! has 2,568 digits)
MAX_ROUND_DIGITS = 400  # largest |ndigits| for round()

_INT_LIMIT = 10**MAX_INT_DIGITS
_TOO_BIG = f"the result would have more than {MAX_INT_DIGITS} digits"

CONSTANTS: MappingProxyType[str, float] = MappingProxyType(
    {"pi": math.pi, "e": math.e, "tau": math.tau}
)

_BINARY: MappingProxyType[type[ast.operator], Callable[[Number, Number], Number]] = (
    MappingProxyType(
        {
            ast.Add: operator.add,
            ast.Sub: operator.sub,
            ast.Mult: operator.mul,
            ast.Div: operator.truediv,
            ast.FloorDiv: operator.floordiv,
            ast.Mod: operator.mod,
        }
    )
)

_OPERATOR_SYMBOLS: MappingProxyType[type[ast.AST], str] = MappingProxyType(
    {
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.BitXor: "xor",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.MatMult: "@",
        ast.Invert: "~",
        ast.Not: "not",
    }
)

_UNSUPPORTED: MappingProxyType[type[ast.AST], str] = MappingProxyType(
    {
        ast.Attribute: "attribute access (a.b)",
        ast.Subscript: "indexing (a[b])",
        ast.Lambda: "lambda",
        ast.ListComp: "comprehensions",
        ast.SetComp: "comprehensions",
        ast.DictComp: "comprehensions",
        ast.GeneratorExp: "comprehensions",
        ast.Compare: "comparisons",
        ast.BoolOp: "and/or",
        ast.IfExp: "if/else",
        ast.NamedExpr: "assignment",
        ast.JoinedStr: "text strings",
        ast.List: "lists",
        ast.Tuple: "tuples",
        ast.Dict: "dicts",
        ast.Set: "sets",
        ast.Starred: "* unpacking",
        ast.Await: "await",
    }
)


class CalculatorError(ValueError):
    """The expression cannot be evaluated; the message says why and what to use instead."""


def _integer(value: Number, function: str) -> int:
    """`value` as an int, if it is a whole number."""
    if isinstance(value, int):
        return value
    if value.is_integer():
        return int(value)
    raise CalculatorError(f"{function}() needs whole numbers, got {format_number(value)}")


def _check(value: object) -> Number:
    """Refuse results that are not real, finite, or small enough to print."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalculatorError("the result is not a real number (complex numbers are not supported)")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is not a finite number (too large, or undefined)")
    if isinstance(value, int) and abs(value) >= _INT_LIMIT:
        raise CalculatorError(_TOO_BIG)
    return value


def _power(base: Number, exponent: Number) -> Number:
    """`base ** exponent`, refused up front when an integer result would be too large."""
    # |base| >= 2, so a 64-bit exponent already means far more digits than allowed.
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and abs(base) > 1
        and (exponent.bit_length() > 64 or exponent * math.log10(abs(base)) > MAX_INT_DIGITS + 1)
    ):
        raise CalculatorError(_TOO_BIG)
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero (0 raised to a negative power)")
    return _check(operator.pow(base, exponent))


def _factorial(n: Number) -> int:
    """n! for 0 <= n <= MAX_FACTORIAL."""
    whole = _integer(n, "factorial")
    if not 0 <= whole <= MAX_FACTORIAL:
        raise CalculatorError(f"factorial() needs a whole number from 0 to {MAX_FACTORIAL}")
    return math.factorial(whole)


def _comb(n: Number, k: Number) -> int:
    """Ways to choose k of n, refused when the result might exceed MAX_INT_DIGITS digits."""
    whole_n, whole_k = _integer(n, "comb"), _integer(k, "comb")
    if whole_n < 0 or whole_k < 0:
        raise CalculatorError("comb() needs non-negative whole numbers")
    if whole_k > whole_n:
        return 0
    small = min(whole_k, whole_n - whole_k)
    # comb(n, k) >= 2**small, and <= n**small / small!: refuse unless the bound fits.
    if small > 4 * MAX_INT_DIGITS or (
        small * math.log10(max(whole_n, 1)) - math.lgamma(small + 1) / math.log(10) > MAX_INT_DIGITS
    ):
        raise CalculatorError(_TOO_BIG)
    return math.comb(whole_n, whole_k)


def _perm(n: Number, k: Number | None = None) -> int:
    """Ordered arrangements of k of n (n! without k), refused when the result might be too big."""
    if k is None:
        return _factorial(n)
    whole_n, whole_k = _integer(n, "perm"), _integer(k, "perm")
    if whole_n < 0 or whole_k < 0:
        raise CalculatorError("perm() needs non-negative whole numbers")
    if whole_k > whole_n:
        return 0
    # perm(n, k) >= k! (so k is small once it passes) and <= n**k.
    if whole_k > 2 * MAX_FACTORIAL or whole_k * math.log10(max(whole_n, 1)) > MAX_INT_DIGITS:
        raise CalculatorError(_TOO_BIG)
    return math.perm(whole_n, whole_k)


def _gcd(*values: Number) -> int:
    """Greatest common divisor of whole numbers."""
    return math.gcd(*(_integer(value, "gcd") for value in values))


def _lcm(*values: Number) -> int:
    """Least common multiple of whole numbers, checked after each step."""
    result = 1
    for value in values:
        result = int(_check(math.lcm(result, _integer(value, "lcm"))))
    return result


def _round(value: Number, ndigits: Number | None = None) -> Number:
    """round(x) to an int, or round(x, n) to n digits, |n| <= MAX_ROUND_DIGITS."""
    if ndigits is None:
        return round(value)
    digits = _integer(ndigits, "round")
    if abs(digits) > MAX_ROUND_DIGITS:
        raise CalculatorError(
            f"round() digits must be from -{MAX_ROUND_DIGITS} to {MAX_ROUND_DIGITS}"
        )
    return round(value, digits)


def _cbrt(value: Number) -> float:
    """Cube root, exact for perfect cubes (libm's cbrt may be off by one ulp)."""
    root = math.cbrt(value)
    nearest = round(root)
    return float(nearest) if nearest**3 == value else root


# name -> (function, fewest arguments, most arguments; None = any number)
FUNCTIONS: MappingProxyType[str, tuple[Callable[..., Number], int, int | None]] = MappingProxyType(
    {
        "abs": (abs, 1, 1),
        "sqrt": (math.sqrt, 1, 1),
        "cbrt": (_cbrt, 1, 1),
        "exp": (math.exp, 1, 1),
        "log": (math.log, 1, 2),
        "log10": (math.log10, 1, 1),
        "log2": (math.log2, 1, 1),
        "sin": (math.sin, 1, 1),
        "cos": (math.cos, 1, 1),
        "tan": (math.tan, 1, 1),
        "asin": (math.asin, 1, 1),
        "acos": (math.acos, 1, 1),
        "atan": (math.atan, 1, 1),
        "atan2": (math.atan2, 2, 2),
        "sinh": (math.sinh, 1, 1),
        "cosh": (math.cosh, 1, 1),
        "tanh": (math.tanh, 1, 1),
        "degrees": (math.degrees, 1, 1),
        "radians": (math.radians, 1, 1),
        "round": (_round, 1, 2),
        "floor": (math.floor, 1, 1),
        "ceil": (math.ceil, 1, 1),
        "factorial": (_factorial, 1, 1),
        "gcd": (_gcd, 1, None),
        "lcm": (_lcm, 1, None),
        "hypot": (math.hypot, 1, None),
        "min": (min, 1, None),
        "max": (max, 1, None),
        "comb": (_comb, 2, 2),
        "perm": (_perm, 1, 2),
    }
)

_AVAILABLE = (
    f"the constants {', '.join(CONSTANTS)} and the functions {', '.join(sorted(FUNCTIONS))}"
)


def _arity_text(low: int, high: int | None) -> str:
    """'1 argument', '1 or 2 arguments', 'at least 1 argument'."""
    plural = "s" if (high or low) > 1 else ""
    if high is None:
        return f"at least {low} argument{plural}"
    if high == low:
        return f"{low} argument{plural}"
    return f"{low} or {high} argument{plural}" if high == low + 1 else f"{low} to {high} arguments"


def _call(node: ast.Call) -> Number:
    """Evaluate a call of a whitelisted function by name."""
    if not isinstance(node.func, ast.Name):
        if isinstance(node.func, ast.Attribute):
            raise CalculatorError(f"unsupported syntax: attribute access (a.b); use {_AVAILABLE}")
        raise CalculatorError(f"only named functions can be called; use {_AVAILABLE}")
    name = node.func.id
    if name not in FUNCTIONS:
        raise CalculatorError(
            f"unknown function {name!r}; available: {', '.join(sorted(FUNCTIONS))}"
        )
    if node.keywords:
        raise CalculatorError(f"{name}() takes no keyword arguments; pass values by position")
    function, low, high = FUNCTIONS[name]
    if len(node.args) < low or (high is not None and len(node.args) > high):
        raise CalculatorError(f"{name}() takes {_arity_text(low, high)}, got {len(node.args)}")
    args = [_eval(arg) for arg in node.args]
    try:
        return _check(function(*args))
    except CalculatorError:
        raise
    except ZeroDivisionError:
        raise CalculatorError(f"division by zero in {name}()") from None
    except OverflowError:
        raise CalculatorError(f"the result of {name}() is too large") from None
    except (ValueError, TypeError) as exc:
        raise CalculatorError(f"{name}() is not defined for these arguments ({exc})") from None


def _eval(node: ast.AST) -> Number:
    """Evaluate one whitelisted node."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float | complex):
            kind = "text strings" if isinstance(value, str | bytes) else f"the value {value!r}"
            raise CalculatorError(f"unsupported syntax: {kind}; use numbers and {_AVAILABLE}")
        return _check(value)
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise CalculatorError(f"{node.id} is a function; call it like {node.id}(2)")
        raise CalculatorError(f"name {node.id!r} is not defined; use numbers and {_AVAILABLE}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        operand = _eval(node.operand)
        return operand if isinstance(node.op, ast.UAdd) else -operand
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        try:
            if isinstance(node.op, ast.Pow):
                return _power(left, right)
            if type(node.op) in _BINARY:
                return _check(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError("the result is too large for a float (about 1.8e308)") from None
        symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
        raise CalculatorError(f"operator {symbol!r} is not supported; use + - * / // % ** ^")
    if isinstance(node, ast.UnaryOp):
        symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
        raise CalculatorError(f"operator {symbol!r} is not supported; use + - * / // % ** ^")
    if isinstance(node, ast.Call):
        return _call(node)
    what = _UNSUPPORTED.get(type(node), type(node).__name__)
    raise CalculatorError(
        f"unsupported syntax: {what}; use numbers, + - * / // % ** and {_AVAILABLE}"
    )


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression safely; raise CalculatorError (a ValueError) if not."""
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(
            f"the expression is too long ({len(expression)} characters; at most {MAX_LENGTH})"
        )
    text = expression.replace("^", "**").replace("×", "*").replace("÷", "/").replace("−", "-")
    if not text.strip():
        raise CalculatorError("the expression is empty; write something like 2 * (3 + 4)")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise CalculatorError(f"could not parse the expression{where}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise CalculatorError("could not parse the expression") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise CalculatorError(
            f"the expression is too complex ({nodes} syntax nodes; at most {MAX_NODES}); "
            "split it into smaller calculations"
        )
    return _eval(tree.body)


def format_number(value: Number) -> str:
    """Integers in full; floats as Python's shortest round-trip repr (0.1+0.2 -> 0.300...04)."""
    return str(value) if isinstance(value, int) else repr(value)
