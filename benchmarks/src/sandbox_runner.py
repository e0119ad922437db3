# Runs one candidate program and its tests inside the sandbox. Written next to them by the
# harness with a fresh nonce in place of NONCE_PLACEHOLDER (and its entry point, private
# directories and tmpfs name in place of the other placeholders); it deletes itself and the two
# program files before any candidate code runs, so the candidate cannot read the nonce from
# disk, and it reports through a file descriptor opened before the candidate runs. Only a
# result line that starts with the nonce counts, so a candidate that exits early (sys.exit,
# os._exit, a signal) can never be taken for one that passed.
#
# MBPP asserts compare a call with a literal (`assert f(x) == [1, 2]`). Each such assert is
# rewritten, before the candidate runs, to check first that the result has the literal's
# type (recursively; int, float and bool interchangeable as Python's numeric tower allows),
# so an object whose `__eq__` always answers True cannot pass. The check and the types it
# uses are bound before the candidate can touch them.
import ast
import builtins
import collections
import os
import socket
import sys


def _literal_checker(fail):
    """check(value, literal): the value's type matches the literal's, then value == literal.
    Calls fail(message) and answers False on a type mismatch."""
    type_of, length, all_of, zip_of = type, len, all, zip
    numbers = (int, float, bool, complex)
    plain_scalars = numbers + (str, bytes, type(None))
    dicts = (dict, collections.OrderedDict, collections.defaultdict, collections.Counter)
    sets = (set, frozenset)

    def plain(value):
        kind = type_of(value)
        if kind in plain_scalars:
            return True
        if kind in (list, tuple) + sets:
            return all_of(plain(v) for v in value)
        if kind in dicts:
            return all_of(plain(k) and plain(v) for k, v in value.items())
        return False

    def conforms(value, literal):
        kind, want = type_of(value), type_of(literal)
        if want in numbers:
            return kind in numbers
        if want in (list, tuple):
            return kind is want and (
                length(value) != length(literal)
                or all_of(conforms(v, w) for v, w in zip_of(value, literal))
            )
        if want in sets:
            return kind in sets and plain(value)
        if want in dicts:
            return kind in dicts and plain(value) and all_of(
                k not in value or conforms(value[k], w) for k, w in literal.items()
            )
        return kind is want

    def check(value, literal):
        if not conforms(value, literal):
            fail("a test expects %s, the program returned %s"
                 % (type_of(literal).__name__, type_of(value).__name__))
            return False
        return value == literal

    return check


class _TypedAsserts(ast.NodeTransformer):
    """`assert call == literal` (either side) -> `assert CHECK(call, literal)`."""

    def __init__(self, check_name):
        self.check_name = check_name

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
            call = ast.Call(ast.Name(self.check_name, ast.Load()), [value, literal], [])
            return ast.copy_location(ast.Assert(call, node.msg), node)
        return node


def _file_system():
    """`private` when the world-writable directories (the harness fills in the list) are this
    program's own tmpfs mounts (recognised by the source name the harness gave them) and / is
    read-only; `shared` otherwise."""
    private = set("PRIVATE_DIRS_PLACEHOLDER".split(":"))
    own, root_read_only = set(), False
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields, _, rest = line.partition(" - ")
                fields, rest = fields.split(), rest.split()
                if len(fields) < 6 or len(rest) < 2:
                    continue
                point, options = fields[4], fields[5].split(",")
                if point in private and rest[1] == "TMPFS_NAME_PLACEHOLDER":
                    own.add(point)
                elif point in private:
                    own.discard(point)
                if point == "/":
                    root_read_only = "ro" in options
    except OSError:
        return "shared"
    wanted = {p for p in private if os.path.isdir(p)}
    return "private" if own >= wanted and root_read_only else "shared"


def _compile_tests(tests, check_name):
    tree = _TypedAsserts(check_name).visit(ast.parse(tests, "tests.py"))
    return compile(ast.fix_missing_locations(tree), "tests.py", "exec")


def _run():
    nonce = "NONCE_PLACEHOLDER"
    entry_point = "ENTRY_POINT_PLACEHOLDER"
    with open("candidate.py", encoding="utf-8") as f:
        candidate = f.read()
    with open("tests.py", encoding="utf-8") as f:
        tests = f.read()
    for name in ("candidate.py", "tests.py", os.path.basename(__file__)):
        os.unlink(name)
    result = os.open(".result", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    write, close, exit_now = os.write, os.close, os._exit
    # Bound now: a candidate that rebinds builtins.AssertionError (or SystemExit) must not
    # change which handler below catches what.
    assertion_error, system_exit, base_exception = AssertionError, SystemExit, BaseException
    try:
        interfaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        interfaces = []
    network = "isolated" if interfaces in ([], ["lo"]) else "shared"
    files = _file_system()
    # A snapshot of the builtins before the candidate can touch them: the tests run against
    # these, so redefining `set`, `sorted`, `isinstance` ... cannot make an assert pass.
    clean_builtins = dict(builtins.__dict__)

    def report(status):
        line = "%s %s %s %s" % (nonce, network, files, status)
        write(result, line.encode("utf-8", "replace"))
        close(result)
        exit_now(0)

    mismatch = []
    check_name = "_harness_check_literal"
    check = _literal_checker(mismatch.append)
    try:
        test_code = _compile_tests(tests, check_name)
    except SyntaxError as e:
        report("fail error-in-tests: SyntaxError: %s" % e)

    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(candidate, "candidate.py", "exec"), namespace)
    except system_exit:
        report("fail exit-in-candidate: the program exited before the tests ran")
    except base_exception as e:  # noqa: BLE001 - any failure of the candidate is a verdict
        report("fail error-in-candidate: %s: %s" % (type(e).__name__, str(e)[:200]))
    if entry_point not in namespace:
        report("fail missing-function: %s is not defined" % entry_point)
    test_namespace = {
        k: v for k, v in namespace.items() if k not in clean_builtins or k == entry_point
    }
    test_namespace["__builtins__"] = clean_builtins
    test_namespace[check_name] = check
    try:
        exec(test_code, test_namespace)
    except assertion_error:
        if mismatch:
            report("fail type-mismatch: %s" % mismatch[0])
        report("fail assertion: a test assert failed")
    except system_exit:
        report("fail exit-in-tests: the program exited during the tests")
    except base_exception as e:  # noqa: BLE001
        report("fail error-in-tests: %s: %s" % (type(e).__name__, str(e)[:200]))
    report("pass")


_run()
