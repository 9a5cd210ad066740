from codescaler.cli import main

raise SystemExit(main())
