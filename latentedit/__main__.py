"""``python -m latentedit`` (and ``torchrun -m latentedit``) runs the CLI."""
from latentedit.cli.main import main

main()
