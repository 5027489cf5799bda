"""The benchmarks' command lines: the module's first paragraph as the description, defaults shown."""

from __future__ import annotations

import argparse


def parser(doc: str | None) -> argparse.ArgumentParser:
    first_paragraph = " ".join((doc or "").strip().split("\n\n", 1)[0].split())
    return argparse.ArgumentParser(description=first_paragraph,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
