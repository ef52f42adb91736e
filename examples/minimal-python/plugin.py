"""A whole extframework plugin: a view, a form action, storage (docs/plugin-guide.md)."""

import json
import os
from pathlib import Path
from threading import Thread

from flask import Flask, redirect, render_template_string, request
from werkzeug.serving import make_server

from extframework_sdk import RequestTokenError, RequestVerifier, StorageClient, register_or_update

CORE, PORT = os.environ.get("EXTFW_CORE_URL", "http://127.0.0.1:5000"), int(os.environ["PORT"])
TOKEN_FILE = os.environ.get("PLUGIN_TOKEN_FILE", "instance/minimal-python.token")
manifest = json.loads(Path(__file__).with_name("manifest.json").read_text())
manifest["base_url"] = f"http://127.0.0.1:{PORT}"
verifier = RequestVerifier(CORE, manifest["plugin_id"])
storage = StorageClient(CORE, token_file=TOKEN_FILE)
PAGE = """<h1>Items</h1><ul class="items">{% for d in docs %}<li>{{ d.data.text }}</li>{% endfor %}
</ul><form method="post" action="/items"><label for="text">Text</label> <input id="text" name="text"
required> <button>Add item</button></form>"""  # render_template_string escapes {{ }}
app = Flask(__name__)
app.get("/health")(lambda: {"status": "ok"})
app.errorhandler(RequestTokenError)(lambda exc: ("<p>Not from the core.</p>", 401))


@app.route("/items", methods=["GET", "POST"])
def items():
    tenant = verifier.verify(request.headers.get("Authorization")).tenant
    if request.method == "POST":
        storage.create("items", {"text": request.form.get("text", "")}, tenant=tenant)
        return redirect("/items", 303)
    return render_template_string(PAGE, docs=storage.iterate("items", tenant=tenant, sort="text"))


if __name__ == "__main__":  # listen first: the core probes /health while we register
    server = make_server("127.0.0.1", PORT, app, threaded=True)
    enrol = {"token_file": TOKEN_FILE, "enrolment_key": os.environ.get("EXTFW_ENROLMENT_KEY")}
    Thread(target=register_or_update, args=(CORE, manifest), kwargs=enrol).start()
    server.serve_forever()
