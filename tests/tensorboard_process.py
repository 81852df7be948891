"""Starts a real `tensorboard` process on a free loopback port (for tests and benchmarks)."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers, response.read()


@contextlib.contextmanager
def tensorboard(logdir, extra_args=(), startup_timeout=120):
    """Yields the base URL of a TensorBoard serving `logdir`; stops it afterwards."""
    port = free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    log_path = os.path.join(logdir, "..", "tensorboard-%d.log" % port)
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--port", str(port),
         "--host", "127.0.0.1", "--reload_interval", "1", *extra_args],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError("tensorboard exited early: " + open(log_path).read()[-3000:])
            try:
                status, _, body = fetch(base + "/data/plugins_listing", timeout=5)
                if status == 200 and json.loads(body).get("varmap", {}).get("enabled"):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("tensorboard did not list an active varmap plugin in time: "
                                   + open(log_path).read()[-3000:])
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
