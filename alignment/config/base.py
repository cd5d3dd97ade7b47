"""The base of every config section: closed sets of values (:class:`Choice`), parsed once for every
section by :class:`Section`, and the range checks' error (:func:`check`)."""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass, fields
from enum import Enum
from typing import ClassVar, TypeVar

from alignment.errors import UserError

_C = TypeVar("_C", bound="Choice")


class Choice(str, Enum):
    """A closed set of values for a config field.

    Members are named by their values: OmegaConf reads an enum field by member name and writes the
    name into saved configs, so ``ppo.kl.estimator=k3`` and ``.hydra/config.yaml`` spell the value.
    As a ``str`` a member compares equal to its value (``cfg.ppo.value_model == "head"``), and it
    prints, formats and serialises to JSON as the value too.
    """

    def __str__(self) -> str:
        return str.__str__(self)

    @classmethod
    def parse(cls: type[_C], value: object, key: str) -> _C:
        """``value`` as a member (a config built in Python may hold the plain string), else a
        :class:`UserError` naming ``key`` and the valid values."""
        try:
            return cls(value)
        except ValueError:
            raise UserError(f"{key}={value!r} is not one of {[m.value for m in cls]}") from None


def check(ok: bool, key: str, value: object, rule: str) -> None:
    """A :class:`UserError` naming ``key`` and ``value`` unless ``ok``; ``rule`` says what is allowed."""
    if not ok:
        raise UserError(f"{key}={value!r}: must be {rule}")


def require(value: str | None, key: str, hint: str) -> str:
    """``value``, or a :class:`UserError` naming ``key`` when a config group left it unset."""
    if value is None or value == "":
        raise UserError(f"{key} is not set: {hint}")
    return value


def interpolated(value: object) -> bool:
    """Whether ``value`` is still an interpolation (``"${ppo.eval_prompts}"``): the schema's own default,
    built before OmegaConf resolves it; the resolved value is checked when the config is converted."""
    return isinstance(value, str) and value.startswith("${")


@functools.cache
def _choice_fields(cls: type) -> tuple[tuple[str, type[Choice], bool], ...]:
    """``(name, choice type, is a list)`` of every field of ``cls`` annotated with a :class:`Choice`
    (or a list of one)."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in fields(cls):
        hint = hints[f.name]
        many = typing.get_origin(hint) is list
        inner = typing.get_args(hint)[0] if many else hint
        if isinstance(inner, type) and issubclass(inner, Choice):
            found.append((f.name, inner, many))
    return tuple(found)


@dataclass
class Section:
    """A config section. Its :class:`Choice` fields are parsed here, once for every section (a config
    built in Python may hold plain strings), then :meth:`check` tests the ranges. Both run when the
    entry point turns the composed config into these dataclasses (``OmegaConf.to_object``) and when
    code builds one in Python. ``KEY`` is the section's place in the root config (``ppo.kl``): every
    error names ``KEY.field``."""

    KEY: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name, choice, many in _choice_fields(type(self)):
            value, key = getattr(self, name), self.key(name)
            setattr(self, name, [choice.parse(v, key) for v in value] if many else choice.parse(value, key))
        self.check()

    def key(self, name: str) -> str:
        """The full key of field ``name``, as errors name it."""
        return f"{self.KEY}.{name}" if self.KEY else name

    def check(self) -> None:
        """The section's range checks (its choices are parsed by then); a subclass extends it."""
