"""The VarMap TensorBoard plugin: thin HTTP routes over testable *_impl functions.

TensorFlow is not imported here; reading a checkpoint or exporting imports it lazily
(exports run in a child process, see jobs.py).
"""

import json
import logging
import mimetypes
import os
import posixpath
import threading
import time
import urllib.parse

from werkzeug import wrappers

from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin

from tb_varmap import metadata
from tb_varmap import runcache
from tb_varmap import tags as tags_mod
from tb_varmap.errors import BadInput, Forbidden, NotFound, TooLarge, VarMapError

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
_MIME_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".wasm": "application/wasm",
    ".html": "text/html",
}
_ACTIVE_CACHE_SECONDS = 10
PREWARM_RUNS = 4          # graph payloads built at start-up, in run order
PREWARM_SECONDS = 60


# ---------------------------------------------------------------- impl functions


def runs_impl(cache):
    return {"runs": [cache.describe(name) for name in cache.run_names()]}


def variables_impl(run_data, step=None):
    step = runcache.resolve_step(run_data, step)
    stored = tags_mod.load_tags(run_data.run_dir)
    rows = tags_mod.effective_roles(run_data.variables(step), run_data.roles(step), stored)
    from tb_varmap import roles as roles_mod

    return {
        "run": run_data.run,
        "step": step,
        "steps": run_data.checkpoint_steps,
        "variables": rows,
        "roles": {
            name: {"description": spec.description, "ranks": list(spec.ranks) if spec.ranks else None,
                   "trainable": spec.trainable}
            for name, spec in roles_mod.ROLES.items()
        },
        "totals": tags_mod.role_totals(rows),
    }


def tags_get_impl(run_data):
    return {"run": run_data.run, "tags": tags_mod.load_tags(run_data.run_dir)}


def tags_put_impl(run_data, body):
    new = tags_mod.update_tags(run_data, body, where="tags for run %r" % run_data.run)
    return {"run": run_data.run, "tags": new}


def report_impl(run_data):
    path = os.path.join(tags_mod.output_dir(run_data.run_dir), metadata.REPORT_FILENAME)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise NotFound("run %r has no verification report yet (export it first)" % run_data.run)
    except ValueError as e:
        raise BadInput("report file %s is not valid JSON: %s" % (path, e))


def parse_step(value):
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise BadInput("step must be an integer checkpoint step, got %r" % value)


def check_same_origin(headers, host):
    """State-changing requests: custom header required, Origin (if any) must be ours."""
    if headers.get(metadata.CSRF_HEADER) is None:
        raise Forbidden("missing the %s header that the VarMap panel sends" % metadata.CSRF_HEADER)
    if headers.get("Sec-Fetch-Site") == "cross-site":
        raise Forbidden("cross-site requests may not change tb_varmap state")
    origin = headers.get("Origin")
    if origin and origin != "null" and urllib.parse.urlparse(origin).netloc != host:
        raise Forbidden("request from origin %r refused; expected this server (%s)" % (origin, host))
    if origin == "null":
        raise Forbidden("request from an opaque origin refused")


def read_json_body(request):
    length = request.content_length
    if length is not None and length > metadata.MAX_REQUEST_BYTES:
        raise TooLarge("request body of %d bytes exceeds the %d byte limit" % (length, metadata.MAX_REQUEST_BYTES))
    raw = request.stream.read(metadata.MAX_REQUEST_BYTES + 1)
    if len(raw) > metadata.MAX_REQUEST_BYTES:
        raise TooLarge("request body exceeds the %d byte limit" % metadata.MAX_REQUEST_BYTES)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput("request body is not valid JSON: %s" % e)
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object, got %s" % type(body).__name__)
    return body


def static_file(relative):
    """Resolves a file under static/, refusing anything that could leave it."""
    if not relative or "\\" in relative or "\x00" in relative:
        raise NotFound("no static file %r" % relative)
    normalized = posixpath.normpath(relative)
    if normalized.startswith(("/", "..")) or normalized != relative:
        raise NotFound("no static file %r" % relative)
    path = os.path.join(STATIC_DIR, *normalized.split("/"))
    if not os.path.isfile(path):
        raise NotFound("no static file %r" % relative)
    return path


# ---------------------------------------------------------------------- the plugin


class VarMapPlugin(base_plugin.TBPlugin):
    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._logdir = context.logdir
        self._data_provider = context.data_provider
        self._cache = runcache.RunCache(self._logdir, context.data_provider)
        self._jobs = None
        self._jobs_lock = threading.Lock()
        self._active = (0.0, False)
        if self._logdir and os.environ.get("TB_VARMAP_PREWARM", "1") != "0":
            threading.Thread(target=self._prewarm, name="varmap-prewarm", daemon=True).start()

    def _prewarm(self):
        """Builds the first runs' graph payloads in the background (no TensorFlow needed),
        so opening the tab does not wait for a big graph to be parsed."""
        started = time.time()
        try:
            for run in self._cache.run_names()[:PREWARM_RUNS]:
                if time.time() - started > PREWARM_SECONDS:
                    break
                try:
                    self._cache.graph_payload(run)
                except Exception:  # a broken run is reported when it is asked for
                    continue
        except Exception:
            logger.debug("tb_varmap: prewarm failed", exc_info=True)

    def get_plugin_apps(self):
        return {
            "/index.js": self._serve_index_js,
            "/static/*": self._serve_static,
            "/runs": self.runs_route,
            "/graph": self.graph_route,
            "/variables": self.variables_route,
            "/tags": self.tags_route,
            "/export": self.export_route,
            "/jobs/*": self.jobs_route,
            "/job": self.jobs_route,
            "/report": self.report_route,
        }

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name=metadata.DISPLAY_NAME)

    def data_plugin_names(self):
        return ("graphs",)

    def is_active(self):
        checked_at, active = self._active
        if time.time() - checked_at > _ACTIVE_CACHE_SECONDS:
            try:
                active = bool(self._logdir) and bool(self._cache.run_names())
            except Exception:  # never break TensorBoard's plugin listing
                logger.exception("tb_varmap: listing runs failed")
                active = False
            self._active = (time.time(), active)
        return active

    # -- helpers

    def _respond(self, request, body, code=200):
        return http_util.Respond(request, body, "application/json", code=code)

    def _error(self, request, error):
        body = {"error": str(error)}
        problems = getattr(error, "problems", None)
        if problems:
            body["problems"] = problems
        current = getattr(error, "current", None)
        if current is not None:
            body["current"] = current
        job = getattr(error, "job", None)
        if job is not None:
            body["job"] = job
        return self._respond(request, body, code=error.http_status)

    def _handle(self, request, work):
        try:
            result = work()
            if isinstance(result, wrappers.Response):
                return result
            return self._respond(request, *result)
        except VarMapError as e:
            return self._error(request, e)
        except Exception as e:  # a bug must not leak a traceback to the client
            logger.exception("tb_varmap: %s failed", request.path)
            return self._respond(request, {"error": "internal error in tb_varmap: %s" % type(e).__name__}, code=500)

    def _run_data(self, request):
        run = request.args.get("run")
        experiment = plugin_util.experiment_id(request.environ)
        return self._cache.get(run, experiment_id=experiment)

    def _job_manager(self):
        with self._jobs_lock:
            if self._jobs is None:
                from tb_varmap import jobs

                self._jobs = jobs.JobManager(self._logdir)
            return self._jobs

    # -- routes

    @wrappers.Request.application
    def _serve_index_js(self, request):
        return self._serve_file(request, "index.js")

    @wrappers.Request.application
    def _serve_static(self, request):
        prefix = "/data/plugin/%s/static/" % metadata.PLUGIN_NAME
        path = request.path
        relative = path[path.index(prefix) + len(prefix):] if prefix in path else ""
        return self._serve_file(request, urllib.parse.unquote(relative))

    def _serve_file(self, request, relative):
        try:
            path = static_file(relative)
        except NotFound as e:
            return self._error(request, e)
        mime = _MIME_TYPES.get(os.path.splitext(path)[1]) or mimetypes.guess_type(path)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            content = f.read()
        return http_util.Respond(request, content, mime)

    @wrappers.Request.application
    def runs_route(self, request):
        return self._handle(request, lambda: (runs_impl(self._cache),))

    @wrappers.Request.application
    def graph_route(self, request):
        def get():
            payload = self._cache.graph_payload(
                request.args.get("run"), experiment_id=plugin_util.experiment_id(request.environ)
            )
            return http_util.Respond(request, payload, "application/json", content_encoding="gzip")

        return self._handle(request, get)

    @wrappers.Request.application
    def variables_route(self, request):
        return self._handle(
            request,
            lambda: (variables_impl(self._run_data(request), parse_step(request.args.get("step"))),),
        )

    @wrappers.Request.application
    def tags_route(self, request):
        if request.method == "GET":
            return self._handle(request, lambda: (tags_get_impl(self._run_data(request)),))
        if request.method != "PUT":
            return self._respond(request, {"error": "tags accepts GET and PUT, not %s" % request.method}, code=405)

        def put():
            check_same_origin(request.headers, request.host)
            run_data = self._run_data(request)
            return (tags_put_impl(run_data, read_json_body(request)),)

        return self._handle(request, put)

    @wrappers.Request.application
    def export_route(self, request):
        if request.method != "POST":
            return self._respond(request, {"error": "export accepts POST, not %s" % request.method}, code=405)

        def post():
            check_same_origin(request.headers, request.host)
            run_data = self._run_data(request)
            body = read_json_body(request)
            job = self._job_manager().start(run_data.run, body)
            return ({"job": job}, 202)

        return self._handle(request, post)

    @wrappers.Request.application
    def jobs_route(self, request):
        def get():
            job_id = request.args.get("id")
            if job_id is None and "/jobs/" in request.path:
                job_id = request.path.rsplit("/jobs/", 1)[1]
            if not job_id:
                raise BadInput("a job id is needed: jobs/<id> or job?id=<id>")
            return (self._job_manager().describe(job_id),)

        return self._handle(request, get)

    @wrappers.Request.application
    def report_route(self, request):
        return self._handle(request, lambda: (report_impl(self._run_data(request)),))
