"""Settings validation: invalid values fall back to defaults with a message naming them."""

from deepfim.lsp_server.editor_settings import Settings, parse_settings, settings_section


def test_valid_settings_are_typed(tmp_path):
    settings, problems = parse_settings(
        {"mode": "expert", "contextBudget": 8192, "debounceMs": 0, "checkpoint": str(tmp_path)}
    )
    assert problems == []
    assert settings.mode == "expert" and settings.context_budget == 8192
    assert settings.debounce_ms == 0 and settings.checkpoint == str(tmp_path)


def test_invalid_values_name_the_setting_and_use_defaults():
    base = Settings(max_tokens=99)
    settings, problems = parse_settings(
        {"contextBudget": "big", "maxTokens": 0, "mode": "turbo", "enabled": "yes", "server": "nohost"}, base
    )
    assert settings.context_budget == 4096 and settings.max_tokens == 48
    assert settings.mode == "instant" and settings.enabled is True and settings.server is None
    joined = "\n".join(problems)
    for key in (
        "deepfim.contextBudget",
        "deepfim.maxTokens",
        "deepfim.mode",
        "deepfim.enabled",
        "deepfim.server",
    ):
        assert key in joined
    assert "'big'" in joined


def test_missing_paths_and_unknown_keys_are_reported(tmp_path):
    settings, problems = parse_settings({"checkpoint": str(tmp_path / "nope"), "colour": "red"})
    assert settings.checkpoint is None
    assert any("deepfim.checkpoint" in p and "nope" in p for p in problems)
    assert any("deepfim.colour" in p for p in problems)


def test_merge_keeps_unmentioned_values_and_accepts_both_shapes():
    base, _ = parse_settings({"debounceMs": 40})
    merged, problems = parse_settings(settings_section({"deepfim": {"server": "[::1]:9000"}}), base)
    assert problems == [] and merged.debounce_ms == 40 and merged.server == "[::1]:9000"
    same, _ = parse_settings(settings_section({"maxTokens": 12}), base)
    assert same.max_tokens == 12


def test_non_object_is_rejected_without_crashing():
    settings, problems = parse_settings(["x"])
    assert settings == Settings() and "must be an object" in problems[0]


def test_log_level_is_one_of_the_logging_levels_or_null():
    settings, problems = parse_settings({"logLevel": "Debug"})
    assert problems == [] and settings.log_level == "DEBUG"
    back, problems = parse_settings({"logLevel": None}, settings)
    assert problems == [] and back.log_level is None
    for bad in ("loud", 10, ""):
        settings, problems = parse_settings({"logLevel": bad})
        assert settings.log_level is None
        assert len(problems) == 1 and problems[0].startswith("deepfim.logLevel: expected one of debug, info")


def test_confidence_gate_is_a_log_probability_false_or_null():
    assert parse_settings({"confidenceGate": -0.5})[0].confidence_gate == -0.5
    assert parse_settings({"confidenceGate": -1})[0].confidence_gate == -1.0
    assert parse_settings({"confidenceGate": False})[0].confidence_gate is False
    assert parse_settings({"confidenceGate": None})[0].confidence_gate is None
    for bad in (0.5, -21, True, "high", [1]):
        settings, problems = parse_settings({"confidenceGate": bad})
        assert settings.confidence_gate is None
        assert len(problems) == 1 and problems[0].startswith("deepfim.confidenceGate: expected a number in [-20, 0]")
