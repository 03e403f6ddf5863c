"""The browser itself: Debian's Chromium starts headless and renders what it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser


def test_chromium_renders_a_page_and_writes_a_screenshot(new_page: Any, screenshots: Path) -> None:
    page = new_page()
    page.set_content("<main><h1>Sakk</h1><p id='amount'>1,250.00 MAD</p></main>")
    assert page.inner_text("#amount") == "1,250.00 MAD"
    shot = screenshots / "rendered.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
