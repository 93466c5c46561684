"""Reading the service's TOML files (keys, upstream routes, schedules) with clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigFileError(Exception):
    """A configuration file is missing, unreadable or invalid; the message says where."""


def describe(exc: ValidationError) -> str:
    """Every problem of a validation error on one line: `where: what`."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(map(str, error["loc"]))
        what = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {what}" if where else what)
    return "; ".join(problems)


def load_toml(path: str, model: type[ModelT], setting: str, error: type[ConfigFileError]) -> ModelT:
    """Parse and validate `path` (named by `setting` in messages), raising `error`."""
    try:
        return model.model_validate(tomllib.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise error(f"cannot read {setting} {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{setting} {path} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise error(f"{setting} {path}: {describe(exc)}") from exc
