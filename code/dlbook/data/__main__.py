"""``python -m dlbook.data {list,fetch,seed}``: the dataset cache's command line."""

from dlbook.data.cache import main

raise SystemExit(main())
