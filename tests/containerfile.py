"""Read the Dockerfile the way the builder does, so tests can run what the image would.

Only what our Dockerfile uses: line continuations, comments and parser directives,
``ARG``/``FROM ... AS``, and the instructions' arguments (JSON exec form or shell form).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the (joined) line

    def exec_form(self) -> list[str]:
        """The JSON array of CMD/ENTRYPOINT/RUN, or a shell form wrapped as Docker does."""
        text = self.args.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            return value
        return ["/bin/sh", "-c", text]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Every ENV of the stage applied in order, ``$VAR`` / ``${VAR}`` expanded."""
        env = dict(base or {})
        for instruction in self.all("ENV"):
            for item in shlex.split(instruction.args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {instruction.args!r}: use the KEY=value form"
                env[key] = _expand(value, env)
        return env


def _expand(value: str, env: dict[str, str]) -> str:
    for key in sorted(env, key=len, reverse=True):
        value = value.replace("${" + key + "}", env[key]).replace("$" + key, env[key])
    return value


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    args: dict[str, str] = {}
    result: list[Stage] = []
    for instruction in instructions(path.read_text()):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(_expand(words[0], args), name))
        elif not result and instruction.keyword == "ARG":
            key, _, default = instruction.args.partition("=")
            args[key] = default
        else:
            assert result, f"{instruction.keyword} before the first FROM"
            result[-1].instructions.append(instruction)
    return result
