"""Training pieces (SPEC.md section 9), small and readable, on top of the layers:

    head = fastlstm.Linear(in_features, out_features)          # linear.py, as torch.nn.Linear
    loss, dpred = fastlstm.mse_loss(pred, target)               # losses.py
    loss, dlogits = fastlstm.cross_entropy(logits, labels, lengths=None)
    opt = fastlstm.Adam(modules, lr=1e-3); opt.step(grads)      # optim.py (also SGD)
    norm = fastlstm.clip_grad_norm(grads, max_norm)             # clip.py
    fastlstm.tbptt_windows(T, k); run_windows(module, x, k)     # tbptt.py
    model = fastlstm.ManyToOne(rnn, head)                       # structures.py (also
                                                                # ManyToMany, OneToMany)
    history = fastlstm.fit(model, x, y, loss="mse", epochs=10)  # fit.py: mini-batches,
                                                                # validation, progress, plot
"""
from .clip import clip_grad_norm
from .fit import History, evaluate, fit
from .linear import Linear
from .losses import cross_entropy, mse_loss
from .optim import SGD, Adam
from .structures import ManyToMany, ManyToOne, OneToMany
from .tbptt import detach_state, run_windows, tbptt_windows

__all__ = ["Linear", "mse_loss", "cross_entropy", "SGD", "Adam", "clip_grad_norm",
           "ManyToMany", "ManyToOne", "OneToMany", "tbptt_windows", "detach_state",
           "run_windows", "fit", "evaluate", "History"]
