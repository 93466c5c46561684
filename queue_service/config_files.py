"""Reading the service's TOML files (keys, upstream routes, schedules) with clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from queue_service.errors import ConfigFileError
from queue_service.validation import describe

ModelT = TypeVar("ModelT", bound=BaseModel)


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
