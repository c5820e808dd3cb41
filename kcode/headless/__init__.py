"""Headless frontends: text progress and ``stream-json``. Never imports Textual."""

from kcode.headless.stream_json import StreamJsonRenderer
from kcode.headless.text import TextRenderer

__all__ = ["StreamJsonRenderer", "TextRenderer"]
