"""`python -m bot` starts the bot, like the `cxr-bot` script."""

from bot.main import main

raise SystemExit(main())
