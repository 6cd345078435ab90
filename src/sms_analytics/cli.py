"""The `sms-analytics` command line."""

from __future__ import annotations

import asyncio
import sys
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import typer

from sms_analytics import logs, startup
from sms_analytics.model.providers import CARRIER_NAMES, PROVIDERS
from sms_analytics.settings import Settings
from sms_analytics.urls import redact

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="SMS delivery analytics pipeline.")


def _settings(**given: Any) -> Settings:
    """The settings; `given`: the command line's options that were given, over the environment's."""
    settings = startup.settings(**{name: value for name, value in given.items() if value is not None})
    logs.configure(settings.sms_log_level, settings.sms_log_json)
    return settings


def _standalone(what: str) -> Settings:
    """The settings of a process that runs against an external broker."""
    settings = _settings()
    if not settings.kafka_bootstrap_servers:
        raise startup.SettingInvalid("KAFKA_BOOTSTRAP_SERVERS", "", f"must be set for a standalone {what}")
    return settings


def _open_warehouse(settings: Settings, url: str | None = None, setting: str | None = None) -> Any:
    """The warehouse, its first connection waited for (SMS_STARTUP_WAIT_SECONDS)."""
    from sms_analytics.sinks.warehouse import Warehouse

    target = url or settings.warehouse_url
    cluster = None if target.startswith("chdb:") else settings.sms_clickhouse_cluster  # --url may name a chDB path
    warehouse = Warehouse(target, cluster)
    return startup.wait_sync(startup.warehouse(settings, url, setting), warehouse.open,
                             settings.sms_startup_wait_seconds)


def _loop_policy() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass


@cli.command()
def up() -> None:
    """Run everything (embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set) until SIGINT/SIGTERM."""
    from sms_analytics.runtime import Runtime, run_until_signal

    _loop_policy()
    asyncio.run(run_until_signal(Runtime(_settings())))


@cli.command()
def worker(
    sink: bool = typer.Option(True, "--sink/--no-sink",
                              help="Also run the ClickHouse sink and query endpoint (one process per chDB path)."),
) -> None:
    """Run the faust worker (and the ClickHouse sink) alone, against an external broker."""
    from sms_analytics.runtime import Parts, Runtime, run_until_signal

    settings = _standalone("worker")
    _loop_policy()
    asyncio.run(run_until_signal(Runtime(settings, Parts(receiver=False, sink=sink, query=sink))))


@cli.command("sink")
def sink_only() -> None:
    """Run the ClickHouse sink and the query endpoint alone, for workers started with --no-sink."""
    from sms_analytics.runtime import Parts, Runtime, run_until_signal

    settings = _standalone("sink")
    _loop_policy()
    asyncio.run(run_until_signal(Runtime(settings, Parts(receiver=False, worker=False))))


@cli.command()
def receiver() -> None:
    """Run the HTTP receiver alone, against an external broker."""
    from sms_analytics.runtime import Parts, Runtime, run_until_signal

    settings = _standalone("receiver")
    _loop_policy()
    asyncio.run(run_until_signal(Runtime(settings, Parts(worker=False, sink=False, query=False))))


@cli.command()
def run(
    duration: float = typer.Option(60.0, help="Seconds of simulated provider traffic."),
    rate: float = typer.Option(40.0, help="Messages per second offered."),
    seed: int = typer.Option(1),
    scenario: list[str] = typer.Option([], help="quota:tencent:<left> (Tencent's package quota nearly used up); "
                                                "repeatable."),
) -> None:
    """The main job: the pipeline on embedded defaults, driven by simulated traffic, then a summary."""
    from sms_analytics.demo import run_demo
    from sms_analytics.simulate.scenarios import QuotaLow, parse_scenario

    try:
        switches = [parse_scenario(text) for text in scenario]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if any(not isinstance(s, QuotaLow) for s in switches):
        raise typer.BadParameter("run takes quota:tencent:<left>; outage and blackout are `simulate`'s")
    _loop_policy()
    quota = [s for s in switches if isinstance(s, QuotaLow)]
    ok = asyncio.run(run_demo(_settings(), duration=duration, rate=rate, seed=seed,
                              quota_left=quota[-1].left if quota else None))
    raise typer.Exit(0 if ok else 1)


@cli.command()
def sql(
    statement: str | None = typer.Argument(None, help="A read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN)."),
    fmt: str = typer.Option("table", "--format", help="json (one object per line), table or csv."),
    file: Path | None = typer.Option(None, "--file", help="Read the statement from this file."),
    param: list[str] = typer.Option([], "--param", help="name=value for a {name:Type} query parameter; repeatable."),
) -> None:
    """Run a read-only query: through the running process if there is one, else on the warehouse."""
    if (statement is None) == (file is None):
        raise typer.BadParameter("give a statement or --file, not both")
    if file is not None:
        statement = file.read_text(encoding="utf-8")
    assert statement is not None
    params = dict(_param(p) for p in param)
    _run_sql(statement, fmt, params)


@cli.command()
def report(
    since: str = typer.Option("24h", help="The range, ending now: 90m, 24h, 7d…"),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
    url: str | None = typer.Option(None, "--url", help="Warehouse URL (chdb:///path or http(s)://…), opened "
                                      "directly; default: the running process, else CLICKHOUSE_URL / SMS_DATA_DIR."),
) -> None:
    """Write the overview dashboard as one self-contained HTML file (SVG charts, no external resources)."""
    from sms_analytics.dashboards.report import last, parse_since, write_report

    try:
        rng = last(parse_since(since))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with _reader(_settings(), url) as query:
        typer.echo(f"report: {write_report(query, out, rng)}")


@cli.command()
def why(
    provider: str = typer.Option(..., "--provider", help="aliyun, tencent or kx."),
    carrier: str | None = typer.Option(None, "--carrier", help="mobile, unicom, telecom or broadnet."),
    since: str = typer.Option("30m", help="The window, ending now (or at --until): 30m, 2h…"),
    baseline: str = typer.Option("previous", help="previous (the window before) or week (same hours, last 7 days)."),
    until: str | None = typer.Option(None, help="End of the window, ISO 8601 (default: now)."),
    url: str | None = typer.Option(None, "--url", help="Warehouse URL (chdb:///path or http(s)://…), opened "
                                      "directly; default: the running process, else CLICKHOUSE_URL / SMS_DATA_DIR."),
) -> None:
    """Which carrier, province, template, sign or error code holds a drop's excess failures (top 3)."""
    from sms_analytics.dashboards import why as root_cause
    from sms_analytics.dashboards.report import parse_since

    carrier = {v: k for k, v in CARRIER_NAMES.items()}.get(carrier or "", carrier)
    if provider not in PROVIDERS:
        raise typer.BadParameter(f"--provider must be one of {', '.join(PROVIDERS)}")
    if carrier is not None and carrier not in CARRIER_NAMES:
        raise typer.BadParameter(f"--carrier must be one of {', '.join(CARRIER_NAMES)}")
    if baseline not in root_cause.BASELINES:
        raise typer.BadParameter(f"--baseline must be one of {', '.join(root_cause.BASELINES)}")
    try:
        span = parse_since(since)
        end = _utc(datetime.fromisoformat(until)) if until else datetime.now(UTC)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    start = end - span
    settings = _settings()
    with _reader(settings, url) as query:
        causes = root_cause.why(query, provider, carrier, _ms(start), _ms(end), baseline=baseline)
    typer.echo(root_cause.render(causes, provider, carrier, start, end, baseline), nl=False)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@contextmanager
def _reader(settings: Settings, url: str | None) -> Iterator[Any]:
    """A Query (sql -> columns, rows): like `sql`, the running process's query endpoint if one answers
    (and no --url is given), else the warehouse opened directly."""
    from sms_analytics.dashboards.report import http_query

    if url is None:
        query = http_query(_query_url(settings), timeout=60, token=settings.query_token)
        try:
            query("SELECT 1")
        except (urllib.error.URLError, ConnectionError, ValueError):
            pass
        else:
            yield query
            return
    warehouse = _open_warehouse(settings, url, "--url" if url else None)
    try:
        yield lambda sql: warehouse.read(sql)
    finally:
        warehouse.close()


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise typer.BadParameter(f"--param takes name=value, got {text!r}")
    return name.strip(), value


def _run_sql(statement: str, fmt: str, params: dict[str, str]) -> None:
    from sms_analytics.sinks.query_api import FORMATS, QueryRefused, post_query, render
    from sms_analytics.sinks.warehouse import NotReadOnly, check_read_only

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    settings = _settings()
    try:
        check_read_only(statement)
    except NotReadOnly as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        sys.stdout.write(post_query(_query_url(settings), statement, fmt=fmt, params=params,
                                    token=settings.query_token, timeout=60).decode())
        return
    except QueryRefused as exc:
        typer.echo(f"error: {exc.text}", err=True)
        raise typer.Exit(1) from None
    except (urllib.error.URLError, ConnectionError):
        pass  # nothing runs: open the warehouse directly
    warehouse = _open_warehouse(settings)  # no running process answered on SMS_QUERY_HOST:SMS_QUERY_PORT
    try:
        columns, rows = warehouse.read(statement, params)
    except Exception as exc:  # noqa: BLE001  (the warehouse's error, whatever it is, is the user's to read)
        typer.echo(f"error: {str(exc).strip()[:2000]}", err=True)
        raise typer.Exit(1) from None
    finally:
        warehouse.close()
    sys.stdout.write(render(columns, rows, fmt))


def _query_url(settings: Settings) -> str:
    """The running process's query endpoint (SMS_QUERY_HOST:SMS_QUERY_PORT)."""
    return f"http://{settings.sms_query_host}:{settings.sms_query_port}"


@cli.command()
def lookup(
    phone: str = typer.Argument(..., help="A phone number, in any form the providers use."),
    fmt: str = typer.Option("table", "--format", help="json, table or csv."),
) -> None:
    """A number's messages: the number is hashed with the same key as the pipeline's, never stored."""
    from sms_analytics.model.phone import BadPhone, PhoneHasher, load_or_create_key, normalize

    settings = _settings()
    try:
        e164 = normalize(phone).e164
    except BadPhone as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        key = load_or_create_key(settings.sms_phone_hash_key.get_secret_value() if settings.sms_phone_hash_key else None,
                                 settings.sms_data_dir, create=False)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _run_sql(LOOKUP_SQL, fmt, {"hash": PhoneHasher(key)(e164)})


LOOKUP_SQL = (
    "SELECT provider, message_id, phone_masked, carrier, template, sign, sent_at, reported_at, status, error_code, "
    "failure_category, latency_ms, receipt_count FROM sms.messages WHERE phone_hash = {hash:String} "
    "ORDER BY sent_at DESC NULLS LAST LIMIT 1000"
)


@cli.command()
def explain(
    code: str = typer.Argument(..., help="A provider error or receipt code, e.g. DB:0005."),
    provider: str | None = typer.Option(None, help="aliyun, tencent or kx: show what the pipeline resolves."),
    carrier: str | None = typer.Option(None, help="mobile, unicom, telecom, broadnet (or 移动, 联通, 电信, 广电)."),
) -> None:
    """What a code means: description, suggested action, failure category, from the provider documents;
    every meaning where a table gives the code several (the first is the one the pipeline resolves)."""
    from sms_analytics.model.knowledge import KnowledgeBase

    kb = KnowledgeBase.load()
    if provider is not None:
        if provider not in PROVIDERS:
            raise typer.BadParameter(f"--provider must be {', '.join(PROVIDERS[:-1])} or {PROVIDERS[-1]}")
        for stage in ("receipt", "submit"):
            entry = kb.lookup(provider, code, carrier or "", stage)
            typer.echo(f"{provider} {carrier or 'any carrier'} at {stage}: " + (
                f"{entry.failure_category} ({'permanent' if entry.permanent else 'temporary'}) - {entry.description}"
                f" | action: {entry.action or '-'} | {entry.source} {entry.carrier or '(all carriers)'} "
                f"{entry.seed_file}:{entry.seed_line}" if entry else "not in the tables (unknown)"))
            for other in kb.meanings(entry)[1:] if entry else ():
                typer.echo(f"  also meant: {other.failure_category} "
                           f"({'permanent' if other.permanent else 'temporary'}) - {other.description}"
                           f" | action: {other.action or '-'} | {other.seed_file}:{other.seed_line}")
        return
    matches = [e for e in kb.rows() if e.code.casefold() == code.strip().casefold()
               and (carrier is None or e.carrier in (carrier, CARRIER_NAMES.get(carrier, carrier)))]
    if not matches:
        typer.echo(f"{code}: not in the tables (unknown)")
        raise typer.Exit(1)
    for e in matches:
        typer.echo(f"{e.source:<8} {e.carrier or '-':<4} {e.stage:<8} {e.failure_category:<16} "
                   f"{'permanent' if e.permanent else 'temporary':<9} {e.description} | action: {e.action or '-'} "
                   f"| {e.seed_file}:{e.seed_line}")


@cli.command()
def migrate() -> None:
    """Apply the warehouse migrations (also done at every start)."""
    from sms_analytics.sinks import error_codes

    settings = _settings()
    warehouse = _open_warehouse(settings)
    try:
        applied = warehouse.migrate()
        warehouse.apply_views(int(settings.sms_expire_after.total_seconds()))
        warehouse.apply_retention(settings.sms_retention_days, settings.sms_rollup_retention_days)
        error_codes.load(warehouse)
    finally:
        warehouse.close()
    typer.echo(f"applied: {', '.join(applied) or 'nothing (up to date)'}")


@cli.command()
def simulate(
    url: str = typer.Option("http://127.0.0.1:8080", help="Receiver base URL."),
    duration: float = typer.Option(30.0),
    rate: float = typer.Option(40.0),
    seed: int = typer.Option(1),
    scenario: list[str] = typer.Option([], help="outage:<carrier>[@<province>]:<rate>:<start>:<duration>, "
                                                "template:<template>:<rate>:<start>:<duration> or "
                                                "blackout:<provider>:<start>:<duration>[:catch_up]; repeatable."),
) -> None:
    """Drive a running receiver with simulated provider traffic; prints the ground truth."""
    from sms_analytics.simulate.driver import drive
    from sms_analytics.simulate.scenarios import Blackout, Outage, QuotaLow, parse_scenario

    settings = _settings()
    try:
        switches = [parse_scenario(text) for text in scenario]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if any(isinstance(s, QuotaLow) for s in switches):
        raise typer.BadParameter("quota:tencent:<left> needs the Tencent simulator: use `sms-analytics run`")
    truth = asyncio.run(drive(url, duration=duration, rate=rate, token=settings.callback_token, seed=seed,
                              outage=[s for s in switches if isinstance(s, Outage)] or None,
                              blackout=[s for s in switches if isinstance(s, Blackout)] or None))
    typer.echo(msgspec.json.format(msgspec.json.encode(truth.to_dict()), indent=2).decode())


dashboards_cli = typer.Typer(no_args_is_help=True, help="Grafana dashboards and alert rules.")
cli.add_typer(dashboards_cli, name="dashboards")


@dashboards_cli.command("push")
def dashboards_push(
    grafana_url: str | None = typer.Option(None, "--grafana-url", help="e.g. http://127.0.0.1:3000 [GRAFANA_URL]"),
    token: str | None = typer.Option(None, help="Service-account token (prefer the env) [GRAFANA_TOKEN]"),
    user: str | None = typer.Option(None, help="Basic auth user, with --password [GRAFANA_USER]"),
    password: str | None = typer.Option(None, help="Basic auth password (prefer the env) [GRAFANA_PASSWORD]"),
    clickhouse_host: str | None = typer.Option(None, help="As Grafana reaches ClickHouse [CLICKHOUSE_HOST]"),
    clickhouse_port: int | None = typer.Option(None, help="8123 (http) or 9000 (native) [CLICKHOUSE_PORT]"),
    clickhouse_protocol: str | None = typer.Option(None, help="http or native [CLICKHOUSE_PROTOCOL]"),
    clickhouse_secure: bool | None = typer.Option(None, help="TLS to ClickHouse [CLICKHOUSE_SECURE]"),
    clickhouse_user: str | None = typer.Option(None, help="[CLICKHOUSE_USER]"),
    clickhouse_password: str | None = typer.Option(
        None, help="Stored encrypted in Grafana; omitted = keep the stored one [CLICKHOUSE_PASSWORD]"),
    clickhouse_database: str | None = typer.Option(None, help="[CLICKHOUSE_DATABASE]"),
    folder_uid: str = typer.Option("sms-analytics", help="Folder for the dashboards and alert rules."),
    folder_title: str = typer.Option("SMS analytics"),
    relay_url: str | None = typer.Option(
        None, help="The relay (POST /v1/grafana/alerts on the query endpoint) as Grafana reaches it; default "
        "http://worker:8081/v1/grafana/alerts. Its bearer token: SMS_QUERY_TOKEN [GRAFANA_RELAY_URL]"),
) -> None:
    """Upsert the folder, the ClickHouse datasource (uid sms-clickhouse), the dashboards, the alert rules, the
    sms-relay contact point and the policy route sending the folder's alerts to it (skipped without
    SMS_QUERY_TOKEN). Each option is a setting (in brackets) given on the command line."""
    from sms_analytics.dashboards import push

    options = _settings(
        grafana_url=grafana_url, grafana_token=token, grafana_user=user, grafana_password=password,
        clickhouse_host=clickhouse_host, clickhouse_port=clickhouse_port, clickhouse_protocol=clickhouse_protocol,
        clickhouse_secure=clickhouse_secure, clickhouse_user=clickhouse_user, clickhouse_password=clickhouse_password,
        clickhouse_database=clickhouse_database, grafana_relay_url=relay_url).grafana_push
    if options.url is None:
        raise startup.SettingInvalid("GRAFANA_URL", "", "must be set for dashboards push (or give --grafana-url)")
    try:
        outcomes = push.run(options.url, options.credentials, options.clickhouse, folder_uid=folder_uid,
                            folder_title=folder_title, report=lambda outcome: typer.echo(outcome.line()),
                            target=options.relay)
    except push.PushError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"pushed to {redact(options.url)}: {push.summary(outcomes)}")


def main() -> Any:  # console script entry point
    try:
        return cli()
    except startup.StartupFailed as exc:  # one line (a traceback too with SMS_LOG_LEVEL=DEBUG), exit code 2
        typer.echo(startup.report(exc), err=True)
        raise SystemExit(startup.EXIT_CODE) from None


if __name__ == "__main__":
    main()
