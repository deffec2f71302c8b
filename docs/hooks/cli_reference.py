"""MkDocs hook: the CLI reference page is generated from modelconv's argparse definitions.

``docs/cli.md`` holds the marker ``<!-- modelconv-cli -->``; at build time it is replaced by
one section per sub-command with its usage line and every option's help text, taken from
:func:`modelconv.cli.build_parser`, so the page cannot drift from the code.
"""

from __future__ import annotations

import argparse
from typing import Any

MARKER = "<!-- modelconv-cli -->"


def render_cli() -> str:
    """Markdown for every ``modelconv`` sub-command and option."""
    from modelconv.cli import build_parser

    parser = build_parser()
    parts = [_section("modelconv", parser, level=2)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts.append(_section(f"modelconv {name}", sub, level=2))
    return "\n\n".join(parts)


def _section(title: str, parser: argparse.ArgumentParser, level: int) -> str:
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines = [f"{'#' * level} `{title}`", ""]
    if parser.description:
        lines += [parser.description, ""]
    lines += ["```text", usage, "```", ""]
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flags = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        meta = action.metavar or (action.dest.upper() if action.nargs != 0 and
                                  action.option_strings else "")
        if action.option_strings and action.nargs != 0 and meta:
            flags += f" `{meta}`"
        text = (action.help or "").replace("|", "\\|")
        if action.choices and not isinstance(action.choices, dict):
            text += " (one of: " + ", ".join(str(c) for c in action.choices) + ")"
        if action.default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0:
            text += f" (default: `{action.default}`)"
        rows.append(f"| {flags} | {text} |")
    if rows:
        lines += ["| argument | meaning |", "|---|---|", *rows]
    if parser.epilog:
        lines += ["", "```text", parser.epilog.strip(), "```"]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker with the generated reference."""
    if MARKER in markdown:
        return markdown.replace(MARKER, render_cli())
    return markdown
