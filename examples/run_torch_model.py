"""Run a trained PyTorch LSTM in fastlstm: load its state_dict, then call the fastlstm layer.

    python examples/run_torch_model.py

Builds a 2-layer bidirectional torch.nn.LSTM (standing in for a trained model; with a real
one, load its state_dict from disk), copies its weights into fastlstm.LSTM with
load_state_dict (no reordering: the keys and gate layouts are PyTorch's), runs both on the same
batch of sequences of different lengths, and prints the largest difference. Needs PyTorch
(CPU build); without it the script says so and exits with status 1.
"""
import sys

import numpy as np

import fastlstm

try:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except ImportError:
    sys.exit("this example needs PyTorch: pip install torch==2.13.0 "
             "--index-url https://download.pytorch.org/whl/cpu")

T, B, I, H = 50, 4, 16, 32
torch.manual_seed(0)
trained = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True).eval()

model = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True)
model.load_state_dict(trained.state_dict())      # tensors are fine; copied into NumPy
model.eval()

x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
lengths = np.array([50, 17, 33, 8])               # unsorted: no sorting asked

y, (h_n, c_n) = model(x, lengths=lengths)         # y (T, B, 2H), h_n and c_n (4, B, H)

with torch.no_grad():
    packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                  enforce_sorted=False)
    out, (h_ref, c_ref) = trained(packed)
    y_ref = pad_packed_sequence(out, total_length=T)[0].numpy()

print(f"y {y.shape}, h_n {h_n.shape}, c_n {c_n.shape}")
print(f"largest difference from torch: y {np.abs(y - y_ref).max():.1e}, "
      f"h_n {np.abs(h_n - h_ref.numpy()).max():.1e}, c_n {np.abs(c_n - c_ref.numpy()).max():.1e}")
assert np.allclose(y, y_ref, atol=1e-5) and np.allclose(h_n, h_ref.numpy(), atol=1e-5)
