"""The interactive TUI (Textual): the only package of kcode that imports Textual.

``kcode.tui.app.main(handle, task=None)`` runs the app on a run handle
(:class:`kcode.session.control.RunHandle`); ``kcode.cli.tui`` imports it lazily.
"""

__all__: list[str] = []
