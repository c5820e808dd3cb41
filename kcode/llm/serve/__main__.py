"""``python -m kcode.llm.serve REQUEST.json``: a kept-alive model server (kcode.llm.serve._server)."""

import sys

from kcode.llm.serve._server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
