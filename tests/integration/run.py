"""Runs the integration tests: `make integration`, or

    FILTERMAIL_BUILD=build/san /usr/bin/python3 tests/integration/run.py [FILTER...]

Every tests/integration/test_*.py is imported and its test_* functions run in
the order they are written, each printing `ok name` or `FAIL name: reason`. A
module may define setup_module() and teardown_module() (e.g. to share one
Relay between its tests). A FILTER selects the tests whose "module.test_name"
contains it. After every test, each running Relay's milter is checked (alive,
no sanitizer report). A test that cannot run (not root, Postfix missing) fails;
nothing is skipped. The exit status is 1 when anything failed.
"""
import importlib
import inspect
import os
import pathlib
import signal
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

# No single test may take longer (seconds); the whole run is meant to stay
# within about three minutes.
TEST_TIMEOUT = 120


class TimeLimitExceeded(Exception):
    pass


def _alarm(signum, frame):
    raise TimeLimitExceeded(f"test took longer than {TEST_TIMEOUT}s")


def environment_problem():
    """Why the tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the integration tests must run as root (Postfix needs it)"
    for tool in ("postfix", "postqueue", "postconf"):
        try:
            harness.postfix_tool(tool)
        except harness.HarnessError as e:
            return str(e)
    binary = harness.milter_binary()
    if not binary.exists():
        return f"{binary} is not built (make all build/san/filtermail-milter)"
    return None


def reason_of(exc):
    """A failure's text: the message of an assertion or harness error, the
    traceback of anything else."""
    if isinstance(exc, (AssertionError, harness.HarnessError, TimeLimitExceeded)):
        return str(exc) or type(exc).__name__
    return "".join(traceback.format_exception(exc)).rstrip()


def tests_of(module):
    funcs = [f for name, f in inspect.getmembers(module, inspect.isfunction)
             if name.startswith("test_") and f.__module__ == module.__name__]
    return sorted(funcs, key=lambda f: f.__code__.co_firstlineno)


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def report(self, name, exc, seconds):
        if exc is None:
            self.passed += 1
            print(f"ok {name} ({seconds:.1f}s)", flush=True)
        else:
            self.failed.append(name)
            text = reason_of(exc).replace("\n", "\n    ")
            print(f"FAIL {name}: {text}", flush=True)

    def call(self, fn):
        """Runs fn under the per-test alarm; returns the exception or None."""
        signal.alarm(TEST_TIMEOUT)
        try:
            fn()
            return None
        except Exception as e:  # every failure is reported, none stops the run
            return e
        finally:
            signal.alarm(0)

    def check_relays(self):
        for relay in harness.live_relays():
            relay.check_milter()

    def run_module(self, module, tests):
        mod = module.__name__
        setup = getattr(module, "setup_module", None)
        if setup is not None:
            exc = self.call(setup)
            if exc is not None:
                for t in tests:
                    self.report(f"{mod}.{t.__name__}", AssertionError(
                        "setup_module failed: " + reason_of(exc)), 0)
                self.teardown(module)
                return
        for t in tests:
            start = time.monotonic()
            exc = self.call(t)
            if exc is None:
                exc = self.call(self.check_relays)
            self.report(f"{mod}.{t.__name__}", exc, time.monotonic() - start)
        self.teardown(module)

    def teardown(self, module):
        teardown = getattr(module, "teardown_module", None)
        exc = self.call(teardown) if teardown is not None else None
        if exc is not None:
            self.report(f"{module.__name__}.teardown_module", exc, 0)


def main(filters):
    signal.signal(signal.SIGALRM, _alarm)
    # A terminated run still stops its Postfix and milter (atexit).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    runner = Runner()
    start = time.monotonic()

    problem = environment_problem()
    if problem is not None:
        runner.report("environment", AssertionError(problem), 0)
    else:
        for path in sorted(HERE.glob("test_*.py")):
            module = importlib.import_module(path.stem)
            tests = [t for t in tests_of(module)
                     if not filters or any(f in f"{module.__name__}.{t.__name__}"
                                           for f in filters)]
            if tests:
                runner.run_module(module, tests)
        if runner.passed == 0 and not runner.failed:
            runner.report("selection", AssertionError(f"no test matches {filters}"), 0)

    total = runner.passed + len(runner.failed)
    print(f"\n{runner.passed}/{total} integration tests passed "
          f"in {time.monotonic() - start:.0f}s", flush=True)
    if runner.failed:
        print("failed: " + " ".join(runner.failed), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
