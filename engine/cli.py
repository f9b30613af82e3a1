"""Command line: ``mm-engine <command>``. Nothing imports this module."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import msgspec


def _cmd_book(args: argparse.Namespace) -> int:
    from engine.instruments import InstrumentError, load_exchange_info
    from engine.replay import replay_book

    instruments = None
    if args.exchange_info:
        try:
            instruments = load_exchange_info(Path(args.exchange_info).read_bytes(), args.market or "spot")
        except (OSError, InstrumentError) as e:
            print(f"mm-engine book: cannot load --exchange-info: {e}", file=sys.stderr)
            return 2
    for f in args.files:
        if not Path(f).is_file():
            print(f"mm-engine book: no such file: {f}", file=sys.stderr)
            return 2
    try:
        rep = replay_book(args.files, symbol=args.symbol, market=args.market, instruments=instruments)
    except InstrumentError as e:
        print(f"mm-engine book: {e}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(msgspec.json.encode(rep).decode() + "\n")
    else:
        w = sys.stdout.write
        w(f"files            {', '.join(Path(f).name for f in rep.files)}\n")
        w(f"frames           {rep.frames}\n")
        w(f"depth messages   {rep.depth_messages} ({rep.diffs_applied} applied, {rep.level_updates} level updates)\n")
        w(f"snapshots        {rep.snapshots}\n")
        w(f"gaps             {rep.gaps}\n")
        w(f"resyncs          {rep.resyncs}\n")
        w(f"crossed          {rep.crossed}\n")
        w(f"bookTicker       {rep.book_tickers} seen, {rep.bbo_checks} checked, {rep.bbo_mismatches} mismatches\n")
        w(f"decode errors    {sum(rep.decode_errors.values())} {rep.decode_errors or ''}\n")
        w(f"final BBO        bid {rep.best_bid} x {rep.best_bid_qty}  ask {rep.best_ask} x {rep.best_ask_qty}"
          f"  (lastUpdateId {rep.last_update_id}, valid={rep.valid_at_end})\n")
        w(f"throughput       {rep.msgs_per_s:,.0f} msgs/s ({rep.depth_msgs_per_s:,.0f} depth msgs/s) in {rep.elapsed_s:.3f} s\n")
        for g in rep.gap_events[:10]:
            w(f"gap              {g.symbol} {g.reason} at {g.source}: expected {g.expected}, "
              f"got U={g.first_update_id} u={g.final_update_id} pu={g.prev_final_update_id}\n")
    return 1 if (rep.bbo_mismatches or rep.crossed) else 0


def _cmd_sim(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    import uvloop

    from engine.sim import describe, start_simulator

    for f in args.data or ():
        if not Path(f).is_file():
            print(f"mm-engine sim: no such file: {f}", file=sys.stderr)
            return 2
    source = list(args.data) if args.data else None
    speed = None if args.speed == 0 else args.speed

    async def main() -> int:
        from engine.sim.server import make_source
        handle = await start_simulator(make_source(source, speed=speed), host=args.host, port=args.port,
                                       rest_port=args.rest_port)
        for line in describe(handle):
            print(line, flush=True)
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        try:
            done, _ = await asyncio.wait([stop, handle.ended], return_when=asyncio.FIRST_COMPLETED)
            if handle.ended in done and not args.serve_after_end:
                print("market ended", flush=True)
            elif handle.ended in done:
                print("market ended; serving until stopped", flush=True)
                await stop
        finally:
            await handle.close()
        return 0

    return uvloop.run(main())


# Embedded default: how long `mm-engine run` quotes on the synthetic market, s.
DEFAULT_SYNTHETIC_DURATION_S = 20.0
# Name of the kill-switch file in the state folder (`touch <state dir>/KILL` halts a run).
KILL_FILE_NAME = "KILL"


def default_state_dir() -> Path:
    """``$MM_STATE_DIR``, else ``$XDG_STATE_HOME/mm-engine``, else ``~/.local/state/mm-engine``."""
    import os

    if os.environ.get("MM_STATE_DIR"):
        return Path(os.environ["MM_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "mm-engine"


def _cmd_run(args: argparse.Namespace) -> int:
    import os
    from decimal import Decimal, InvalidOperation

    import msgspec.structs as ms
    import uvloop

    from engine.config import Config, ConfigError, load_config
    from engine.live.runner import RunConfig, run
    from engine.secrets import SecretsError, install_redaction, load_credentials
    from strategies.symmetric import SymmetricConfig, SymmetricQuoter

    def fail(msg: str) -> int:
        print(f"mm-engine run: {msg}", file=sys.stderr)
        return 2

    # Secrets never reach a log line, whatever logs them (engine.secrets).
    install_redaction()
    try:
        cfg = load_config(args.config) if args.config else Config.default()
    except ConfigError as e:
        return fail(str(e))
    if not args.verbose:
        logging.getLogger().setLevel(cfg.logging.level)
    for f in args.data or ():
        if not Path(f).is_file():
            return fail(f"no such file: {f}")
    live = args.venue == "config"
    if live and (args.data or args.faults):
        return fail("--data and --faults need the embedded simulator (--venue sim)")
    sc = cfg.strategy
    try:
        qty = Decimal(args.qty) if args.qty is not None else sc.order_qty
    except InvalidOperation:
        return fail(f"--qty is not a decimal: {args.qty!r}")
    max_pos = args.max_position_steps if args.max_position_steps is not None else sc.max_position_steps
    if max_pos > cfg.risk.max_position_steps:
        return fail(f"--max-position-steps {max_pos} exceeds risk.max_position_steps {cfg.risk.max_position_steps}")
    state_dir = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fail(f"cannot create the state folder {state_dir}: {e.strerror or e}")
    prefix = cfg.orders.client_id_prefix
    # The restart epoch keeps clientOrderIds unique across runs of this prefix (engine.orders.ids).
    epoch_path = cfg.paths.epoch_state or str(state_dir / f"epoch-{prefix}")
    kill_file = args.kill_file or cfg.paths.kill_file or str(state_dir / KILL_FILE_NAME)
    if os.path.exists(kill_file):
        print(f"mm-engine run: the kill file {kill_file} exists: the run will cancel everything and not quote "
              "(remove the file to trade)", file=sys.stderr)
    duration = args.duration
    if duration is None and not args.data and not live:
        duration = DEFAULT_SYNTHETIC_DURATION_S
    speed = None if args.speed == 0 else args.speed
    plan = None
    if args.faults:
        try:
            from engine.sim.faults import FaultPlan
        except ImportError as e:
            return fail(f"fault plans are not available in this build ({e})")
        try:
            plan = FaultPlan.profile(args.faults, args.seed)
        except ValueError as e:
            return fail(str(e))

    def run_config(**kw) -> RunConfig:
        oc = cfg.orders
        return RunConfig(
            market=cfg.venue.market, duration_s=duration, depth_limit=cfg.venue.depth_limit,
            depth_speed=cfg.venue.depth_speed, recv_window_ms=oc.recv_window_ms, client_id_prefix=prefix,
            epoch_state_path=epoch_path, order_timeout_s=oc.response_timeout_ms / 1000.0,
            cancel_timeout_s=oc.cancel_timeout_ms / 1000.0, shutdown_timeout_s=oc.stop_timeout_ms / 1000.0,
            connect_timeout_s=cfg.reconnect.connect_timeout_ms / 1000.0, liveness=cfg.liveness,
            reconnect=cfg.reconnect, risk=cfg.risk, rate_limit=cfg.rate_limit, dead_man_switch=cfg.dead_man_switch,
            kill_file=kill_file, max_reconnects=None, max_ws_reconnects=None, seed=args.seed, **kw)

    def strategy(symbol: str) -> SymmetricQuoter:
        return SymmetricQuoter(SymmetricConfig(
            symbol=symbol,
            half_spread_ticks=args.half_spread_ticks if args.half_spread_ticks is not None else sc.half_spread_ticks,
            requote_ticks=args.requote_ticks if args.requote_ticks is not None else sc.requote_ticks,
            order_qty=qty, max_position_steps=max_pos, size_up_to_min_notional=sc.size_up_to_min_notional))

    async def main_live():
        try:
            creds = load_credentials(cfg.paths.secrets_file or None, scrub_env=True)
            signer = creds.signer()
        except SecretsError as e:
            print(f"mm-engine run: {e}", file=sys.stderr)
            return None
        symbol = (args.symbol or cfg.symbol).upper()
        try:
            strat = strategy(symbol)
        except ValueError as e:
            print(f"mm-engine run: {e}", file=sys.stderr)
            return None
        print(f"venue: {cfg.venue.ws_api_url} ({cfg.venue.market}), symbol {symbol}, key {creds!r}, "
              f"duration {duration if duration is not None else 'until Ctrl-C'}", file=sys.stderr, flush=True)
        summary = await run(run_config(streams_url=cfg.venue.streams_url, ws_api_url=cfg.venue.ws_api_url,
                                       rest_url=cfg.venue.rest_url, signer=signer, symbol=symbol, strategy=strat))
        return summary, None

    async def main_sim():
        from engine.orders.signing import HmacSigner
        from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET
        from engine.sim.orders import split_symbol
        from engine.sim.server import make_source, start_simulator

        # The simulator's test keys (engine.sim.auth), never real credentials.
        key = os.environ.get("MM_SIM_API_KEY") or DEFAULT_API_KEY
        secret = os.environ.get("MM_SIM_API_SECRET") or DEFAULT_API_SECRET
        kw = {"faults": plan} if plan is not None else {}
        handle = await start_simulator(make_source(list(args.data) if args.data else None, speed=speed), **kw)
        try:
            symbol = (args.symbol or (handle.market.symbols() or [cfg.symbol])[0]).upper()
            try:
                strat = strategy(symbol)
            except ValueError as e:
                print(f"mm-engine run: {e}", file=sys.stderr)
                return None
            print(f"simulator: {handle.streams_url} (market: {'recording' if args.data else 'synthetic'}"
                  f"{f', faults {plan.name} seed {args.seed}' if plan is not None else ''}), symbol {symbol}, "
                  f"duration {duration if duration is not None else 'until the market ends'}",
                  file=sys.stderr, flush=True)
            ex = handle.exchange
            base, quote = split_symbol(symbol)
            start = {a: sum(ex.balance(a)) for a in (base, quote)}
            summary = await run(run_config(streams_url=handle.streams_url, ws_api_url=handle.ws_api_url,
                                           rest_url=handle.rest_url, signer=HmacSigner(key, secret), symbol=symbol,
                                           strategy=strat, stop_when=handle.ended))
            if plan is not None:
                summary = ms.replace(summary, faults_injected=dict(plan.injected))
            # The venue's own account of the run, to cross-check the engine's books.
            venue = {
                "position": str(sum(ex.balance(base)) - start[base]),
                "quote_change": str(sum(ex.balance(quote)) - start[quote]),
                "open_orders": len(ex.open_order_ids(symbol)),
                "client_order_ids_received": sum(ex.received_client_order_ids.values()),
                "duplicate_client_order_ids": len(ex.duplicate_client_order_ids()),
                "rejects_by_code": {str(k): v for k, v in ex.rejects_by_code.items()},
            }
            return summary, venue
        finally:
            await handle.close()

    out = uvloop.run(main_live() if live else main_sim())
    if out is None:
        return 2
    summary, venue = out
    doc = msgspec.to_builtins(summary)
    if venue is not None:
        doc["venue"] = venue
    text = msgspec.json.format(msgspec.json.encode(doc)).decode()
    print(text)
    if args.summary_json:
        Path(args.summary_json).write_text(text + "\n")
    problems = list(summary.stop_report)
    if summary.open_orders_at_exit != 0 and not problems:
        problems.append(f"open orders at exit: {summary.open_orders_at_exit} (-1: the venue could not be asked)")
    if summary.duplicate_client_order_ids:
        problems.append(f"{summary.duplicate_client_order_ids} duplicate clientOrderIds")
    if venue is not None:
        if venue["open_orders"]:
            problems.append(f"the simulator holds {venue['open_orders']} open orders")
        if venue["duplicate_client_order_ids"]:
            problems.append(f"the simulator received {venue['duplicate_client_order_ids']} clientOrderIds twice")
    if summary.unhandled_exceptions:
        print(f"mm-engine run: warning: {summary.unhandled_exceptions} unhandled exceptions (see the log)",
              file=sys.stderr)
    if problems:
        print("mm-engine run: the stop was NOT clean:", file=sys.stderr)
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``mm-engine``."""
    p = argparse.ArgumentParser(prog="mm-engine", description="Low-latency market-making engine.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("book", help="replay a recording through decode, depth sync and the L2 book")
    b.add_argument("files", nargs="+", metavar="FILE", help="recording files of one session, in order")
    b.add_argument("--symbol", help="symbol to replay (default: the first one seen)")
    b.add_argument("--market", choices=["spot", "usdm"], help="force spot or USD-M sync rules")
    b.add_argument("--exchange-info", metavar="PATH", help="exchangeInfo JSON for instruments not built in")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_cmd_book)

    s = sub.add_parser("sim", help="run the loopback Binance-compatible exchange simulator")
    s.add_argument("--data", action="append", metavar="FILE",
                   help="recording to serve (repeatable: the files of one session, in order); "
                        "default: the embedded synthetic market")
    s.add_argument("--port", type=int, default=0, help="streams + WS API port (default: a free port)")
    s.add_argument("--rest-port", type=int, default=0, help="REST port (default: a free port)")
    s.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    s.add_argument("--speed", type=float, default=1.0, help="pace factor over recorded time; 0 = as fast as possible")
    s.add_argument("--serve-after-end", action="store_true", help="keep serving when the market ends")
    s.set_defaults(func=_cmd_sim)

    r = sub.add_parser(
        "run", help="quote over real WebSockets (the embedded loopback simulator by default) and print a summary",
        description="Quote the symmetric strategy, fail closed: a lost or stalled connection halts quoting and "
                    "cancels every open order (WS API, REST as the fallback) until the venue confirms; the kill "
                    "switch is SIGUSR1 (kill -USR1 <pid>) or creating the kill file (default <state dir>/KILL). "
                    "Exit 0 only when the venue reports no open order at the end.")
    r.add_argument("--config", metavar="PATH", help="TOML configuration (mm-engine.example.toml lists every key); "
                                                    "default: the built-in defaults")
    r.add_argument("--venue", choices=["sim", "config"], default="sim",
                   help="sim: the embedded loopback simulator with its test keys (default); config: the venue of "
                        "[venue] in --config, credentials from MM_API_KEY/MM_API_SECRET or paths.secrets_file")
    r.add_argument("--data", action="append", metavar="FILE",
                   help="recording to trade on (repeatable: the files of one session, in order); "
                        "default: the embedded synthetic market")
    r.add_argument("--speed", type=float, default=1.0, help="pace factor over recorded time; 0 = as fast as possible")
    r.add_argument("--duration", type=float, metavar="S",
                   help=f"seconds to quote (default: {DEFAULT_SYNTHETIC_DURATION_S:g} on the synthetic market, "
                        "until the recording ends with --data, until Ctrl-C on a real venue)")
    r.add_argument("--faults", metavar="NAME",
                   help="simulator fault profile (none, drops, stalls, gaps, dupes, latency, errors, chaos)")
    r.add_argument("--seed", type=int, default=0, help="seed of the fault plan and of the reconnect jitter")
    r.add_argument("--summary-json", metavar="PATH", help="also write the summary to this JSON file")
    r.add_argument("--state-dir", metavar="DIR",
                   help="folder of the restart-epoch file (clientOrderIds never repeat across runs) and of the "
                        "default kill file; default $MM_STATE_DIR or $XDG_STATE_HOME/mm-engine "
                        "(~/.local/state/mm-engine)")
    r.add_argument("--kill-file", metavar="PATH",
                   help="kill switch file (default paths.kill_file, else <state dir>/KILL): while it exists the "
                        "run cancels everything and places no order")
    r.add_argument("--symbol", help="symbol to quote (default: the market's first)")
    r.add_argument("--half-spread-ticks", type=int, help="quote distance from mid, ticks (default strategy.*)")
    r.add_argument("--requote-ticks", type=int, help="mid move that triggers a re-quote, ticks")
    r.add_argument("--qty", help="quote size, base currency (floored to the step size)")
    r.add_argument("--max-position-steps", type=int, help="absolute inventory limit, steps")
    r.set_defaults(func=_cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mm-engine`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
