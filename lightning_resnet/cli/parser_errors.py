"""jsonargparse's errors, as one line that names the option, the value given and what the option takes: the one
place that rewrites them, for every command's parser (LightningCLI's and the commands' own).

jsonargparse says ``Parser key "data.normalize": Does not validate against any of the Union subtypes Subtypes:
[typing.Literal['imagenet'], dict[str, list[float]]] Errors: ... Given value: auto``; a user reads
``data.normalize auto: expected imagenet, or a mapping (e.g. {mean: [...], std: [...]})``.
"""

from __future__ import annotations

import re

_KEY = re.compile(r'Parser key "(?P<key>[^"]+)":')
_GIVEN = re.compile(r"(?:Given value|Got value): (?P<value>.*?)\s*$", re.S)
_REQUIRED = re.compile(r"the following arguments are required: (?P<names>[\w, .]+)")
_SUBTYPES = re.compile(r"Subtypes: \[(?P<types>.*?)\] Errors:", re.S)
_EXPECTED = re.compile(r"Expected an? (?P<type>.+?)\.? Got value", re.S)
_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
    "NoneType": "null",
    "Path": "a path",
    "dict": "a mapping",
    "list": "a list",
    "tuple": "a list",
}


def described(kind: str) -> str:
    """A type as jsonargparse prints it (``<class 'int'>``, ``typing.Literal['a', 'b']``, ``dict[str, float]``), in
    words."""
    kind = kind.strip()
    literal = re.fullmatch(r"(?:typing\.)?Literal\[(?P<values>.*)\]", kind)
    if literal:
        return alternatives([value.strip().strip("'\"") for value in literal.group("values").split(",")])
    name = re.sub(r"^<class '(?:[\w.]+\.)?(\w+)'>$", r"\1", kind)
    base = re.split(r"[\[.]", name)[-1] if "[" not in name else name.split("[")[0].split(".")[-1]
    if base in ("dict", "Mapping"):
        return "a mapping (e.g. {name: value})"
    if base in ("list", "tuple", "Sequence"):
        return "a list (e.g. [1, 2])"
    return _WORDS.get(base, f"a {base}" if base[:1].isupper() else base)


def alternatives(words: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _subtypes(types: str) -> list[str]:
    """The subtypes of a Union, split at the commas that are not inside brackets."""
    parts, depth, current = [], 0, ""
    for character in types:
        depth += (character in "[(") - (character in "])")
        if character == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += character
    return [part for part in (*parts, current) if part.strip()]


def one_line(message: str, prefix: str = "") -> str:
    """jsonargparse's ``message`` as one line naming the option (``prefix`` before its key: ``--`` for the commands'
    own parsers), the value and what it takes; messages of another form are kept, on one line."""
    flat = " ".join(message.split())
    key = _KEY.search(flat)
    if key is None:
        return flat
    option = prefix + key.group("key")
    required = _REQUIRED.search(flat)
    if required:
        names = [name.strip() for name in required.group("names").split(",") if name.strip()]
        return f"{option} needs {', '.join(f'{option}.{name}' for name in names)} (it was given without)"
    given = _GIVEN.search(flat)
    value = given.group("value") if given else "?"
    value = "(a mapping)" if value.startswith("Namespace(") else value
    subtypes = _SUBTYPES.search(flat)
    if subtypes:
        accepted = [described(kind) for kind in _subtypes(subtypes.group("types"))]
        return f"{option} {value}: expected {'; or '.join(dict.fromkeys(accepted))}"
    expected = _EXPECTED.search(flat)
    if expected:
        return f"{option} {value}: expected {described(expected.group('type'))}"
    return f"{option}: {flat[key.end():].strip()}"
