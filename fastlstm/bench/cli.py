"""The command line of the bench: `python -m fastlstm bench [options]` (or
`python -m fastlstm.bench`). main() runs the tables one after the other (see
fastlstm.bench's docstring), prints each as soon as it is done, and with --json writes them
all to one file."""
import argparse
import json
import sys
from typing import List, Sequence

import fastlstm

from . import denormals, grid, per_call, peers, quantized, scaling, stacks, streams
from .machine import DEFAULT_PEAK_SIZE
from .timing import DEFAULT_MIN_TIME, DEFAULT_REPEATS, DEFAULT_WARMUP, Progress


def _split_list(values: Sequence[str]) -> List[str]:
    """['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [v for item in values for v in item.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    shape_label = grid.shape_label
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm bench",
        description="Time fastlstm's backends against torch.nn.LSTM / GRU / RNN and "
                    "onnxruntime's LSTM / GRU / RNN operators on the same float32 weights and "
                    "inputs (padded batches, and LSTM batches with lengths), after checking "
                    "every contender against fastlstm's NumPy reference.",
        epilog="Example: python -m fastlstm bench --shapes 100x1x32x64,100x16x128x256 "
               "--threads 1 --json bench.json")
    parser.add_argument("--shapes", nargs="+", metavar="TxBxIxH",
                        default=[shape_label(s) for s in grid.DEFAULT_SHAPES],
                        help="shapes, space- or comma-separated (default: "
                             + " ".join(shape_label(s) for s in grid.DEFAULT_SHAPES) + ")")
    parser.add_argument("--cells", nargs="+", default=list(peers.CELLS),
                        help="cells to run at every shape, any of " + ", ".join(peers.CELLS)
                             + " (default: all)")
    parser.add_argument("--lengths-shapes", nargs="*", metavar="TxBxIxH",
                        default=[shape_label(s) for s in grid.DEFAULT_LENGTHS_SHAPES],
                        help="shapes of the variable-length LSTM cases, lengths uniform in "
                             "[T/10, T]; give none to skip them (default: "
                             + " ".join(shape_label(s) for s in grid.DEFAULT_LENGTHS_SHAPES)
                             + ")")
    parser.add_argument("--no-denormals", action="store_true",
                        help="skip the denormals table (LSTM 100x16x128x256 on subnormal-heavy "
                             "data against normal data, every contender, both modes)")
    parser.add_argument("--no-scaling", action="store_true",
                        help="skip the threads table (the B=1 shapes of --shapes, every cell "
                             "of --cells, inference: cython, onnxruntime and torch at 1 and 2 "
                             "threads)")
    parser.add_argument("--no-per-call", action="store_true",
                        help="skip the per-call table (the fixed cost of one call: LSTM "
                             "T=1, B=1, I=32, H=64, one thread)")
    parser.add_argument("--stream-sizes", nargs="*", type=int,
                        default=list(streams.DEFAULT_SIZES), metavar="N",
                        help="I = H of the stream table (one step, B=1, one thread, LSTM and "
                             "GRU); give none to skip it (default: "
                             + " ".join(map(str, streams.DEFAULT_SIZES)) + ")")
    parser.add_argument("--no-stacks", action="store_true",
                        help="skip the layer-stack table (a 2-layer bidirectional LSTM and a "
                             "2-layer GRU at 100x16x128x256)")
    parser.add_argument("--no-training", action="store_true",
                        help="skip the training-loop tables (fastlstm.torch.LSTM against "
                             "torch.nn.LSTM in a PyTorch loop; fastlstm.fit against a PyTorch "
                             "loop on the adding problem); they need torch")
    parser.add_argument("--quantized", action="store_true",
                        help="run the reduced-precision table instead of the others: fastlstm "
                             "float32, int8 and bfloat16 (m.quantize) against ONNX Runtime's "
                             "int8 LSTM (DynamicQuantizeLSTM), torch's dynamic int8 LSTM / GRU "
                             "and both float32, each time with its error against fastlstm "
                             "float32, at --quantized-shapes (LSTM) and --quantized-gru-shapes "
                             "(GRU), --threads threads")
    parser.add_argument("--quantized-shapes", nargs="*", metavar="TxBxIxH",
                        default=[shape_label(s) for s in quantized.DEFAULT_QUANTIZED_SHAPES],
                        help="LSTM shapes of --quantized (default: "
                             + " ".join(shape_label(s) for s in
                                        quantized.DEFAULT_QUANTIZED_SHAPES) + ")")
    parser.add_argument("--quantized-gru-shapes", nargs="*", metavar="TxBxIxH",
                        default=[shape_label(s) for s in quantized.DEFAULT_QUANTIZED_GRU_SHAPES],
                        help="GRU shapes of --quantized (default: "
                             + " ".join(shape_label(s) for s in
                                        quantized.DEFAULT_QUANTIZED_GRU_SHAPES) + ")")
    parser.add_argument("--quantized-accuracy", action="store_true",
                        help="run the reduced-precision accuracy report instead of the other "
                             "tables (with --quantized: both): int8 and bfloat16 errors "
                             "against float32 for every cell at --accuracy-shapes, ONNX "
                             "Runtime's and torch's int8 errors where they exist, the digits "
                             "and adding demos quantized, silero VAD's LSTM when silero-vad "
                             "is installed")
    parser.add_argument("--accuracy-shapes", nargs="+", metavar="TxBxIxH",
                        default=[shape_label(s) for s in grid.DEFAULT_SHAPES],
                        help="shapes of --quantized-accuracy (default: the grid's)")
    parser.add_argument("--no-demos", action="store_true",
                        help="--quantized-accuracy without the demos (training the digits and "
                             "adding models takes about 5 s on one core)")
    parser.add_argument("--no-silero", action="store_true",
                        help="--quantized-accuracy without silero VAD")
    parser.add_argument("--threads", type=int, default=grid.DEFAULT_THREADS,
                        help="threads for everyone: BLAS/OpenMP pools (threadpoolctl), "
                             "torch.set_num_threads, onnxruntime intra-op (default %(default)s)")
    parser.add_argument("--modes", nargs="+", default=list(peers.MODES),
                        help="inference and/or training (default: both)")
    parser.add_argument("--contenders", nargs="+", default=None,
                        help="any of " + ", ".join(peers.CONTENDERS)
                             + " ('ort' = onnxruntime; default: all installed)")
    parser.add_argument("--min-time", type=float, default=DEFAULT_MIN_TIME,
                        help="time each callable for at least this many seconds "
                             "(default %(default)s)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="and for at least this many calls (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="untimed calls before timing, at least 1 (default %(default)s)")
    parser.add_argument("--peak-size", type=int, default=DEFAULT_PEAK_SIZE,
                        help="n of the n x n float32 matmul that measures the machine's rate "
                             "(default %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also draw a bar chart (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress line on stderr")
    return parser


def _contenders(parser, args):
    """(contender names, {name: why skipped}) from --contenders (default: all installed)."""
    skipped = {}
    if args.contenders is None:
        from .._backends import unavailable_backends

        contenders = list(fastlstm.available_backends())
        skipped.update(unavailable_backends())
        for peer in peers.PEERS:
            ok, why = peers.peer_available(peer)
            if ok:
                contenders.append(peer)
            else:
                skipped[peer] = f"not installed: {why}"
        return contenders, skipped
    try:
        contenders = list(dict.fromkeys(peers.canonical_name(n)
                                        for n in _split_list(args.contenders)))
    except ValueError as exc:
        parser.error(f"--contenders: {exc}")
    available = set(peers.available_contenders())
    missing = [n for n in contenders if n not in available]
    if missing:
        parser.error(f"--contenders: not available here: {', '.join(missing)} "
                     f"(available: {', '.join(sorted(available))})")
    return contenders, skipped


def main(argv=None) -> int:
    """Entry point of `python -m fastlstm bench ARGS`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))

    try:
        shapes = [grid.parse_shape(s) for s in _split_list(args.shapes)]
        lengths_shapes = [grid.parse_shape(s) for s in _split_list(args.lengths_shapes)]
    except ValueError as exc:
        parser.error(str(exc))
    cells = _split_list(args.cells)
    for c in cells:
        if c not in peers.CELLS:
            parser.error(f"--cells: unknown cell {c!r}; choose from {', '.join(peers.CELLS)}")
    modes = _split_list(args.modes)
    for m in modes:
        if m not in peers.MODES:
            parser.error(f"--modes: unknown mode {m!r}; choose from {', '.join(peers.MODES)}")
    if args.threads < 1 or args.repeats < 1 or args.min_time < 0 or args.peak_size < 1:
        parser.error("--threads, --repeats and --peak-size must be positive, --min-time >= 0")
    if any(n < 1 for n in args.stream_sizes):
        parser.error("--stream-sizes: expected positive integers")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, which is not installed "
                         "(pip install matplotlib); run again without --plot")
    contenders, skipped = _contenders(parser, args)
    progress = Progress(enabled=not args.no_progress)
    timing = dict(min_time=args.min_time, repeats=args.repeats)
    data = {}
    if args.quantized or args.quantized_accuracy:
        return _main_quantized(parser, args, contenders, progress, timing)

    try:
        result = grid.run_benchmark(shapes, modes, contenders, threads=args.threads,
                                    warmup=args.warmup, peak_size=args.peak_size,
                                    progress=progress, cells=cells,
                                    lengths_shapes=lengths_shapes, **timing)
        print(grid.format_report(result, skipped), flush=True)
        data.update(grid.to_json(result, skipped))
        if not args.no_scaling:
            b1 = scaling.batch_of_one(shapes)
            if b1:
                table = scaling.run_scaling(contenders, b1, cells, progress=progress, **timing)
                print(scaling.format_scaling(table), flush=True)
                data["scaling"] = scaling.to_json(table)
            else:
                print("\nthreads table: no B=1 shape in --shapes, nothing to run", flush=True)
        if not args.no_per_call:
            table = per_call.run_per_call(contenders, **timing)
            print(per_call.format_per_call(table), flush=True)
            data["per_call"] = per_call.to_json(table)
        if not args.no_denormals:
            table = denormals.run_denormals(contenders, args.threads, progress=progress,
                                            **timing)
            print(denormals.format_denormals(table), flush=True)
            data["denormals"] = denormals.to_json(table)
        rows = []
        if args.stream_sizes:
            rows = streams.run_streams(contenders, args.stream_sizes, **timing)
            print(streams.format_streams(rows), flush=True)
        data["streams"] = [r.as_dict() for r in rows]
        rows = []
        if not args.no_stacks:
            rows = stacks.run_stacks(contenders, args.threads, **timing)
            print(stacks.format_stacks(rows, args.threads), flush=True)
        data["stacks"] = [r.as_dict() for r in rows]
    except peers.MismatchError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    data["training"] = {}
    if not args.no_training and "torch" in contenders:
        from . import fit, torch_train

        data["training"]["torch_loop"] = torch_train.run(threads=args.threads,
                                                         repeats=args.repeats)
        print("\n" + torch_train.format(data["training"]["torch_loop"]), flush=True)
        data["training"]["fit"] = fit.run(threads=args.threads, repeats=args.repeats)
        print("\n" + fit.format(data["training"]["fit"]), flush=True)
        if args.threads != 1:   # issue 17's fit target is at 1 thread too
            data["training"]["fit_1_thread"] = fit.run(threads=1, repeats=args.repeats)
            print("\n" + fit.format(data["training"]["fit_1_thread"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
        print(f"\nwrote {args.json}")
    if args.plot:
        grid.plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _main_quantized(parser, args, contenders, progress, timing) -> int:
    """--quantized and / or --quantized-accuracy: those tables only (fastlstm.bench.quantized),
    and the JSON {"quantized": ..., "quantized_accuracy": ...}."""
    try:
        shapes = [grid.parse_shape(s) for s in _split_list(args.quantized_shapes)]
        gru_shapes = [grid.parse_shape(s) for s in _split_list(args.quantized_gru_shapes)]
        accuracy_shapes = [grid.parse_shape(s) for s in _split_list(args.accuracy_shapes)]
    except ValueError as exc:
        parser.error(str(exc))
    data = {}
    try:
        chosen = [p for p in peers.PEERS if p in contenders]
        if args.quantized:
            result = quantized.run_quantized(shapes, gru_shapes, threads=args.threads,
                                             warmup=args.warmup, peers_to_run=chosen,
                                             progress=progress, **timing)
            print(quantized.format_quantized(result), flush=True)
            data["quantized"] = quantized.to_json(result)
        if args.quantized_accuracy:
            result = quantized.run_accuracy(accuracy_shapes, demos=not args.no_demos,
                                            silero=not args.no_silero, threads=args.threads,
                                            peers_to_run=chosen, progress=progress)
            print(quantized.format_accuracy(result), flush=True)
            data["quantized_accuracy"] = quantized.accuracy_to_json(result)
    except peers.MismatchError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0
