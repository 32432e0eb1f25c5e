"""llmtui's Textual app (`llmtui` with no arguments): see tui/app.py.

Layout: app.py (the App, navigation, training lifecycle), app_base.py (the app as
screens see it: shared state, the methods they call), screens/ (one
module per screen), widgets/ (small reusable widgets), *.tcss (styles),
fields.py / format.py / session.py / training.py (logic without widgets),
testing.py (fakes for tests, snapshots and benchmarks).
"""
