"""The command line: the GUI by default, headless sub-commands for jobs and tests (DESIGN.md CLI).

Headless commands import no Qt. Every command prints an error as one clear line on stderr and exits
non-zero; `--json` output goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_FAIL = 1


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _positive_int(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {v!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {n}")
    return n


def _tcp_address(text: str) -> str:
    from services.zmtp import BindError, parse_address

    try:
        parse_address(text)
    except BindError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _allow_list(text: str) -> Any:
    from services.zmtp import BindError, parse_allow

    try:
        return parse_allow(text)
    except BindError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _non_negative_float(v: str) -> float:
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {v!r}") from None
    if not f >= 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {v}")
    return f


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="riskdesk", description="RiskDesk risk workstation (GUI by default).")
    p.add_argument("--db", help="store URL: sqlite:///FILE or postgresql://user@host/db "
                                "(default: the local demo store in the user data directory)")
    p.add_argument("--feed", help="subscribe to this feed address (e.g. tcp://127.0.0.1:5599)")
    p.add_argument("--no-feed", action="store_true", help="do not start the demo feed simulator")
    p.add_argument("--screenshot", metavar="FILE.png", help="render the main window to a PNG and exit")
    p.add_argument("--quit-after", type=_non_negative_float, metavar="S", help="quit after S seconds")
    p.add_argument("--user", help="log in as this user (with RISKDESK_APP_PASSWORD set, without asking; "
                                  "PostgreSQL: the login name)")
    p.add_argument("--self-test", action="store_true", help="check this installation (libraries, store, "
                                                               "keyring, feed socket) and exit 0 when usable")
    p.add_argument("--raise", dest="raise_dock", metavar="DOCK",
                   help="bring a dock to the front (margin_alerts, approvals, risk_parameters, audit_trail, …)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    s = sub.add_parser("init", help="create / migrate a store")
    s.add_argument("--db", required=True)

    s = sub.add_parser("demo", help="fill a store with a deterministic demo book")
    s.add_argument("--db", required=True)
    s.add_argument("--clients", type=_positive_int, default=3000)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--positions", type=_positive_int, help="number of positions (default scales with clients)")

    s = sub.add_parser("book", help="export / import the portable book file")
    bs = s.add_subparsers(dest="book_command", parser_class=_Parser, required=True)
    e = bs.add_parser("export")
    e.add_argument("--db", required=True)
    e.add_argument("--out", required=True)
    i = bs.add_parser("import")
    i.add_argument("--db", required=True)
    i.add_argument("file")

    s = sub.add_parser("margin", help="per-account margin results (RISK_METHODS §1)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--db")
    src.add_argument("--book")
    s.add_argument("--json", action="store_true", help="JSON array on stdout (the default output)")
    s.add_argument("--status", choices=["safe", "warning", "call", "force"], action="append",
                   help="only accounts with this status (repeatable)")

    s = sub.add_parser("stress", help="stressed margin under a scenario file (RISK_METHODS §3)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--db")
    src.add_argument("--book")
    s.add_argument("--scenario", required=True, help="scenario JSON file (DESIGN.md)")
    s.add_argument("--json", action="store_true", help="JSON on stdout (the default output)")

    s = sub.add_parser("lcs", help="SFC liquid-capital-shortfall test with the top 10 stocks (RISK_METHODS §4)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--db")
    src.add_argument("--book")
    s.add_argument("--lc", required=True, help="liquid capital (HKD)")
    s.add_argument("--rlc", required=True, help="required liquid capital (HKD)")
    s.add_argument("--json", action="store_true", help="JSON on stdout (the default output)")

    s = sub.add_parser("reconcile", help="position / transaction / cash reconciliation (RISK_METHODS §7)")
    s.add_argument("recon_kind", choices=["position", "transaction", "cash"])
    s.add_argument("--ours", required=True, help="our records (CSV or xlsx)")
    s.add_argument("--theirs", required=True, help="the counterparty / custodian / clearing records")
    s.add_argument("--as-of", type=_iso_date, help="age breaks to this date (default today)")
    s.add_argument("--db", help="also record the breaks in this store")
    s.add_argument("--json", action="store_true", help="JSON on stdout (the default output)")

    s = sub.add_parser("export", help="the Excel risk pack")
    es = s.add_subparsers(dest="export_command", parser_class=_Parser, required=True)
    x = es.add_parser("pack", help="build the Excel risk pack")
    x.add_argument("--db", help="store (default: the local demo store)")
    x.add_argument("--out", required=True, help="the .xlsx file to write")
    x.add_argument("--sheets", help="comma-separated sheets (default all): " + ", ".join(
        ("cover", "margin_calls", "alerts", "concentration_stock", "concentration_client", "credit", "stress", "lcs",
         "limits", "kris", "incidents", "loss_events", "audit")))
    x.add_argument("--user", default="", help="name on the cover")

    s = sub.add_parser("feed-sim", help="publish a live feed from a store")
    s.add_argument("--db", help="store to publish from (default: the local demo store)")
    s.add_argument("--bind", default="tcp://127.0.0.1:5599")
    s.add_argument("--rate", type=_non_negative_float, default=2000.0, help="price updates per second")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--duration", type=_non_negative_float, help="stop after S seconds")
    s.add_argument("--gap-every", type=_non_negative_float, default=0.0, help="skip a seq number every S s")
    s.add_argument("--epoch-every", type=_non_negative_float, default=0.0, help="new epoch every S s")
    s.add_argument("--malformed-every", type=_non_negative_float, default=0.0,
                   help="send a malformed message every S s")
    s.add_argument("--no-persist", action="store_true", help="do not write last prices to the store")

    s = sub.add_parser("check-server", help="the order-check service (pre-trade checks over ZeroMQ)")
    s.add_argument("--db", help="store (default: the local demo store)")
    s.add_argument("--bind", type=_tcp_address, default="tcp://127.0.0.1:5600",
                   help="address to answer ZeroMQ clients on (tcp://HOST:PORT)")
    s.add_argument("--feed", help="follow this price/position feed (e.g. tcp://127.0.0.1:5599)")
    s.add_argument("--allow", type=_allow_list, metavar="ADDR[,NET…]",
                   help="answer only these hosts or networks (e.g. 10.1.2.3,10.9.0.0/16); others are "
                        "disconnected. Without it, any host that reaches --bind is answered")
    s.add_argument("--duration", type=_non_negative_float, help="stop after S seconds")
    s.add_argument("--sync-writes", action="store_true", help=argparse.SUPPRESS)  # benchmark baseline

    s = sub.add_parser("audit", help="check or export the audit trail")
    aus = s.add_subparsers(dest="audit_command", parser_class=_Parser, required=True)
    v = aus.add_parser("verify", help="check the hash chain; names the first broken record")
    v.add_argument("--db", required=True)
    v.add_argument("--json", action="store_true")
    x = aus.add_parser("export", help="write a range of the audit trail to CSV or xlsx")
    x.add_argument("--db", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--from", dest="start", type=_datetime_arg, help="ISO date/time (inclusive)")
    x.add_argument("--to", dest="end", type=_datetime_arg, help="ISO date/time (exclusive)")
    x.add_argument("--actor", default="cli", help="who is exporting (recorded in the audit trail)")

    s = sub.add_parser("template", help="write the Excel template of a bulk import")
    s.add_argument("kind", help="stock-margin, short-margin, intraday-margin, client-margin, haircuts, "
                                "financing-limits, trading-limits, credit-groups, blacklist, index-members, "
                                "limit-rules")
    s.add_argument("--out", required=True)

    s = sub.add_parser("import", help="check a bulk file row by row; apply valid rows as change requests")
    s.add_argument("kind")
    s.add_argument("file")
    s.add_argument("--db", required=True)
    s.add_argument("--dry-run", action="store_true", help="check only (the default unless --apply)")
    s.add_argument("--apply", action="store_true", help="submit the valid rows as change requests")
    s.add_argument("--user", help="maker of the requests (local store: password from RISKDESK_APP_PASSWORD)")
    s.add_argument("--reason", default="bulk import")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("user", help="manage RiskDesk users")
    us = s.add_subparsers(dest="user_command", parser_class=_Parser, required=True)
    a = us.add_parser("add", help="add a user (PostgreSQL: also the database login; run as the store owner)")
    a.add_argument("--db", required=True)
    a.add_argument("--login", required=True)
    a.add_argument("--role", required=True, choices=["trader", "risk_officer", "supervisor", "cro", "operations",
                                                      "auditor", "administrator"])
    a.add_argument("--name", default="")
    a.add_argument("--password", help="initial password (asked when omitted on a terminal)")
    return p


def _datetime_arg(v: str) -> Any:
    from datetime import UTC, datetime

    try:
        d = datetime.fromisoformat(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {v!r}") from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.self_test:
        from app.self_test import run

        return run()
    if args.command is None:
        from app.gui import run_gui  # Qt is imported only for the GUI

        return run_gui(args)
    try:
        handler = _COMMANDS[args.command]
        return handler(args)
    except CliError as e:
        sys.stderr.write(f"riskdesk {args.command}: {e}\n")
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `riskdesk margin --json | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except Exception as e:  # known domain errors carry a user-facing message
        from models.book import BookError
        from services.store import StoreError

        if isinstance(e, (BookError, StoreError)):
            sys.stderr.write(f"riskdesk {args.command}: {e}\n")
            return EXIT_FAIL
        raise


# ---------------------------------------------------------------------- commands
def _open_store(url: str, *, migrate: bool = True) -> Any:
    from services.credentials import password_for
    from services.store import Store

    store = Store(url, password=password_for(url, interactive=sys.stdin.isatty()))
    store.check()
    if migrate:
        store.migrate()
    return store


def cmd_init(args: argparse.Namespace) -> int:
    store = _open_store(args.db)
    print(f"store ready: {store.display_name} (schema {store.schema_revision()})", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from services.demo_store import seed_demo_store

    store = _open_store(args.db)
    info = seed_demo_store(store, clients=args.clients, seed=args.seed, positions=args.positions)
    print(f"demo book written to {store.display_name}: {info['accounts']} accounts, {info['securities']} "
          f"securities, {info['positions']} positions", file=sys.stderr)
    return 0


def cmd_book(args: argparse.Namespace) -> int:
    from services.bookfile import load_book_file, save_book_file

    if args.book_command == "export":
        store = _open_store(args.db)
        book = store.load_book()
        save_book_file(book, args.out)
        print(f"book written to {args.out}: {book.n_acct} accounts, {book.n_pos} positions", file=sys.stderr)
        return 0
    book = load_book_file(args.file)  # validate fully before touching the store
    store = _open_store(args.db)
    store.save_book(book)
    print(f"book imported into {store.display_name}: {book.n_acct} accounts, {book.n_pos} positions",
          file=sys.stderr)
    return 0


def _load_book(args: argparse.Namespace) -> Any:
    if getattr(args, "book", None):
        from services.bookfile import load_book_file

        return load_book_file(args.book)
    return _open_store(args.db).load_book()


def cmd_margin(args: argparse.Namespace) -> int:
    from services.margin import MarginEngine

    engine = MarginEngine(_load_book(args))
    rows = engine.results_json()
    if args.status:
        rows = [r for r in rows if r["status"] in args.status]
    json.dump(rows, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


def cmd_stress(args: argparse.Namespace) -> int:
    from services import stress
    from services.margin import MarginEngine

    book = _load_book(args)
    if book.n_acct == 0:
        raise CliError("the book has no accounts: nothing to stress")
    try:
        sc = stress.load_scenario(args.scenario, book)
    except stress.ScenarioError as e:
        raise CliError(f"scenario {args.scenario}: {e}") from None
    json.dump(stress.run(MarginEngine(book), sc).as_json(), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


def cmd_lcs(args: argparse.Namespace) -> int:
    from services import lcs
    from services.margin import MarginEngine

    try:
        lc, rlc = lcs.check_inputs(args.lc, args.rlc)
        book = _load_book(args)
        result = lcs.run(MarginEngine(book), lc, rlc, suspended_long=_suspended_long(args, book))
    except lcs.LcsError as e:
        raise CliError(str(e)) from None
    json.dump(result.as_json(), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


def _suspended_long(args: argparse.Namespace, book: Any) -> Any:
    """From a store: suspended for 3 business days or more (RISK_METHODS §4); a book file only says
    suspended or not, which counts as long-suspended (the conservative reading)."""
    if getattr(args, "book", None):
        return None
    from services.lcs_store import long_suspended

    return long_suspended(_open_store(args.db), book)


def _iso_date(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_reconcile(args: argparse.Namespace) -> int:
    from services import recon

    try:
        result = recon.reconcile_files(args.recon_kind, args.ours, args.theirs, args.as_of)
    except recon.ReconError as e:
        raise CliError(str(e)) from None
    if args.db:
        from services.breaks import record_breaks

        record_breaks(_open_store(args.db), result, args.ours, args.theirs, args.as_of)
    json.dump(result.as_json(), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from services import pack
    from services.store import default_url

    store = _open_store(args.db or default_url())
    sheets = [s.strip() for s in args.sheets.split(",") if s.strip()] if args.sheets else None
    try:
        counts = pack.build_pack(store, args.out, user=args.user, sheets=sheets)
    except pack.PackError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot write {args.out}: {e.strerror or e}") from None
    print(json.dumps({"out": str(args.out), "sheets": counts}))
    return 0


def cmd_feed_sim(args: argparse.Namespace) -> int:
    import signal
    import threading

    from services.feed.simulator import FeedSimulator
    from services.store import default_url

    store = _open_store(args.db or default_url())
    book = store.load_book()
    if book.n_sec == 0:
        raise CliError(f"{store.display_name} has no securities to publish; run `demo --db URL` first")
    persist = None
    if not args.no_persist:
        sec_ids = book.sec_ids

        def persist(idx: Any, prices: Any) -> None:
            try:
                store.write_prices(sec_ids[idx], prices)
            except Exception as e:  # a busy store must not stop the feed
                print(f"feed-sim: last prices not saved: {e}", file=sys.stderr)

    sim = FeedSimulator(book, args.bind, rate=args.rate, seed=args.seed, on_prices=persist,
                        gap_every=args.gap_every, epoch_every=args.epoch_every,
                        malformed_every=args.malformed_every)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sim.stop())
    try:
        sim.run(duration=args.duration)
    except Exception as e:
        raise CliError(f"cannot publish on {args.bind}: {e}") from e
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from services import audit

    store = _open_store(args.db)
    if args.audit_command == "verify":
        res = audit.verify(store)
        if args.json:
            json.dump({"ok": res.ok, "records": res.records, "first_bad_id": res.first_bad_id,
                       "problem": res.problem}, sys.stdout)
            sys.stdout.write("\n")
        if not res.ok:
            raise CliError(res.message())
        print(res.message(), file=sys.stderr)
        return 0
    n = audit.export(store, args.out, args.actor, args.start, args.end)
    print(f"{n} audit records written to {args.out}", file=sys.stderr)
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    import getpass

    from services import auth

    store = _open_store(args.db)
    auth.ensure_permissions(store)
    pw = args.password
    if pw is None and sys.stdin.isatty():
        pw = getpass.getpass(f"Password for {args.login}: ")
    try:
        auth.create_user(store, args.login, args.role, args.name, pw)
    except auth.AuthError as e:
        raise CliError(str(e)) from e
    print(f"user {args.login} ({args.role}) added to {store.display_name}", file=sys.stderr)
    return 0


def cmd_template(args: argparse.Namespace) -> int:
    from services.imports import ImportFileError, write_template

    try:
        write_template(args.kind, args.out)
    except ImportFileError as e:
        raise CliError(str(e)) from e
    print(f"template for {args.kind} written to {args.out}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import os

    from services import auth
    from services.imports import ImportFileError, apply_rows, validate_file

    store = _open_store(args.db)
    try:
        report = validate_file(store, args.kind, args.file)
    except ImportFileError as e:
        raise CliError(str(e)) from e
    if args.apply and not args.dry_run:
        if store.kind == "postgresql":
            user = auth.login_database(store)
        else:
            if not args.user:
                raise CliError("--apply needs --user (the maker of the change requests)")
            try:
                user = auth.login_local(store, args.user, os.environ.get("RISKDESK_APP_PASSWORD", ""))
            except auth.AuthError as e:
                raise CliError(f"{e} (set RISKDESK_APP_PASSWORD)") from e
        apply_rows(store, user, report, args.reason)
    if args.json:
        json.dump(report.as_json(), sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        for err in report.errors:
            print(f"row {err['row']} {err['column']} {err['value']!r}: {err['message']}")
        print(f"{report.rows} rows, {len(report.valid_rows)} valid, {len(report.errors)} problems"
              + (f"; {len(report.request_ids)} change requests submitted" if report.applied else ""))
    if report.already_imported:
        print(f"note: {report.already_imported}", file=sys.stderr)
    return 0


def cmd_check_server(args: argparse.Namespace) -> int:
    import signal
    import threading

    from services.check_server import CheckServer
    from services.store import default_url
    from services.zmtp import BindError, is_loopback, parse_address

    if args.allow is None and not is_loopback(parse_address(args.bind)[0]):
        print(f"check-server: warning: {args.bind} is reachable from other hosts and any of them may check "
              "orders and report fills; name the order system's hosts with --allow", file=sys.stderr, flush=True)
    store = _open_store(args.db or default_url())
    if store.is_empty():
        raise CliError(f"{store.display_name} has no accounts; run `demo --db URL` first")
    if store.kind == "sqlite":
        from services.auth import ensure_permissions

        ensure_permissions(store)
    # the request loop gets the interpreter back within 0.5 ms when a background thread holds it
    sys.setswitchinterval(0.0005)
    server = CheckServer(store, args.bind, feed=args.feed, sync_writes=args.sync_writes, tune_gc=True,
                         writer_process=True, allow=args.allow)
    try:
        server.start()
    except BindError as e:
        raise CliError(str(e)) from None
    except RuntimeError as e:
        raise CliError(f"the check service did not start: {e}") from None
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    only = f" (only {', '.join(str(n) for n in args.allow)})" if args.allow else ""
    print(f"check-server: answering on {server.endpoint}{only} for {store.display_name}", flush=True)
    stop.wait(args.duration)
    server.stop()
    return 0


_COMMANDS = {
    "check-server": cmd_check_server,
    "stress": cmd_stress,
    "reconcile": cmd_reconcile,
    "export": cmd_export,
    "lcs": cmd_lcs,
    "template": cmd_template,
    "import": cmd_import,
    "audit": cmd_audit,
    "user": cmd_user,
    "init": cmd_init,
    "demo": cmd_demo,
    "book": cmd_book,
    "margin": cmd_margin,
    "feed-sim": cmd_feed_sim,
}
