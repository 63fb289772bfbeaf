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
from chromium import chromium
from conftest import need
from PIL import Image, ImageChops

from clicktrail import messages
from clicktrail.tracker import Clicktrail, create_app

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT.parent / "shared" / "corpus" / "html").glob("*.html"))
ARTIFACTS = ROOT / "test-artifacts" / "render"
WIDTHS = (800, 375)  # a desktop reading pane and a phone: media queries switch between them

Shots = dict[tuple[str, int], dict[str, tuple[bytes, tuple[int, int]]]]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shots]:
    """Rewrite every template and screenshot both versions, with one browser for all."""
    exe = need("chromium")
    tmp = tmp_path_factory.mktemp("render")
    app = create_app({"click_domain": "https://clicks.example.com", "database": str(tmp / "ct.db"),
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
                    png, size = browser.screenshot(page.as_uri(), width)
                    (ARTIFACTS / f"{template.stem}.{width}.{which}.png").write_bytes(png)
                    found.setdefault((template.name, width), {})[which] = (png, size)
    yield found


def test_every_template_is_there() -> None:
    assert len(TEMPLATES) == 37


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("template", [t.name for t in TEMPLATES])
def test_rewritten_template_looks_the_same(shots: Shots, template: str, width: int) -> None:
    (before, before_size), (after, after_size) = (shots[template, width][k] for k in ("original", "tracked"))
    assert after_size == before_size, "the layout moved: the page changed size"
    if after == before:
        return
    a, b = (Image.open(io.BytesIO(png)).convert("RGBA") for png in (before, after))
    assert a.size == b.size
    box = ImageChops.difference(a, b).getbbox()
    if box is not None:
        left, top, right, bottom = box
        assert right - left <= 1 and bottom - top <= 1, f"pixels differ in {box}, beyond the 1x1 open pixel"
