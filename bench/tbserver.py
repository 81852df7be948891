"""A real `tensorboard` process on a free port, with its pid (for RSS) and a fetch helper."""
import contextlib
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from bench.common import child_env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url, timeout=600, gzip_ok=True):
    """(seconds to the last byte, bytes on the wire, decoded bytes, content-encoding)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
        encoding = response.headers.get("Content-Encoding")
    seconds = time.perf_counter() - start
    body = gzip.decompress(raw) if encoding == "gzip" else raw
    return seconds, raw, body, encoding


class TensorBoard:
    def __init__(self, process, base, log_path):
        self.process, self.base, self.log_path = process, base, log_path

    @property
    def pid(self):
        return self.process.pid

    def get(self, path, **kw):
        return fetch(self.base + path, **kw)

    def json(self, path):
        return json.loads(self.get(path)[2])

    def log_tail(self):
        with open(self.log_path) as f:
            return f.read()[-3000:]

    def wait_for(self, check, what, timeout=600):
        deadline = time.time() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("tensorboard exited while waiting for %s:\n%s" % (what, self.log_tail()))
            try:
                if check(self):
                    return
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("tensorboard: no %s after %d s:\n%s" % (what, timeout, self.log_tail()))
            time.sleep(0.2)


@contextlib.contextmanager
def tensorboard(logdir, log_dir=None, extra_args=()):
    """Starts tensorboard on logdir; yields a TensorBoard once it answers /data/plugins_listing."""
    port = _free_port()
    log_path = os.path.join(log_dir or os.path.dirname(os.path.abspath(logdir)), "tensorboard-%d.log" % port)
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--port", str(port),
         "--host", "127.0.0.1", *extra_args],
        stdout=log, stderr=subprocess.STDOUT, env=child_env())
    tb = TensorBoard(process, "http://127.0.0.1:%d" % port, log_path)
    try:
        tb.wait_for(lambda t: t.get("/data/plugins_listing", timeout=5)[0] is not None, "HTTP answer", 180)
        yield tb
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
