"""One settings object for the whole pipeline, read from the environment (or an env file).

Every knob is an environment variable; the names below (upper-cased) are the public contract
that docker-compose.yml and the README rely on. Groups of knobs one part uses together are
pydantic models the settings give whole: the alert rules (`AlertRules`, from the YAML file
SMS_ALERT_RULES names), the compensation policy (`Settings.compensation`) and the options of
`dashboards push` (`Settings.grafana_push`; the command line's options are settings given over
the environment's). Where this ends: values and their validation; what the parts do with them
is theirs.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_HASH_KEY_BYTES = 16  # model/phone.py: PhoneHasher refuses a shorter key


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- in-stream alert rules (streams/alerts.py) ----------------------------------------------------
# The defaults are the packaged streams/alert_rules.yaml, and only there: a file SMS_ALERT_RULES
# names is read over it, so it gives only what it changes. dashboards/alerting.py takes the Grafana
# rules' thresholds from the packaged file too (AlertRules.packaged()).

class DeliveryRateRule(_Part):
    """delivered / (delivered + failed) of the outcomes in the window, per provider (and carrier, and
    carrier × province), each firing alert with its top `causes` slices (issue 17; 0: none)."""

    floor: float = Field(ge=0, le=1)  # fire below this ...
    min_volume: int = Field(ge=0)  # ... once at least this many outcomes are in the window
    region_min_volume: int = Field(default=200, ge=0)  # a carrier × province needs this many
    by: tuple[Literal["provider", "carrier", "province"], ...]
    causes: int = Field(default=3, ge=0)
    baseline_windows: int = Field(default=3, ge=1)  # the causes' baseline: this many windows before the current

    @property
    def by_carrier(self) -> bool:
        return "carrier" in self.by or "province" in self.by

    @property
    def by_province(self) -> bool:
        return "province" in self.by


class ReceiptBlackoutRule(_Part):
    """Receipts stalled while sends continue: no receipt for lag_seconds."""

    lag_seconds: int = Field(gt=0)
    min_sends: int = Field(ge=0)  # sends of that provider in the window


class LatencyRule(_Part):
    """p95 of the delivered latency in the window above an SLO."""

    slo_ms: int = Field(gt=0)
    min_volume: int = Field(ge=0)


class ConversionRateRule(_Part):
    """Conversions / delivered messages of a template in the window, against the same ratio over the
    baseline before it: fires when it falls by `drop` (relative). Only templates with at least
    `min_baseline_conversions` conversions in the baseline count: templates whose conversions are
    reported, in practice verification codes (streams/alerts.py says where sms.templates' type goes)."""

    drop: float = Field(gt=0, le=1)  # fire when the rate falls below baseline × (1 - drop) ...
    min_volume: int = Field(ge=0)  # ... once at least this many of the template's messages were delivered in the window
    baseline_seconds: int = Field(gt=0)  # the baseline: this long, ending where the window starts
    min_baseline_conversions: int = Field(ge=1)  # a template's conversions in the baseline for it to be tracked


class Webhook(_Part):
    url: str
    format: Literal["generic", "dingtalk", "wecom", "slack"] = "generic"


class AlertRules(_Part):
    """The in-stream alert rules: the YAML file's structure, validated."""

    evaluate_every_seconds: float = Field(gt=0)
    window_seconds: int = Field(gt=0)
    delivery_rate: DeliveryRateRule
    receipt_blackout: ReceiptBlackoutRule
    latency_p95: LatencyRule
    conversion_rate: ConversionRateRule | None = None  # None: the rule is off (the packaged file turns it on)
    webhooks: tuple[Webhook, ...] = ()

    @classmethod
    def packaged(cls) -> AlertRules:
        return cls.model_validate(_packaged_rules())

    @classmethod
    def load(cls, path: Path | None = None) -> AlertRules:
        """The packaged rules, with what the file at `path` gives over them. A file that cannot be
        read or parsed, or gives a wrong value, raises ValueError with one line saying where."""
        doc = _packaged_rules()
        if path is not None:
            doc = _merged(doc, _read_rules(path))
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "the file"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise ValueError(f"{where}: {first['msg']}{more}") from None


@lru_cache(maxsize=1)
def _packaged_rules() -> dict[str, Any]:
    text = (resources.files("sms_analytics.streams") / "alert_rules.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text))


def _read_rules(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot be read: {(exc.strerror or type(exc).__name__).lower()}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"not YAML: {getattr(exc, 'problem', None) or type(exc).__name__}{at}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError("expected a mapping of rules at the top of the file")  # not TypeError: pydantic reports ValueErrors
    return doc


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on `base`, section by section (a section's keys not in `over` keep base's values)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


# --- compensation (streams/compensation.py) ----------------------------------------------------------

class CompensationPolicy(_Part):
    """Which pending messages the stream asks the providers about, and how often; built by
    `Settings.compensation` from SMS_COMPENSATE_AFTER, SMS_COMPENSATE_INTERVAL,
    SMS_COMPENSATE_SCAN_SECONDS and SMS_EXPIRE_AFTER (their defaults are the settings')."""

    after_ms: int
    interval_ms: int  # never ask about one message twice within this
    scan_seconds: float
    forget_after_ms: int  # the stream drops states older than this
    max_age_ms: int = 30 * 86_400_000  # fixed: QuerySendDetails looks back 30 days
    providers: tuple[str, ...] = ("aliyun", "tencent")  # fixed: KX has no per-message query


# --- `dashboards push` (dashboards/push.py) ------------------------------------------------------------

class GrafanaCredentials(_Part):
    """A service-account token, or a user and password (basic auth); unset: none given."""

    token: SecretStr | None = None
    user: str | None = None
    password: SecretStr | None = None


class GrafanaClickHouse(_Part):
    """ClickHouse as Grafana reaches it: what the datasource's jsonData needs, as in
    provisioning/datasources/clickhouse.yaml; built by `Settings.grafana_push` (defaults there)."""

    host: str
    port: int
    protocol: Literal["http", "native"]  # "http" (8123) or "native" (9000)
    secure: bool
    username: str
    password: SecretStr | None  # stored encrypted in Grafana; None: keep the stored one
    database: str


class GrafanaRelay(_Part):
    """The relay (dashboards/relay.py) as Grafana reaches it, for the `sms-relay` contact point: its URL
    (None: relay.RELAY_URL, the compose worker's) and the bearer token it requires (SMS_QUERY_TOKEN)."""

    url: str | None = None
    token: SecretStr | None = None


class GrafanaPush(_Part):
    """Where `dashboards push` pushes to, with which credentials, the datasource it sets up and the relay
    its contact point posts to."""

    url: str | None
    credentials: GrafanaCredentials
    clickhouse: GrafanaClickHouse
    relay: GrafanaRelay = GrafanaRelay()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- storage -------------------------------------------------------------------------------
    sms_data_dir: Path = Field(default=Path("./data"), description="Local state: warehouse, hash key.")
    clickhouse_url: str | None = Field(
        default=None,
        description="clickhouse-connect DSN; default chdb:///$SMS_DATA_DIR/warehouse (embedded).",
    )
    clickhouse_database: str = "sms"
    sms_clickhouse_cluster: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
        description="A ClickHouse cluster (remote_servers) to create the warehouse on: replicated tables ON CLUSTER, "
        "Distributed tables sharded by the message key (sinks/cluster.py). Unset: one server.",
    )

    # --- Kafka -----------------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="host:port[,host:port]; unset starts the embedded Tansu broker."
    )
    kafka_partitions: int = Field(default=4, ge=1, description="Partitions per topic we create.")
    kafka_replication_factor: int = Field(default=1, ge=1)
    sms_app_id: str = Field(default="sms-analytics", description="faust app id / consumer group prefix.")
    kafka_input_retention: timedelta = Field(
        default=timedelta(days=7), description="Time retention of the topics the receivers and feeds write (sends, "
        "receipts, replies, provider statistics, dead letters): how long a stopped worker or sink may lag "
        "(seconds or ISO-8601, e.g. P7D).")
    kafka_output_retention: timedelta = Field(
        default=timedelta(days=7), description="Time retention of the topics the worker writes (deliveries, alerts, "
        "compensation requests): how long a stopped sink may lag.")
    kafka_idempotent_producer: bool | None = Field(
        default=None, description="Receivers publish with Kafka's idempotent producer (no duplicate on a retried "
        "send). Unset: on when the broker grants a producer id (Apache Kafka), off when it refuses (Tansu).")

    # --- HTTP receiver ---------------------------------------------------------------------------
    sms_http_host: str = "127.0.0.1"
    sms_http_port: int = 8080
    sms_query_host: str = Field(default="127.0.0.1", description="Read-only query endpoint (loopback).")
    sms_query_port: int = 8081
    sms_query_token: SecretStr | None = Field(
        default=None, description="Bearer token POST /query requires (Authorization: Bearer …); required whenever "
        "SMS_QUERY_HOST is not a loopback address (the process refuses to start without it).")
    sms_callback_token: SecretStr | None = None
    sms_max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1, description="Larger bodies get 413.")
    sms_max_records_per_push: int = Field(default=10_000, ge=1, description="More records in one push get 400.")
    sms_timestamp_past: timedelta = Field(
        default=timedelta(days=30),
        description="A record timed more than this before its receipt is rejected (seconds or ISO-8601, e.g. P30D).",
    )
    sms_timestamp_future: timedelta = Field(
        default=timedelta(days=1), description="A record timed more than this after its receipt is rejected.",
    )
    # Per-provider allowlists of the ingest endpoints: comma-separated addresses or CIDRs; empty: any.
    sms_allow_ips_aliyun: str = Field(default="", description="Who may post /callbacks/aliyun/*.")
    sms_allow_ips_tencent: str = Field(default="", description="Who may post /callbacks/tencent/*.")
    sms_allow_ips_kx: str = Field(default="", description="Who may post /callbacks/kx/*.")
    sms_allow_ips_sends: str = Field(default="", description="Who may post /v1/sends and /v1/sends/<provider>.")
    sms_trusted_proxies: str = Field(
        default="", description="Peers whose X-Forwarded-For is believed (CIDRs); empty: the TCP peer is the client.",
    )

    # --- personal data ---------------------------------------------------------------------------
    sms_phone_hash_key: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key; unset: generated once into $SMS_DATA_DIR/phone_hash.key"
    )
    sms_store_raw_phone: bool = False
    sms_default_country: str = "CN"

    # --- message states ---------------------------------------------------------------------------
    sms_expire_after: timedelta = Field(
        default=timedelta(hours=72),
        description="No final receipt within this long after sent_at: expired (seconds or ISO-8601, e.g. PT72H).",
    )

    # --- warehouse retention (TTLs, applied at every start: sinks/retention.sql) ------------------
    sms_retention_days: int = Field(
        default=90, ge=1, le=10_000,
        description="Days the warehouse keeps what is per message: message parts (counted from the later of the "
        "send and the write), replies and the undelivered messages of the panels. Rollups of their minutes stay.",
    )
    sms_rollup_retention_days: int = Field(
        default=730, ge=2, le=10_000,
        description="Days the warehouse keeps rollups (every level, error codes), alerts and provider statistics "
        "and balances; more than SMS_RETENTION_DAYS.",
    )

    # --- stream / sink tuning --------------------------------------------------------------------
    sms_publish_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A push not acknowledged by the broker within this answers 503.")
    sms_publish_linger_ms: float = Field(
        default=2.0, ge=0, description="Pushes arriving within this share batch records (fewer, larger records).")
    sms_sink_batch_rows: int = 5_000
    sms_sink_flush_seconds: float = 0.5
    sms_rollup_seconds: float = Field(default=5.0, description="How often dirty rollup minutes are recomputed.")
    sms_join_batch: int = 2_000
    sms_join_within_seconds: float = 0.1
    kafka_fetch_max_wait_ms: int = Field(
        default=50, ge=1, description="How long a fetch waits on the broker for data (the worker's and the sink's consumers). "
        "Apache Kafka answers as soon as data arrives; the embedded Tansu answers only when this passes, so it is "
        "added to every hop's latency (faust's own value is 1.5 s).")
    sms_worker_web_port: int = 6066

    # --- embedded mode (no KAFKA_BOOTSTRAP_SERVERS): durability and memory --------------------------
    sms_journal_sync: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL", description="SQLite synchronous mode of the journal ($SMS_DATA_DIR/journal.sqlite3): NORMAL "
        "survives a killed process, FULL also a power loss (an fsync per commit).")
    sms_broker_max_memory_mb: int = Field(
        default=512, ge=32, description="The embedded broker is rotated (replaced by an empty one, the join's pending "
        "states carried over) once its resident memory passes this.")
    sms_broker_rotate_min_seconds: float = Field(
        default=30.0, ge=0, description="At least this long between two rotations of the embedded broker.")
    sms_memory_budget_mb: int = Field(
        default=1536, ge=256, description="Memory budget of `sms-analytics up` on embedded defaults (pipeline and "
        "broker): the soak benchmark's target, and the sms_memory_budget_bytes metric.")
    sms_journal_deadletter_days: float = Field(
        default=30.0, gt=0, description="Dead letters stay in the journal this long (their only durable home in "
        "embedded mode).")
    # --- health ----------------------------------------------------------------------------------
    sms_health_max_sink_lag_seconds: float = Field(
        default=300.0, gt=0, description="/healthz answers 503 while the sink's oldest unwritten row is older "
        "than this (seconds since the record was produced).")

    # --- provider pull feeds: each is on when its credentials are set ------------------------------
    sms_compensate_after: timedelta = Field(default=timedelta(minutes=10),
                                            description="Ask the provider about messages pending this long.")
    sms_compensate_interval: timedelta = Field(default=timedelta(minutes=30),
                                               description="Never ask about one message twice within this.")
    sms_compensate_scan_seconds: float = Field(default=30.0, description="How often the stream looks for them.")
    sms_alert_rules: Annotated[AlertRules, NoDecode] = Field(
        default_factory=AlertRules.packaged, description="A YAML file of alert rules, read over the packaged "
        "streams/alert_rules.yaml (it gives only what it changes); unset: the packaged rules. Validated at start.")
    sms_template_names: Path | None = Field(
        default=None, description="CSV provider,template,sign,name: business names of templates; unset: none.")
    sms_feed_interval_seconds: float = Field(default=5.0, description="Wait after an empty poll.")
    sms_feed_rate: float = Field(default=5.0, description="At most this many calls per second per feed.")
    sms_metadata_interval: timedelta = Field(
        default=timedelta(minutes=10), description="How often the template and sign metadata feeds pull (Alibaba "
        "QuerySmsTemplate/QuerySmsSign, Tencent DescribeSmsTemplateList/DescribeSmsSignList): seconds or ISO-8601.")
    sms_provider_stats_interval: timedelta = Field(
        default=timedelta(minutes=1), description="How often Alibaba QuerySendStatistics (yesterday and today) and "
        "Tencent SmsPackagesStatistics (the package quota) are pulled: seconds or ISO-8601.")
    sms_quota_alert_hours: float = Field(
        default=24.0, gt=0, description="Alert (Grafana rule and in-stream) when a provider's balance or package quota "
        "left would run out within this many hours at the last hour's send rate.")
    sms_kx_base_url: str | None = Field(default=None, description="KX API, e.g. http://ip:port")
    sms_kx_userid: str | None = None
    sms_kx_apikey: SecretStr | None = None
    sms_tencent_secret_id: str | None = None
    sms_tencent_secret_key: SecretStr | None = None
    sms_tencent_endpoint: str = "sms.tencentcloudapi.com"
    sms_tencent_scheme: str = "https"
    sms_tencent_app_ids: str = Field(default="", description="SmsSdkAppIds to pull, comma-separated.")
    sms_tencent_sign_ids: str = Field(default="", description="SignIds DescribeSmsSignList describes, comma-separated "
                                      "(its SignIdSet is required); templates are listed whole.")
    sms_aliyun_endpoint: str = Field(default="dysmsapi.aliyuncs.com", description="SMS API (QuerySendDetails).")
    sms_aliyun_protocol: str = "https"
    sms_aliyun_mns_endpoint: str | None = Field(default=None, description="MNS endpoint, e.g. https://<id>.mns.cn-hangzhou.aliyuncs.com")
    sms_aliyun_access_key_id: str | None = None
    sms_aliyun_access_key_secret: SecretStr | None = None
    sms_aliyun_mns_report_queue: str | None = Field(default=None, description="Queue of SmsReport messages.")
    sms_aliyun_mns_up_queue: str | None = Field(default=None, description="Queue of SmsUp messages.")
    sms_aliyun_template_codes: str = Field(default="", description="TemplateCodes QuerySmsTemplate describes, "
                                           "comma-separated (it takes one code per call, there is no list).")
    sms_aliyun_sign_names: str = Field(default="", description="SignNames QuerySmsSign describes, comma-separated.")

    # --- `dashboards push`: the Grafana to push to, and ClickHouse as Grafana reaches it ----------------
    grafana_url: str | None = Field(default=None, description="Grafana's base URL, e.g. http://127.0.0.1:3000.")
    grafana_token: SecretStr | None = Field(default=None, description="A service-account token of that Grafana.")
    grafana_user: str | None = Field(default=None, description="A basic auth user (with GRAFANA_PASSWORD) instead.")
    grafana_password: SecretStr | None = None
    clickhouse_host: str = Field(default="clickhouse", description="ClickHouse's host as Grafana reaches it.")
    clickhouse_port: int = Field(default=8123, ge=1, le=65535, description="8123 (http) or 9000 (native).")
    clickhouse_protocol: Literal["http", "native"] = "http"
    clickhouse_secure: bool = Field(default=False, description="TLS from Grafana to ClickHouse.")
    clickhouse_user: str = Field(default="sms", description="The datasource's ClickHouse user.")
    clickhouse_password: SecretStr | None = Field(
        default=None, description="The datasource's password, stored encrypted in Grafana; unset: keep the stored one.")
    grafana_relay_url: str | None = Field(
        default=None, description="The relay endpoint (POST /v1/grafana/alerts on the query endpoint) as Grafana "
        "reaches it, for the sms-relay contact point; unset: http://worker:8081/v1/grafana/alerts (docker-compose). "
        "Its bearer token is SMS_QUERY_TOKEN.")

    # --- start-up -------------------------------------------------------------------------------
    sms_startup_wait_seconds: float = Field(
        default=60.0, ge=0, description="At start, how long every command waits (with backoff) for the Kafka broker "
        "and the warehouse to answer before it exits with code 2 and one line; 0: no wait. Invalid settings are not "
        "waited for.")

    # --- logging ---------------------------------------------------------------------------------
    sms_log_level: str = "INFO"
    sms_log_json: bool = False

    @field_validator("sms_timestamp_past", "sms_timestamp_future", "sms_expire_after", "sms_compensate_after",
                     "sms_compensate_interval", "kafka_input_retention", "kafka_output_retention",
                     "sms_metadata_interval", "sms_provider_stats_interval", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        """Seconds as an environment string ("2592000"), besides ISO-8601 ("P30D")."""
        if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d*)?\s*", value):
            return float(value)
        return value

    @field_validator("sms_alert_rules", mode="before")
    @classmethod
    def _alert_rules(cls, value: object) -> object:
        """A path (the environment's SMS_ALERT_RULES) becomes the rules it holds; empty: the packaged."""
        if isinstance(value, (str, Path)):
            return AlertRules.load(Path(value) if str(value).strip() else None)
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        for server in (value or "").split(","):
            host, _, port = server.strip().rpartition(":")
            if value and not (host and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError("expected host:port[,host:port]")
        return value

    @field_validator("sms_phone_hash_key")
    @classmethod
    def _hash_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value and len(value.get_secret_value().encode()) < MIN_HASH_KEY_BYTES:  # empty: unset
            raise ValueError(f"must be at least {MIN_HASH_KEY_BYTES} bytes")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _warehouse_url(cls, value: str | None) -> str | None:
        if value:
            parsed = urlsplit(value)
            if parsed.scheme not in ("chdb", "http", "https") or (parsed.scheme != "chdb" and not parsed.hostname):
                raise ValueError("expected chdb:///path or http(s)://[user:password@]host[:port]")
            try:
                parsed.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise ValueError("the port is not a number from 0 to 65535 (characters such as # / ? @ in the "
                                 "password must be percent-encoded)") from None
        return value

    @model_validator(mode="after")
    def _retention(self) -> Settings:
        # A recompute rebuilds the day bucket of a minute from the minute rollups of that whole day, the
        # oldest a day older than the minute; and a pending message's minute is recomputed when it expires.
        if self.sms_rollup_retention_days <= self.sms_retention_days:
            raise ValueError("SMS_ROLLUP_RETENTION_DAYS must be more than SMS_RETENTION_DAYS "
                             f"({self.sms_rollup_retention_days} <= {self.sms_retention_days})")
        if timedelta(days=self.sms_retention_days) < self.sms_expire_after + timedelta(days=1):
            raise ValueError("SMS_RETENTION_DAYS must be at least a day longer than SMS_EXPIRE_AFTER "
                             f"({self.sms_retention_days} days, {self.sms_expire_after})")
        if self.sms_clickhouse_cluster and self.warehouse_url.startswith("chdb:"):
            raise ValueError("SMS_CLICKHOUSE_CLUSTER needs a ClickHouse server (CLICKHOUSE_URL=http://…:8123); "
                             "the embedded chDB is one process")
        return self

    @property
    def warehouse_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb:///{self.sms_data_dir.resolve() / 'warehouse'}"

    @property
    def compensation(self) -> CompensationPolicy:
        return CompensationPolicy(after_ms=_ms(self.sms_compensate_after), interval_ms=_ms(self.sms_compensate_interval),
                                  scan_seconds=self.sms_compensate_scan_seconds,
                                  forget_after_ms=_ms(self.sms_expire_after))

    @property
    def grafana_push(self) -> GrafanaPush:
        """What `dashboards push` needs; the datasource's database is the warehouse's (CLICKHOUSE_DATABASE)."""
        return GrafanaPush(
            url=self.grafana_url or None,
            credentials=GrafanaCredentials(token=_set(self.grafana_token), user=self.grafana_user or None,
                                           password=self.grafana_password),
            clickhouse=GrafanaClickHouse(host=self.clickhouse_host, port=self.clickhouse_port,
                                         protocol=self.clickhouse_protocol, secure=self.clickhouse_secure,
                                         username=self.clickhouse_user, password=_set(self.clickhouse_password),
                                         database=self.clickhouse_database),
            relay=GrafanaRelay(url=self.grafana_relay_url or None, token=_set(self.sms_query_token)))

    @property
    def query_token(self) -> str | None:
        return self.sms_query_token.get_secret_value() if self.sms_query_token else None

    @property
    def callback_token(self) -> str | None:
        return self.sms_callback_token.get_secret_value() if self.sms_callback_token else None


def _set(secret: SecretStr | None) -> SecretStr | None:
    """An empty secret is none."""
    return secret if secret is not None and secret.get_secret_value() else None


def _ms(span: timedelta) -> int:
    return int(span.total_seconds() * 1000)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
