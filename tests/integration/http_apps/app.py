"""A Flask application behind steeldoor's HTTP mode, run by Debian's gunicorn
(`gunicorn -k gthread --chdir tests/integration/http_apps app:app`).

Every request is answered with a JSON description of what the application
saw: request.headers, the HTTP_* keys of the WSGI environ (where gunicorn
joins repeated headers with "," and maps both '-' and '_' to '_'), the body
and the method and path. With SD_APP_LOG set, the same object is appended as
one JSON line to that file, so a test can prove that a request never reached
the application at all."""
import base64
import json
import os
import threading

from flask import Flask, Response, request

app = Flask(__name__)
_LOG = os.environ.get("SD_APP_LOG")
_lock = threading.Lock()
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def _seen():
    body = request.get_data(cache=False)
    env = {k: v for k, v in request.environ.items() if k.startswith("HTTP_")}
    return {
        "method": request.method,
        "path": request.path,
        "raw_uri": request.environ.get("RAW_URI"),
        "query": request.query_string.decode("latin-1"),
        "headers": [[k, v] for k, v in request.headers.items()],
        "environ": env,
        "body_b64": base64.b64encode(body).decode(),
        "remote_addr": request.remote_addr,
        "scheme": request.scheme,
        "protocol": request.environ.get("SERVER_PROTOCOL"),
        "pid": os.getpid(),
    }


@app.route("/", defaults={"p": ""}, methods=METHODS)
@app.route("/<path:p>", methods=METHODS)
def echo(p):
    d = _seen()
    if _LOG:
        with _lock, open(_LOG, "a") as f:
            f.write(json.dumps(d) + "\n")
    return Response(json.dumps(d), mimetype="application/json")
