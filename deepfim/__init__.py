"""DeepFIM: repository-aware fill-in-the-middle completion on a DeepSeek-V4 engine.

The top-level folders of the repository are installed as subpackages of this one
(`engine/` -> `deepfim.engine`, `context/` -> `deepfim.context`, ...), so site-packages
only ever gains the `deepfim` name.
"""

__version__ = "0.1.0"
