"""`python -m service.users add|passwd|remove NAME` (see service/users/command.py)."""

import sys

from service.users.command import main

sys.exit(main())
