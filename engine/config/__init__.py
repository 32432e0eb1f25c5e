"""Config: the schema that defines every setting, and everything that reads or writes it.

    schema    dataclass sections; each field's type, default, range and help text
    loading   TOML/preset loading, `section.key=value` overrides, validation, TOML output
    document  a TOML file edited key by key with its comments kept (the app's wizard)
    presets   the shipped presets, read as package data (llmtui.presets)
    reference the measured val-loss curve a preset ships, and which runs it fits
    resolved  the config with run-time choices ("auto" batch settings) made
    foreign   other trainers' key names (source documents 002's and 000's), read as llmtui's

May import: llmtui.engine.errors and llmtui.engine.fsutil only. No torch.
"""
