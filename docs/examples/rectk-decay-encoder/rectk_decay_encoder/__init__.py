"""An example rectk plugin package (see docs/writing-a-plugin.md)."""
