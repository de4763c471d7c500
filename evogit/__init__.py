"""evogit: an event-sourced, git-backed repository of executable WebAssembly skills."""

__version__ = "0.1.0"
