"""Device and precision choices shared by the search and FuseMix recipes.

``"auto"`` means: CUDA if this process sees a GPU (under Ray Tune, only a trial given a GPU share
sees one), and bf16 autocast on a GPU that supports it; CPUs stay fp32 (bf16 matmuls are hundreds
of times slower on CPUs without AMX). The decisions are pure functions of what the process sees,
so they are tested without a GPU; the ``*_here`` wrappers ask torch.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch


def choose_device(name: str, *, cuda_available: bool, what: str = "device") -> torch.device:
    """``name`` ("auto", "cpu", "cuda", "cuda:1") as a device; a CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if cuda_available else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not cuda_available:
        raise ValueError(f"{what} is {name!r} but CUDA is not available")
    return device


def choose_autocast(precision: str | bool, device: torch.device, *, bf16_supported: bool) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("auto" / "bf16" / "fp32", or a bool: True = bf16) on ``device``.

    "auto" is bf16 on a CUDA device that supports it and fp32 (None) anywhere else.
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and bf16_supported else None
    if precision is True or precision == "bf16":
        return torch.bfloat16
    if precision is False or precision == "fp32":
        return None
    raise ValueError(f"precision must be auto, bf16 or fp32 (got {precision!r})")


def device_here(name: str, what: str = "device") -> torch.device:
    return choose_device(name, cuda_available=torch.cuda.is_available(), what=what)


def autocast_here(precision: str | bool, device: torch.device) -> torch.dtype | None:
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return choose_autocast(precision, device, bf16_supported=supported)


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager[Any]:
    """``torch.autocast`` for ``dtype`` on ``device``'s type; a no-op for None (fp32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


__all__ = ["autocast", "autocast_here", "choose_autocast", "choose_device", "device_here"]
