"""Helpers for the panel's browser tests: a real tensorboard process and headless Chromium."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(REPO, "test-artifacts")


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def copy_demo_logs(dst):
    """A writable copy of <repo>/demo_logs (generated with tb_varmap.demo if it is empty)."""
    src = os.path.join(REPO, "demo_logs")
    runs = [d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))] if os.path.isdir(src) else []
    if runs:
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("varmap"))
    else:
        from tb_varmap.demo import generate

        generate.generate(dst, models=["dense_nobias", "cnn_bn_adam"], variants=["ref"])
    return dst


class TensorBoard:
    """`tensorboard --logdir …` on a free localhost port, stopped by stop()."""

    def __init__(self, logdir, load_fast=None, timeout=120):
        self.logdir = logdir
        self.port = free_port()
        self.url = "http://localhost:%d" % self.port
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
               "--port", str(self.port), "--host", "localhost", "--reload_interval", "2"]
        if load_fast is not None:
            cmd += ["--load_fast", load_fast]
        self.log_path = os.path.join(os.path.dirname(logdir.rstrip("/")), "tensorboard-%d.log" % self.port)
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait(timeout)

    def _wait(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("tensorboard exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url + "/data/plugins_listing", timeout=5) as r:
                    listing = json.load(r)
                if "varmap" not in listing:
                    raise RuntimeError("tensorboard runs but lists no varmap plugin: %s" % sorted(listing))
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("tensorboard did not answer /data/plugins_listing within %ss:\n%s" % (timeout, self.log_tail()))

    def get_json(self, route):
        with urllib.request.urlopen(self.url + "/data/plugin/varmap/" + route, timeout=30) as r:
            return json.load(r)

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name + ".png")
    page.screenshot(path=path)
    return path
