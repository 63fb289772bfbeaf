"""The baseline: a bare Flask app answering the tracker's routes with fixed responses, no logging."""

from __future__ import annotations

import base64

from flask import Flask, Response

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
TARGET = "https://shop.example.com/sale?id=7#top"


def create_app() -> Flask:
    """The same URL rules as the tracker; a fixed 302 for links, a fixed GIF for the pixel."""
    app = Flask(__name__)

    @app.route("/<token>/<path:shown>")
    def follow(token: str, shown: str) -> Response:
        if shown == "o.gif":
            return Response(GIF, 200, {"Content-Type": "image/gif"})
        resp = Response("", 302)
        resp.headers["Location"] = TARGET
        return resp

    return app
