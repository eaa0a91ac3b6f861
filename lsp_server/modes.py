"""The two completion modes as named presets, chosen per request.

*instant* answers automatic triggers while typing: the settings' context budget and token
limit, greedy, one candidate, at most a few lines. *expert* answers explicit invocations:
four times the context and output, several sampled candidates ranked afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfim.context.prompt_builder import PromptSpec
from deepfim.engine.api import Mode, Priority, SamplingParams
from deepfim.engine.model.serving_profile import ServingProfile
from deepfim.lsp_server.editor_settings import MODES, Settings

INSTANT_MAX_LINES = 4
EXPERT_MAX_LINES = 60
EXPERT_SCALE = 4
EXPERT_CANDIDATES = 3
EXPERT_TEMPERATURE = 0.7
EXPERT_TOP_P = 0.95


@dataclass(frozen=True)
class ModePreset:
    name: Mode
    context_budget: int  # prompt tokens besides the repository part
    repository_budget: int | None  # the repository part (None: the checkpoint's profile says)
    confidence_gate: float | bool | None  # the user's gate (None: the checkpoint's; False: none)
    scale: int  # the cursor parts of the prompt are this many times the instant ones
    max_lines: int  # lines a multi-line completion may have
    sampling: SamplingParams
    priority: Priority
    debounce: bool  # wait `debounceMs` first (automatic triggers only)


def prompt_spec(preset: ModePreset, profile: ServingProfile) -> PromptSpec:
    """The prompt the mode asks of the checkpoint serving it."""
    return PromptSpec.for_profile(profile, preset.context_budget, preset.repository_budget, preset.scale)


def confidence_gate(preset: ModePreset, profile: ServingProfile) -> float | None:
    """The gate for automatic suggestions: the user's setting, else the checkpoint's."""
    if preset.confidence_gate is None:
        return profile.confidence_gate
    return None if preset.confidence_gate is False else float(preset.confidence_gate)


def preset_for(mode: str, settings: Settings) -> ModePreset:
    """The preset for `mode` ("instant" or "expert") under the current settings."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == Mode.INSTANT:
        return ModePreset(
            name=Mode.INSTANT,
            context_budget=settings.context_budget,
            repository_budget=settings.repository_budget,
            confidence_gate=settings.confidence_gate,
            scale=1,
            max_lines=INSTANT_MAX_LINES,
            sampling=SamplingParams(temperature=0.0, max_tokens=settings.max_tokens),
            priority=Priority.INSTANT,
            debounce=True,
        )
    return ModePreset(
        name=Mode.EXPERT,
        context_budget=settings.context_budget,
        repository_budget=settings.repository_budget,
        confidence_gate=settings.confidence_gate,
        scale=EXPERT_SCALE,
        max_lines=EXPERT_MAX_LINES,
        sampling=SamplingParams(
            temperature=EXPERT_TEMPERATURE,
            top_p=EXPERT_TOP_P,
            max_tokens=min(settings.max_tokens * EXPERT_SCALE, 8192),
            n=EXPERT_CANDIDATES,
        ),
        priority=Priority.EXPERT,
        debounce=False,
    )
