"""Background export jobs, each in a child process so a crash or OOM spares TensorBoard.

The child (`python -m tb_varmap.worker`) prints one JSON object per line: progress
updates, then a result or an error. A child that dies without either is a failed job.
"""

import collections
import json
import os
import subprocess
import sys
import threading
import time
import uuid

from tb_varmap import tags as tags_mod
from tb_varmap.errors import BadInput, Conflict, NotFound

MAX_KEPT_JOBS = 100
_ALLOWED_PARAMS = {"step", "inputs", "outputs", "verify", "weights", "atol", "rtol"}


def check_params(params):
    unknown = sorted(set(params) - _ALLOWED_PARAMS)
    if unknown:
        raise BadInput("unknown export option(s) %s; allowed: %s" % (", ".join(unknown), ", ".join(sorted(_ALLOWED_PARAMS))))
    step = params.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        raise BadInput("step must be an integer, got %r" % (step,))
    for key in ("inputs", "outputs"):
        names = params.get(key)
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)):
            raise BadInput("%s must be a list of node names, got %r" % (key, names))
    if "verify" in params and not isinstance(params["verify"], bool):
        raise BadInput("verify must be true or false, got %r" % (params["verify"],))
    if params.get("weights") not in (None,) + tags_mod.WEIGHT_CHOICES:
        raise BadInput("weights must be one of %s, got %r" % (tags_mod.WEIGHT_CHOICES, params.get("weights")))
    for key in ("atol", "rtol"):
        value = params.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise BadInput("%s must be a non-negative number, got %r" % (key, value))
    return dict(params)


class Job:
    def __init__(self, job_id, run):
        self.id = job_id
        self.run = run
        self.state = "queued"
        self.progress = 0.0
        self.stage = "queued"
        self.message = ""
        self.result = None
        self.error = None
        self.process = None
        self.started = time.time()

    def describe(self):
        return {
            "id": self.id,
            "run": self.run,
            "state": self.state,
            "progress": self.progress,
            "stage": self.stage,
            "message": self.message,
            "result": self.result,
            "error": self.error,
        }


class JobManager:
    def __init__(self, logdir):
        self._logdir = logdir
        self._lock = threading.Lock()
        self._jobs = collections.OrderedDict()

    def start(self, run, params):
        params = check_params(params)
        with self._lock:
            for job in self._jobs.values():
                if job.run == run and job.state in ("queued", "running"):
                    error = Conflict("an export of run %r is already running (job %s)" % (run, job.id))
                    error.job = job.id
                    raise error
            job = Job(uuid.uuid4().hex[:12], run)
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_KEPT_JOBS:
                self._jobs.popitem(last=False)
        threading.Thread(target=self._run, args=(job, params), name="varmap-export-" + job.id, daemon=True).start()
        return job.id

    def describe(self, job_id):
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFound("no export job %r (jobs are kept in memory while TensorBoard runs)" % job_id)
            return job.describe()

    def wait(self, job_id, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.describe(job_id)
            if state["state"] in ("done", "failed"):
                return state
            time.sleep(0.1)
        raise TimeoutError("job %s still running after %ss" % (job_id, timeout))

    def _run(self, job, params):
        command = [
            sys.executable,
            "-m",
            "tb_varmap.worker",
            "--logdir",
            self._logdir,
            "--run",
            job.run,
            "--params",
            json.dumps(params),
        ]
        env = dict(os.environ)
        env.pop("TF_USE_LEGACY_KERAS", None)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=env,
                text=True,
            )
        except OSError as e:
            self._finish(job, error="could not start the export process: %s" % e)
            return
        job.process = process
        job.state = "running"
        stderr_tail = collections.deque(maxlen=20)
        drain = threading.Thread(target=lambda: stderr_tail.extend(process.stderr), daemon=True)
        drain.start()
        finished = False
        for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "progress" in message:
                job.progress = float(message["progress"])
                job.stage = message.get("stage", job.stage)
                job.message = message.get("message", "")
            elif "result" in message:
                self._finish(job, result=message["result"])
                finished = True
            elif "error" in message:
                self._finish(job, error=message["error"])
                finished = True
        code = process.wait()
        drain.join(timeout=5)
        if not finished:
            from tb_varmap import export_run, runcache

            export_run.clean_after_crash(runcache.run_dir(self._logdir, job.run), job.run)
            tail = "".join(stderr_tail).strip().splitlines()[-3:]
            self._finish(
                job,
                error="the export process for run %r exited with code %s before finishing%s"
                % (job.run, code, (": " + " | ".join(tail)) if tail else ""),
            )

    def _finish(self, job, result=None, error=None):
        with self._lock:
            if error is None:
                job.result = result
                job.state = "done"
                job.progress = 1.0
                job.stage = "done"
            else:
                job.error = error
                job.state = "failed"
                job.stage = "failed"
                job.message = error
