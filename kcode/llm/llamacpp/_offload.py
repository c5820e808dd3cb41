"""Tensor placement for llama.cpp: buffer-type overrides filled in through ctypes.

llama.cpp's ``--override-tensor REGEX=BUFT``, ``--cpu-moe`` and ``--n-cpu-moe N`` all fill
``llama_model_params.tensor_buft_overrides``, a NULL-terminated array of
``{const char *pattern; ggml_backend_buffer_type_t buft}`` where the first matching regex
wins. llama-cpp-python has no keyword for it (the field is a bare ``c_void_p``), so this
module builds the array itself from the ggml libraries that ship inside the installed
``llama_cpp`` package (the same copies libllama uses, so buffer-type pointers compare equal)
and hands its address to the model parameters while ``Llama`` is constructed.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kcode.errors import UsageError
from kcode.llm.gguf import EXPERT_REGEX

__all__ = [
    "BufferOverrides",
    "placement_rules",
    "parse_override",
    "build_overrides",
    "gpu_offload_supported",
    "model_params_with_overrides",
]

_lock = threading.Lock()
_libs: list[ctypes.CDLL] | None = None


class _Override(ctypes.Structure):
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


@dataclass
class BufferOverrides:
    """The C array and the pattern strings it points to; keep alive as long as the model."""

    rules: list[tuple[str, str]]
    array: ctypes.Array  # type: ignore[type-arg]
    patterns: list[bytes]

    @property
    def address(self) -> int:
        return ctypes.addressof(self.array)


def parse_override(spec: str) -> tuple[str, str]:
    """``"REGEX=BUFFER"`` → (regex, buffer); the last ``=`` separates them."""
    pattern, sep, buffer = spec.rpartition("=")
    if not sep or not pattern or not buffer:
        raise UsageError(f"--override-tensor wants REGEX=BUFFER (e.g. 'exps=CPU'), got {spec!r}")
    return pattern, buffer


def placement_rules(
    override_tensor: list[str] | None = None,
    *,
    cpu_moe: bool = False,
    n_cpu_moe: int | None = None,
) -> list[tuple[str, str]]:
    """Rules in llama.cpp's order: explicit overrides first (first match wins), then experts."""
    rules = [parse_override(spec) for spec in override_tensor or []]
    if cpu_moe:
        rules.append((EXPERT_REGEX, "CPU"))
    elif n_cpu_moe:
        rules += [(rf"blk\.{i}{EXPERT_REGEX}", "CPU") for i in range(n_cpu_moe)]
    return rules


def _ggml_libs() -> list[ctypes.CDLL]:
    global _libs
    if _libs is None:
        import llama_cpp

        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        libs = []
        for name in ("libggml-base.so", "libggml.so", "libggml-cpu.so"):
            path = lib_dir / name
            if path.exists():
                libs.append(ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
        if not libs:
            raise UsageError(f"tensor overrides: no ggml libraries found in {lib_dir}")
        _libs = libs
    return _libs


def _symbol(name: str, restype: object, argtypes: list[object]) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    for lib in _ggml_libs():
        try:
            function = getattr(lib, name)
        except AttributeError:
            continue
        function.restype = restype
        function.argtypes = argtypes
        return function
    raise UsageError(f"tensor overrides: ggml has no symbol {name}")


def _devices_buffer_types() -> dict[str, int]:
    """Buffer-type name (upper case, e.g. ``CPU``, ``CUDA0``) → pointer, for every device."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    found: dict[str, int] = {}
    cpu = _symbol("ggml_backend_cpu_buffer_type", ctypes.c_void_p, [])()
    if cpu:
        found["CPU"] = cpu
    dev_count = _symbol("ggml_backend_dev_count", ctypes.c_size_t, [])
    dev_get = _symbol("ggml_backend_dev_get", ctypes.c_void_p, [ctypes.c_size_t])
    dev_buft = _symbol("ggml_backend_dev_buffer_type", ctypes.c_void_p, [ctypes.c_void_p])
    buft_name = _symbol("ggml_backend_buft_name", ctypes.c_char_p, [ctypes.c_void_p])
    for index in range(dev_count()):
        buft = dev_buft(dev_get(index))
        if buft:
            name = (buft_name(buft) or b"").decode().upper()
            found.setdefault(name, buft)
    return found


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build has a GPU backend (CUDA, Metal, Vulkan, ...)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def build_overrides(rules: list[tuple[str, str]]) -> BufferOverrides | None:
    """The NULL-terminated override array for ``rules``; None when there are none."""
    if not rules:
        return None
    buffer_types = _devices_buffer_types()
    array = (_Override * (len(rules) + 1))()
    patterns = []
    for index, (pattern, buffer) in enumerate(rules):
        buft = buffer_types.get(buffer.upper())
        if buft is None:
            raise UsageError(
                f"--override-tensor: unknown buffer type {buffer!r} "
                f"(this build has: {', '.join(sorted(buffer_types))})")
        encoded = pattern.encode()
        patterns.append(encoded)
        array[index].pattern = encoded
        array[index].buft = buft
    array[len(rules)].pattern = None  # the {NULL, NULL} sentinel
    array[len(rules)].buft = None
    return BufferOverrides(rules, array, patterns)


@contextlib.contextmanager
def model_params_with_overrides(overrides: BufferOverrides | None, *, repack: bool = True) -> Iterator[None]:
    """While the block runs, ``llama_model_default_params()`` carries the override array
    (and, with ``repack=False``, ``use_extra_bufts = false``: no CPU weight repacking).

    ``Llama.__init__`` builds its model parameters from that function and has no other way
    in; the lock keeps two concurrent loads from seeing each other's overrides.
    """
    if overrides is None and repack:
        yield
        return
    import llama_cpp.llama_cpp as bindings

    with _lock:
        original = bindings.llama_model_default_params

        def with_overrides() -> object:
            params = original()
            if overrides is not None:
                params.tensor_buft_overrides = overrides.address
            if not repack:
                params.use_extra_bufts = False
            return params

        bindings.llama_model_default_params = with_overrides  # type: ignore[assignment]
        try:
            yield
        finally:
            bindings.llama_model_default_params = original  # type: ignore[assignment]
