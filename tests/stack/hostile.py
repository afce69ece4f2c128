"""Hostile and mistaken spec files, built once for the tests and for bench/spec_hostile.py."""

from __future__ import annotations


def alias_bomb(levels: int = 9, fan: int = 9) -> str:
    """ "Billion laughs": each level lists the previous one ``fan`` times (about 750 bytes)."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * fan)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]")
    return "\n".join(lines) + "\n"


def deep_nesting(depth: int) -> str:
    """A flow list nested ``depth`` levels deep (libyaml itself stops at 1000)."""
    return "services: " + "[" * depth + "]" * depth + "\n"


def big_file(size: int) -> str:
    """A syntactically plain YAML file of at least ``size`` bytes."""
    line = "key_0000000: value value value value value value value value\n"
    n = size // len(line) + 1
    return "".join(f"key_{i:07d}{line[11:]}" for i in range(n))
