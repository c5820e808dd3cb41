"""The interactive TUI (Textual): the only package of kcode that imports textual.

:func:`kcode.tui.app.main` opens it on a run handle (:mod:`kcode.session.control`); the CLI
imports it lazily, so the headless path never loads Textual.
"""

__all__: list[str] = []
