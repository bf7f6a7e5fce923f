"""Load, validate and render the versioned prompt templates in prompts/.

A template is markdown with a small front matter (`version: ...`) and two parts,
`## system` and `## user`. Variables are `$name` (string.Template; `$$` is a
literal dollar). The system part is static, so a provider's prompt cache can
serve it across notes; everything that varies is in the user part, last.

A user line starting with `? ` is optional: it is sent only when every variable on
it has a value, so the model never sees an empty tag such as `<section></section>`.

Every value is untrusted text (notes, titles, transcripts) and goes through
`escape_untrusted`, so a note or transcript holding `</excerpt></passage><note>` cannot
close the prompt's blocks or open new ones. Text with no tag-like `<` is unchanged, so
the prompts of ordinary notes, and the cache keys built from them, stay the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from cards.errors import ConfigError

TEMPLATE_NAME = "cards.md"
CRITIC_NAME = "critic.md"
VARIABLES = frozenset({"episode_title", "show", "people", "date", "section", "neighbours", "note", "passage",
                       "time"})
# The critic's template: the note and its excerpts, then the drafted claims and cards.
CRITIC_VARIABLES = frozenset({"episode_title", "show", "people", "date", "note", "passage", "claims", "cards"})
OPTIONAL = "? "
# The prompt that finds an episode's key claims in its transcript (cards.extract).
EXTRACT_NAME = "extract.md"
EXTRACT_VARIABLES = frozenset({"episode_title", "show", "people", "span", "part", "parts", "max_claims",
                               "transcript"})
# Each template's variables, and those it must use.
_VARIABLES = {TEMPLATE_NAME: (VARIABLES, {"note", "passage"}), CRITIC_NAME: (CRITIC_VARIABLES, {"note", "passage"}),
              EXTRACT_NAME: (EXTRACT_VARIABLES, {"transcript"})}
_FRONT_MATTER = re.compile(r"---\n(.*?)^---[ \t]*\n", re.S | re.M)
_PART = re.compile(r"^## (system|user)[ \t]*$", re.M)
# What a tag looks like to the model: "<" then an optional "/" and a name ("<note", "</ excerpt").
_TAG_OPEN = re.compile(r"<(?=\s*/?\s*[^\W\d_])")


def escape_untrusted(text: str) -> str:
    """Untrusted text made unable to open or close a prompt tag: a tag-like "<" becomes "&lt;"."""
    return _TAG_OPEN.sub("&lt;", text)


class Block(str):
    """Prompt text built here around untrusted parts already escaped: inserted as it is."""


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    user: Template
    path: str
    variables: frozenset = VARIABLES

    def render(self, **values: str) -> list[dict]:
        missing = self.variables - set(values)
        if missing:
            raise ConfigError(f"prompt needs values for {sorted(missing)}", path=self.path)
        safe = {k: v if isinstance(v, Block) else escape_untrusted(str(v)) for k, v in values.items()}
        lines = []
        for line in self.user.template.split("\n"):
            if line.startswith(OPTIONAL):
                line = line[len(OPTIONAL):]
                if not all(str(values[v]).strip() for v in Template(line).get_identifiers()):
                    continue
            lines.append(Template(line).substitute(safe))
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": "\n".join(lines)},
        ]


def render_passage(parts, missing: str = "(no transcript passage was found for this note)") -> str:
    """A passage's excerpts (cards.models.Excerpt) as <excerpt> blocks, each with its times when known.

    The transcript's words are escaped here, the tags around them are not: the result is a Block.
    """
    from cards.models import format_span

    if not parts:
        return Block(escape_untrusted(missing))
    blocks = []
    for part in parts:
        span = format_span(part.start, part.end)
        attr = f' time="{span}"' if span else ""
        blocks.append(f"<excerpt{attr}>\n{escape_untrusted(part.text.strip())}\n</excerpt>")
    return Block("\n".join(blocks))


def _builtin_dir() -> Path:
    """prompts/ as installed inside the package, or beside it in a source tree."""
    installed = Path(__file__).resolve().parent / "prompts_data"
    if (installed / TEMPLATE_NAME).exists():
        return installed
    return Path(__file__).resolve().parent.parent / "prompts"


def load_prompt(folder: Path | None = None, name: str = TEMPLATE_NAME) -> PromptTemplate:
    """Read and check a template (cards.md, critic.md or extract.md); every problem is an error now, not a blank later.

    A --prompts folder without critic.md or extract.md (made before they existed) uses the built-in one.
    """
    variables, required = _VARIABLES[name]
    path = (Path(folder) if folder else _builtin_dir()) / name
    if folder and name != TEMPLATE_NAME and not path.exists():
        path = _builtin_dir() / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("prompt template not found", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read prompt template: {e}", path=str(path)) from None
    version = None
    if text.startswith("---\n"):
        m = _FRONT_MATTER.match(text)
        if not m:
            raise ConfigError("front matter is not closed with ---", path=str(path))
        head, text = m.group(1), text[m.end():]
        for line in head.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "version":
                version = value.strip()
    if not version:
        raise ConfigError("prompt template has no `version:` in its front matter", path=str(path))
    parts = _PART.split(text)
    sections = dict(zip(parts[1::2], (p.strip() for p in parts[2::2])))
    if set(sections) != {"system", "user"}:
        raise ConfigError("prompt template needs a `## system` and a `## user` part", path=str(path))
    system = sections["system"]
    if Template(system).get_identifiers():
        raise ConfigError("the system part must be static (no $variables), so it can be cached",
                          path=str(path))
    user = Template(sections["user"])
    if not user.is_valid():
        raise ConfigError("malformed $variable in the user part (write $$ for a dollar sign)", path=str(path))
    used = set(user.get_identifiers())
    unknown = used - variables
    if unknown:
        raise ConfigError(f"unknown variable(s) {sorted(unknown)}; known: {sorted(variables)}", path=str(path))
    if not required <= used:
        raise ConfigError(f"the user part must use {' and '.join('$' + v for v in sorted(required))}",
                          path=str(path))
    for line in sections["user"].split("\n"):
        if line.startswith(OPTIONAL):
            names = set(Template(line).get_identifiers())
            if not names:
                raise ConfigError(f"optional line {line!r} has no $variable to test", path=str(path))
            if names & required:
                raise ConfigError(f"{' and '.join('$' + v for v in sorted(required))} cannot be on an optional "
                                  "line", path=str(path))
    return PromptTemplate(version, system, user, str(path), variables)
