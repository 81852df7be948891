"""Builds the real TensorBoard WSGI app with the VarMap plugin over a logdir, for tests."""

import json

from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider as provider_lib
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins import base_plugin

from tb_varmap import metadata
from tb_varmap.plugin import VarMapPlugin

PREFIX = "/data/plugin/%s/" % metadata.PLUGIN_NAME
WRITE_HEADERS = {metadata.CSRF_HEADER: "1"}


def make_client(logdir):
    """A werkzeug test client over TensorBoardWSGI, reading event files like TensorBoard."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = provider_lib.MultiplexerDataProvider(multiplexer, logdir)
    context = base_plugin.TBContext(logdir=logdir, data_provider=provider, multiplexer=multiplexer)
    plugin = VarMapPlugin(context)
    app = application.TensorBoardWSGI([plugin], data_provider=provider)
    return werkzeug_test.Client(app, wrappers.Response), plugin


def get_json(client, route, status=200):
    response = client.get(PREFIX + route)
    assert response.status_code == status, (route, response.status_code, response.get_data(as_text=True)[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.get_data(as_text=True))


def send_json(client, method, route, body, status=200, headers=WRITE_HEADERS):
    response = client.open(
        PREFIX + route,
        method=method,
        data=json.dumps(body),
        headers=dict(headers or {}),
        content_type="application/json",
    )
    text = response.get_data(as_text=True)
    assert response.status_code == status, (route, response.status_code, text[:500])
    return json.loads(text)


def copy_runs(source, target, models, variants=("", "_resource")):
    """Copies the named generated runs (each variant present) into a fresh logdir."""
    import os
    import shutil

    os.makedirs(target, exist_ok=True)
    for model in models:
        for suffix in variants:
            if os.path.isdir(os.path.join(source, model + suffix)):
                shutil.copytree(os.path.join(source, model + suffix), os.path.join(target, model + suffix))
    return str(target)
