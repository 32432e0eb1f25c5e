"""The shipped presets (cpu.toml, gtx1660.toml, ...): package data the engine reads."""
