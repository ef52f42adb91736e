"""A fork server for the tests' `flask --app app ...` runs (``processes.flask_cli``).

The tests run the CLI several hundred times, mostly to set up a core's instance folder, and a
fresh interpreter spends about a second of CPU importing the core before it does anything: on
two cores, that was a third of `make test`. This server imports the core once; each run is a
child forked from it, with the run's own environment, working directory and output files,
running Flask's ``main`` as the ``flask`` script does. Only the imported modules are shared:
no app, database connection or thread exists before the fork. What a module computes from the
environment at import comes from the pytest worker's (nothing in ``extframework`` does;
``prometheus_client`` reads ``PROMETHEUS_MULTIPROC_DIR``, which no CLI run sets).

Protocol, one JSON line each way: the client sends ``{"flask", "args", "env", "cwd",
"stdout", "stderr", "timeout_s"}`` (the two output file paths); the server answers
``{"returncode", "timed_out"}`` when the child has exited, or when it has killed a child that
outlived ``timeout_s``.
"""

import atexit
import json
import os
import select
import signal
import sys
import traceback


def run_child(request: dict) -> None:
    """In the forked child: become the CLI process the request describes; never return."""
    code = 1
    try:
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["flask"], "--app", "app", *request["args"]]
        sys.modules["__main__"].__package__ = None  # click names the program "flask", not -m
        from flask.cli import main

        try:
            main()
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import flask.cli  # noqa: F401

    import extframework  # noqa: F401  (the whole core, in its own import order)

    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else prints goes to stderr, not into the answers
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            run_child(request)
        exited = os.pidfd_open(pid)
        timed_out = not select.select([exited], [], [], request["timeout_s"])[0]
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        os.close(exited)
        _, status = os.waitpid(pid, 0)
        answer = {"returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out}
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    serve()
