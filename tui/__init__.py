"""llmtui's Textual app (`llmtui` with no arguments): see tui/app.py.

Layout: app.py (the App, navigation, training lifecycle), app_base.py (the app as
screens see it: shared state, the methods they call), screens/ (one
module per screen), widgets/ (small reusable widgets), *.tcss (styles),
fields.py / format.py / session.py / settings.py / training.py (logic without
widgets), messages.py (what screens post), cancellation.py and worker_errors.py
(workers that end or fail without touching widgets).
"""
