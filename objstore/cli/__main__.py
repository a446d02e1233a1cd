from objstore.cli import main

raise SystemExit(main())
