"""Step-by-step inference with a stream: a trained LSTM fed one frame at a time, as a real-time
audio or sensor pipeline would, with the state carried between calls.

    python examples/stream.py

The stream packs the weights once and keeps the state; each step(x_t) is one call. Its outputs
equal one call of the model over the whole sequence, which the script checks at the end. A
batch of streams can restart one slot (a new sequence arriving there) with reset(rows=[k]).
"""
import time

import numpy as np

import fastlstm

I, H, T = 64, 64, 500
model = fastlstm.LSTM(I, H, num_layers=2, seed=0).eval()   # or load_state_dict(trained)
frames = np.random.default_rng(0).standard_normal((T, 1, I)).astype(np.float32)

stream = model.stream(batch_size=1)
outputs = []
start = time.perf_counter()
for t in range(T):                       # frames arrive one at a time
    outputs.append(stream.step(frames[t]))   # (1, I) -> (1, H)
per_step = (time.perf_counter() - start) / T

y, (h_n, c_n) = model(frames)            # the whole sequence at once, for the check
h, c = stream.state                      # (num_layers, 1, H) each
print(f"{T} steps of a 2-layer LSTM (I=H={H}): {per_step * 1e6:.1f} us per step")
print(f"largest difference from the whole-sequence call: "
      f"{np.abs(np.stack(outputs) - y).max():.1e} (outputs), {np.abs(h - h_n).max():.1e} (h)")
assert np.allclose(np.stack(outputs), y, atol=1e-6) and np.allclose(c, c_n, atol=1e-6)

stream.reset()                           # a new sequence: the state back to zeros
assert not np.any(stream.state[0])
