"""Validated configs: the one config object that flows from a YAML spec to ``fit``.

A run config has three sections, ``data``, ``model`` and ``train``; a study spec
(:mod:`rnnlab.core.study_spec`) adds ``study`` and ``search``. Every default lives here or there,
and only once. Unknown keys and wrong types are
rejected with the dotted name of the key, as one line.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rnnlab.errors import RnnlabError

PIXELS = 28 * 28
CELLS = ("rnn", "lstm", "gru")
_FLOAT32_MAX = 3.4028234663852886e38


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """Where the images come from, how they are split, and how they are presented."""

    source: Literal["mnist", "mnist-5k"] = "mnist"
    dir: Annotated[str | None, Field(description=(
        "the folder of the four IDX files (none: $RNNLAB_DATA_DIR, the cache, a download)"))] = None
    split: Literal["holdout", "tutorial"] = "holdout"
    train_size: Annotated[int, Field(ge=1)] = 5000
    val_size: Annotated[int, Field(ge=1)] = 1000
    split_seed: int = 0  # fixes which training images become validation images
    patch: Annotated[int, Field(ge=1, description="a divisor of 784 (pixels a step)")] = 7
    normalisation: Literal["none", "global", "per_pixel", "per_pixel_tutorial"] = "per_pixel"
    # per_pixel only: each pixel's std is floored at this fraction of the global std, so the 67
    # pixels that never vary in training cannot blow a test image up to ~1e6.
    std_floor: Annotated[float, Field(gt=0)] = 0.1

    @field_validator("patch")
    @classmethod
    def _patch_divides_image(cls, v: int) -> int:
        if PIXELS % v:
            divisors = [d for d in range(1, PIXELS + 1) if PIXELS % d == 0]
            raise ValueError(f"patch {v} does not divide 784; use one of {divisors}")
        return v

    @property
    def steps(self) -> int:
        return PIXELS // self.patch


class ModelConfig(Section):
    """The recurrent classifier."""

    cell: Literal["rnn", "lstm", "gru"] = "rnn"
    hidden: Annotated[int, Field(ge=1)] = 128
    layers: Annotated[int, Field(ge=1)] = 1
    # tutorial: identity recurrent weights and zero biases for rnn (IRNN), Xavier input/output;
    # pytorch: PyTorch's own uniform initialisation.
    init: Literal["tutorial", "pytorch"] = "tutorial"


class TrainConfig(Section):
    """The optimisation loop."""

    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    lr: Annotated[float, Field(gt=0)] = 2e-4
    momentum: Annotated[float, Field(ge=0, lt=1, description="sgd only")] = 0.9
    l2: Annotated[float, Field(ge=0)] = 0.0
    batch_size: Annotated[int, Field(ge=1)] = 50
    epochs: Annotated[int, Field(ge=1)] = 100
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    seed: int = 0
    device: Annotated[str, Field(description="auto, cpu, cuda or cuda:N")] = "auto"
    threads: Annotated[int, Field(ge=1)] | None = None
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: Annotated[int, Field(
        ge=0, description="epochs between checkpoints; 0: never")] = 0

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError(f"unknown device {v!r}; use auto, cpu, cuda or cuda:N")

    @field_validator("lr", "l2")
    @classmethod
    def _finite(cls, v: float) -> float:
        # Parameters are float32: a larger step overflows inside the optimizer, not here.
        if not math.isfinite(v) or v > _FLOAT32_MAX:
            raise ValueError(f"must be a finite float32 (at most {_FLOAT32_MAX:.4g})")
        return v


class RunConfig(Section):
    """Everything one training run needs; stored with every run."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


@dataclass(frozen=True)
class Key:
    """One config key as ``rnnlab keys`` shows it."""

    name: str  # dotted: train.lr
    kind: str  # int, float, text or choice; "or none" when it may be left unset
    allowed: str  # the choices, the range, or what the value must be; "" when anything goes
    default: Any


def keys() -> list[Key]:
    """Every run config key with its type, the values it accepts and its default, in schema
    order (read off the same schema that validates a config)."""
    schema = RunConfig.model_json_schema()
    out = []
    for section, ref in schema["properties"].items():
        fields = schema["$defs"][ref["$ref"].rsplit("/", 1)[-1]]["properties"]
        out += [_key(f"{section}.{name}", prop) for name, prop in fields.items()]
    return out


_KINDS = {"integer": "int", "number": "float", "string": "text"}


def _key(name: str, prop: dict[str, Any]) -> Key:
    options = prop.get("anyOf", [prop])
    main = next(o for o in options if o.get("type") != "null")
    kind = "choice" if "enum" in main else _KINDS[main["type"]]
    bounds = [f"{op} {main[k]:g}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                ("maximum", "<="), ("exclusiveMaximum", "<"))
              if k in main]
    allowed = (", ".join(main["enum"]) if "enum" in main else
               " and ".join(bounds) if bounds else "")
    if described := prop.get("description") or main.get("description"):
        allowed = f"{allowed}; {described}" if allowed else described
    if len(options) > 1:
        kind += " or none"
    return Key(name, kind, allowed, prop.get("default"))


def flatten(config: BaseModel, **dump: Any) -> dict[str, Any]:
    """Return ``{"section.key": value}`` for every key of a config (what MLflow logs as params),
    nested sections dotted all the way down (``study.sampler.name``). ``dump`` goes to
    ``model_dump`` (``mode="json"``, ``exclude=...``)."""
    return _dotted(config.model_dump(**dump))


def _dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out |= _dotted(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_keys() -> list[str]:
    """Every dotted key a run config has, in schema order."""
    return list(flatten(RunConfig()))


def to_yaml(config: BaseModel) -> str:
    """The config as YAML that :func:`load_config` accepts back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """Parse ``section.key=value`` strings; values are read as YAML scalars (``1e-3``, ``true``).

    Text keys (``data.dir``, ``train.device``) keep their value verbatim, so that a folder
    named ``2024`` or ``runs: v2`` stays a path; ``null`` or nothing clears an optional one.
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or "." not in key:
            raise RnnlabError(f"--set {pair!r}: expected section.key=value, e.g. train.lr=1e-3")
        if key in _text_keys():
            out[key] = None if raw.strip() in ("", "null", "~") else raw
            continue
        try:
            out[key] = yaml_scalar(raw)
        except yaml.YAMLError as exc:
            raise RnnlabError(
                f"--set {pair!r}: value is not valid YAML ({_first_line(exc)})"
            ) from None
    return out


def override_flags(pairs: list[str] | None) -> dict[str, str]:
    """Each dotted key set on the command line, with the flag that set it (``--set k=v``), so
    that an error in its value blames the flag and not the file."""
    return {pair.partition("=")[0].strip(): f"--set {pair}" for pair in pairs or []}


def _text_keys() -> set[str]:
    """The dotted run-config keys whose values are free text."""
    return {f"{section}.{key}"
            for section, outer in RunConfig.model_fields.items()
            for key, inner in outer.annotation.model_fields.items()
            if inner.annotation in (str, str | None)}


def yaml_scalar(raw: str) -> Any:
    """A command-line value read as a YAML scalar: ``1e-3`` a float, ``true`` a bool, ``gru``
    text, nothing ``None``."""
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string; numbers were meant
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy), creating sections as needed: a key nested
    deeper (``study.sampler.seed``) too, but not in ``search``, whose keys hold dots
    (``search.train.lr`` is the search of ``train.lr``)."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for dotted, value in overrides.items():
        section, _, rest = dotted.partition(".")
        target, path = merged, [section, *([rest] if section == "search" else rest.split("."))]
        for i, part in enumerate(path[:-1]):
            inner = target.get(part, {})
            if not isinstance(inner, dict):
                raise RnnlabError(f"--set {dotted}: {'.'.join(path[:i + 1])!r} is not a "
                                  "section")
            target[part] = dict(inner)  # a copy: ``raw`` stays as it was
            target = target[part]
        target[path[-1]] = value
    return merged


MAX_SPEC_BYTES = 1_000_000  # a spec is a page of YAML; more is a mistake, or an attack
MAX_ALIASES = 20  # YAML aliases (*name) a spec may use: nested, they multiply (billion laughs)


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing a document with more aliases than any spec needs (a small
    file whose aliases nest can expand to gigabytes)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name)")
        return super().compose_node(parent, index)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with safe loading, within size limits; every failure is one line
    naming the file."""
    p = Path(path)
    if not p.is_file():
        raise RnnlabError(f"config file {str(p)!r} not found{_did_you_mean(p)}; give the path "
                          "to a YAML spec")
    try:
        if p.stat().st_size > MAX_SPEC_BYTES:
            raise RnnlabError(f"{p}: {p.stat().st_size} bytes, more than any spec needs "
                              f"({MAX_SPEC_BYTES}); give the path to a YAML spec")
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - safe
    except yaml.YAMLError as exc:
        raise RnnlabError(f"{p}: YAML syntax error {_first_line(exc)}; fix the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RnnlabError(f"{p}: cannot read ({exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RnnlabError(f"{p}: expected a mapping of sections (data, model, train, ...)")
    return raw


def _did_you_mean(path: Path) -> str:
    """The closest YAML file beside ``path``, or in ``studies/``, as a suggestion (or "")."""
    folders = {path.parent, Path("studies")}
    found = [str(f) if f.parent != Path(".") else f.name
             for d in folders if d.is_dir() for f in sorted(d.glob("*.y*ml"))]
    close = difflib.get_close_matches(str(path), found, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(model: type[BaseModel], raw: dict[str, Any], origin: str,
             flags: dict[str, str] | None = None) -> Any:
    """Validate ``raw`` against ``model``; the first error becomes one line naming the key, and
    the command-line flag that set it when one did (``flags``: dotted key to flag)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            where = ("the README's \"Sweeps\" for a spec's study keys" if key.startswith("study.")
                     else "`rnnlab keys` for every key")
            msg = f"unknown key (check the spelling; see {where})"
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg} (got {err['input']!r})"
        raise RnnlabError(f"{(flags or {}).get(key, origin)}: {key}: {msg}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config from YAML, apply ``--set`` overrides, and validate it.

    Args:
        path: a YAML file with sections ``data``, ``model``, ``train`` (all optional). Study
            sections (``study``, ``search``) are ignored, so a study spec trains its base config.
        overrides: ``section.key=value`` strings.

    Returns:
        The validated :class:`RunConfig`.

    Raises:
        RnnlabError: the file is missing or malformed, a key is unknown, a value has the wrong
            type or range.
    """
    raw = read_yaml(path)
    raw = {k: v for k, v in raw.items() if k not in ("study", "search")}
    raw = apply_overrides(raw, parse_overrides(overrides))
    return validate(RunConfig, raw, str(path), override_flags(overrides))


def _first_line(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{where}: {problem}".strip(": ")
