"""`python -m objstore.cli`: the `objstore` command."""

from objstore.cli import main

raise SystemExit(main())
