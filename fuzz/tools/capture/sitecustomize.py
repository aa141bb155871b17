"""Records every request body the Azure SDK sends (loaded through PYTHONPATH
by capture-sdk-bodies.sh). One JSON line per request with a body:
{"method", "path", "body"} appended to $COFFER_CAPTURE."""

import json
import os
from urllib.parse import urlsplit

_OUT = os.environ.get("COFFER_CAPTURE")

if _OUT:
    import requests

    _send = requests.Session.send

    def _recording_send(self, request, **kwargs):
        body = request.body
        if body:
            if isinstance(body, bytes):
                body = body.decode("utf-8", "replace")
            with open(_OUT, "a", encoding="utf-8") as f:
                f.write(json.dumps({
                    "method": request.method,
                    "path": urlsplit(request.url).path,
                    "body": body,
                }) + "\n")
        return _send(self, request, **kwargs)

    requests.Session.send = _recording_send
