"""The rewrite never changes how mail looks: real Chromium renders each corpus template before and after.

Each template of ../shared/corpus/html goes through the real path (``messages.track``), then headless
Chromium (network off: no page loads any image, ours or the original's) screenshots the original and the
rewritten page at the same window size, over the page's whole length.  The two must have the same size and
the same pixels, except at most the open pixel's own 1x1 spot.  Screenshots go to test-artifacts/render/.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium import Shot, chromium
from conftest import need
from PIL import Image, ImageChops

from clicktrail import messages
from clicktrail.tracker import Clicktrail, create_app

BASE = "https://clicks.example.com"
ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT.parent / "shared" / "corpus" / "html").glob("*.html"))
ARTIFACTS = ROOT / "test-artifacts" / "render"
WIDTHS = (800, 375)  # a desktop reading pane and a phone: media queries switch between them

Shots = dict[tuple[str, int], dict[str, Shot]]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shots]:
    """Rewrite every template and screenshot both versions, with one browser for all."""
    exe = need("chromium")
    tmp = tmp_path_factory.mktemp("render")
    app = create_app({"click_domain": BASE, "database": str(tmp / "ct.db"),
                      "secret_key": "render-secret-key"})
    parts: Clicktrail = app.extensions["clicktrail"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    found: Shots = {}
    with chromium(exe) as browser:
        for template in TEMPLATES:
            raw = template.read_bytes()
            [copy] = messages.track(parts.store, parts.signer, parts.options, raw).copies
            pages = {"original": raw, "tracked": copy.data}
            for which, data in pages.items():
                page = tmp / f"{template.stem}.{which}.html"
                page.write_bytes(data)
                for width in WIDTHS:
                    shot = browser.screenshot(page.as_uri(), width)
                    (ARTIFACTS / f"{template.stem}.{width}.{which}.png").write_bytes(shot.png)
                    found.setdefault((template.name, width), {})[which] = shot
    yield found


def test_every_template_is_there() -> None:
    assert len(TEMPLATES) == 37


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("template", [t.name for t in TEMPLATES])
def test_rewritten_template_looks_the_same(shots: Shots, template: str, width: int) -> None:
    original, tracked = shots[template, width]["original"], shots[template, width]["tracked"]
    # A fair comparison: neither page got anything from the network, and both asked for the same images
    # (ours in place of the originals), the tracked page for the open pixel too.
    assert original.answered == tracked.answered == []
    pixels = [u for u in tracked.requested if u.startswith(BASE + "/") and u.endswith("/o.gif")]
    assert len(pixels) == 1
    assert len(set(tracked.requested)) == len(set(original.requested)) + 1
    assert tracked.size == original.size, "the layout moved: the page changed size"
    before, after = original.png, tracked.png
    if after == before:
        return
    a, b = (Image.open(io.BytesIO(png)).convert("RGBA") for png in (before, after))
    assert a.size == b.size
    box = ImageChops.difference(a, b).getbbox()
    if box is not None:
        left, top, right, bottom = box
        assert right - left <= 1 and bottom - top <= 1, f"pixels differ in {box}, beyond the 1x1 open pixel"
