from placer.interrupts import main

raise SystemExit(main())
