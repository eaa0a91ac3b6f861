"""The in-process DeepSeek-V4 engine: model, checkpoint loading, tokenizer, generation,
prefix cache, scheduler, LAN server and the training of the embedded default model."""

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
