"""The command-line entry points: thin shims over the library, sharing one decorator."""
