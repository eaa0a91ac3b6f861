"""Runs the real DeepFIM language server (stdio) with the TEST DOUBLE backend of
lsp_double_backend.py instead of the engine. Usage: python lsp_double_server.py [--step-ms N]"""

import argparse
import logging
import sys

from lsp_double_backend import CopyBackend

from deepfim.engine import DEFAULT_MODEL_DIR
from deepfim.lsp_server.cli import serve
from deepfim.lsp_server.features import create_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step-ms", type=float, default=2.0, help="delay per generated token")
    parser.add_argument("--load-ms", type=float, default=0.0, help="delay while 'loading the model'")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def factory(spec):
        import time

        time.sleep(args.load_ms / 1000)
        return CopyBackend(DEFAULT_MODEL_DIR / "tokenizer.json", step_s=args.step_ms / 1000)

    serve(create_server(backend_factory=factory))


if __name__ == "__main__":
    main()
