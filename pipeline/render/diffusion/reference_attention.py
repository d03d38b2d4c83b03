"""Reference-only attention: the reference portrait's own keys and values join every frame's
self-attention, so the model copies its identity (skin, eyes, hair, lighting) instead of inventing one.

How (the "reference-only" scheme of ControlNet's reference preprocessor, done as diffusers attention
processors): at each denoising step the UNet first runs once on the reference latents, noised to the
same timestep with a fixed noise, with the same prompt embeddings (both the negative and the
positive branch when guidance is on). During that pass every spatial self-attention layer (`attn1`
of the transformer blocks; motion modules' temporal attention is left alone) records its input
tokens [B_ref, T_ref, C] in a bank ("write" mode). During the passes over the frames ("read" mode)
each such layer attends over the frame's own tokens *and* the reference's tokens of the same layer:

    out_ref = softmax(Q K'^T / sqrt(d)) V'   with K' = to_k([x; r]), V' = to_v([x; r])
    out     = out_self + weight * (out_ref - out_self)

where x are the frame's tokens, r the bank entry of the matching branch (negative rows for the
negative half of the batch, positive for the positive half), out_self plain self-attention.
weight 0 gives exactly the model without a reference (the processors are also removed after
each run, so a cached model is never left modified).
"""

from __future__ import annotations

from typing import Any, Optional


class ReferenceState:
    """Shared by all processors of one UNet: the mode and the token bank."""

    def __init__(self, weight: float = 1.0):
        self.mode = "off"  # "write", "read" or "off"
        self.weight = float(weight)
        self.bank: dict[str, Any] = {}


class ReferenceAttnProcessor:
    """Self-attention that records (write) or also attends to (read) the reference's tokens."""

    def __init__(self, name: str, state: ReferenceState, inner: Any):
        self.name = name
        self.state = state
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        state = self.state
        if state.mode == "write":
            state.bank[self.name] = hidden_states.detach()
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        bank: Optional[Any] = state.bank.get(self.name) if state.mode == "read" else None
        plain = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if bank is None or state.weight == 0 or hidden_states.ndim != 3:
            return plain
        import torch

        batch = hidden_states.shape[0]
        groups = bank.shape[0]
        if batch % groups:
            return plain
        ref = bank.to(hidden_states.dtype).repeat_interleave(batch // groups, dim=0)
        context = torch.cat([hidden_states, ref], dim=1)
        with_ref = self.inner(attn, hidden_states, context, None, temb)
        if state.weight == 1.0:
            return with_ref
        return plain + state.weight * (with_ref - plain)


def is_reference_layer(name: str) -> bool:
    """Spatial self-attention layers (not the motion modules' temporal attention)."""
    return name.endswith("attn1.processor") and "motion_modules" not in name and "transformer_blocks" in name


class ReferenceAttention:
    """Context manager installing the processors on `unet` and restoring the originals on exit."""

    def __init__(self, unet: Any, weight: float = 1.0):
        self.unet = unet
        self.state = ReferenceState(weight)
        self._original: Optional[dict] = None

    def __enter__(self) -> ReferenceState:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self._original = dict(self.unet.attn_processors)
        processors = {}
        for name, proc in self._original.items():
            if is_reference_layer(name):
                processors[name] = ReferenceAttnProcessor(name, self.state, AttnProcessor2_0())
            else:
                processors[name] = proc
        self.unet.set_attn_processor(processors)
        return self.state

    def __exit__(self, *exc) -> None:
        if self._original is not None:
            self.unet.set_attn_processor(self._original)
        self.state.bank.clear()
        self.state.mode = "off"
