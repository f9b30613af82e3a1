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


def _cmd_run(args: argparse.Namespace) -> int:
    import os
    from decimal import Decimal, InvalidOperation

    import uvloop

    from engine.live.runner import RunConfig, run
    from engine.orders.signing import HmacSigner
    from engine.sim.auth import DEFAULT_API_KEY, DEFAULT_API_SECRET
    from engine.sim.orders import split_symbol
    from engine.sim.server import make_source, start_simulator
    from strategies.symmetric import SymmetricConfig, SymmetricQuoter

    for f in args.data or ():
        if not Path(f).is_file():
            print(f"mm-engine run: no such file: {f}", file=sys.stderr)
            return 2
    try:
        qty = Decimal(args.qty)
    except InvalidOperation:
        print(f"mm-engine run: --qty is not a decimal: {args.qty!r}", file=sys.stderr)
        return 2
    duration = args.duration
    if duration is None and not args.data:
        duration = DEFAULT_SYNTHETIC_DURATION_S
    speed = None if args.speed == 0 else args.speed
    key = os.environ.get("MM_SIM_API_KEY") or DEFAULT_API_KEY
    secret = os.environ.get("MM_SIM_API_SECRET") or DEFAULT_API_SECRET

    async def main():
        handle = await start_simulator(make_source(list(args.data) if args.data else None, speed=speed))
        try:
            symbol = (args.symbol or (handle.market.symbols() or ["BTCUSDT"])[0]).upper()
            try:
                strat = SymmetricQuoter(SymmetricConfig(
                    symbol=symbol, half_spread_ticks=args.half_spread_ticks, requote_ticks=args.requote_ticks,
                    order_qty=qty, max_position_steps=args.max_position_steps))
            except ValueError as e:
                print(f"mm-engine run: {e}", file=sys.stderr)
                return None
            print(f"simulator: {handle.streams_url} (market: {'recording' if args.data else 'synthetic'}), "
                  f"symbol {symbol}, duration {duration if duration is not None else 'until the market ends'}",
                  file=sys.stderr, flush=True)
            ex = handle.exchange
            base, quote = split_symbol(symbol)
            start = {a: sum(ex.balance(a)) for a in (base, quote)}
            summary = await run(RunConfig(
                streams_url=handle.streams_url, ws_api_url=handle.ws_api_url,
                signer=HmacSigner(key, secret), symbol=symbol, strategy=strat,
                duration_s=duration, stop_when=handle.ended))
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

    out = uvloop.run(main())
    if out is None:
        return 2
    summary, venue = out
    doc = msgspec.to_builtins(summary)
    doc["venue"] = venue
    text = msgspec.json.format(msgspec.json.encode(doc)).decode()
    print(text)
    if args.summary_json:
        Path(args.summary_json).write_text(text + "\n")
    ok = (summary.open_orders_at_exit == 0 and summary.duplicate_client_order_ids == 0
          and venue["open_orders"] == 0 and venue["duplicate_client_order_ids"] == 0)
    return 0 if ok else 1


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

    r = sub.add_parser("run", help="quote against the loopback simulator over real WebSockets and print a summary")
    r.add_argument("--data", action="append", metavar="FILE",
                   help="recording to trade on (repeatable: the files of one session, in order); "
                        "default: the embedded synthetic market")
    r.add_argument("--speed", type=float, default=1.0, help="pace factor over recorded time; 0 = as fast as possible")
    r.add_argument("--duration", type=float, metavar="S",
                   help=f"seconds to quote (default: {DEFAULT_SYNTHETIC_DURATION_S:g} on the synthetic market, "
                        "until the recording ends with --data)")
    r.add_argument("--summary-json", metavar="PATH", help="also write the summary to this JSON file")
    r.add_argument("--symbol", help="symbol to quote (default: the market's first)")
    r.add_argument("--half-spread-ticks", type=int, default=5, help="quote distance from mid, ticks")
    r.add_argument("--requote-ticks", type=int, default=2, help="mid move that triggers a re-quote, ticks")
    r.add_argument("--qty", default="0.001", help="quote size, base currency (floored to the step size)")
    r.add_argument("--max-position-steps", type=int, default=1000, help="absolute inventory limit, steps")
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
