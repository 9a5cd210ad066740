"""User-facing errors (layer L0).

Every error a user can cause by bad input is an ``InputError``: it names what was wrong, where (file,
line, field), the value received and how to fix it. The CLI prints it on one line and exits 2, without
a traceback. Our own faults raise anything else and keep their traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a file, a line, a field or a flag that codescaler cannot use."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        what = f"field {self.field!r}: " if self.field else ""
        text = f"{where}{what}{self.message}"
        if self.fix:
            text += f" ({self.fix})"
        return text
