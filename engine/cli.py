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
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mm-engine`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
