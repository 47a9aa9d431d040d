"""The benchmark harness: fastlstm's backends against PyTorch and ONNX Runtime, each checked
against fastlstm's NumPy reference before it is timed.

    python -m fastlstm bench                       # every table (python -m fastlstm.bench too)
    python -m fastlstm bench --shapes 100x1x32x64 100x16x128x256 --threads 1 --json out.json
    python -m fastlstm bench --cells gru --lengths-shapes
    python -m fastlstm bench --shapes 100x1x32x64 --stream-sizes 64 --no-stacks --no-training
    python -m fastlstm.bench.torch_train 1 20      # one table alone: the PyTorch training loop
    python -m fastlstm.bench.fit --threads 1       # fastlstm.fit against a PyTorch loop

The tables, in the order `python -m fastlstm bench` prints them (--json FILE writes them all,
--plot FILE.png draws the first):
    grid         every cell (LSTM, PyTorch's GRU, tanh RNN) at every shape (T, B, I, H) of the
                 grid, and LSTM batches with lengths: inference and training, every contender,
                 the run's thread count (--threads, default 2)
    scaling      the threads table: B = 1 shapes of the grid, inference, each contender at 1
                 and 2 threads and the ratio (--no-scaling skips it)
    per_call     the fixed cost of one call (LSTM, T = 1, B = 1, I = 32, H = 64, one thread):
                 a layer call, fastlstm.forward, a stream step, ONNX Runtime's session.run,
                 torch.nn.LSTM (--no-per-call skips it)
    denormals    LSTM 100x16x128x256 on subnormal-heavy data against normal data, every
                 contender, both modes, the run's thread count (--no-denormals skips it)
    streams      one step of a one-layer LSTM and GRU, B = 1, one thread, the state carried
                 (--stream-sizes with no size skips it)
    stacks       a 2-layer bidirectional LSTM and a 2-layer GRU (--no-stacks skips it)
    torch_train  one epoch of a PyTorch loop: fastlstm.torch.LSTM against torch.nn.LSTM
    fit          fastlstm.fit against the equivalent PyTorch loop on the adding problem
                 (--no-training skips these two; they need torch)

Two reduced-precision tables run instead of those when asked for (fastlstm.bench.quantized):
    quantized           --quantized: fastlstm float32, int8 and bfloat16 (m.quantize) against
                        ONNX Runtime's and torch's int8 and float32 LSTM / GRU, times and errors
                        against float32 (--quantized-shapes, --quantized-gru-shapes)
    quantized_accuracy  --quantized-accuracy: int8 and bfloat16 errors for every cell at the
                        grid's shapes, the peers' int8 errors, the digits and adding demos
                        quantized (--no-demos skips them), silero VAD's LSTM when silero-vad is
                        installed (--no-silero skips it)

The other modules: peers (the contenders, built for one problem, and their checks), timing
(medians of alternating calls), machine (CPU, x86-64 levels, versions, matmul rate, load), cli
(the options). Imports go one way (tests/test_bench_smoke.py checks it): cli imports the
tables; the tables import peers, timing and machine (scaling and quantized also grid, stacks
also streams); machine imports timing. Nothing here imports torch, onnx or onnxruntime until a contender that
needs them is built.
"""
