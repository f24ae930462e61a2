"""``python -m paydata.nosql apply | list | run <query> key=value ... | ingest [--landing-dir DIR]``."""

import sys

from paydata.nosql.definitions import main

if __name__ == "__main__":
    sys.exit(main())
