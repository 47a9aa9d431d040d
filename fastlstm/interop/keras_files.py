"""Reading Keras model files without Keras (zipfile + json + h5py), for fastlstm.from_keras.

    records = read_keras_file(path, config=None)   # [LayerRecord, ...] in model order

What each file holds, as Keras 3 writes it (checked against Keras 3.15):

- `.keras`: a zip archive with `config.json` (the model: {"class_name": "Functional" or
  "Sequential", "config": {"layers": [{"class_name", "config"}, ...]}}), `metadata.json` and
  `model.weights.h5`, whose layout is the one of a `.weights.h5` file.
- `.weights.h5` (model.save_weights): weights only, no architecture. One group per layer of
  the model's `layers` list, named after the layer's *class* (not its name), snake_case, with
  `_1`, `_2`, ... for the second, third, ... layer of one class in the same container:
  `layers/lstm`, `layers/lstm_1`, `layers/simple_rnn`, `layers/bidirectional`, and for a
  nested model `layers/sequential/layers/lstm`. A recurrent layer's arrays are in
  `<layer>/cell/vars/0, 1, 2` = kernel (I, G*H), recurrent_kernel (H, G*H), bias (G*H,) or,
  for a GRU with reset_after=True, (2, 3H) (no `2` with use_bias=False); a Bidirectional's in
  `<layer>/forward_layer/cell/vars/...` and `<layer>/backward_layer/cell/vars/...`. Each
  `vars` group carries the layer's name in its attribute "name". h5py lists groups in
  alphabetical order, so the order of the layers is not in the file.
- legacy `.h5` (model.save("m.h5")): the model's config as JSON in the root attribute
  "model_config", and `model_weights/<layer name>/` per top-level layer, whose attribute
  "weight_names" lists its arrays as paths inside that group, e.g.
  "lstm/lstm_cell/kernel", "bidirectional/forward_gru/gru_cell/bias" (Keras 2 adds ":0";
  a nested model's group lists the arrays of all its layers, "inner/enc/lstm_cell/kernel").
  A legacy weights-only file (Keras 2's save_weights("w.h5")) has "layer_names" at its root
  and no config.

Where the architecture of a weights-only file comes from:

- `config=`: the model's config, as a dict (`model.get_config()`, or the serialized form
  {"class_name": ..., "config": ...} of `config.json` / `model.to_json()`), or the path of a
  `.json` file (`model.to_json()`) or of a `.keras` file (its config.json is used). The
  layers are then matched to the weight groups exactly as Keras's loader matches them.
- without `config=` (Keras 3 `.weights.h5` only): the layers are inferred from the groups.
  The shapes give the kind (G = 4 LSTM, 3 GRU, 1 SimpleRNN, from recurrent_kernel (H, G*H)),
  the sizes, use_bias and, for a GRU, reset_after; `forward_layer`/`backward_layer` groups
  make a Bidirectional (merge_mode "concat" assumed). Everything else is not in the file and
  takes Keras's default: activation "tanh", return_sequences, return_state and go_backwards
  False. Because the order of the groups is not stored, this is allowed only when it is
  unambiguous: one recurrent layer, or several of one class in one container (`lstm`,
  `lstm_1`, ... are numbered in model order); otherwise a ValueError asks for `config=`.

Every problem with a file (missing, not a zip, truncated, no config.json, invalid JSON, no
weights for a recurrent layer, an unknown extension, ...) is a ValueError (FileNotFoundError
when the path does not exist) whose message starts with the path; no zipfile / h5py / json
exception escapes.
"""
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

#: Keras classes whose weights fastlstm reads (the recurrent layers, and their wrappers)
RECURRENT_CLASSES = ("LSTM", "GRU", "SimpleRNN", "RNN")
WRAPPER_CLASSES = ("Bidirectional",)
#: the role of each array of a recurrent cell, in Keras's order
WEIGHT_ROLES = ("kernel", "recurrent_kernel", "bias")


class KerasFileError(ValueError):
    """A file that is not what its name says (a ValueError whose message names the path)."""


@dataclass
class LayerRecord:
    """One layer of a Keras model, read from a file or from a live Keras object.

    class_name: the Keras class ("LSTM", "Bidirectional", "Sequential", "Dense", ...).
    config: the layer's config dict (Keras's get_config()).
    weights: for LSTM / GRU / SimpleRNN / RNN a list [kernel (I, G*H), recurrent_kernel
        (H, G*H), bias] (bias absent with use_bias=False); for a Bidirectional a dict
        {"forward": [...], "backward": [...]}; None for every other layer.
    children: the layers of a nested model, else None.
    where: where the layer comes from, for error messages ("m.keras: layers/lstm").
    inferred: True when the config was inferred from the weights alone (see module doc).
    """

    class_name: str
    config: dict
    weights: object = None
    children: Optional[list] = None
    where: str = ""
    inferred: bool = False
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ helpers


def snake_case(class_name):
    """Keras's group name for a class: "SimpleRNN" -> "simple_rnn", "LSTM" -> "lstm",
    "InputLayer" -> "input_layer" (the rule of keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _text(value):
    """An HDF5 attribute string (str, bytes or a NumPy scalar of either) as str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    return str(value)


def _text_list(value):
    if value is None:
        return []
    return [_text(v) for v in np.atleast_1d(np.asarray(value, dtype=object))]


def _import_h5py(path):
    try:
        import h5py
    except ImportError as exc:   # pragma: no cover - h5py is in the test environment
        raise ImportError(f"{path}: reading Keras weight files needs h5py "
                          f"(pip install h5py, or fastlstm's extra: pip install "
                          f"'fastlstm[keras]'); Keras itself is not needed") from exc
    return h5py


def _is_container(entry_config):
    return isinstance(entry_config, dict) and isinstance(entry_config.get("layers"), list)


def model_layers(model_config):
    """The layer entries ({"class_name", "config"}) of a model config: a serialized model
    {"class_name": ..., "config": {"layers": [...]}}, a bare get_config() {"layers": [...]},
    or Keras 2.0's Sequential config (a list of layer entries)."""
    cfg = model_config
    if isinstance(cfg, dict) and "class_name" in cfg and "config" in cfg:
        cfg = cfg["config"]
    if isinstance(cfg, list):
        return cfg
    if _is_container(cfg):
        return cfg["layers"]
    return None


def _entry_parts(entry, where):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config", {}), dict):
        raise KerasFileError(f"{where}: a layer entry of the model config is not "
                             f"{{'class_name': ..., 'config': {{...}}}}: {entry!r:.200}")
    return entry["class_name"], entry.get("config", {})


def _check_array(where, value):
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise KerasFileError(f"{where}: expected a float array, got dtype {arr.dtype}")
    return np.array(arr)   # a copy in memory (the file is closed afterwards)


def _read_weights(rec, reader, *args):
    """rec.weights = reader(*args); a KerasFileError is kept in rec.extra["weights_error"]
    and raised by the converter after the layer's options are checked (an unsupported
    option is the more useful message)."""
    try:
        rec.weights = reader(*args)
    except KerasFileError as exc:
        rec.extra["weights_error"] = exc


# ------------------------------------------------------------------------------ weight stores


class _Keras3Store:
    """Weights in Keras 3's layout (`.weights.h5`, and model.weights.h5 in a `.keras`)."""

    def __init__(self, h5file, label):
        self.f = h5file
        self.label = label

    def _vars(self, group_path):
        """[vars/0, vars/1, ...] of the group at `group_path` (a list of arrays)."""
        where = f"{self.label}: {group_path}/vars"
        g = self.f.get(f"{group_path}/vars")
        if g is None or not hasattr(g, "keys"):
            raise KerasFileError(f"{where}: missing (no weights for this layer; is the file "
                                 f"from another model?)")
        keys = sorted((k for k in g.keys() if k.isdigit()), key=int)
        if keys != [str(i) for i in range(len(keys))]:
            raise KerasFileError(f"{where}: expected arrays 0, 1, 2, got {sorted(g.keys())}")
        return [_check_array(f"{where}/{k}", g[k][()]) for k in keys]

    def recurrent(self, path):
        return self._vars(f"{path}/cell")

    def bidirectional(self, path):
        return {"forward": self._vars(f"{path}/forward_layer/cell"),
                "backward": self._vars(f"{path}/backward_layer/cell")}

    def walk(self, entries, prefix):
        """LayerRecords for the config `entries` of the container whose weights are under
        `prefix` ("layers" at the top, "layers/sequential/layers" for a nested model)."""
        used = {}
        records = []
        for entry in entries:
            class_name, cfg = _entry_parts(entry, self.label)
            base = snake_case(class_name)
            if base in used:
                used[base] += 1
                name = f"{base}_{used[base]}"
            else:
                used[base] = 0
                name = base
            path = f"{prefix}/{name}"
            where = f"{self.label}: {path}"
            rec = LayerRecord(class_name, cfg, where=where)
            if class_name in RECURRENT_CLASSES:
                _read_weights(rec, self.recurrent, path)
            elif class_name in WRAPPER_CLASSES:
                _read_weights(rec, self.bidirectional, path)
            elif _is_container(cfg):
                rec.children = self.walk(cfg["layers"], f"{path}/layers")
            records.append(rec)
        return records

    # -------------------------------------------------------------- no config: infer
    def infer(self):
        """LayerRecords inferred from the groups alone (see the module docstring)."""
        found = []   # (container path, base name, index, record)
        self._infer_in("layers", found)
        if not found:
            raise KerasFileError(f"{self.label}: no recurrent layer found in the weights "
                                 f"(expected groups such as layers/lstm/cell/vars)")
        containers = {c for c, _, _, _ in found}
        bases = {b for _, b, _, _ in found}
        if len(found) > 1 and (len(containers) > 1 or len(bases) > 1):
            paths = sorted(r.where.split(": ", 1)[1] for _, _, _, r in found)
            raise KerasFileError(
                f"{self.label}: a weights-only file does not store the order of its layers, "
                f"and {paths} could be in any order; pass config= (the model's config dict, "
                f"or a .json / .keras file with it)")
        found.sort(key=lambda t: t[2])
        return [r for _, _, _, r in found]

    def _infer_in(self, prefix, found):
        g = self.f.get(prefix)
        if g is None or not hasattr(g, "keys"):
            return
        for key in g.keys():
            m = re.fullmatch(r"(.*?)(?:_(\d+))?", key)
            base, index = m.group(1), int(m.group(2) or 0)
            path = f"{prefix}/{key}"
            sub = g[key]
            if not hasattr(sub, "keys"):
                continue
            rec = None
            if "forward_layer" in sub and "backward_layer" in sub:
                weights = self.bidirectional(path)
                fw = self._infer_config(weights["forward"], path, "forward")
                bw = self._infer_config(weights["backward"], path, "backward")
                bw["config"]["go_backwards"] = True
                rec = LayerRecord("Bidirectional",
                                  {"name": self._name(path, key), "merge_mode": "concat",
                                   "layer": fw, "backward_layer": bw},
                                  weights=weights, inferred=True)
            elif "cell" in sub:
                weights = self.recurrent(path)
                entry = self._infer_config(weights, path, None)
                rec = LayerRecord(entry["class_name"], entry["config"], weights=weights,
                                  inferred=True)
                rec.config["name"] = self._name(path, key)
            elif "layers" in sub:
                self._infer_in(f"{path}/layers", found)
            if rec is not None:
                rec.where = f"{self.label}: {path}"
                found.append((prefix, base, index, rec))

    def _name(self, path, default):
        g = self.f.get(f"{path}/vars")
        if g is not None and "name" in g.attrs:
            return _text(g.attrs["name"])
        return default

    def _infer_config(self, weights, path, direction):
        where = f"{self.label}: {path}" + (f" ({direction} layer)" if direction else "")
        if len(weights) not in (2, 3) or weights[1].ndim != 2 or weights[1].shape[0] == 0 \
                or weights[1].shape[1] % weights[1].shape[0]:
            raise KerasFileError(f"{where}: expected [kernel (I, G*H), recurrent_kernel "
                                 f"(H, G*H), bias], got shapes "
                                 f"{[w.shape for w in weights]}")
        H = weights[1].shape[0]
        G = weights[1].shape[1] // H
        class_name = {4: "LSTM", 3: "GRU", 1: "SimpleRNN"}.get(G)
        if class_name is None:
            raise KerasFileError(f"{where}: recurrent_kernel shape {weights[1].shape} is "
                                 f"(H, G*H) with G = {G}: not an LSTM (4), GRU (3) or "
                                 f"SimpleRNN (1)")
        cfg = {"name": f"{direction}_{snake_case(class_name)}" if direction else "",
               "units": H, "use_bias": len(weights) == 3}
        if class_name == "GRU":
            cfg["reset_after"] = len(weights) == 3 and weights[2].ndim == 2
        return {"class_name": class_name, "config": cfg}


class _LegacyStore:
    """Weights in the legacy HDF5 layout (model_weights/<layer name>/, "weight_names")."""

    def __init__(self, group, label):
        self.g = group
        self.label = label

    def _arrays(self, top, name):
        """{role: array} for the arrays of layer `name` in the group of top-level layer `top`
        ({"forward": {...}, "backward": {...}} keys are made by the caller)."""
        where = f"{self.label}: model_weights/{top}"
        grp = self.g.get(top)
        if grp is None or not hasattr(grp, "attrs"):
            raise KerasFileError(f"{where}: missing (no weights for layer {name!r})")
        names = _text_list(grp.attrs.get("weight_names"))
        out = []
        for wname in names:
            parts = wname.split("/")
            if top != name and name not in parts[:-1]:
                continue
            role = parts[-1].split(":")[0]
            try:
                arr = grp[wname][()]
            except (KeyError, OSError, ValueError) as exc:
                raise KerasFileError(f"{where}: weight {wname!r} is listed but cannot be "
                                     f"read ({exc})") from None
            out.append((parts, role, _check_array(f"{where}/{wname}", arr)))
        return out

    @staticmethod
    def _ordered(items, where):
        by_role = {}
        for _, role, arr in items:
            if role in by_role or role not in WEIGHT_ROLES:
                raise KerasFileError(f"{where}: unexpected weight {role!r} (expected "
                                     f"kernel, recurrent_kernel and bias once each)")
            by_role[role] = arr
        if "kernel" not in by_role or "recurrent_kernel" not in by_role:
            raise KerasFileError(f"{where}: missing weights (found {sorted(by_role)}; "
                                 f"expected kernel, recurrent_kernel, bias)")
        return [by_role[r] for r in WEIGHT_ROLES if r in by_role]

    def recurrent(self, top, name):
        where = f"{self.label}: model_weights/{top} (layer {name!r})"
        return self._ordered(self._arrays(top, name), where)

    def bidirectional(self, top, name):
        items = self._arrays(top, name)
        out = {}
        for direction in ("forward", "backward"):
            mine = [it for it in items
                    if any(p.startswith(direction + "_") for p in it[0][:-1])]
            out[direction] = self._ordered(
                mine, f"{self.label}: model_weights/{top} (layer {name!r}, {direction})")
        return out

    def walk(self, entries, top=None):
        records = []
        for entry in entries:
            class_name, cfg = _entry_parts(entry, self.label)
            name = cfg.get("name") if isinstance(cfg, dict) else None
            if not isinstance(name, str):
                name = entry.get("name") if isinstance(entry.get("name"), str) else ""
            here = top if top is not None else name
            rec = LayerRecord(class_name, cfg, where=f"{self.label}: model_weights/{here}"
                              + (f" (layer {name!r})" if here != name else ""))
            if class_name in RECURRENT_CLASSES:
                _read_weights(rec, self.recurrent, here, name)
            elif class_name in WRAPPER_CLASSES:
                _read_weights(rec, self.bidirectional, here, name)
            elif _is_container(cfg):
                rec.children = self.walk(cfg["layers"], here)
            records.append(rec)
        return records


# ------------------------------------------------------------------------------ configs


def load_config(config, label="config"):
    """A model config from `config`: a dict (or list), or the path of a .json / .keras file."""
    if isinstance(config, (dict, list)):
        return config
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if path.endswith(".keras"):
            with _open_zip(path) as zf:
                return _zip_config(zf, path)
        if path.endswith(".json"):
            if not os.path.exists(path):
                raise FileNotFoundError(f"{label}: no such file: {path!r}")
            try:
                with open(path, "rb") as fh:
                    return json.loads(fh.read().decode("utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise KerasFileError(f"{path}: not a JSON model config ({exc})") from None
        raise KerasFileError(f"{label}: expected a .json or .keras file with the model's "
                             f"config, got {path!r}")
    raise TypeError(f"{label}: expected a model config dict or the path of a .json or "
                    f".keras file, got {type(config).__name__}")


def _config_entries(config, label):
    entries = model_layers(config)
    if entries is not None:
        return entries
    raise KerasFileError(f"{label}: not a Keras model config (expected {{'class_name': ..., "
                         f"'config': {{'layers': [...]}}}} or {{'layers': [...]}})")


# ------------------------------------------------------------------------------ files


def _open_zip(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise KerasFileError(f"{path}: not a .keras file (not a readable zip archive: "
                             f"{exc})") from None


def _zip_member(zf, path, member):
    try:
        return zf.read(member)
    except KeyError:
        raise KerasFileError(f"{path}: not a .keras file (the archive has no {member}; it "
                             f"holds {zf.namelist()[:10]})") from None
    except Exception as exc:   # zlib.error, BadZipFile (CRC), EOFError on a truncated file
        raise KerasFileError(f"{path}: {member} cannot be read from the archive "
                             f"({type(exc).__name__}: {exc})") from None


def _zip_config(zf, path):
    raw = _zip_member(zf, path, "config.json")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise KerasFileError(f"{path}: config.json is not valid JSON ({exc})") from None


def _open_h5(h5py, source, label):
    try:
        return h5py.File(source, "r")
    except Exception as exc:   # OSError for anything that is not HDF5 or is truncated
        raise KerasFileError(f"{label}: not a readable HDF5 file ({exc})") from None


def _with_h5_errors(label, fn):
    """Run fn(), turning h5py's KeyError/OSError/TypeError into KerasFileError."""
    try:
        return fn()
    except (KerasFileError, FileNotFoundError):
        raise
    except (KeyError, OSError, TypeError, AttributeError, ValueError) as exc:
        raise KerasFileError(f"{label}: unexpected content ({type(exc).__name__}: "
                             f"{exc})") from None


def read_keras_file(path, config=None):
    """The layers of the Keras model stored at `path`, as LayerRecords in model order.

    path: a `.keras` file, a `.weights.h5` file, or a legacy `.h5` / `.hdf5` file.
    config: only for weights-only files (see the module docstring); a ValueError otherwise.
    """
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith(".keras"):
        kind = "keras"
    elif lower.endswith(".weights.h5"):
        kind = "weights"
    elif lower.endswith((".h5", ".hdf5")):
        kind = "legacy"
    else:
        raise KerasFileError(f"{path}: unknown extension; expected a .keras, .weights.h5 or "
                             f"legacy .h5 / .hdf5 Keras file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    h5py = _import_h5py(path)
    if config is not None and kind != "keras":
        config = load_config(config)

    if kind == "keras":
        if config is not None:
            raise KerasFileError(f"config: a .keras file holds its own config; config= is for "
                                 f"weights-only files (got it with {path!r})")
        with _open_zip(path) as zf:
            model_config = _zip_config(zf, path)
            weights = _zip_member(zf, path, "model.weights.h5")
        entries = _config_entries(model_config, f"{path}: config.json")
        label = f"{path}: model.weights.h5"
        with _open_h5(h5py, io.BytesIO(weights), label) as f:
            store = _Keras3Store(f, label)
            return _with_h5_errors(label, lambda: store.walk(entries, "layers"))

    with _open_h5(h5py, path, path) as f:
        def read():
            model_config = f.attrs.get("model_config")
            if model_config is not None:
                if config is not None:
                    raise KerasFileError(f"config: {path!r} holds its own model config; "
                                         f"config= is for weights-only files")
                try:
                    cfg = json.loads(_text(model_config))
                except ValueError as exc:
                    raise KerasFileError(f"{path}: attribute model_config is not valid JSON "
                                         f"({exc})") from None
                if "model_weights" not in f:
                    raise KerasFileError(f"{path}: legacy Keras file without model_weights "
                                         f"(a model saved without its weights?)")
                store = _LegacyStore(f["model_weights"], path)
                return store.walk(_config_entries(cfg, f"{path}: model_config"))
            if "layers" in f and hasattr(f["layers"], "keys"):   # Keras 3 weights layout
                store = _Keras3Store(f, path)
                if config is None:
                    return store.infer()
                return store.walk(_config_entries(config, "config"), "layers")
            if "layer_names" in f.attrs:   # legacy weights-only (Keras 2 save_weights)
                if config is None:
                    raise KerasFileError(f"{path}: a legacy weights-only file; pass config= "
                                         f"(the model's config dict, or a .json / .keras "
                                         f"file with it)")
                store = _LegacyStore(f, path)
                return store.walk(_config_entries(config, "config"))
            raise KerasFileError(f"{path}: not a Keras file (no model_config, no layers/ "
                                 f"group, no layer_names; the keys are {list(f.keys())[:10]})")

        return _with_h5_errors(path, read)


__all__ = ["KerasFileError", "LayerRecord", "RECURRENT_CLASSES", "WRAPPER_CLASSES",
           "load_config", "model_layers", "read_keras_file", "snake_case"]
