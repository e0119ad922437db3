# The candidate's side of MBPP grading, run inside the sandbox as the program's own process.
# It loads the candidate program, runs the tests' setup code, evaluates the calls the judge
# split out of the asserts (`f(3, 4)`, never `f(3, 4) == 7`), and writes each result as
# plain data to file descriptor 3, a pipe the harness reads. It decides nothing: everything
# it writes after the candidate starts is the candidate's claim, and the judge
# (`judge.py`, a process that never runs candidate code) compares the claimed values
# with the tests' expected values, which never enter this process.
#
# Reply: one JSON array per line.
#   ["probe", NETWORK, FILES]   written before any candidate code runs
#   ["ready"]                   the program and the setup code ran, the entry point exists
#   ["value", I, VALUE]         the result of call I (calls in order, from 0)
#   ["fail", REASON]            the program, the setup or call I failed; nothing follows
#   ["done"]                    every call evaluated
# VALUE is a tagged tree of built-in types (see `_encode`); anything else is
# ["other", TYPE_NAME], which the judge treats as equal to nothing.
import builtins
import collections
import json
import os
import socket
import sys

_REPLY = 3
_MAX_DEPTH = 100


def _file_system(private_dirs, tmpfs_name):
    """`private` when the world-writable directories are this program's own tmpfs mounts
    (recognised by the source name the harness gave them) and / is read-only; `shared`
    otherwise."""
    private = set(private_dirs)
    own, root_read_only = set(), False
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields, _, rest = line.partition(" - ")
                fields, rest = fields.split(), rest.split()
                if len(fields) < 6 or len(rest) < 2:
                    continue
                point, options = fields[4], fields[5].split(",")
                if point in private and rest[1] == tmpfs_name:
                    own.add(point)
                elif point in private:
                    own.discard(point)
                if point == "/":
                    root_read_only = "ro" in options
    except OSError:
        return "shared"
    wanted = {p for p in private if os.path.isdir(p)}
    return "private" if own >= wanted and root_read_only else "shared"


def _network():
    try:
        interfaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        interfaces = []
    return "isolated" if interfaces in ([], ["lo"]) else "shared"


_SCALARS = {int: "int", float: "float", str: "str", bytes: "bytes", complex: "complex"}
_SEQUENCES = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}
_MAPPINGS = {
    dict: "dict",
    collections.OrderedDict: "OrderedDict",
    collections.defaultdict: "defaultdict",
    collections.Counter: "Counter",
}


def _encode(value, depth=0):
    """Built-in values by exact type (a subclass is `other`: its methods are the
    candidate's); numbers as their repr, so no precision is lost."""
    if depth > _MAX_DEPTH:
        raise ValueError("nested deeper than %d" % _MAX_DEPTH)
    kind = type(value)
    if value is None:
        return ["none"]
    if kind is bool:
        return ["bool", value]
    if kind in _SCALARS:
        tag = _SCALARS[kind]
        if kind is complex:
            return [tag, repr(value.real), repr(value.imag)]
        if kind is bytes:
            return [tag, value.hex()]
        return [tag, value if kind is str else repr(value)]
    if kind in _SEQUENCES:
        return [_SEQUENCES[kind], [_encode(v, depth + 1) for v in value]]
    if kind in _MAPPINGS:
        items = [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]
        return [_MAPPINGS[kind], items]
    return ["other", kind.__name__[:100]]


def _main():
    with open("job.json", encoding="utf-8") as f:
        job = json.load(f)
    limit, written = job["reply_limit"], [0]
    write, exit_now, dumps = os.write, os._exit, json.dumps

    def send(*event):
        line = (dumps(list(event)) + "\n").encode("utf-8")
        if written[0] + len(line) > limit:
            line = (dumps(["fail", "reply-too-large: results past %d bytes" % limit]) + "\n").encode()
            event = ("fail",)
        written[0] += len(line)
        write(_REPLY, line)
        if event[0] in ("fail", "done"):
            exit_now(0)

    send("probe", _network(), _file_system(job["private_dirs"], job["tmpfs_name"]))
    with open("program.py", encoding="utf-8") as f:
        program = f.read()
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    system_exit, base_exception = SystemExit, BaseException
    try:
        exec(compile(program, "program.py", "exec"), namespace)
    except system_exit:
        send("fail", "exit-in-candidate: the program exited before the tests ran")
    except base_exception as e:  # noqa: BLE001 - any failure of the candidate is a verdict
        send("fail", "error-in-candidate: %s: %s" % (type(e).__name__, str(e)[:200]))
    if job["entry_point"] not in namespace:
        send("fail", "missing-function: %s is not defined" % job["entry_point"])
    try:
        exec(compile(job["setup"], "setup.py", "exec"), namespace)
    except system_exit:
        send("fail", "exit-in-tests: the program exited during the tests")
    except base_exception as e:  # noqa: BLE001
        send("fail", "error-in-tests: %s: %s" % (type(e).__name__, str(e)[:200]))
    send("ready")
    for i, call in enumerate(job["calls"]):
        try:
            value = eval(compile(call, "call-%d" % i, "eval"), namespace)
        except system_exit:
            send("fail", "exit-in-tests: the program exited during the tests")
        except base_exception as e:  # noqa: BLE001
            send("fail", "error-in-tests: %s: %s" % (type(e).__name__, str(e)[:200]))
        try:
            encoded = _encode(value)
        except base_exception as e:  # noqa: BLE001
            send("fail", "unencodable-result: %s: %s" % (type(e).__name__, str(e)[:200]))
        send("value", i, encoded)
    send("done")


sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * _MAX_DEPTH))
_main()
