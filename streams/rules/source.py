"""YAML read with the line of every value, so a policy problem can point at file:line."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import yaml

YamlPath = tuple[str | int, ...]


class YamlSyntaxError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class YamlDocument:
    """Plain data (dicts, lists, scalars) plus the 1-based line where each value starts."""

    data: Any
    lines: dict[YamlPath, int] = field(default_factory=dict)
    # Keys written twice in one mapping: YAML keeps the last one, which hides the first.
    duplicate_keys: list[tuple[int, str]] = field(default_factory=list)

    def line_of(self, path: YamlPath) -> int:
        """The line of the deepest value along `path` that exists in the file."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return self.lines.get((), 1)


def compose_yaml(text: str) -> YamlDocument:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(line, f"YAML syntax error: {exc.problem or exc}") from None
    finally:
        loader.dispose()
    doc = YamlDocument(data=None, lines={(): 1})
    if node is not None:
        doc.data = _convert(node, (), loader, doc)
    return doc


def _convert(node: yaml.Node, path: YamlPath, loader: yaml.SafeLoader, doc: YamlDocument) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        return _convert_mapping(node, path, loader, doc)
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), loader, doc) for i, item in enumerate(node.value)]
    return loader.construct_object(node)


def _convert_mapping(
    node: yaml.MappingNode, path: YamlPath, loader: yaml.SafeLoader, doc: YamlDocument
) -> dict[Hashable, Any]:
    result: dict[Hashable, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise YamlSyntaxError(line, f"mapping key {key!r} must be a string")
        if key in result:
            doc.duplicate_keys.append((line, f"key {key!r} appears twice in the same mapping"))
        result[key] = _convert(value_node, (*path, key), loader, doc)
        # A key's own line is where an error about it (unknown, misspelt) should point.
        doc.lines[(*path, key)] = line
    return result
