# The trusted side of MBPP grading: it decides every verdict and never runs model-written
# code. The harness starts it once per sandbox, outside the sandbox, and talks to it in JSON
# lines on stdin/stdout:
#
#   {"op": "plan", "tests": T, "entry_point": E}
#       -> {"ok": true, "setup": S, "calls": [C, ...]} or {"ok": false, "reason": R}
#   {"op": "judge", "tests": T, "entry_point": E, "reply": TEXT, "exit_clean": B,
#    "exit_reason": R} -> {"passed": B, "reason": R, "network": N, "files": F}
#
# `plan` splits the test program: the statements before the first assert are setup code (they
# build the inputs, often with the candidate's own classes) and go to the candidate's
# process; each assert is cut into the calls that need the candidate (`f(3, 4)`, the
# outermost expression that names something the candidate defines) and the rest, which stays
# here with the expected values. `judge` reads the candidate's reply (see
# `sandbox_runner.py`) as data, rebuilds each value from built-in types only, and evaluates
# every assert in order with those values in place of the calls. An assert that compares with
# a literal first checks that the value has the literal's type, recursively (int, float and
# bool interchangeable as Python's numeric tower allows).
import ast
import builtins
import collections
import json
import math
import re
import sys

# Names the asserts may use on this side besides the builtins (unless the candidate's entry
# point or the setup code rebinds them).
TRUSTED_MODULES = {"math": math, "sys": sys, "collections": collections, "re": re}
VALUE_PREFIX = "_harness_value_"
CHECK = "_harness_check_literal"
_INT = re.compile(r"-?[0-9]+\Z")
_FLOAT = re.compile(r"-?(inf|nan|[0-9]+(\.[0-9]*)?(e[-+]?[0-9]+)?)\Z")


class Malformed(Exception):
    """The reply breaks the protocol."""


class Opaque:
    """A result the candidate's process could not give as built-in data (an instance of the
    candidate's class, a generator, a subclass of a built-in type): equal to nothing, with no
    truth value."""

    __slots__ = ("type_name",)

    def __init__(self, type_name):
        self.type_name = type_name

    def __bool__(self):
        raise TypeError("a %s result has no truth value here" % self.type_name)

    def __repr__(self):
        return "<%s>" % self.type_name


# ----------------------------------------------------------------------------------------
# Planning: which parts of each assert run in the candidate's process.


def _bound_names(statements):
    names = set()
    for node in ast.walk(ast.Module(statements, [])):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


class _Split(ast.NodeTransformer):
    """Replaces each outermost expression that needs the candidate by a value name and keeps
    its source. Trusted operations (comparisons, arithmetic, displays, calls of builtins and
    trusted modules) stay here; what is sent may not carry a comparison or a function of its
    own, so no expected value leaves this process."""

    KEEP = (ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.List, ast.Tuple,
            ast.Set, ast.Dict, ast.Starred, ast.keyword)
    NOT_SENT = (ast.Compare, ast.BoolOp, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                ast.GeneratorExp, ast.NamedExpr)

    def __init__(self, candidate_names, calls):
        self.candidate_names = candidate_names
        self.calls = calls

    def _needs_candidate(self, node):
        return any(isinstance(n, ast.Name) and n.id in self.candidate_names
                   for n in ast.walk(node))

    def _trusted_call(self, node):
        return isinstance(node, ast.Call) and not self._needs_candidate(node.func)

    def visit(self, node):
        if not self._needs_candidate(node):
            return node
        if isinstance(node, self.KEEP) or self._trusted_call(node) or isinstance(node, ast.Assert):
            return self.generic_visit(node)
        if any(isinstance(n, self.NOT_SENT) for n in ast.walk(node)):
            raise ValueError("`%s` needs the program but holds a comparison or a function"
                             % ast.unparse(node)[:200])
        name = ast.Name(VALUE_PREFIX + str(len(self.calls)), ast.Load())
        self.calls.append(ast.unparse(node))
        return ast.copy_location(name, node)


class _TypedAsserts(ast.NodeTransformer):
    """`assert value == literal` (either side) -> `assert CHECK(value, literal)`."""

    def visit_Assert(self, node):
        test = node.test
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1
                and isinstance(test.ops[0], ast.Eq)):
            return node
        left, right = test.left, test.comparators[0]
        for value, literal in ((left, right), (right, left)):
            try:
                ast.literal_eval(literal)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            call = ast.Call(ast.Name(CHECK, ast.Load()), [value, literal], [])
            return ast.copy_location(ast.Assert(call, node.msg), node)
        return node


_PLANS = {}


def plan(tests, entry_point):
    """(setup source, call sources, [(code of assert k, number of calls it needs)])."""
    key = (tests, entry_point)
    if key not in _PLANS:
        if len(_PLANS) > 4096:
            _PLANS.clear()
        _PLANS[key] = _make_plan(tests, entry_point)
    return _PLANS[key]


def _make_plan(tests, entry_point):
    body = ast.parse(tests, "tests.py").body
    first = next((i for i, s in enumerate(body) if isinstance(s, ast.Assert)), len(body))
    setup, asserts = body[:first], body[first:]
    for statement in asserts:
        if not isinstance(statement, ast.Assert):
            raise ValueError("line %d: only asserts may follow the first assert"
                             % statement.lineno)
    trusted = (set(dir(builtins)) | set(TRUSTED_MODULES)) - {entry_point} - _bound_names(setup)
    candidate_names = _Names(trusted)
    calls, compiled = [], []
    for statement in asserts:
        split = _Split(candidate_names, calls).visit(statement)
        typed = ast.fix_missing_locations(_TypedAsserts().visit(split))
        code = compile(ast.Module([typed], []), "tests.py", "exec")
        compiled.append((code, len(calls)))
    setup_source = "\n".join(ast.unparse(s) for s in setup)
    return setup_source, calls, compiled


class _Names:
    """Every name but the trusted ones."""

    def __init__(self, trusted):
        self.trusted = trusted

    def __contains__(self, name):
        return name not in self.trusted


# ----------------------------------------------------------------------------------------
# The reply: data only, rebuilt from built-in types.

_SEQUENCES = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}
_MAPPINGS = {"dict": dict, "OrderedDict": collections.OrderedDict,
             "defaultdict": lambda items: collections.defaultdict(None, items),
             "Counter": lambda items: collections.Counter(dict(items))}


def decode(node):
    if not (type(node) is list and node and type(node[0]) is str):
        raise Malformed("a value is not a tagged list")
    tag, args = node[0], node[1:]

    def one(kind):
        if len(args) != 1 or type(args[0]) is not kind:
            raise Malformed("a %s value is malformed" % tag)
        return args[0]

    if tag == "none" and not args:
        return None
    if tag == "bool":
        return one(bool)
    if tag == "int" and _INT.match(one(str)):
        return int(args[0])
    if tag == "float" and _FLOAT.match(one(str)):
        return float(args[0])
    if tag == "complex" and len(args) == 2 and all(
            type(a) is str and _FLOAT.match(a) for a in args):
        return complex(float(args[0]), float(args[1]))
    if tag == "str":
        return one(str)
    if tag == "bytes":
        return bytes.fromhex(one(str))
    if tag in _SEQUENCES:
        return _SEQUENCES[tag](decode(v) for v in one(list))
    if tag in _MAPPINGS:
        items = []
        for pair in one(list):
            if type(pair) is not list or len(pair) != 2:
                raise Malformed("a %s item is not a pair" % tag)
            items.append((decode(pair[0]), decode(pair[1])))
        return _MAPPINGS[tag](items)
    if tag == "other":
        return Opaque(one(str)[:100])
    raise Malformed("unknown value tag %r" % tag[:40])


def _probe(text):
    """(network, files) from the first line, for the verdict on a reply broken later."""
    try:
        probe = json.loads(text.split("\n", 1)[0])
        if probe[0] == "probe" and all(type(p) is str for p in probe[1:3]):
            return probe[1][:20], probe[2][:20]
    except Exception:  # noqa: BLE001 - no probe: unknown
        pass
    return "unknown", "unknown"


def read_reply(text, calls):
    """(network, files, values, end): values in call order; end is None when the reply
    stops early, else "done" or the failure the candidate's side reported."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    events = []
    for number, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise Malformed("line %d is not JSON (%s)" % (number, str(e)[:80]))
        if type(event) is not list or not event or type(event[0]) is not str:
            raise Malformed("line %d is not an event" % number)
        events.append((number, event))
    if not events:
        return "unknown", "unknown", [], None
    (_, probe), rest = events[0], events[1:]
    if probe[0] != "probe" or len(probe) != 3 or not all(type(p) is str for p in probe[1:]):
        raise Malformed("line 1 is not the probe")
    network, files = probe[1][:20], probe[2][:20]
    values, end, ready = [], None, False
    for number, event in rest:
        if end is not None:
            raise Malformed("line %d follows the end of the reply" % number)
        tag = event[0]
        if tag == "ready" and len(event) == 1 and not ready:
            ready = True
        elif tag == "fail" and len(event) == 2 and type(event[1]) is str:
            end = event[1][:300]
        elif tag == "done" and len(event) == 1 and ready and len(values) == calls:
            end = "done"
        elif (tag == "value" and len(event) == 3 and ready and event[1] == len(values)
              and type(event[1]) is int and len(values) < calls):
            values.append(decode(event[2]))
        else:
            raise Malformed("line %d is out of place (%s)" % (number, tag[:20]))
    return network, files, values, end


# ----------------------------------------------------------------------------------------
# The verdict.


def _literal_checker(fail):
    """check(value, literal): the value's type matches the literal's, then value == literal.
    Calls fail(message) and answers False on a type mismatch."""
    numbers = (int, float, bool, complex)
    dicts = (dict, collections.OrderedDict, collections.defaultdict, collections.Counter)
    sets = (set, frozenset)

    def plain(value):
        kind = type(value)
        if kind in numbers or kind in (str, bytes, type(None)):
            return True
        if kind in (list, tuple) + sets:
            return all(plain(v) for v in value)
        if kind in dicts:
            return all(plain(k) and plain(v) for k, v in value.items())
        return False

    def conforms(value, literal):
        kind, want = type(value), type(literal)
        if want in numbers:
            return kind in numbers
        if want in (list, tuple):
            return kind is want and (
                len(value) != len(literal)
                or all(conforms(v, w) for v, w in zip(value, literal))
            )
        if want in sets:
            return kind in sets and plain(value)
        if want in dicts:
            return kind in dicts and plain(value) and all(
                k not in value or conforms(value[k], w) for k, w in literal.items()
            )
        return kind is want

    def check(value, literal):
        if not conforms(value, literal):
            got = type(value).__name__
            if type(value) is Opaque:
                got = "%s (not built-in data)" % value.type_name
            fail("a test expects %s, the program returned %s" % (type(literal).__name__, got))
            return False
        return value == literal

    return check


def judge(tests, entry_point, reply, exit_clean, exit_reason):
    try:
        _, calls, asserts = plan(tests, entry_point)
    except (SyntaxError, ValueError) as e:
        return verdict(False, "fail error-in-tests: %s" % e)
    try:
        network, files, values, end = read_reply(reply, len(calls))
    except (Malformed, ValueError, TypeError, RecursionError, MemoryError) as e:
        return verdict(False, "fail malformed-reply: %s" % str(e)[:200], *_probe(reply))
    mismatch = []
    namespace = dict(TRUSTED_MODULES)
    namespace.update({"__builtins__": builtins, CHECK: _literal_checker(mismatch.append)})
    namespace.update((VALUE_PREFIX + str(i), v) for i, v in enumerate(values))
    for code, needed in asserts:
        if needed > len(values):
            if end is None or end == "done":
                return verdict(False, exit_reason, network, files)
            return verdict(False, "fail " + end, network, files)
        try:
            exec(code, namespace)
        except AssertionError:
            reason = "type-mismatch: " + mismatch[0] if mismatch else "assertion: a test assert failed"
            return verdict(False, "fail " + reason, network, files)
        except Exception as e:  # noqa: BLE001 - a value the asserts cannot use is a failure
            return verdict(False, "fail error-in-tests: %s: %s" % (type(e).__name__, str(e)[:200]),
                           network, files)
    if end is None:
        return verdict(False, exit_reason, network, files)
    if end != "done":
        return verdict(False, "fail " + end, network, files)
    if not exit_clean:
        return verdict(False, exit_reason, network, files)
    return verdict(True, "pass", network, files)


def verdict(passed, reason, network="unknown", files="unknown"):
    return {"passed": passed, "reason": reason, "network": network, "files": files}


def serve():
    # Not dumpable: a process of the same user (a program in a sandbox without namespaces,
    # when the harness is not root) cannot ptrace this one or read its memory.
    try:
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (ImportError, OSError, AttributeError):
        pass
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if request["op"] == "plan":
                setup, calls, _ = plan(request["tests"], request["entry_point"])
                answer = {"ok": True, "setup": setup, "calls": calls}
            else:
                answer = judge(request["tests"], request["entry_point"], request["reply"],
                               request["exit_clean"], request["exit_reason"])
        except (SyntaxError, ValueError) as e:
            answer = {**verdict(False, "fail error-in-tests: %s" % str(e)[:300]), "ok": False}
        except Exception as e:  # noqa: BLE001 - the judge answers every request
            reason = "judge-error: %s: %s" % (type(e).__name__, str(e)[:200])
            answer = {**verdict(False, reason), "ok": False}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


serve()
