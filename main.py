"""RiskDesk entry point: `python main.py` opens the workstation; sub-commands run headless."""

import sys

from app.cli import main

if __name__ == "__main__":
    if getattr(sys, "frozen", False):  # the installed build: its check service starts a writer process
        import multiprocessing

        multiprocessing.freeze_support()
    sys.exit(main())
