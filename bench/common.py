"""Shared helpers: timing, medians, RSS from /proc, machine description, result files."""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rss_mib(pid):
    """(current RSS, peak RSS) of a process in MiB, from /proc/<pid>/status."""
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value, _ = line.split()
                fields[key[:-1]] = int(value) / 1024.0
    return fields.get("VmRSS"), fields.get("VmHWM")


def tree_rss_mib(pid):
    """RSS of a process plus its children (TensorBoard may fork data-server helpers)."""
    total = rss_mib(pid)[0] or 0.0
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for child in children:
        try:
            total += tree_rss_mib(child)
        except OSError:
            pass
    return total


def machine():
    """One line naming the machine the figures come from."""
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "%s, %d cores, %.0f GiB RAM, no GPU, Python %s, %s" % (
        model, os.cpu_count(), mem, platform.python_version(), platform.platform(terse=True))


def command_line():
    return "python -m " + __package__ + "." + os.path.basename(sys.argv[0])[:-3] + " " + " ".join(sys.argv[1:]) \
        if sys.argv and sys.argv[0].endswith(".py") else " ".join(sys.argv)


def revision():
    """The repository commit the figures were measured on (+ " with local changes in tb_varmap")."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "tb_varmap"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return head + (" with local changes in tb_varmap" if dirty else "")
    except OSError:
        return None


def save(out_dir, name, payload):
    """Writes <out_dir>/<name>.json with the command and machine; returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    payload = dict(payload, command=command_line(), machine=machine(), loadavg_at_end=os.getloadavg(), revision=revision(),
                   finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    path = os.path.join(out_dir, name + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=1, default=str)
    os.replace(path + ".tmp", path)
    return path


def child_env(**extra):
    """Environment for product child processes: Keras-3 side, repo importable, quiet TF."""
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [REPO, env.get("PYTHONPATH")] if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def profile_call(fn, top=30, path=None):
    """(result, top functions by cumulative time) of fn() under cProfile."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    try:
        result = fn()
    finally:
        prof.disable()
    if path:
        prof.dump_stats(path)
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (cc, nc, tt, ct, callers) in sorted(stats.stats.items(), key=lambda kv: -kv[1][3])[:top]:
        where = os.path.relpath(file, REPO) if file.startswith(REPO) else os.path.basename(file)
        rows.append({"function": "%s:%d(%s)" % (where, line, func), "cumulative_s": round(ct, 3),
                     "own_s": round(tt, 3), "calls": nc})
    return result, rows
