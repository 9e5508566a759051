"""The experiment file read by ``abharness serve`` (pydantic at the boundary; see docs/proxy.md for a reference).

``load_config(path)`` reads YAML, applies environment overrides for the two secrets
(``ABHARNESS_ADMIN_TOKEN``, ``ABHARNESS_TOKEN_SECRET``) and validates. Every refusal is a ``ConfigError`` whose
message names the field (``arms.1.backend.index``), the value and the fix; nothing is read or built at import time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from abharness.config_layers import HoldoutConfig, LayerConfig, design_of
from abharness.core.assignment import BUCKETS, allocation
from abharness.core.layers import Design
from abharness.errors import ConfigError

__all__ = [
    "LocalBackendConfig",
    "RemoteBackendConfig",
    "HttpBackendConfig",
    "ArmConfig",
    "TimeoutsConfig",
    "LimitsConfig",
    "EventsConfig",
    "SessionCookieConfig",
    "CorsConfig",
    "ExclusionsConfig",
    "ExperimentConfig",
    "LayerConfig",
    "HoldoutConfig",
    "load_config",
    "parse_config",
    "check_paths",
    "INSECURE_TOKENS",
]

# Tokens that are refused (case-insensitive) unless insecure_dev is set.
INSECURE_TOKENS = frozenset({"", "changeme", "change-me", "admin", "default", "secret", "password", "token", "test"})
MIN_SECRET_CHARS = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _weak(secret: str) -> bool:
    """Too short, a well-known default, blank (spaces only) or one character repeated."""
    return (
        len(secret) < MIN_SECRET_CHARS
        or secret.strip().lower() in INSECURE_TOKENS
        or len(set(secret)) < 2
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalBackendConfig(_Strict):
    """An in-process FAISS index + encoder."""

    kind: Literal["local"]
    index: Path = Field(description="index directory built by `abharness index build` (relative to the config file)")
    model: str = Field(description='encoder spec: "minilm", a sentence-transformers directory, or a hub id')
    cache_size: int = Field(10_000, ge=0, description="LRU cache of query embeddings")
    max_batch: int = Field(32, ge=1, description="largest micro-batch of concurrent queries")
    max_wait_ms: float = Field(
        0.0, ge=0, description="how long a micro-batch may wait to fill (0: none; batches form while one encodes)"
    )
    max_parallel: int | None = Field(
        None, ge=1, description="micro-batches encoded at once (unset: CPUs / the encoder's threads; 1 for torch)"
    )


class RemoteBackendConfig(_Strict):
    """An arm served by `abharness index-server` over HTTP."""

    kind: Literal["remote"]
    url: str = Field(description="base URL of the index server, e.g. http://10.0.0.5:8100")
    max_connections: int = Field(64, ge=1, description="size of the pooled httpx client")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL; write e.g. http://127.0.0.1:8100")
        return v.rstrip("/")


HTTP_PRESETS = ("opensearch-match", "opensearch-knn", "abharness")


class DeclaredFingerprint(_Strict):
    """What the operator says an http arm serves (recorded with the config's hash on every exposure)."""

    model: str = Field("undeclared", max_length=200, description="e.g. the embedding model and version")
    index: str = Field("undeclared", max_length=200, description="e.g. the index name and its build date")


class HttpBackendConfig(_Strict):
    """An arm served by a search engine a team already runs, over HTTP (see abharness.backends.http)."""

    kind: Literal["http"]
    url: str = Field(description="the search endpoint, e.g. http://127.0.0.1:9200/docs/_search")
    preset: Literal["opensearch-match", "opensearch-knn", "abharness"] | None = Field(
        None, description="fills method, body and the response mapping for OpenSearch/Elasticsearch _search "
        "(a match or a knn query) or the abharness index server")
    method: Literal["POST", "GET", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict, description="values may name environment variables as "
                                    "${NAME} (secrets stay out of the file)")
    body: Any = Field(None, description='JSON template; the strings "{{query}}", "{{k}}" and "{{vector}}" are '
                      "replaced (a whole-string {{k}} becomes a number, {{vector}} a list)")
    hits: str | None = Field(None, description="JMESPath to the list of hits in the response")
    doc_id: str | None = Field(None, description="JMESPath, per hit, to the document id")
    score: str | None = Field(None, description="JMESPath, per hit, to the score")
    title: str | None = Field(None, description="JMESPath, per hit, to the title (optional)")
    fail_if: str | None = Field(None, description="JMESPath on the response; truthy = treat as a failure "
                                "(e.g. partial results)")
    text_field: str = Field("text", description="opensearch-match: the field matched against the query")
    vector_field: str = Field("embedding", description="opensearch-knn: the knn_vector field")
    title_field: str = Field("title", description="opensearch presets: the _source field shown as title")
    encoder: str | None = Field(None, description='model spec that embeds the query for {{vector}} ("minilm", a '
                                "model directory); required by opensearch-knn")
    health_url: str | None = Field(None, description="GET this for /readyz (default: none)")
    max_connections: int = Field(64, ge=1, description="size of the pooled httpx client")
    fingerprint: DeclaredFingerprint = DeclaredFingerprint()

    @field_validator("url", "health_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL; write e.g. http://127.0.0.1:9200/docs/_search")
        return v

    @field_validator("hits", "doc_id", "score", "title", "fail_if")
    @classmethod
    def _jmespath(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import jmespath
        from jmespath.exceptions import JMESPathError

        try:
            jmespath.compile(v)
        except JMESPathError as exc:
            raise ValueError(f"{v!r} is not a JMESPath expression ({str(exc).splitlines()[0]}); see jmespath.org")
        return v

    @model_validator(mode="after")
    def _complete(self) -> HttpBackendConfig:
        if self.preset is None:
            missing = [f for f in ("body", "hits", "doc_id", "score") if getattr(self, f) is None]
            if missing and not (self.method == "GET" and missing == ["body"]):
                raise ValueError(f"without a preset, set {missing} (or preset: one of {list(HTTP_PRESETS)})")
        if self.preset == "opensearch-knn" and self.encoder is None:
            raise ValueError("preset opensearch-knn embeds the query: set encoder (e.g. minilm or a model directory)")
        return self


class ArmConfig(_Strict):
    name: str
    role: Literal["control", "treatment"]
    backend: Annotated[LocalBackendConfig | RemoteBackendConfig | HttpBackendConfig, Field(discriminator="kind")]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v) or v == "interleaved":
            raise ValueError(
                f"{v!r} is not a valid arm name; use 1-64 letters, digits, '_', '.', '-' (and not 'interleaved')"
            )
        return v


class TimeoutsConfig(_Strict):
    control_s: float = Field(2.0, gt=0, description="control slower than this answers 503")
    treatment_s: float = Field(0.5, gt=0, description="treatment slower than this falls back to control")
    shadow_s: float = Field(5.0, gt=0, description="budget for the off-path shadow ranking")


class LimitsConfig(_Strict):
    max_query_chars: int = Field(1000, ge=1)
    max_k: int = Field(100, ge=1)
    max_offset: int = Field(1000, ge=0, description="deepest result offset a later page may ask for")
    max_body_bytes: int = Field(64 * 1024, ge=256)
    max_events_per_batch: int = Field(1000, ge=1)
    max_shadow_inflight: int = Field(256, ge=1, description="shadow rankings in flight before new ones are skipped")


class EventsConfig(_Strict):
    enabled: bool = Field(True, description="false: serve without logging (benchmarks only; no analysis possible)")
    max_queue: int = Field(100_000, ge=1)
    batch_size: int = Field(500, ge=1)
    flush_interval_s: float = Field(0.2, gt=0, description="upper bound on what a SIGKILL can lose (plus the queue)")
    on_full: Literal["drop", "reject"] = "drop"
    shutdown_timeout_s: float = Field(30.0, gt=0)
    spool_dir: str | None = Field(
        "abharness-spool", description="directory (not the database's) for events the store cannot take: spilled "
        "when the store stays down past spool_after_s, bad events quarantined; null turns the spool off"
    )
    spool_after_s: float = Field(10.0, ge=0, description="seconds of store outage before the queue is spilled")


class SessionCookieConfig(_Strict):
    """When set (and unit is "session"), a request without unit_id gets a proxy-issued session cookie."""

    name: str = "abh_sid"
    max_age_s: int = Field(30 * 24 * 3600, ge=60)
    secure: bool = True


_ORIGIN = re.compile(r"^https?://[^/\s]+$")


class CorsConfig(_Strict):
    """Browsers on these origins may call the public routes (/search, /click, /events) from a results page."""

    allow_origins: list[str] = Field(min_length=1, description='e.g. ["https://shop.example.com"]; "*" only '
                                     "without credentials")
    allow_credentials: bool = Field(True, description="let the browser send the proxy's session cookie")
    max_age_s: int = Field(600, ge=0, description="how long a browser may cache a preflight answer")

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin; write scheme://host[:port] without a path, "
                                 "e.g. https://shop.example.com")
        return [o.rstrip("/") for o in v]

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsConfig:
        if "*" in self.allow_origins and self.allow_credentials:
            raise ValueError('allow_origins "*" with allow_credentials: true is refused (any site could send '
                             "clicks as your users); list the origins, or set allow_credentials: false")
        return self


class ExclusionsConfig(_Strict):
    """Bot and outlier rules applied by `abharness analyze` before any statistic (abharness.analysis.exclusions)."""

    max_searches_per_day: int | None = Field(None, ge=1, description="exclude units with more searches on a day")
    min_click_delay_ms: float | None = Field(None, gt=0, description="exclude units at least half of whose clicks "
                                             "came sooner than this after the results")
    crawler_user_agents: bool = Field(False, description="exclude units whose user agent is a known crawler")
    winsorize_percentile: float | None = Field(None, gt=50, lt=100, description="cap per-unit sums at this "
                                               "percentile (e.g. 99)")


class ExperimentConfig(_Strict):
    """One experiment served by the proxy."""

    experiment_id: str
    salt: str = Field(min_length=1, description="hashing salt; change it to re-randomise units")
    unit: Literal["user", "session"] = "user"
    arms: list[ArmConfig] = Field(min_length=2)
    weights: dict[str, float]
    mode: Literal["ab", "interleave", "shadow"] = "ab"
    k: int = Field(10, ge=1)
    buckets: tuple[int, int] = Field(
        (0, BUCKETS), description="range [lo, hi) of the main layer's buckets this experiment owns (default: all); "
        "other experiments of the main layer go in layers: [{name: main, ...}] (abharness.config_layers)")
    layer_salt: str | None = Field(None, min_length=1, description="the main layer's salt (default <salt>/layer)")
    layers: list[LayerConfig] = Field(default_factory=list, description="further experiments, grouped in layers "
                                      "(docs/proxy.md, Several experiments at once)")
    holdout: HoldoutConfig | None = Field(None, description="a global holdout that sees only control")
    timeouts: TimeoutsConfig = TimeoutsConfig()
    limits: LimitsConfig = LimitsConfig()
    events: EventsConfig = EventsConfig()
    store_url: str = "sqlite:///abharness-events.db"
    admin_token: SecretStr = SecretStr("")
    admin_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="named admin tokens (name -> token): the audit log records the name of the token used as the "
        "actor; admin_token, when set, acts as the name 'admin'",
    )
    token_secret: SecretStr | None = None
    token_ttl_s: float = Field(24 * 3600, gt=0)
    session_cookie: SessionCookieConfig | None = None
    unit_auth: Literal["plain", "signed", "cookie"] = Field(
        "plain", description="who chooses the unit: plain = the caller's unit_id is trusted (server-to-server); "
        "signed = unit_id must come with unit_sig = hex(HMAC-SHA256(unit_secret, unit_id)); cookie = only the "
        "proxy's signed session cookie")
    unit_secret: SecretStr | None = Field(None, description="shared with the product backend (unit_auth: signed); "
                                          "or ABHARNESS_UNIT_SECRET")
    cors: CorsConfig | None = Field(None, description="browser origins allowed to call the public routes")
    exclusions: ExclusionsConfig | None = Field(None, description="bot and outlier rules for the analysis")
    demo_page: bool = Field(False, description="serve the example search page at /demo (docs/proxy.md)")
    overrides: dict[str, str] = Field(default_factory=dict, description="unit id -> arm (QA)")
    allow_ramp_down: bool = False
    admin_sync_interval_s: float = Field(
        5.0, ge=0, description="seconds between re-reads of the shared audit log, so an admin change made on one "
        "replica (ramp, pause, kill, override) reaches every replica; 0 turns it off"
    )
    insecure_dev: bool = Field(False, description="accept empty/default secrets (never in production)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    @field_validator("experiment_id")
    @classmethod
    def _experiment_id(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a valid experiment id; use 1-64 letters, digits, '_', '.', '-'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"arms: duplicate arm names {dupes}; each arm needs a unique name")
        controls = [a.name for a in self.arms if a.role == "control"]
        if len(controls) != 1:
            raise ValueError(f"arms: need exactly one arm with role 'control', found {len(controls)} ({controls})")
        if set(self.weights) != set(names):
            raise ValueError(
                f"weights: keys {sorted(self.weights)} must name exactly the arms {sorted(names)}"
            )
        try:
            allocation(self.ordered_weights(), self.control)
        except ValueError as exc:
            raise ValueError(f"weights: {exc}") from None
        try:
            design_of(self)
        except ValueError as exc:
            raise ValueError(f"layers: {exc}") from None
        if self.mode in ("interleave", "shadow") and len(self.arms) != 2:
            raise ValueError(f"mode: {self.mode!r} needs exactly two arms (one control, one treatment)")
        if self.k > self.limits.max_k:
            raise ValueError(f"k: {self.k} exceeds limits.max_k={self.limits.max_k}")
        bad = {u: a for u, a in self.overrides.items() if a not in names}
        if bad:
            raise ValueError(f"overrides: arms {sorted(set(bad.values()))} are not among {names}")
        if self.session_cookie is not None and self.unit != "session":
            raise ValueError("session_cookie: a proxy-issued cookie identifies a session; set unit: session")
        bad_names = [n for n in self.admin_tokens if not _NAME.match(n)]
        if bad_names:
            raise ValueError(f"admin_tokens: names {bad_names} are not valid; use 1-64 letters, digits, '_', '.', '-'")
        if self.unit_auth == "cookie" and self.session_cookie is None:
            raise ValueError("unit_auth: cookie needs session_cookie (e.g. {name: abh_sid}) and unit: session")
        if self.unit_auth == "signed":
            unit_secret = self.unit_secret.get_secret_value() if self.unit_secret else ""
            if _weak(unit_secret):
                raise ValueError(
                    f"unit_secret: unit_auth: signed needs a random secret of at least {MIN_SECRET_CHARS} characters, "
                    "shared with the backend that signs unit ids (set it in the file or ABHARNESS_UNIT_SECRET)"
                )
        if not self.insecure_dev:
            admin = self.admin_token.get_secret_value()
            if not self.admin_tokens or admin:
                if _weak(admin):
                    raise ValueError(
                        f"admin_token: empty, default, blank, one repeated character or shorter than "
                        f"{MIN_SECRET_CHARS} characters; set a random one (python -c 'import secrets; "
                        "print(secrets.token_urlsafe(32))') in the file or ABHARNESS_ADMIN_TOKEN, or name tokens "
                        "under admin_tokens, or start with --insecure-dev for local development"
                    )
            weak = sorted(n for n, t in self.admin_tokens.items() if _weak(t.get_secret_value()))
            if weak:
                raise ValueError(f"admin_tokens: the tokens of {weak} are default, blank, one repeated character or "
                                 f"shorter than {MIN_SECRET_CHARS} characters; set random ones")
            secret = self.token_secret.get_secret_value() if self.token_secret else ""
            if _weak(secret):
                raise ValueError(
                    f"token_secret: missing, blank, one repeated character or shorter than {MIN_SECRET_CHARS} "
                    "characters; it signs impression tokens and must be the same in every proxy process (set a "
                    "random one in the file or ABHARNESS_TOKEN_SECRET, or use --insecure-dev for a random "
                    "per-process secret)"
                )
            admins = {admin, *(t.get_secret_value() for t in self.admin_tokens.values())} - {""}
            if secret in admins:
                raise ValueError(
                    "token_secret: equal to an admin token; whoever holds the admin token could then forge clicks "
                    "and the other way round: use two different random values"
                )
        tokens = [t.get_secret_value() for t in self.admin_tokens.values()]
        if len(set(tokens)) != len(tokens) or (self.admin_token.get_secret_value() in tokens):
            raise ValueError("admin_tokens: two names share one token, so the audit log could not tell them apart; "
                             "give each name its own token")
        return self

    def admin_actors(self) -> dict[str, str]:
        """Admin token -> actor name recorded in the audit log (``admin_token`` is the actor ``admin``)."""
        out = {t.get_secret_value(): name for name, t in self.admin_tokens.items() if t.get_secret_value()}
        if self.admin_token.get_secret_value():
            out[self.admin_token.get_secret_value()] = "admin"
        return out

    @property
    def control(self) -> str:
        return next(a.name for a in self.arms if a.role == "control")

    @property
    def treatments(self) -> list[str]:
        return [a.name for a in self.arms if a.role == "treatment"]

    def ordered_weights(self) -> dict[str, float]:
        """Weights in arm order (the bucket layout follows config order)."""
        return {a.name: float(self.weights[a.name]) for a in self.arms}

    def design(self) -> Design:
        """The layered design (``abharness.core.layers``): the top-level experiment is layer ``main``'s."""
        return design_of(self)

    def arm(self, name: str) -> ArmConfig:
        return next(a for a in self.arms if a.name == name)


def _format_errors(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        shown = "" if isinstance(value, dict) or loc == "" else f" (got {value!r})"
        if any(word in loc or word in msg for word in ("admin_token", "token_secret", "unit_secret")):
            shown = ""  # never echo a secret
        parts.append(f"{loc + ': ' if loc else ''}{msg}{shown}")
    return f"{source}: invalid experiment config: " + "; ".join(parts)


def parse_config(data: Any, *, source: str = "config", base_dir: Path | None = None) -> ExperimentConfig:
    """Validate a mapping (e.g. parsed YAML) into an ``ExperimentConfig``; raise ``ConfigError`` naming the field.

    Relative paths (local arms' index and model, an SQLite store) are resolved against ``base_dir`` (the config
    file's directory), so the working directory never matters.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    data = dict(data)
    for key, env in (("admin_token", "ABHARNESS_ADMIN_TOKEN"), ("token_secret", "ABHARNESS_TOKEN_SECRET"),
                     ("unit_secret", "ABHARNESS_UNIT_SECRET")):
        if os.environ.get(env):
            data[key] = os.environ[env]
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    if base_dir is not None:
        cfg = _resolve_paths(cfg, base_dir)
    return cfg


def _resolve_model(model: str, base_dir: Path) -> str:
    """A model spec relative to the config folder: built-in names stay; a hub id stays only when downloads are
    allowed and no such directory exists next to the config."""
    from abharness.encoders.st import BUILTIN_MODELS, downloads_allowed

    if model in BUILTIN_MODELS or Path(model).is_absolute():
        return model
    candidate = base_dir / model
    if downloads_allowed() and not candidate.exists() and not model.startswith("."):
        return model
    return str(candidate)


def _resolve_paths(cfg: ExperimentConfig, base_dir: Path) -> ExperimentConfig:
    """Every relative path in the file is relative to the file's folder, whatever the working directory: local
    arms' ``index`` and ``model`` and an SQLite ``store_url`` (``sqlite:///events.db``)."""
    arms = []
    for arm in cfg.arms:
        b = arm.backend
        if isinstance(b, LocalBackendConfig):
            update: dict[str, Any] = {"model": _resolve_model(b.model, base_dir)}
            if not b.index.is_absolute():
                update["index"] = base_dir / b.index
            arm = arm.model_copy(update={"backend": b.model_copy(update=update)})
        arms.append(arm)
    update_cfg: dict[str, Any] = {"arms": arms}
    prefix = "sqlite:///"
    if cfg.store_url.startswith(prefix):
        path = cfg.store_url[len(prefix):]
        if path and path != ":memory:" and not Path(path).is_absolute():
            update_cfg["store_url"] = prefix + str(base_dir / path)
    return cfg.model_copy(update=update_cfg)


def load_config(path: str | Path, *, insecure_dev: bool | None = None) -> ExperimentConfig:
    """Read and validate an experiment YAML file. ``insecure_dev`` (CLI flag) overrides the file's setting."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; pass --config path/to/experiment.yaml")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and insecure_dev is not None:
        data = {**data, "insecure_dev": insecure_dev}
    return parse_config(data, source=str(p), base_dir=p.resolve().parent)


def check_paths(config: ExperimentConfig) -> None:
    """Refuse local arms whose index directory or model does not exist (``serve`` calls it before binding a port,
    so these mistakes cost milliseconds and print one line)."""
    from abharness.encoders.st import check_model_spec

    for i, arm in enumerate(config.arms):
        b = arm.backend
        if not isinstance(b, LocalBackendConfig):
            continue
        if not b.index.is_dir():
            raise ConfigError(
                f"arms.{i}.backend.index: index directory {str(b.index)!r} of arm {arm.name!r} does not exist; "
                "build it with `abharness index build` or fix the path (relative to the config file)"
            )
        check_model_spec(b.model, option=f"arms.{i}.backend.model (arm {arm.name!r})")
