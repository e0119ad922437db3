# Runs one candidate program and its tests inside the sandbox. Written next to them by the
# harness with a fresh nonce in place of NONCE_PLACEHOLDER; it deletes itself and the two
# program files before any candidate code runs, so the candidate cannot read the nonce from
# disk, and it reports through a file descriptor opened before the candidate runs. Only a
# result line that starts with the nonce counts, so a candidate that exits early (sys.exit,
# os._exit, a signal) can never be taken for one that passed.
import builtins
import os
import socket
import sys


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
    # A snapshot of the builtins before the candidate can touch them: the tests run against
    # these, so redefining `set`, `sorted`, `isinstance` ... cannot make an assert pass.
    clean_builtins = dict(builtins.__dict__)

    def report(status):
        write(result, ("%s %s %s" % (nonce, network, status)).encode("utf-8", "replace"))
        close(result)
        exit_now(0)

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
    try:
        exec(compile(tests, "tests.py", "exec"), test_namespace)
    except assertion_error:
        report("fail assertion: a test assert failed")
    except system_exit:
        report("fail exit-in-tests: the program exited during the tests")
    except base_exception as e:  # noqa: BLE001
        report("fail error-in-tests: %s: %s" % (type(e).__name__, str(e)[:200]))
    report("pass")


_run()
